#include "lib/sandbox/process_io.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <set>
#include <string_view>
#include <utility>

namespace cask::sandbox {

namespace {

using Clock = std::chrono::steady_clock;

// Back-off of a stdin chunk the guest did not take (its pipe is full).
constexpr auto kMinBackoff = std::chrono::milliseconds(1);
constexpr auto kMaxBackoff = std::chrono::milliseconds(100);

// epoll tokens: 0 is the wake-up eventfd, 1 the drain-deadline timerfd,
// else pump id * 4 + direction (pump ids start at 1). kExit is work for
// the loop, never an epoll token.
enum Dir : uint64_t { kStdin = 1, kStdout = 2, kStderr = 3, kExit = 4 };
constexpr uint64_t kWakeToken = 0;
constexpr uint64_t kTimerToken = 1;
uint64_t Token(uint64_t id, uint64_t dir) { return id * 4 + dir; }

// Prepares a host fd for the loop: a private non-blocking open file
// description where possible (see the header). Sets *epollable to whether
// epoll can watch it (not for regular files and some character devices).
Result<UniqueFd> PrepareFd(UniqueFd fd, bool* epollable) {
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Error::Sys(errno, "fstat a stdio fd");
  *epollable = !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISBLK(st.st_mode);
  if (!*epollable) return fd;
  int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl < 0) return Error::Sys(errno, "fcntl(F_GETFL) a stdio fd");
  if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
    // The same access mode: a FIFO the shim opened O_RDWR (no reader yet)
    // must keep a reader of its own, or writes would fail with EPIPE.
    std::string path = "/proc/self/fd/" + std::to_string(fd.get());
    int re = ::open(path.c_str(), (fl & O_ACCMODE) | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (re >= 0) return UniqueFd(re);
    // ENXIO: a FIFO opened for writing whose reader is gone; others: no
    // /proc. Fall back to the fd itself.
  }
  if (::fcntl(fd.get(), F_SETFL, fl | O_NONBLOCK) != 0) return Error::Sys(errno, "set O_NONBLOCK on a stdio fd");
  return fd;
}

}  // namespace

struct ProcessIoPump::State {
  uint64_t id = 0;
  ProcessKey key;

  // Loop-thread state (also read by the destructor once unregistered).
  struct Out {
    UniqueFd fd;
    bool epollable = false;
    bool registered = false;  // added to epoll (EPOLLONESHOT, re-armed by MOD)
    std::string held;         // taken, not yet written
    size_t off = 0;
    bool eof_taken = false;
    bool host_ok = true;
    // No such stream until Start says otherwise. Atomic: the legacy copy
    // sets it on its own thread.
    std::atomic<bool> done{true};
    std::thread legacy;  // an agent without the event stream: blocking copy
  } out[2];
  struct In {
    UniqueFd fd;
    bool epollable = false;
    bool registered = false;
    std::atomic<bool> busy{false};  // a chunk is at the sender (which clears it)
    bool done = true;
  } in;
  std::atomic<bool> stdin_stopped{false};
  std::atomic<bool> removed{false};

  // Drained state and the exit watch, any thread.
  mutable Mutex dmu;
  std::condition_variable_any dcv;
  bool drained GUARDED_BY(dmu) = false;
  std::optional<Error> first_error GUARDED_BY(dmu);
  std::vector<std::function<void(const Status&)>> on_drained GUARDED_BY(dmu);

  // The exit watch: none -> waiting (for the agent's exit) -> draining (the
  // exit is known; waiting for drained or the deadline) -> delivered
  // (handed to the exit thread).
  enum class ExitPhase { kNone, kWaiting, kDraining, kDelivered };
  ExitPhase exit_phase GUARDED_BY(dmu) = ExitPhase::kNone;
  ProcessIoPump::ExitWatch exit_opts GUARDED_BY(dmu);
  ProcessIoPump::ExitFn exit_fn GUARDED_BY(dmu);
  std::optional<Result<ProcessExit>> exit_result GUARDED_BY(dmu);
  std::chrono::system_clock::time_point exit_seen_at GUARDED_BY(dmu);
  // An agent without the event stream: a thread blocked in WaitProcess
  // (the legacy case, a thread per process) leaves its answer here.
  std::optional<Result<ProcessExit>> legacy_exit GUARDED_BY(dmu);
  std::thread legacy_exit_thread;  // started by the loop thread, joined by the pump

