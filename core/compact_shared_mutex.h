// CompactSharedMutex: a reader-writer lock in four bytes, for objects that
// exist by the hundred thousand (a filesystem's cached nodes), where
// std::shared_mutex's 56 bytes would be a quarter of each object.
//
// Meets the standard's SharedMutex requirements, so std::unique_lock and
// std::shared_lock work with it. Waiters sleep on a futex; there is no
// fairness between readers and writers, which suits locks held for short
// stretches by requests that rarely contend. Built on std::atomic alone so
// that ThreadSanitizer sees every acquire and release.

#ifndef LAMINA_CORE_COMPACT_SHARED_MUTEX_H_
#define LAMINA_CORE_COMPACT_SHARED_MUTEX_H_

#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"

namespace lamina {

class ABSL_LOCKABLE CompactSharedMutex {
 public:
  CompactSharedMutex() = default;
  CompactSharedMutex(const CompactSharedMutex&) = delete;
  CompactSharedMutex& operator=(const CompactSharedMutex&) = delete;

  // A writer needs no holders at all; a reader, no writer.
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { Acquire(kHolders, kWriter); }
  bool try_lock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) { return TryAcquire(kHolders, kWriter); }
  void unlock() ABSL_UNLOCK_FUNCTION();

  void lock_shared() ABSL_SHARED_LOCK_FUNCTION() { Acquire(kWriter, 1); }
  bool try_lock_shared() ABSL_SHARED_TRYLOCK_FUNCTION(true) { return TryAcquire(kWriter, 1); }
  void unlock_shared() ABSL_UNLOCK_FUNCTION();

 private:
  // state_: the number of readers in the low bits, or kWriter; kWaiters
  // when someone sleeps (or is about to) until the lock is free.
  static constexpr uint32_t kWriter = 1u << 30;
  static constexpr uint32_t kWaiters = 1u << 31;
  static constexpr uint32_t kHolders = kWaiters - 1;

  // Adds `add` to the state unless it has any of the `blocked_by` bits.
  bool TryAcquire(uint32_t blocked_by, uint32_t add);
  // The same, spinning and then sleeping until it succeeds.
  void Acquire(uint32_t blocked_by, uint32_t add);
  // Sleeps until state_ is no longer `seen` (which has holders).
  void Wait(uint32_t seen);
  // The lock became free with kWaiters set: clears it and wakes everyone.
  void WakeAll();

  std::atomic<uint32_t> state_{0};
};

}  // namespace lamina

#endif  // LAMINA_CORE_COMPACT_SHARED_MUTEX_H_
