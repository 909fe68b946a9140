#include "lib/sandbox/process_io.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <atomic>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "lib/base/fs.h"
#include "lib/oci/parse.h"
#include "lib/sandbox/fake_agent_for_test.h"

namespace cask::sandbox {
namespace {

using namespace std::chrono_literals;
using testing::FakeAgent;
namespace pb = ::cask::agent::v1;

// A guest process as the agent would present it: stdin collected, stdout and
// stderr served from queues that end with EOF once `Exit()` is called.
class FakeProcess {
 public:
  void Install(FakeAgent& fake) {
    fake.On<pb::WriteStreamRequest, pb::WriteStreamResponse>(
        "WriteStdin", [this](const pb::WriteStreamRequest& r) -> Result<pb::WriteStreamResponse> {
          std::lock_guard<std::mutex> l(mu_);
          if (r.container_id() != "c1" || r.exec_id() != "e1") return Error::NotFound("no such process");
          if (stdin_closed_) return Error::FailedPrecondition("stdin is closed");
          // Accept at most 3 bytes per call to exercise partial writes.
          size_t n = std::min<size_t>(3, r.data().size());
          stdin_ += r.data().substr(0, n);
          pb::WriteStreamResponse resp;
          resp.set_len(static_cast<uint32_t>(n));
          return resp;
        });
    fake.On<pb::CloseStdinRequest, pb::Empty>("CloseStdin", [this](const pb::CloseStdinRequest&) -> Result<pb::Empty> {
      std::lock_guard<std::mutex> l(mu_);
      stdin_closed_ = true;
      cv_.notify_all();
      return pb::Empty{};
    });
    auto reader = [this](bool err) {
      return [this, err](const pb::ReadStreamRequest& r) -> Result<pb::ReadStreamResponse> {
        std::unique_lock<std::mutex> l(mu_);
        auto& q = err ? stderr_ : stdout_;
        cv_.wait(l, [&] { return !q.empty() || exited_; });
        pb::ReadStreamResponse resp;
        if (!q.empty()) {
          std::string chunk = q.front().substr(0, r.max_len());
          q.front().erase(0, chunk.size());
          if (q.front().empty()) q.pop_front();
          resp.set_data(chunk);
          (err ? stderr_reads_ : stdout_reads_)++;
        } else {
          resp.set_eof(true);
        }
        return resp;
      };
    };
    fake.On<pb::ReadStreamRequest, pb::ReadStreamResponse>("ReadStdout", reader(false));
    fake.On<pb::ReadStreamRequest, pb::ReadStreamResponse>("ReadStderr", reader(true));
  }

  void Out(std::string s, bool err = false) {
    std::lock_guard<std::mutex> l(mu_);
    (err ? stderr_ : stdout_).push_back(std::move(s));
    cv_.notify_all();
  }
  void Exit() {
    std::lock_guard<std::mutex> l(mu_);
    exited_ = true;
    cv_.notify_all();
  }
  bool WaitStdinClosed(std::chrono::milliseconds t) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, t, [&] { return stdin_closed_; });
  }
  std::string stdin_data() {
    std::lock_guard<std::mutex> l(mu_);
    return stdin_;
  }
  bool stdin_closed() {
    std::lock_guard<std::mutex> l(mu_);
    return stdin_closed_;
  }
  int stdout_reads() {
    std::lock_guard<std::mutex> l(mu_);
    return stdout_reads_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::string stdin_;
  bool stdin_closed_ = false;
  std::deque<std::string> stdout_, stderr_;
  bool exited_ = false;
  int stdout_reads_ = 0, stderr_reads_ = 0;
};

struct Pipe {
  UniqueFd r, w;
  Pipe() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) == 0) {
      r.Reset(p[0]);
      w.Reset(p[1]);
    }
  }
};