  Status StatusLocked() const REQUIRES(dmu) {
    if (first_error) return *first_error;
    return Ok();
  }
};

struct ProcessIoLoop::Impl {
  Impl(AgentClient& a, Options o) : agent(a), opts(o) {}

  AgentClient& agent;
  const Options opts;
  UniqueFd epoll;
  UniqueFd wake;
  UniqueFd timer;  // drain deadlines (timerfd, CLOCK_MONOTONIC)
  std::thread loop_thread;
  std::thread sender_thread;
  std::thread exit_thread;
  // Drain deadlines of exits, earliest first: loop thread only.
  std::multimap<Clock::time_point, uint64_t> deadlines;

  using StatePtr = std::shared_ptr<ProcessIoPump::State>;

  mutable Mutex mu;
  std::condition_variable_any cv;  // serving_ changed; sender work
  bool stopping GUARDED_BY(mu) = false;
  uint64_t next_id GUARDED_BY(mu) = 1;
  std::map<uint64_t, StatePtr> pumps GUARDED_BY(mu);
  std::map<ProcessKey, uint64_t> by_key GUARDED_BY(mu);
  // Work for the loop, posted by other threads.
  std::set<uint64_t> ready_out GUARDED_BY(mu);  // output may be there
  bool all_ready GUARDED_BY(mu) = false;
  std::set<uint64_t> ready_in GUARDED_BY(mu);   // read stdin (again)
  std::set<uint64_t> ready_exit GUARDED_BY(mu); // look for the exit (again)
  uint64_t serving GUARDED_BY(mu) = 0;          // pump the loop is in now
  Stats stats GUARDED_BY(mu);

  // Exits ready to deliver, in order, and the exit thread's state.
  struct ExitItem {
    uint64_t id = 0;
    ProcessIoPump::ExitFn fn;
    std::optional<Result<ProcessExit>> result;
    bool drained = false;
    std::chrono::system_clock::time_point seen_at;
  };
  std::condition_variable_any exit_cv;  // exit_queue or delivering changed
  std::deque<ExitItem> exit_queue GUARDED_BY(mu);
  uint64_t delivering GUARDED_BY(mu) = 0;  // pump whose exit fn runs now

  // The stdin sender's queue: at most one chunk per pump.
  struct StdinItem {
    StatePtr state;
    std::string data;
    size_t off = 0;
    bool close = false;  // CloseStdin instead of data
    Clock::time_point next_try;
    std::chrono::milliseconds backoff = kMinBackoff;
  };
  std::deque<StdinItem> stdin_queue GUARDED_BY(mu);

  void Wake() {
    uint64_t one = 1;
    // Fails only when the counter would overflow: a wake-up is pending.
    [[maybe_unused]] ssize_t n = ::write(wake.get(), &one, sizeof one);
  }

  void Run();
  void RunSender();
  void Serve(const StatePtr& s, uint64_t dir);
  void ServeOutput(const StatePtr& sp, int i);
  void ServeStdin(const StatePtr& s);
  void Arm(int fd, bool* registered, uint64_t token, uint32_t events);
  void FinishOutput(ProcessIoPump::State& s, int i, std::optional<Error> err);
  void CheckDrained(ProcessIoPump::State& s);
  void StartLegacy(const StatePtr& s, int i);
  void ServeExit(const StatePtr& s);
  void OnTimer();
  void ArmTimer();
  // Hands the exit of `s` to the exit thread (the caller moved the phase to
  // delivered under dmu and took fn and result).
  void Deliver(ProcessIoPump::State& s, ProcessIoPump::ExitFn fn,
               std::optional<Result<ProcessExit>> result, bool drained,
               std::chrono::system_clock::time_point seen_at) EXCLUDES(mu);
  void RunExits();
  void AddStats(uint64_t out, uint64_t discarded, uint64_t full, uint64_t in) EXCLUDES(mu) {
    MutexLock l(mu);
    stats.output_bytes += out;
    stats.discarded_bytes += discarded;
    stats.output_full += full;
    stats.stdin_bytes += in;
  }
};

// ---- ProcessIoLoop ----

