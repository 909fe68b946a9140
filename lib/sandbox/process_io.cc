#include "lib/sandbox/process_io.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
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

// epoll tokens: 0 is the wake-up eventfd, else pump id * 4 + direction.
enum Dir : uint64_t { kStdin = 1, kStdout = 2, kStderr = 3 };
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

  // Drained state, any thread.
  mutable std::mutex dmu;
  std::condition_variable dcv;
  bool drained = false;
  std::optional<Error> first_error;
  std::vector<std::function<void(const Status&)>> on_drained;

  Status StatusLocked() const {
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
  std::thread loop_thread;
  std::thread sender_thread;

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
  uint64_t serving GUARDED_BY(mu) = 0;          // pump the loop is in now
  Stats stats GUARDED_BY(mu);

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
  std::weak_ptr<Impl> weak = impl;
  agent.SetOutputListener([raw = impl.get()](const std::vector<ProcessKey>& changed) {
    {
      MutexLock l(raw->mu);
      if (changed.empty()) {
        raw->all_ready = true;
      } else {
        for (const auto& k : changed) {
          auto it = raw->by_key.find(k);
          if (it != raw->by_key.end()) raw->ready_out.insert(it->second);
        }
      }
    }
    raw->Wake();
  });
  impl->loop_thread = std::thread([raw = impl.get()] { raw->Run(); });
  impl->sender_thread = std::thread([raw = impl.get()] { raw->RunSender(); });
  return std::unique_ptr<ProcessIoLoop>(new ProcessIoLoop(std::move(impl)));
}

ProcessIoLoop::~ProcessIoLoop() {
  // Returns once a listener call in progress has finished: none follows.
  impl_->agent.SetOutputListener({});
  {
    MutexLock l(impl_->mu);
    impl_->stopping = true;
    impl_->cv.notify_all();
  }
  impl_->Wake();
  impl_->loop_thread.join();
  impl_->sender_thread.join();
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
    // What to serve, in this order: fd events, then posted work.
    std::vector<std::pair<StatePtr, uint64_t>> work;
    {
      MutexLock l(mu);
      if (stopping) return;
      for (int i = 0; i < std::max(n, 0); ++i) {
        uint64_t token = events[i].data.u64;
        if (token == 0) continue;
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
    }
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
    std::lock_guard<std::mutex> l(s.dmu);
    if (!s.first_error) s.first_error = std::move(err);
  }
  CheckDrained(s);
}

void ProcessIoLoop::Impl::CheckDrained(ProcessIoPump::State& s) {
  std::vector<std::function<void(const Status&)>> fns;
  Status st;
  {
    std::lock_guard<std::mutex> l(s.dmu);
    if (s.drained || !s.out[0].done.load() || !s.out[1].done.load()) return;
    s.drained = true;
    fns.swap(s.on_drained);
    st = s.StatusLocked();
    s.dcv.notify_all();
  }
  for (auto& fn : fns) fn(st);
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
  s->drained = s->out[0].done && s->out[1].done;
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
    // The loop may be serving this pump now: let it leave first.
    if (std::this_thread::get_id() != loop_->loop_thread.get_id())
      loop_->cv.wait(loop_->mu, [&] {
        loop_->mu.AssertHeld();
        return loop_->serving != state_->id;
      });
  }
  for (auto& o : state_->out) {
    if (o.legacy.joinable()) o.legacy.join();
    if (o.registered) (void)::epoll_ctl(loop_->epoll.get(), EPOLL_CTL_DEL, o.fd.get(), nullptr);
    o.fd.Reset();
  }
  if (state_->in.registered) (void)::epoll_ctl(loop_->epoll.get(), EPOLL_CTL_DEL, state_->in.fd.get(), nullptr);
  state_->in.fd.Reset();
}

void ProcessIoPump::WaitDrained() {
  std::unique_lock<std::mutex> l(state_->dmu);
  state_->dcv.wait(l, [&] { return state_->drained; });
}

bool ProcessIoPump::WaitDrainedFor(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> l(state_->dmu);
  return state_->dcv.wait_for(l, timeout, [&] { return state_->drained; });
}

void ProcessIoPump::OnDrained(std::function<void(const Status&)> fn) {
  Status st;
  {
    std::lock_guard<std::mutex> l(state_->dmu);
    if (!state_->drained) {
      state_->on_drained.push_back(std::move(fn));
      return;
    }
    st = state_->StatusLocked();
  }
  fn(st);
}

bool ProcessIoPump::drained() const {
  std::lock_guard<std::mutex> l(state_->dmu);
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
  std::lock_guard<std::mutex> l(state_->dmu);
  return state_->StatusLocked();
}

}  // namespace cask::sandbox
