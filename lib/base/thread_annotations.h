// Clang thread-safety annotations (-Wthread-safety), as LevelDB's
// port/thread_annotations.h and Abseil define them. Under GCC they expand to
// nothing; the clang builds (fuzz, TSan) check them.
//
// Use:
//   cask::Mutex mu_;
//   int count_ GUARDED_BY(mu_);
//   void Locked() REQUIRES(mu_);
//   { cask::MutexLock l(mu_); ... }
//
// cask::Mutex is std::mutex with the capability attribute, so the analysis
// sees lock and unlock; MutexLock is its scoped holder. Code that needs a
// std::unique_lock (condition variables) may use `std::unique_lock<std::mutex>
// l(mu.native())` and annotate the function with NO_THREAD_SAFETY_ANALYSIS
// only where the analysis cannot follow.
#pragma once

#include <mutex>

#if defined(__clang__)
#define CASK_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define CASK_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) CASK_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY CASK_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) CASK_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) CASK_THREAD_ANNOTATION(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) CASK_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) CASK_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define REQUIRES(...) CASK_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) CASK_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) CASK_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) CASK_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) CASK_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) CASK_THREAD_ANNOTATION(assert_capability(x))
#define RETURN_CAPABILITY(x) CASK_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS CASK_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace cask {

// std::mutex that the thread-safety analysis knows as a capability.
class CAPABILITY("mutex") Mutex {
 public:
  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  bool try_lock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis the caller holds the lock (e.g. inside a
  // condition-variable predicate).
  void AssertHeld() const ASSERT_CAPABILITY(this) {}
  std::mutex& native() RETURN_CAPABILITY(this) { return mu_; }

 private:
  std::mutex mu_;
};

// Scoped holder of a Mutex (std::lock_guard with annotations).
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

}  // namespace cask