Result<std::unique_ptr<ProcessIoLoop>> ProcessIoLoop::Start(AgentClient& agent, Options opts) {
  if (opts.max_chunk == 0) return Error::InvalidArgument("stdio loop: max_chunk must not be 0");
  auto impl = std::make_shared<Impl>(agent, opts);
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return Error::Sys(errno, "epoll_create1 for the stdio loop");
  impl->epoll.Reset(ep);
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return Error::Sys(errno, "eventfd for the stdio loop");
  impl->wake.Reset(efd);
  struct epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  if (::epoll_ctl(impl->epoll.get(), EPOLL_CTL_ADD, impl->wake.get(), &ev) != 0)
    return Error::Sys(errno, "epoll_ctl add the stdio loop's eventfd");
  int tfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (tfd < 0) return Error::Sys(errno, "timerfd_create for the stdio loop");
  impl->timer.Reset(tfd);
  ev.events = EPOLLIN;
  ev.data.u64 = kTimerToken;
  if (::epoll_ctl(impl->epoll.get(), EPOLL_CTL_ADD, impl->timer.get(), &ev) != 0)
    return Error::Sys(errno, "epoll_ctl add the stdio loop's timerfd");
  std::weak_ptr<Impl> weak = impl;
  agent.SetOutputListener([raw = impl.get()](const std::vector<ProcessKey>& changed) {
    {
      MutexLock l(raw->mu);
      if (changed.empty()) {
        raw->all_ready = true;
      } else {
        for (const auto& k : changed) {
          auto it = raw->by_key.find(k);
          if (it != raw->by_key.end()) {
            raw->ready_out.insert(it->second);
            raw->ready_exit.insert(it->second);
          }
        }
      }
    }
    raw->Wake();
  });
  impl->loop_thread = std::thread([raw = impl.get()] { raw->Run(); });
  impl->sender_thread = std::thread([raw = impl.get()] { raw->RunSender(); });
  impl->exit_thread = std::thread([raw = impl.get()] { raw->RunExits(); });
  return std::unique_ptr<ProcessIoLoop>(new ProcessIoLoop(std::move(impl)));
}

ProcessIoLoop::~ProcessIoLoop() {
  // Returns once a listener call in progress has finished: none follows.
  impl_->agent.SetOutputListener({});
  {
    MutexLock l(impl_->mu);
    impl_->stopping = true;
    impl_->cv.notify_all();
    impl_->exit_cv.notify_all();
  }
  impl_->Wake();
  impl_->loop_thread.join();
  impl_->sender_thread.join();
  impl_->exit_thread.join();
}

ProcessIoLoop::Stats ProcessIoLoop::stats() const {
  MutexLock l(impl_->mu);
  Stats s = impl_->stats;
  s.pumps = impl_->pumps.size();
  return s;
}

void ProcessIoLoop::Impl::Run() {
  constexpr int kMaxEvents = 64;
  struct epoll_event events[kMaxEvents];
  for (;;) {
    int n = ::epoll_wait(epoll.get(), events, kMaxEvents, -1);
    if (n < 0 && errno != EINTR) return;  // only EBADF/EINVAL: unusable
    // What to serve, in this order: fd events, then posted work, then
    // exits (after the output that came with them).
    std::vector<std::pair<StatePtr, uint64_t>> work;
    bool timer_fired = false;
    {
      MutexLock l(mu);
      if (stopping) return;
      for (int i = 0; i < std::max(n, 0); ++i) {
        uint64_t token = events[i].data.u64;
        if (token == kWakeToken) continue;
        if (token == kTimerToken) {
          timer_fired = true;
          continue;
        }
        auto it = pumps.find(token / 4);
        if (it != pumps.end()) work.emplace_back(it->second, token % 4);
      }
    }
    uint64_t drain;
    [[maybe_unused]] ssize_t r = ::read(wake.get(), &drain, sizeof drain);
    {
      MutexLock l(mu);
      if (all_ready) {
        for (auto& [id, s] : pumps) {
          work.emplace_back(s, kStdout);
          work.emplace_back(s, kStderr);
          ready_exit.insert(id);
        }
        all_ready = false;
        ready_out.clear();
      }
      for (uint64_t id : ready_out) {
        auto it = pumps.find(id);
        if (it == pumps.end()) continue;
        work.emplace_back(it->second, kStdout);
        work.emplace_back(it->second, kStderr);
      }
      ready_out.clear();
      for (uint64_t id : ready_in) {
        auto it = pumps.find(id);
        if (it != pumps.end()) work.emplace_back(it->second, kStdin);
      }
      ready_in.clear();
      for (uint64_t id : ready_exit) {
        auto it = pumps.find(id);
        if (it != pumps.end()) work.emplace_back(it->second, kExit);
      }
      ready_exit.clear();
    }
    if (timer_fired) OnTimer();
    for (auto& [s, dir] : work) {
      {
        MutexLock l(mu);
        if (s->removed.load()) continue;
        serving = s->id;
      }
      Serve(s, dir);
      {
        MutexLock l(mu);
        serving = 0;
        cv.notify_all();
      }
    }
  }
}

