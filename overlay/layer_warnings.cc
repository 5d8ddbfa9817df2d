#include "overlay/layer_warnings.h"

#include "absl/strings/escaping.h"
#include "spdlog/spdlog.h"

namespace lamina::overlay {

bool RateLimiter::Allow(Clock::time_point now, uint64_t* dropped) {
  std::lock_guard lock(mu_);
  *dropped = 0;
  if (in_window_ == 0 || now - window_start_ >= interval_) {
    window_start_ = now;
    in_window_ = 0;
  }
  if (in_window_ >= burst_) {
    ++dropped_;
    return false;
  }
  ++in_window_;
  *dropped = dropped_;
  dropped_ = 0;
  return true;
}

std::string Printable(std::string_view text) {
  constexpr size_t kShown = 256;
  const std::string_view shown = text.substr(0, kShown);
  std::string out = absl::CHexEscape(absl::string_view(shown.data(), shown.size()));
  if (text.size() > kShown) out += "...";
  return out;
}

void WarnAboutLayer(const std::string& message) {
  static RateLimiter limiter(kLayerWarningBurst, kLayerWarningInterval);
  uint64_t dropped = 0;
  if (!limiter.Allow(RateLimiter::Clock::now(), &dropped)) return;
  if (dropped > 0) {
    spdlog::warn("overlay: {} warnings about layer contents suppressed", dropped);
  }
  spdlog::warn("overlay: {}", message);
}

}  // namespace lamina::overlay
