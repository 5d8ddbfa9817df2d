// SyncGate: a hook for an overlay::SyncPoint that holds the first request to
// reach it until the test lets it go, so a test can make a race window
// happen every time instead of now and then.
//
//   auto gate = std::make_shared<SyncGate>();
//   fs->sync_points().Set(SyncPoint::kOpenBeforeRegister, [gate] { gate->Hold(); });
//   std::thread t(...);                  // a request that reaches the point
//   ASSERT_TRUE(gate->WaitUntilReached());
//   ...                                  // what must happen inside the window
//   gate->Open();
//
// Later requests pass straight through. Every wait is bounded, so a request
// that never comes fails the test instead of hanging it, and a test that
// fails before Open() still lets the held request go within 30 seconds.

#ifndef LAMINA_INTEGRATION_OVERLAY_SYNC_GATE_H_
#define LAMINA_INTEGRATION_OVERLAY_SYNC_GATE_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace lamina::testing {

class SyncGate {
 public:
  // Called by the request at the sync point.
  void Hold() {
    if (!armed_.exchange(false)) return;
    std::unique_lock lock(mu_);
    reached_ = true;
    changed_.notify_all();
    changed_.wait_for(lock, std::chrono::seconds(30), [this] { return opened_; });
  }

  // True once a request is held (false after 10 s without one).
  bool WaitUntilReached() {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, std::chrono::seconds(10), [this] { return reached_; });
  }

  // Lets the held request (and any later one) go on.
  void Open() {
    std::lock_guard lock(mu_);
    opened_ = true;
    changed_.notify_all();
  }

 private:
  std::atomic<bool> armed_{true};
  std::mutex mu_;
  std::condition_variable changed_;
  bool reached_ = false;
  bool opened_ = false;
};

}  // namespace lamina::testing

#endif  // LAMINA_INTEGRATION_OVERLAY_SYNC_GATE_H_