void ProcessIoLoop::Impl::Serve(const StatePtr& s, uint64_t dir) {
  if (dir == kStdin) {
    ServeStdin(s);
  } else if (dir == kExit) {
    ServeExit(s);
  } else {
    ServeOutput(s, dir == kStdout ? 0 : 1);
  }
}

void ProcessIoLoop::Impl::Arm(int fd, bool* registered, uint64_t token, uint32_t events) {
  struct epoll_event ev = {};
  ev.events = events | EPOLLONESHOT;
  ev.data.u64 = token;
  if (*registered) {
    (void)::epoll_ctl(epoll.get(), EPOLL_CTL_MOD, fd, &ev);
  } else if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) == 0) {
    *registered = true;
  }
}

void ProcessIoLoop::Impl::ServeOutput(const StatePtr& sp, int i) {
  ProcessIoPump::State& s = *sp;
  auto& o = s.out[i];
  uint64_t written = 0, discarded = 0, full = 0;
  // Counted before a drain is announced (a waiter may read the stats).
  auto flush = [&] {
    if (written || discarded || full) AddStats(written, discarded, full, 0);
    written = discarded = full = 0;
  };
  struct FlushAtReturn {
    decltype(flush)& f;
    ~FlushAtReturn() { f(); }
  } flush_at_return{flush};
  while (!o.done.load() && !o.legacy.joinable()) {
    while (o.off < o.held.size()) {
      ssize_t n = ::write(o.fd.get(), o.held.data() + o.off, o.held.size() - o.off);
      if (n > 0) {
        o.off += static_cast<size_t>(n);
        written += static_cast<uint64_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        // Full: wait for room, take nothing more meanwhile (back-pressure).
        ++full;
        Arm(o.fd.get(), &o.registered, Token(s.id, i == 0 ? kStdout : kStderr), EPOLLOUT);
        return;
      }
      // EPIPE (the reader is gone) or a broken fd: discard from now on.
      o.host_ok = false;
      discarded += o.held.size() - o.off;
      o.off = o.held.size();
    }
    o.held.clear();
    o.off = 0;
    if (o.eof_taken) {
      flush();
      FinishOutput(s, i, std::nullopt);
      return;
    }
    auto c = agent.TryReadOutput(s.key.first, s.key.second, i, opts.max_chunk);
    if (!c.ok()) {
      if (c.error().code() == Code::kUnimplemented) {
        StartLegacy(sp, i);
        return;
      }
      flush();
      FinishOutput(s, i, std::move(c).error().Wrap(i == 0 ? "copying stdout" : "copying stderr"));
      return;
    }
    if (c->data.empty() && !c->eof) return;  // the listener tells when more comes
    o.eof_taken = c->eof;
    if (o.host_ok) {
      o.held = std::move(c->data);
    } else {
      discarded += c->data.size();
    }
  }
}

void ProcessIoLoop::Impl::FinishOutput(ProcessIoPump::State& s, int i, std::optional<Error> err) {
  auto& o = s.out[i];
  if (o.registered) (void)::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, o.fd.get(), nullptr);
  o.registered = false;
  o.fd.Reset();
  o.held.clear();
  o.done.store(true);
  if (err) {
    MutexLock l(s.dmu);
    if (!s.first_error) s.first_error = std::move(err);
  }
  CheckDrained(s);
}