std::string ReadToEof(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

TEST(ProcessIoPumpTest, CopiesAllThreeStreamsAndClosesAtEof) {
  FakeProcess proc;  // outlives the fake's handlers
  FakeAgent fake;
  proc.Install(fake);
  AgentClient client(fake.TakeClientEnd());
  fake.Serve();

  Pipe in, out, err;
  ProcessIoFds fds;
  fds.stdin_fd = std::move(in.r);
  fds.stdout_fd = std::move(out.w);
  fds.stderr_fd = std::move(err.w);
  ProcessIoLoop::Options opts;
  opts.max_chunk = 4;  // several reads per chunk
  auto loop = ProcessIoLoop::Start(client, opts);
  ASSERT_TRUE(loop.ok());
  auto pump = ProcessIoPump::Start(**loop, "c1", "e1", std::move(fds));
  ASSERT_TRUE(pump.ok()) << pump.error().ToString();

  ASSERT_TRUE(WriteAll(in.w.get(), "hello stdin").ok());
  in.w.Reset();  // EOF
  EXPECT_TRUE(proc.WaitStdinClosed(5s));
  EXPECT_EQ(proc.stdin_data(), "hello stdin");

  proc.Out("first line\n");
  proc.Out("warning\n", true);
  proc.Out("second line\n");
  EXPECT_FALSE((*pump)->WaitDrainedFor(100ms));  // not exited: streams open
  proc.Exit();
  (*pump)->WaitDrained();
  // The host ends were closed at EOF: the readers see everything then EOF.
  EXPECT_EQ(ReadToEof(out.r.get()), "first line\nsecond line\n");
  EXPECT_EQ(ReadToEof(err.r.get()), "warning\n");
  EXPECT_TRUE((*pump)->status().ok());
}

TEST(ProcessIoPumpTest, StopStdinUnblocksAReaderWithoutEof) {
  FakeProcess proc;  // outlives the fake's handlers
  FakeAgent fake;
  proc.Install(fake);
  AgentClient client(fake.TakeClientEnd());
  fake.Serve();
  Pipe in, out;
  ProcessIoFds fds;
  fds.stdin_fd = std::move(in.r);
  fds.stdout_fd = std::move(out.w);
  auto loop = ProcessIoLoop::Start(client);
  ASSERT_TRUE(loop.ok());
  auto pump = ProcessIoPump::Start(**loop, "c1", "e1", std::move(fds));
  ASSERT_TRUE(pump.ok());
  proc.Out("x");
  proc.Exit();
  (*pump)->WaitDrained();
  EXPECT_EQ(ReadToEof(out.r.get()), "x");
  auto start = std::chrono::steady_clock::now();
  pump->reset();  // stdin never reached EOF: the destructor must not hang
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_FALSE(proc.stdin_closed());  // stopped, not closed
}

TEST(ProcessIoPumpTest, KeepsDrainingWhenTheHostReaderIsGone) {
  ::signal(SIGPIPE, SIG_IGN);
  FakeProcess proc;  // outlives the fake's handlers
  FakeAgent fake;
  proc.Install(fake);
  AgentClient client(fake.TakeClientEnd());
  fake.Serve();
  Pipe out;
  out.r.Reset();  // nobody reads: writes fail with EPIPE
  ProcessIoFds fds;
  fds.stdout_fd = std::move(out.w);
  auto loop = ProcessIoLoop::Start(client);
  ASSERT_TRUE(loop.ok());
  auto pump = ProcessIoPump::Start(**loop, "c1", "e1", std::move(fds));
  ASSERT_TRUE(pump.ok());
  for (int i = 0; i < 5; ++i) proc.Out("chunk" + std::to_string(i));
  proc.Exit();
  EXPECT_TRUE((*pump)->WaitDrainedFor(5s));
  EXPECT_EQ(proc.stdout_reads(), 5);  // everything was read from the guest
  EXPECT_TRUE((*pump)->status().ok());
}

TEST(ProcessIoPumpTest, AgentConnectionLossEndsTheOutputsWithAnError) {
  FakeProcess proc;  // outlives the fake's handlers
  FakeAgent fake;
  proc.Install(fake);
  AgentClient client(fake.TakeClientEnd());
  fake.Serve();
  Pipe out;
  ProcessIoFds fds;
  fds.stdout_fd = std::move(out.w);
  auto loop = ProcessIoLoop::Start(client);
  ASSERT_TRUE(loop.ok());
  auto pump = ProcessIoPump::Start(**loop, "c1", "e1", std::move(fds));
  ASSERT_TRUE(pump.ok());
  client.Close();
  EXPECT_TRUE((*pump)->WaitDrainedFor(5s));
  EXPECT_FALSE((*pump)->status().ok());
  EXPECT_EQ(ReadToEof(out.r.get()), "");
  proc.Exit();  // lets the fake's blocked handler finish
}

// An agent that answers reads with empty chunks that are not EOF (only a
// confused or hostile one does): the pump backs off instead of spinning.
TEST(ProcessIoPumpTest, EmptyNonEofReadsBackOff) {
  FakeAgent fake;
  std::atomic<int> reads{0};
  fake.On<pb::ReadStreamRequest, pb::ReadStreamResponse>(
      "ReadStdout", [&](const pb::ReadStreamRequest&) -> Result<pb::ReadStreamResponse> {
        ++reads;
        return pb::ReadStreamResponse();
      });
  AgentClient client(fake.TakeClientEnd());
  fake.Serve();
  Pipe out;
  ProcessIoFds fds;
  fds.stdout_fd = std::move(out.w);
  auto loop = ProcessIoLoop::Start(client);
  ASSERT_TRUE(loop.ok());
  auto pump = ProcessIoPump::Start(**loop, "c1", "e1", std::move(fds));
  ASSERT_TRUE(pump.ok());
  std::this_thread::sleep_for(1s);
  // 1 ms doubling to 100 ms: about 15 calls in the first second, not thousands
  // (a loaded machine only makes fewer).
  EXPECT_LE(reads.load(), 20);
  // It keeps retrying: wait for the third read itself (a hang guard only).
  for (int i = 0; i < 3000 && reads.load() < 3; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_GE(reads.load(), 3);
  client.Close();
  EXPECT_TRUE((*pump)->WaitDrainedFor(5s));
}

// A full guest stdin (WriteStdin accepts nothing for a while): the pump
// holds its one chunk and retries with a back-off; nothing is lost.
TEST(ProcessIoPumpTest, StdinBackPressureRetriesWithoutSpinning) {
  FakeAgent fake;
  std::mutex mu;
  std::string got;
  int calls = 0;
  auto full_until = std::chrono::steady_clock::now() + 500ms;
  fake.On<pb::WriteStreamRequest, pb::WriteStreamResponse>(
      "WriteStdin", [&](const pb::WriteStreamRequest& r) -> Result<pb::WriteStreamResponse> {
        std::lock_guard<std::mutex> l(mu);
        ++calls;
        pb::WriteStreamResponse resp;
        if (std::chrono::steady_clock::now() < full_until) return resp;  // 0 bytes
        got += r.data();
        resp.set_len(static_cast<uint32_t>(r.data().size()));
        return resp;
      });
  std::atomic<bool> closed{false};
  fake.On<pb::CloseStdinRequest, pb::Empty>("CloseStdin", [&](const pb::CloseStdinRequest&) -> Result<pb::Empty> {
    closed = true;
    return pb::Empty();
  });
  AgentClient client(fake.TakeClientEnd());
  fake.Serve();
  Pipe in;
  ASSERT_TRUE(WriteAll(in.w.get(), "line one\nline two\n").ok());
  in.w.Reset();
  ProcessIoFds fds;
  fds.stdin_fd = std::move(in.r);
  auto loop = ProcessIoLoop::Start(client);
  ASSERT_TRUE(loop.ok());
  auto pump = ProcessIoPump::Start(**loop, "c1", "e1", std::move(fds));
  ASSERT_TRUE(pump.ok());
  for (int i = 0; i < 3000 && !closed; ++i) std::this_thread::sleep_for(10ms);  // a hang guard only
  EXPECT_TRUE(closed.load());
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(got, "line one\nline two\n");
  EXPECT_LE(calls, 20);  // about 10 retries in 500 ms
}

// ---- The loop with the event stream ----

// An agent with the event stream and one exec e1 of container c1: stdin
// through FakeProcess, output pushed by the test through the feed.
struct StreamFixture {
  explicit StreamFixture(AgentClient::Options copts = {}, ProcessIoLoop::Options lopts = {}) {
    feed.Attach(fake);
    proc.Install(fake);
    fake.On<pb::ExecProcessRequest, pb::ExecProcessResponse>(
        "ExecProcess", [](const pb::ExecProcessRequest&) -> Result<pb::ExecProcessResponse> {
          pb::ExecProcessResponse r;
          r.set_pid(5);
          return r;
        });
    client = std::make_unique<AgentClient>(fake.TakeClientEnd(), copts);
    fake.Serve();
    EXPECT_TRUE(client->ExecProcess("c1", "e1", oci::DefaultSpec({"true"}, false).process.value(), false).ok());
    auto l = ProcessIoLoop::Start(*client, lopts);
    EXPECT_TRUE(l.ok());
    if (l.ok()) loop = std::move(*l);
  }
  ~StreamFixture() {
    feed.Stop();
    proc.Exit();
    loop.reset();
    client.reset();
    fake.Stop();
  }
  // Starts e1's pump writing to the pipes' write ends.
  Result<std::unique_ptr<ProcessIoPump>> StartPiped(Pipe& out, Pipe& err) {
    ProcessIoFds fds;
    fds.stdout_fd = std::move(out.w);
    fds.stderr_fd = std::move(err.w);
    return ProcessIoPump::Start(*loop, "c1", "e1", std::move(fds));
  }
  // Output credit the agent has been given for e1's stdout so far.
  size_t StdoutCredit() {
    size_t c = kInitialOutputCredit;
    for (const auto& g : feed.grants())
      if (g.exec_id() == "e1" && g.stream() == pb::STDOUT) c += g.bytes();
    return c;
  }
  // Plays an honest agent: sends `data` as e1's stdout in chunks of at most
  // `chunk` bytes, never beyond the credit, then EOF (and an exit).
  void Send(const std::string& data, size_t chunk) {
    size_t sent = 0;
    while (sent < data.size() && !stop_sending.load()) {
      size_t credit = StdoutCredit();
      if (credit <= sent) {
        waiting_for_credit.store(true);
        std::this_thread::sleep_for(1ms);
        continue;
      }
      waiting_for_credit.store(false);
      size_t n = std::min({chunk, credit - sent, data.size() - sent});
      pb::GetEventsResponse b;
      testing::AddOutput(b, "c1", "e1", pb::STDOUT, data.substr(sent, n), false);
      feed.Push(b);
      sent += n;
    }
    pb::GetEventsResponse b;
    testing::AddOutput(b, "c1", "e1", pb::STDOUT, "", true);
    testing::AddExit(b, "c1", "e1", 0);
    feed.Push(b);
  }

  FakeProcess proc;         // outlives the fake's handlers
  testing::EventFeed feed;  // too
  FakeAgent fake;
  std::unique_ptr<AgentClient> client;
  std::unique_ptr<ProcessIoLoop> loop;
  std::atomic<bool> waiting_for_credit{false};
  std::atomic<bool> stop_sending{false};
};

// Numbered lines: any loss, duplication or reordering shows.
std::string Lines(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += std::to_string(i) + "\n";
  return s;
}

// A temporary directory holding one FIFO, `fifo` (empty if it could not
// be made).
struct FifoDir {
  std::string path, fifo;
  FifoDir() {
    char t[] = "/tmp/process_io_test.XXXXXX";
    if (!::mkdtemp(t)) return;
    path = t;
    if (::mkfifo((path + "/fifo").c_str(), 0600) == 0) fifo = path + "/fifo";
  }
  ~FifoDir() {
    (void)::unlink((path + "/fifo").c_str());
    (void)::rmdir(path.c_str());
  }
};

// The shim's way to open an output FIFO whose reader is not there yet.
UniqueFd OpenFifoWithoutReader(const std::string& path) { return UniqueFd(::open(path.c_str(), O_RDWR | O_CLOEXEC)); }

// With an agent that has the event stream, output comes from GetEvents.
TEST(ProcessIoLoopTest, OutputFromTheEventStream) {
  StreamFixture f;
  Pipe out, err;
  auto pump = f.StartPiped(out, err);
  ASSERT_TRUE(pump.ok());
  pb::GetEventsResponse b;
  testing::AddOutput(b, "c1", "e1", pb::STDOUT, "from the stream\n", true);
  testing::AddOutput(b, "c1", "e1", pb::STDERR, "oops\n", true);
  f.feed.Push(b);
  EXPECT_TRUE((*pump)->WaitDrainedFor(5s));
  EXPECT_TRUE((*pump)->status().ok());
  EXPECT_EQ(ReadToEof(out.r.get()), "from the stream\n");
  EXPECT_EQ(ReadToEof(err.r.get()), "oops\n");
  EXPECT_TRUE(f.client->using_event_stream());
}

TEST(ProcessIoLoopTest, AFifoReaderThatComesLateGetsEverythingInOrder) {
  StreamFixture f;
  FifoDir dir;
  const std::string& fifo = dir.fifo;
  ASSERT_FALSE(fifo.empty());
  ProcessIoFds fds;
  fds.stdout_fd = OpenFifoWithoutReader(fifo);
  ASSERT_TRUE(fds.stdout_fd.valid());
  auto pump = ProcessIoPump::Start(*f.loop, "c1", "e1", std::move(fds));
  ASSERT_TRUE(pump.ok()) << pump.error().ToString();
  const std::string data = Lines(200000);  // about 1.2 MB: far more than the FIFO holds
  std::thread sender([&] { f.Send(data, 16 * 1024); });
  // The FIFO fills up with nobody reading; then the reader comes.
  for (int i = 0; i < 2000 && f.loop->stats().output_full == 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_GT(f.loop->stats().output_full, 0u);
  EXPECT_FALSE((*pump)->drained());
  UniqueFd reader(::open(fifo.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(reader.valid());
  std::string got = ReadToEof(reader.get());
  sender.join();
  EXPECT_TRUE((*pump)->WaitDrainedFor(10s));
  EXPECT_TRUE((*pump)->status().ok());
  EXPECT_EQ(got.size(), data.size());
  EXPECT_TRUE(got == data);
}

TEST(ProcessIoLoopTest, AReaderThatGoesAwayDoesNotStopTheGuest) {
  ::signal(SIGPIPE, SIG_IGN);
  StreamFixture f;
  Pipe out;
  ProcessIoFds fds;
  fds.stdout_fd = std::move(out.w);
  auto pump = ProcessIoPump::Start(*f.loop, "c1", "e1", std::move(fds));
  ASSERT_TRUE(pump.ok());
  const std::string data = Lines(300000);
  std::thread sender([&] { f.Send(data, 32 * 1024); });
  // Read a little, then leave.
  char buf[1000];
  ASSERT_GT(::read(out.r.get(), buf, sizeof buf), 0);
  out.r.Reset();
  // The rest is taken and discarded, so the credit keeps coming and the
  // sender (the guest process) finishes.
  sender.join();
  EXPECT_TRUE((*pump)->WaitDrainedFor(10s));
  EXPECT_TRUE((*pump)->status().ok());
  auto st = f.loop->stats();
  EXPECT_GT(st.discarded_bytes, 0u);
  EXPECT_EQ(st.output_bytes + st.discarded_bytes, data.size());
}

TEST(ProcessIoLoopTest, AFullHostFifoStopsTheCreditWithinABound) {
  AgentClient::Options copts;
  copts.output_window = 256 * 1024;
  ProcessIoLoop::Options lopts;
  lopts.max_chunk = 64 * 1024;
  StreamFixture f(copts, lopts);
  FifoDir dir;
  const std::string& fifo = dir.fifo;
  ASSERT_FALSE(fifo.empty());
  ProcessIoFds fds;
  fds.stdout_fd = OpenFifoWithoutReader(fifo);
  auto pump = ProcessIoPump::Start(*f.loop, "c1", "e1", std::move(fds));
  ASSERT_TRUE(pump.ok());
  const std::string data = Lines(1000000);  // about 6.9 MB
  std::thread sender([&] { f.Send(data, 64 * 1024); });
  // Nobody reads: the sender runs out of credit and stays out.
  for (int i = 0; i < 4000 && !(f.waiting_for_credit.load() && f.loop->stats().output_full > 0); ++i)
    std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(f.waiting_for_credit.load());
  std::this_thread::sleep_for(200ms);  // let any grant still in flight arrive
  // Everything the guest may send: what the FIFO holds (64 KiB by default,
  // at most 1 MiB), the chunk the loop holds, and the client's window.
  const size_t bound = (1 << 20) + lopts.max_chunk + copts.output_window + kInitialOutputCredit;
  EXPECT_LE(f.StdoutCredit(), bound);
  EXPECT_LT(f.StdoutCredit(), data.size());
  // A reader comes: everything arrives, in order.
  UniqueFd reader(::open(fifo.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(reader.valid());
  std::string got = ReadToEof(reader.get());
  sender.join();
  EXPECT_TRUE((*pump)->WaitDrainedFor(10s));
  EXPECT_TRUE(got == data);
}

// The ordering contract: when OnDrained runs, everything the process wrote
// is in the host fd and the fd is closed, even output sent in the same
// batch as the exit.
TEST(ProcessIoLoopTest, DrainedFiresOnlyAfterTheLastOutputIsWritten) {
  StreamFixture f;
  Pipe out, err;
  auto pump = f.StartPiped(out, err);
  ASSERT_TRUE(pump.ok());
  std::mutex mu;
  std::condition_variable cv;
  std::optional<std::string> at_drain;
  ASSERT_EQ(::fcntl(out.r.get(), F_SETFL, O_NONBLOCK), 0);
  (*pump)->OnDrained([&](const Status& st) {
    EXPECT_TRUE(st.ok());
    // Non-blocking: all there, then EOF (the write end is closed).
    std::string s;
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(out.r.get(), buf, sizeof buf);
      if (n <= 0) {
        if (n < 0) s += "<not closed>";
        break;
      }
      s.append(buf, static_cast<size_t>(n));
    }
    std::lock_guard<std::mutex> l(mu);
    at_drain = s;
    cv.notify_all();
  });
  pb::GetEventsResponse b;
  testing::AddOutput(b, "c1", "e1", pb::STDOUT, "first ", false);
  f.feed.Push(b);
  pb::GetEventsResponse last;
  testing::AddOutput(last, "c1", "e1", pb::STDOUT, "last words\n", true);
  testing::AddOutput(last, "c1", "e1", pb::STDERR, "", true);
  testing::AddExit(last, "c1", "e1", 7);
  f.feed.Push(last);
  EXPECT_EQ(f.client->WaitProcess("c1", "e1")->status, 7);
  std::unique_lock<std::mutex> l(mu);
  ASSERT_TRUE(cv.wait_for(l, 10s, [&] { return at_drain.has_value(); }));
  EXPECT_EQ(*at_drain, "first last words\n");
  // Registered after the fact: runs at once.
  bool ran = false;
  (*pump)->OnDrained([&](const Status&) { ran = true; });
  EXPECT_TRUE(ran);
}

// What an exit function was called with.
struct ExitSeen {
  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  std::optional<Result<ProcessExit>> exit;
  bool drained = false;
  std::string out_at_exit;  // what the host reader had at that moment
  std::thread::id thread;
  std::chrono::system_clock::time_point seen_at;

  ProcessIoPump::ExitFn Fn(int out_fd = -1) {
    return [this, out_fd](ProcessIoPump::ExitReport rep) {
      std::string s;
      if (out_fd >= 0) {
        char buf[4096];
        for (;;) {
          ssize_t n = ::read(out_fd, buf, sizeof buf);
          if (n <= 0) {
            if (n < 0) s += "<not closed>";
            break;
          }
          s.append(buf, static_cast<size_t>(n));
        }
      }
      std::lock_guard<std::mutex> l(mu);
      ++calls;
      exit = std::move(rep.exit);
      drained = rep.drained;
      seen_at = rep.seen_at;
      out_at_exit = s;
      thread = std::this_thread::get_id();
      cv.notify_all();
    };
  }
  bool WaitCalls(int n, std::chrono::milliseconds t) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, t, [&] { return calls >= n; });
  }
};

// The exit-after-drain contract of WatchExit: an exit that arrives while
// output is still open is handed on only once the output reached the host
// fd and was closed; then once, with the agent's status.
TEST(ProcessIoLoopTest, AnExitIsHandedOnOnlyAfterTheOutputDrained) {
  StreamFixture f;
  Pipe out, err;
  ASSERT_EQ(::fcntl(out.r.get(), F_SETFL, O_NONBLOCK), 0);
  const int out_r = out.r.get();
  auto pump = f.StartPiped(out, err);
  ASSERT_TRUE(pump.ok());
  ExitSeen seen;
  (*pump)->WatchExit({}, seen.Fn(out_r));
  const auto t0 = std::chrono::system_clock::now();
  pb::GetEventsResponse b;
  testing::AddOutput(b, "c1", "e1", pb::STDOUT, "before exit ", false);
  testing::AddOutput(b, "c1", "e1", pb::STDERR, "", true);
  testing::AddExit(b, "c1", "e1", 3);
  f.feed.Push(b);
  EXPECT_EQ(f.client->WaitProcess("c1", "e1")->status, 3);
  // The exit is known, stdout is still open: nothing handed on.
  EXPECT_FALSE(seen.WaitCalls(1, 300ms));
  pb::GetEventsResponse last;
  testing::AddOutput(last, "c1", "e1", pb::STDOUT, "and after\n", true);
  f.feed.Push(last);
  ASSERT_TRUE(seen.WaitCalls(1, 10s));
  std::lock_guard<std::mutex> l(seen.mu);
  ASSERT_TRUE(seen.exit.has_value() && seen.exit->ok());
  EXPECT_EQ((*seen.exit)->status, 3);
  EXPECT_TRUE(seen.drained);
  EXPECT_EQ(seen.out_at_exit, "before exit and after\n");
  EXPECT_NE(seen.thread, std::this_thread::get_id());
  // Stamped with the host's clock, within the test's run of it.
  EXPECT_GE(seen.seen_at, t0);
  EXPECT_LE(seen.seen_at, std::chrono::system_clock::now());
  EXPECT_EQ(f.loop->stats().exits, 1u);
  EXPECT_EQ(f.loop->stats().drain_timeouts, 0u);
}

// A guest that reports an exit but never ends the output: the loop's timer
// hands the exit on at the drain deadline, undrained.
TEST(ProcessIoLoopTest, AnExitWhoseOutputNeverEndsIsHandedOnAtTheDeadline) {
  StreamFixture f;
  Pipe out, err;
  auto pump = f.StartPiped(out, err);
  ASSERT_TRUE(pump.ok());
  ExitSeen seen;
  ProcessIoPump::ExitWatch w;
  w.drain_after_exit = 200ms;
  (*pump)->WatchExit(w, seen.Fn());
  pb::GetEventsResponse b;
  testing::AddOutput(b, "c1", "e1", pb::STDOUT, "never ends", false);
  testing::AddExit(b, "c1", "e1", 9);
  f.feed.Push(b);
  ASSERT_TRUE(seen.WaitCalls(1, 10s));
  {
    std::lock_guard<std::mutex> l(seen.mu);
    ASSERT_TRUE(seen.exit.has_value() && seen.exit->ok());
    EXPECT_EQ((*seen.exit)->status, 9);
    EXPECT_FALSE(seen.drained);
  }
  EXPECT_FALSE((*pump)->drained());
  EXPECT_EQ(f.loop->stats().drain_timeouts, 1u);
  // Once only, whatever comes later.
  pb::GetEventsResponse last;
  testing::AddOutput(last, "c1", "e1", pb::STDOUT, "", true);
  testing::AddOutput(last, "c1", "e1", pb::STDERR, "", true);
  f.feed.Push(last);
  EXPECT_TRUE((*pump)->WaitDrainedFor(10s));
  EXPECT_FALSE(seen.WaitCalls(2, 200ms));
}

// The connection closes before the exit arrived: the exit is lost
// (UNAVAILABLE), handed on once the output ended with the connection.
TEST(ProcessIoLoopTest, AnExitLostWithTheConnectionIsHandedOnAsUnavailable) {
  StreamFixture f;
  Pipe out, err;
  auto pump = f.StartPiped(out, err);
  ASSERT_TRUE(pump.ok());
  ExitSeen seen;
  (*pump)->WatchExit({}, seen.Fn());
  EXPECT_FALSE(seen.WaitCalls(1, 200ms));
  f.client->Close();
  ASSERT_TRUE(seen.WaitCalls(1, 10s));
  std::lock_guard<std::mutex> l(seen.mu);
  ASSERT_TRUE(seen.exit.has_value());
  ASSERT_FALSE(seen.exit->ok());
  EXPECT_EQ(seen.exit->error().code(), Code::kUnavailable);
}

// A pump destroyed before its exit came: the exit function never runs.
TEST(ProcessIoLoopTest, APumpDestroyedBeforeItsExitDropsTheWatch) {
  StreamFixture f;
  Pipe out, err;
  auto pump = f.StartPiped(out, err);
  ASSERT_TRUE(pump.ok());
  ExitSeen seen;
  (*pump)->WatchExit({}, seen.Fn());
  pump->reset();
  pb::GetEventsResponse b;
  testing::AddOutput(b, "c1", "e1", pb::STDOUT, "", true);
  testing::AddOutput(b, "c1", "e1", pb::STDERR, "", true);
  testing::AddExit(b, "c1", "e1", 0);
  f.feed.Push(b);
  EXPECT_EQ(f.client->WaitProcess("c1", "e1")->status, 0);
  EXPECT_FALSE(seen.WaitCalls(1, 200ms));
}

// A stdin FIFO whose writer has not come yet is not EOF; once the writer
// comes, writes and closes, the guest gets the bytes and then CloseStdin.
TEST(ProcessIoLoopTest, StdinFromAFifoWhoseWriterComesLate) {
  StreamFixture f;
  FifoDir dir;
  const std::string& fifo = dir.fifo;
  ASSERT_FALSE(fifo.empty());
  ProcessIoFds fds;
  fds.stdin_fd.Reset(::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(fds.stdin_fd.valid());
  auto pump = ProcessIoPump::Start(*f.loop, "c1", "e1", std::move(fds));
  ASSERT_TRUE(pump.ok());
  EXPECT_TRUE((*pump)->drained());  // no output fds
  EXPECT_FALSE(f.proc.WaitStdinClosed(300ms));
  {
    UniqueFd w(::open(fifo.c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(w.valid());
    ASSERT_TRUE(WriteAll(w.get(), "typed late\n").ok());
  }
  EXPECT_TRUE(f.proc.WaitStdinClosed(10s));
  EXPECT_EQ(f.proc.stdin_data(), "typed late\n");
  EXPECT_EQ(f.loop->stats().stdin_bytes, 11u);
}

size_t ThreadCount() {
  size_t n = 0;
  auto r = ReadFile("/proc/self/status");
  std::string status = r.ok() ? *r : "";
  auto pos = status.find("Threads:");
  if (pos != std::string::npos) n = std::stoul(status.substr(pos + 8));
  return n;
}

TEST(ProcessIoLoopTest, ThreadsDoNotGrowWithProcesses) {
  StreamFixture f;
  // Exercise the grant thread too, so every thread the loop uses exists.
  Pipe first;
  ProcessIoFds ffds;
  ffds.stdout_fd = std::move(first.w);
  auto p0 = ProcessIoPump::Start(*f.loop, "c1", "e1", std::move(ffds));
  ASSERT_TRUE(p0.ok());
  std::thread sender([&] { f.Send(Lines(1000), 1000); });
  std::string got = ReadToEof(first.r.get());
  sender.join();
  const size_t before = ThreadCount();
  std::vector<Pipe> pipes(200);
  std::vector<std::unique_ptr<ProcessIoPump>> pumps;
  for (int i = 0; i < 200; ++i) {
    ProcessIoFds fds;
    Pipe in;
    fds.stdout_fd = std::move(pipes[i].w);
    fds.stdin_fd = std::move(in.r);
    auto p = ProcessIoPump::Start(*f.loop, "c1", "x" + std::to_string(i), std::move(fds));
    ASSERT_TRUE(p.ok());
    pumps.push_back(std::move(*p));
  }
  EXPECT_EQ(f.loop->stats().pumps, 201u);
  // Each one's exit watched, as sandbox::Container does.
  ExitSeen seen;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(f.client->ExecProcess("c1", "x" + std::to_string(i), oci::DefaultSpec({"true"}, false).process.value(),
                                      false).ok());
    pumps[i]->WatchExit({}, seen.Fn());
  }
  // The fake agent's handler pool starts threads on demand (more of them
  // when the machine is loaded and calls overlap); a thread per pump, per
  // stream or per exit would add hundreds.
  EXPECT_LE(ThreadCount(), before + 16);
  // All of them exit: every exit is handed on, once.
  pb::GetEventsResponse b;
  for (int i = 0; i < 200; ++i) {
    testing::AddOutput(b, "c1", "x" + std::to_string(i), pb::STDOUT, "", true);
    testing::AddExit(b, "c1", "x" + std::to_string(i), i % 100);
  }
  f.feed.Push(b);
  EXPECT_TRUE(seen.WaitCalls(200, 30s));
  EXPECT_LE(ThreadCount(), before + 16);
  EXPECT_EQ(f.loop->stats().exits, 200u);
  pumps.clear();
  EXPECT_EQ(f.loop->stats().pumps, 1u);
  std::lock_guard<std::mutex> l(seen.mu);
  EXPECT_EQ(seen.calls, 200);
}

}  // namespace
}  // namespace cask::sandbox
