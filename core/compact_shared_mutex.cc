#include "core/compact_shared_mutex.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>

namespace lamina {
namespace {

// A few tries before sleeping: holders keep these locks for microseconds.
constexpr int kSpins = 64;

void FutexWait(std::atomic<uint32_t>* word, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr,
          nullptr, 0);
}

void FutexWakeAll(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
          nullptr, 0);
}

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

bool CompactSharedMutex::TryAcquire(uint32_t blocked_by, uint32_t add) {
  uint32_t seen = state_.load(std::memory_order_relaxed);
  while ((seen & blocked_by) == 0) {
    if (state_.compare_exchange_weak(seen, seen + add, std::memory_order_acquire,
                                     std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

void CompactSharedMutex::Acquire(uint32_t blocked_by, uint32_t add) {
  for (int spin = 0;; ++spin) {
    if (TryAcquire(blocked_by, add)) return;
    uint32_t seen = state_.load(std::memory_order_relaxed);
    if ((seen & blocked_by) == 0) continue;
    if (spin < kSpins) {
      CpuRelax();
    } else {
      Wait(seen);
    }
  }
}

void CompactSharedMutex::unlock() {
  if (state_.exchange(0, std::memory_order_release) & kWaiters) FutexWakeAll(&state_);
}

void CompactSharedMutex::unlock_shared() {
  // The last reader out wakes whoever waits for the lock to be free.
  if (state_.fetch_sub(1, std::memory_order_release) - 1 == kWaiters) WakeAll();
}

void CompactSharedMutex::Wait(uint32_t seen) {
  // Announce the sleeper first; a holder that releases after this sees it.
  // If the state moved on meanwhile, the caller simply tries again.
  if ((seen & kWaiters) == 0 &&
      !state_.compare_exchange_strong(seen, seen | kWaiters, std::memory_order_relaxed)) {
    return;
  }
  FutexWait(&state_, seen | kWaiters);
}

void CompactSharedMutex::WakeAll() {
  // Someone may have taken the lock since; then their unlock wakes instead.
  uint32_t free_with_waiters = kWaiters;
  if (state_.compare_exchange_strong(free_with_waiters, 0, std::memory_order_relaxed)) {
    FutexWakeAll(&state_);
  }
}

}  // namespace lamina