void ProcessIoLoop::Impl::CheckDrained(ProcessIoPump::State& s) {
  std::vector<std::function<void(const Status&)>> fns;
  Status st;
  ProcessIoPump::ExitFn exit_fn;
  std::optional<Result<ProcessExit>> exit_result;
  std::chrono::system_clock::time_point seen_at;
  {
    MutexLock l(s.dmu);
    if (s.drained || !s.out[0].done.load() || !s.out[1].done.load()) return;
    s.drained = true;
    fns.swap(s.on_drained);
    st = s.StatusLocked();
    s.dcv.notify_all();
    if (s.exit_phase == ProcessIoPump::State::ExitPhase::kDraining) {
      s.exit_phase = ProcessIoPump::State::ExitPhase::kDelivered;
      exit_fn = std::move(s.exit_fn);
      exit_result = std::move(s.exit_result);
      seen_at = s.exit_seen_at;
    }
  }
  for (auto& fn : fns) fn(st);
  if (exit_fn) Deliver(s, std::move(exit_fn), std::move(exit_result), /*drained=*/true, seen_at);
}

void ProcessIoLoop::Impl::ServeExit(const StatePtr& sp) {
  using Phase = ProcessIoPump::State::ExitPhase;
  ProcessIoPump::State& s = *sp;
  std::optional<Result<ProcessExit>> got;
  {
    MutexLock l(s.dmu);
    if (s.exit_phase != Phase::kWaiting) return;
    if (s.legacy_exit) got = std::move(s.legacy_exit);
  }
  if (!got) {
    auto r = agent.TryWaitProcess(s.key.first, s.key.second);
    if (!r.ok() && r.error().code() == Code::kUnimplemented) {
      // An agent without the event stream: one blocked WaitProcess per
      // process, on a thread of its own (the pump joins it).
      if (s.legacy_exit_thread.joinable()) return;
      ProcessIoPump::State* raw = &s;
      s.legacy_exit_thread = std::thread([this, raw] {
        auto w = agent.WaitProcess(raw->key.first, raw->key.second);
        {
          MutexLock l(raw->dmu);
          raw->legacy_exit = std::move(w);
        }
        {
          MutexLock l(mu);
          ready_exit.insert(raw->id);
        }
        Wake();
      });
      return;
    }
    if (r.ok() && !r->has_value()) return;  // not yet: the listener tells
    if (r.ok()) {
      got = Result<ProcessExit>(**r);
    } else {
      got = Result<ProcessExit>(std::move(r).error());
    }
  }
  ProcessIoPump::ExitFn fn;
  std::optional<Result<ProcessExit>> result;
  bool drained = false;
  // The host's clock when the host learned of the exit (not after the
  // drain): the time an exit is stamped with.
  const auto seen_at = std::chrono::system_clock::now();
  {
    MutexLock l(s.dmu);
    if (s.exit_phase != Phase::kWaiting) return;
    const bool lost = !got->ok();
    s.exit_seen_at = seen_at;
    if (!s.drained) {
      // Wait for the output, at most the drain deadline (the timerfd).
      s.exit_phase = Phase::kDraining;
      s.exit_result = std::move(got);
      deadlines.emplace(Clock::now() + (lost ? s.exit_opts.drain_after_loss : s.exit_opts.drain_after_exit), s.id);
    } else {
      s.exit_phase = Phase::kDelivered;
      fn = std::move(s.exit_fn);
      result = std::move(got);
      drained = true;
    }
  }
  if (fn) {
    Deliver(s, std::move(fn), std::move(result), drained, seen_at);
  } else {
    ArmTimer();
  }
}

void ProcessIoLoop::Impl::ArmTimer() {
  struct itimerspec its = {};
  if (!deadlines.empty()) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadlines.begin()->first.time_since_epoch());
    if (ns.count() <= 0) ns = std::chrono::nanoseconds(1);  // 0 would disarm
    its.it_value.tv_sec = static_cast<time_t>(ns.count() / 1'000'000'000);
    its.it_value.tv_nsec = static_cast<long>(ns.count() % 1'000'000'000);
  }
  // steady_clock is CLOCK_MONOTONIC; fails only on a bad fd or value.
  (void)::timerfd_settime(timer.get(), TFD_TIMER_ABSTIME, &its, nullptr);
}

