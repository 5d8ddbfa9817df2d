// BusyPoller: how long a worker that has just replied keeps polling for the
// next request before it goes to sleep in the kernel.
//
// A program waiting on the mount sends its next request a few microseconds
// after our reply reaches it, but a worker asleep in read(2) takes an
// inter-processor interrupt and, on a VM whose idle CPUs halt, a trip
// through the host's scheduler to wake: on the 2-vCPU machine of
// docs/benchmarks.md that is most of a round trip. So one worker at a time
// polls a non-blocking channel for a short window first.
//
// The window adapts the way the kernel's cpuidle haltpoll governor does,
// on the session's idle gaps (from the moment the last worker became free
// to the next request's arrival, at whichever worker): a gap within the
// limit that the window was too short for doubles it (from kGrowStart, up
// to the limit); a gap past the limit halves it, and below kGrowStart it
// closes. A mount that is idle, or whose requests come further apart than
// the limit, stops burning CPU after a few requests; requests coming close
// together again reopen it. Thread-safe; times are passed in, so tests can
// make them up.

#ifndef LAMINA_CORE_BUSY_POLLER_H_
#define LAMINA_CORE_BUSY_POLLER_H_

#include <atomic>
#include <chrono>
#include <cstdint>

namespace lamina {

class BusyPoller {
 public:
  using Clock = std::chrono::steady_clock;
  using Duration = std::chrono::nanoseconds;

  // The smallest window polling starts from after having stopped.
  static constexpr Duration kGrowStart = std::chrono::microseconds(10);

  // `limit`: the longest window; zero turns polling off.
  explicit BusyPoller(Duration limit);

  BusyPoller(const BusyPoller&) = delete;
  BusyPoller& operator=(const BusyPoller&) = delete;

  // A worker has finished a request and looks for the next.
  void WorkerFree(Clock::time_point now);
  // A worker has received a request; adapts the window to the gap since
  // the last WorkerFree.
  void RequestArrived(Clock::time_point now);

  // Claims the poller's role: returns how long to poll, or zero when the
  // window is closed or another worker already polls. A non-zero answer
  // must be followed by EndPoll().
  Duration BeginPoll();
  // Gives up the role; `caught`: a request arrived while polling.
  void EndPoll(bool caught);

  Duration limit() const { return limit_; }
  Duration window() const { return Duration(window_ns_.load(std::memory_order_relaxed)); }
  // Requests a poller caught; they were spared a wake-up.
  uint64_t caught() const { return caught_.load(std::memory_order_relaxed); }

 private:
  static int64_t Nanoseconds(Clock::time_point t) {
    return std::chrono::duration_cast<Duration>(t.time_since_epoch()).count();
  }

  const Duration limit_;
  std::atomic<int64_t> window_ns_;
  std::atomic<int64_t> free_since_ns_{0};  // 0: no worker was free yet
  std::atomic<bool> polling_{false};
  std::atomic<uint64_t> caught_{0};
};

}  // namespace lamina

#endif  // LAMINA_CORE_BUSY_POLLER_H_
