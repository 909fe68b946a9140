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
  ProcessIoPump::Options opts;
  opts.read_chunk = 4;  // several reads per chunk
  auto pump = ProcessIoPump::Start(client, "c1", "e1", std::move(fds), opts);
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
  auto pump = ProcessIoPump::Start(client, "c1", "e1", std::move(fds));
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
  auto pump = ProcessIoPump::Start(client, "c1", "e1", std::move(fds));
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
  auto pump = ProcessIoPump::Start(client, "c1", "e1", std::move(fds));
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
  auto pump = ProcessIoPump::Start(client, "c1", "e1", std::move(fds));
  ASSERT_TRUE(pump.ok());
  std::this_thread::sleep_for(1s);
  // 1 ms doubling to 100 ms: about 15 calls in the first second, not thousands.
  EXPECT_LE(reads.load(), 20);
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
  auto pump = ProcessIoPump::Start(client, "c1", "e1", std::move(fds));
  ASSERT_TRUE(pump.ok());
  for (int i = 0; i < 300 && !closed; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(closed.load());
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(got, "line one\nline two\n");
  EXPECT_LE(calls, 20);  // about 10 retries in 500 ms
}

// With an agent that has the event stream, output comes from GetEvents.
TEST(ProcessIoPumpTest, OutputFromTheEventStream) {
  testing::EventFeed feed;  // outlives the fake's handlers
  FakeAgent fake;
  feed.Attach(fake);
  fake.On<pb::ExecProcessRequest, pb::ExecProcessResponse>(
      "ExecProcess", [](const pb::ExecProcessRequest&) -> Result<pb::ExecProcessResponse> {
        pb::ExecProcessResponse r;
        r.set_pid(5);
        return r;
      });
  AgentClient client(fake.TakeClientEnd());
  fake.Serve();
  ASSERT_TRUE(client.ExecProcess("c1", "e1", oci::DefaultSpec({"true"}, false).process.value(), false).ok());
  Pipe out, err;
  ProcessIoFds fds;
  fds.stdout_fd = std::move(out.w);
  fds.stderr_fd = std::move(err.w);
  auto pump = ProcessIoPump::Start(client, "c1", "e1", std::move(fds));
  ASSERT_TRUE(pump.ok());
  pb::GetEventsResponse b;
  testing::AddOutput(b, "c1", "e1", pb::STDOUT, "from the stream\n", true);
  testing::AddOutput(b, "c1", "e1", pb::STDERR, "oops\n", true);
  feed.Push(b);
  EXPECT_TRUE((*pump)->WaitDrainedFor(5s));
  EXPECT_TRUE((*pump)->status().ok());
  EXPECT_EQ(ReadToEof(out.r.get()), "from the stream\n");
  EXPECT_EQ(ReadToEof(err.r.get()), "oops\n");
  feed.Stop();
}

}  // namespace
}  // namespace cask::sandbox