void ProcessIoLoop::Impl::OnTimer() {
  using Phase = ProcessIoPump::State::ExitPhase;
  uint64_t expirations;
  [[maybe_unused]] ssize_t r = ::read(timer.get(), &expirations, sizeof expirations);
  const auto now = Clock::now();
  while (!deadlines.empty() && deadlines.begin()->first <= now) {
    const uint64_t id = deadlines.begin()->second;
    deadlines.erase(deadlines.begin());
    StatePtr sp;
    {
      MutexLock l(mu);
      auto it = pumps.find(id);
      if (it == pumps.end()) continue;
      sp = it->second;
    }
    ProcessIoPump::ExitFn fn;
    std::optional<Result<ProcessExit>> result;
    std::chrono::system_clock::time_point seen_at;
    {
      MutexLock l(sp->dmu);
      if (sp->exit_phase != Phase::kDraining) continue;  // drained meanwhile
      sp->exit_phase = Phase::kDelivered;
      fn = std::move(sp->exit_fn);
      result = std::move(sp->exit_result);
      seen_at = sp->exit_seen_at;
    }
    {
      MutexLock l(mu);
      ++stats.drain_timeouts;
    }
    Deliver(*sp, std::move(fn), std::move(result), /*drained=*/false, seen_at);
  }
  ArmTimer();
}

void ProcessIoLoop::Impl::Deliver(ProcessIoPump::State& s, ProcessIoPump::ExitFn fn,
                                  std::optional<Result<ProcessExit>> result, bool drained,
                                  std::chrono::system_clock::time_point seen_at) {
  MutexLock l(mu);
  if (s.removed.load() || stopping) return;  // the pump is gone: nobody to tell
  exit_queue.push_back(ExitItem{s.id, std::move(fn), std::move(result), drained, seen_at});
  exit_cv.notify_all();
}

void ProcessIoLoop::Impl::RunExits() {
  MutexLock l(mu);
  for (;;) {
    if (stopping) return;
    if (exit_queue.empty()) {
      exit_cv.wait(mu);
      continue;
    }
    ExitItem item = std::move(exit_queue.front());
    exit_queue.pop_front();
    delivering = item.id;
    ++stats.exits;
    mu.unlock();
    item.fn(ProcessIoPump::ExitReport{std::move(*item.result), item.drained, item.seen_at});
    item.fn = nullptr;  // whatever it holds goes before the pump may
    mu.lock();
    delivering = 0;
    exit_cv.notify_all();
  }
}

namespace {
// Writes everything to a non-blocking fd, polling when it is full. False on
// a hard error (EPIPE, EBADF, ...).
bool WriteAllPolling(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd p = {fd, POLLOUT, 0};
        if (::poll(&p, 1, -1) < 0 && errno != EINTR) return false;
        continue;
      }
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}
}  // namespace

// An agent without the event stream has only the blocking per-process
// reads: one thread per stream, as before the loop existed. The loop does
// not touch the stream any more; the thread finishes it.
void ProcessIoLoop::Impl::StartLegacy(const StatePtr& sp, int i) {
  auto& o = sp->out[i];
  if (o.registered) (void)::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, o.fd.get(), nullptr);
  o.registered = false;
  // Whatever was taken before is written first (nothing, in practice: an
  // agent is legacy from its first answer).
  std::string held = o.held.substr(o.off);
  o.held.clear();
  o.off = 0;
  ProcessIoPump::State* s = sp.get();  // the pump joins the thread before the state goes
  o.legacy = std::thread([this, s, i, held = std::move(held)] {
    auto& o = s->out[i];
    bool host_ok = o.host_ok && WriteAllPolling(o.fd.get(), held);
    std::optional<Error> err;
    auto backoff = kMinBackoff;
    for (;;) {
      auto c = i == 0 ? agent.ReadStdout(s->key.first, s->key.second, static_cast<uint32_t>(opts.max_chunk))
                      : agent.ReadStderr(s->key.first, s->key.second, static_cast<uint32_t>(opts.max_chunk));
      if (!c.ok()) {
        err = std::move(c).error().Wrap(i == 0 ? "copying stdout" : "copying stderr");
        break;
      }
      if (c->data.empty() && !c->eof) {
        // Not EOF and no data: only a confused agent answers so. No spinning.
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::duration_cast<std::chrono::milliseconds>(kMaxBackoff));
        continue;
      }
      backoff = kMinBackoff;
      if (host_ok && !c->data.empty()) host_ok = WriteAllPolling(o.fd.get(), c->data);
      if (c->eof) break;
    }
    FinishOutput(*s, i, std::move(err));
  });
}

