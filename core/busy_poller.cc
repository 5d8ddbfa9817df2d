#include "core/busy_poller.h"

#include <algorithm>

namespace lamina {

BusyPoller::BusyPoller(Duration limit)
    : limit_(std::max(limit, Duration::zero())), window_ns_(limit_.count()) {}

void BusyPoller::WorkerFree(Clock::time_point now) {
  free_since_ns_.store(Nanoseconds(now), std::memory_order_relaxed);
}

void BusyPoller::RequestArrived(Clock::time_point now) {
  const int64_t free_since = free_since_ns_.load(std::memory_order_relaxed);
  if (limit_ <= Duration::zero() || free_since == 0) return;
  // Negative when another worker became free after this request was
  // already on its way: the session is busy, which says nothing new.
  const int64_t gap = Nanoseconds(now) - free_since;
  int64_t window = window_ns_.load(std::memory_order_relaxed);
  int64_t next = window;
  if (gap <= limit_.count()) {
    // Polling long enough would have caught it.
    if (window < gap) next = std::min(std::max(window * 2, kGrowStart.count()), limit_.count());
  } else {
    next = window / 2 < kGrowStart.count() ? 0 : window / 2;
  }
  if (next != window) {
    // A lost race means another worker adapted it just now; theirs stands.
    window_ns_.compare_exchange_strong(window, next, std::memory_order_relaxed);
  }
}

BusyPoller::Duration BusyPoller::BeginPoll() {
  const Duration window = this->window();
  if (window <= Duration::zero()) return Duration::zero();
  if (polling_.exchange(true, std::memory_order_acquire)) return Duration::zero();
  return window;
}

void BusyPoller::EndPoll(bool caught) {
  if (caught) caught_.fetch_add(1, std::memory_order_relaxed);
  polling_.store(false, std::memory_order_release);
}

}  // namespace lamina
