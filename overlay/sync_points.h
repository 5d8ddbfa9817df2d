// SyncPoints: named places inside a request where a test may pause it, so
// that a race between two requests happens the same way on every run.
//
// The request code calls Reach(point) at each place. While no test has set
// a hook that costs one relaxed atomic load; a hook runs on the request's
// own thread and may block it (on a latch the test opens) until the test
// has done what it wants to happen in between.

#ifndef LAMINA_OVERLAY_SYNC_POINTS_H_
#define LAMINA_OVERLAY_SYNC_POINTS_H_

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>

namespace lamina::overlay {

enum class SyncPoint {
  // OverlayFs::OpenNode: the descriptor is open, its backing id not yet
  // registered.
  kOpenBeforeRegister,
  // OverlayFs::Release: the descriptor is closed, the open's backing id not
  // yet given back.
  kReleaseBeforeUnregister,
  // OverlayFs::Lookup: the name is resolved in the layers, its node not yet
  // found or made.
  kLookupBeforeAdopt,
  kCount,
};

class SyncPoints {
 public:
  using Hook = std::function<void()>;

  // Runs `hook` whenever a request reaches `point`; an empty hook clears it.
  void Set(SyncPoint point, Hook hook) {
    std::lock_guard lock(mu_);
    hooks_[Index(point)] = hook ? std::make_shared<const Hook>(std::move(hook)) : nullptr;
    bool any = false;
    for (const auto& set : hooks_) any |= set != nullptr;
    any_.store(any, std::memory_order_release);
  }

  void Reach(SyncPoint point) const {
    if (!any_.load(std::memory_order_relaxed)) return;
    std::shared_ptr<const Hook> hook;
    {
      std::lock_guard lock(mu_);
      hook = hooks_[Index(point)];
    }
    if (hook != nullptr) (*hook)();
  }

 private:
  static size_t Index(SyncPoint point) { return static_cast<size_t>(point); }

  std::atomic<bool> any_{false};
  mutable std::mutex mu_;
  std::array<std::shared_ptr<const Hook>, static_cast<size_t>(SyncPoint::kCount)> hooks_;
};

}  // namespace lamina::overlay

#endif  // LAMINA_OVERLAY_SYNC_POINTS_H_