void ProcessIoLoop::Impl::ServeStdin(const StatePtr& s) {
  auto& in = s->in;
  if (in.done || in.busy) return;
  if (s->stdin_stopped.load()) {
    if (in.registered) (void)::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, in.fd.get(), nullptr);
    in.registered = false;
    in.fd.Reset();
    in.done = true;
    return;
  }
  std::string buf(opts.max_chunk, '\0');
  ssize_t n = ::read(in.fd.get(), buf.data(), buf.size());
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
    Arm(in.fd.get(), &in.registered, Token(s->id, kStdin), EPOLLIN);
    return;
  }
  StdinItem item;
  item.state = s;
  if (n > 0) {
    buf.resize(static_cast<size_t>(n));
    item.data = std::move(buf);
    in.busy.store(true);
  } else {
    // EOF (or a broken input, treated alike): the guest's stdin is closed.
    item.close = true;
    if (in.registered) (void)::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, in.fd.get(), nullptr);
    in.registered = false;
    in.fd.Reset();
    in.done = true;
  }
  MutexLock l(mu);
  stdin_queue.push_back(std::move(item));
  cv.notify_all();
}

void ProcessIoLoop::Impl::RunSender() {
  MutexLock l(mu);
  for (;;) {
    if (stopping) return;
    // The first item due now; else wait for the earliest or for new work.
    auto now = Clock::now();
    auto due = stdin_queue.end();
    std::optional<Clock::time_point> earliest;
    for (auto it = stdin_queue.begin(); it != stdin_queue.end(); ++it) {
      if (it->next_try <= now) {
        due = it;
        break;
      }
      if (!earliest || it->next_try < *earliest) earliest = it->next_try;
    }
    if (due == stdin_queue.end()) {
      if (earliest)
        cv.wait_until(mu, *earliest);
      else
        cv.wait(mu);
      continue;
    }
    StdinItem item = std::move(*due);
    stdin_queue.erase(due);
    const StatePtr s = item.state;
    const bool stopped = s->stdin_stopped.load() || s->removed.load();
    mu.unlock();
    bool finished = true;  // the chunk is done with (sent, or not to be sent)
    bool give_up = false;  // the guest's stdin is gone: read no more
    uint64_t accepted = 0;
    if (stopped) {
      // StopStdin: leave the guest's stdin as it is.
    } else if (item.close) {
      // Failure means the process is gone.
      (void)agent.CloseStdin(s->key.first, s->key.second);
    } else {
      auto w = agent.WriteStdin(s->key.first, s->key.second, std::string_view(item.data).substr(item.off));
      if (!w.ok()) {
        give_up = true;  // the process exited or closed its stdin
      } else if (*w == 0) {
        // The guest's stdin pipe is full: later, without holding others up.
        finished = false;
        item.next_try = Clock::now() + item.backoff;
        item.backoff = std::min(item.backoff * 2, std::chrono::duration_cast<std::chrono::milliseconds>(kMaxBackoff));
      } else {
        accepted = *w;
        item.off += *w;
        item.backoff = kMinBackoff;
        finished = item.off >= item.data.size();
        item.next_try = Clock::now();
      }
    }
    if (accepted) AddStats(0, 0, 0, accepted);
    mu.lock();
    if (!finished) {
      stdin_queue.push_back(std::move(item));
      continue;
    }
    if (!item.close) {
      if (give_up || stopped) s->stdin_stopped.store(true);
      s->in.busy.store(false);
      // The loop reads the next chunk (or, stopped, closes the host fd).
      ready_in.insert(s->id);
      Wake();
    }
  }
}

// ---- ProcessIoPump ----

Result<std::unique_ptr<ProcessIoPump>> ProcessIoPump::Start(ProcessIoLoop& loop, std::string container_id,
                                                            std::string exec_id, ProcessIoFds fds) {
  auto& impl = loop.impl_;
  auto s = std::make_shared<State>();
  s->key = ProcessKey{std::move(container_id), std::move(exec_id)};
  UniqueFd* outs[2] = {&fds.stdout_fd, &fds.stderr_fd};
  for (int i = 0; i < 2; ++i) {
    if (!outs[i]->valid()) continue;
    CASK_ASSIGN_OR_RETURN(s->out[i].fd, PrepareFd(std::move(*outs[i]), &s->out[i].epollable));
    s->out[i].done.store(false);
  }
  if (fds.stdin_fd.valid()) {
    CASK_ASSIGN_OR_RETURN(s->in.fd, PrepareFd(std::move(fds.stdin_fd), &s->in.epollable));
    s->in.done = false;
  }
  {
    MutexLock l(s->dmu);
    s->drained = s->out[0].done && s->out[1].done;
  }
  {
    MutexLock l(impl->mu);
    s->id = impl->next_id++;
    impl->pumps[s->id] = s;
    impl->by_key[s->key] = s->id;
    // Output may already be buffered. Stdin is read once epoll says it is
    // readable (a FIFO whose writer has not come yet reads as EOF, but
    // polls as nothing), or at once for an fd epoll cannot watch.
    impl->ready_out.insert(s->id);
    if (!s->in.done) {
      if (s->in.epollable) {
        impl->Arm(s->in.fd.get(), &s->in.registered, Token(s->id, kStdin), EPOLLIN);
        if (!s->in.registered) impl->ready_in.insert(s->id);  // e.g. /dev/null: EPERM
      } else {
        impl->ready_in.insert(s->id);
      }
    }
  }
  impl->Wake();
  return std::unique_ptr<ProcessIoPump>(new ProcessIoPump(impl, std::move(s)));
}

ProcessIoPump::~ProcessIoPump() {
  {
    MutexLock l(loop_->mu);
    state_->removed.store(true);
    loop_->pumps.erase(state_->id);
    auto it = loop_->by_key.find(state_->key);
    if (it != loop_->by_key.end() && it->second == state_->id) loop_->by_key.erase(it);
    // An exit not handed out yet is dropped.
    std::erase_if(loop_->exit_queue, [&](const ProcessIoLoop::Impl::ExitItem& e) { return e.id == state_->id; });
    // The loop may be serving this pump now, and the exit thread running
    // its exit function: let them leave first.
    if (std::this_thread::get_id() != loop_->loop_thread.get_id())
      loop_->cv.wait(loop_->mu, [&] {
        loop_->mu.AssertHeld();
        return loop_->serving != state_->id;
      });
    if (std::this_thread::get_id() != loop_->exit_thread.get_id())
      loop_->exit_cv.wait(loop_->mu, [&] {
        loop_->mu.AssertHeld();
        return loop_->delivering != state_->id;
      });
  }
  if (state_->legacy_exit_thread.joinable()) state_->legacy_exit_thread.join();
  for (auto& o : state_->out) {
    if (o.legacy.joinable()) o.legacy.join();
    if (o.registered) (void)::epoll_ctl(loop_->epoll.get(), EPOLL_CTL_DEL, o.fd.get(), nullptr);
    o.fd.Reset();
  }
  if (state_->in.registered) (void)::epoll_ctl(loop_->epoll.get(), EPOLL_CTL_DEL, state_->in.fd.get(), nullptr);
  state_->in.fd.Reset();
}

void ProcessIoPump::WaitDrained() {
  MutexLock l(state_->dmu);
  state_->dcv.wait(state_->dmu, [&] {
    state_->dmu.AssertHeld();
    return state_->drained;
  });
}

bool ProcessIoPump::WaitDrainedFor(std::chrono::milliseconds timeout) {
  MutexLock l(state_->dmu);
  return state_->dcv.wait_for(state_->dmu, timeout, [&] {
    state_->dmu.AssertHeld();
    return state_->drained;
  });
}

void ProcessIoPump::WatchExit(ExitWatch w, ExitFn fn) {
  {
    MutexLock l(state_->dmu);
    if (state_->exit_phase != State::ExitPhase::kNone) return;  // once
    state_->exit_phase = State::ExitPhase::kWaiting;
    state_->exit_opts = w;
    state_->exit_fn = std::move(fn);
  }
  {
    MutexLock l(loop_->mu);
    loop_->ready_exit.insert(state_->id);
  }
  loop_->Wake();
}

void ProcessIoPump::OnDrained(std::function<void(const Status&)> fn) {
  Status st;
  {
    MutexLock l(state_->dmu);
    if (!state_->drained) {
      state_->on_drained.push_back(std::move(fn));
      return;
    }
    st = state_->StatusLocked();
  }
  fn(st);
}

bool ProcessIoPump::drained() const {
  MutexLock l(state_->dmu);
  return state_->drained;
}

void ProcessIoPump::StopStdin() {
  state_->stdin_stopped.store(true);
  {
    MutexLock l(loop_->mu);
    loop_->ready_in.insert(state_->id);
  }
  loop_->Wake();
}

Status ProcessIoPump::status() const {
  MutexLock l(state_->dmu);
  return state_->StatusLocked();
}

}  // namespace cask::sandbox
