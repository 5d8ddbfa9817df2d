// Warnings about layer contents the overlay ignores or refuses (a redirect it
// may not follow, a metacopy file, an origin of the wrong type, ...).
//
// Layers come from images anyone may have built, and how often a lookup
// meets such an object is up to their author and the mount's users, so the
// warnings are rate-limited the way the kernel's pr_warn_ratelimited limits
// overlayfs' own: at most kBurst lines per kInterval, then one line saying
// how many were dropped. Log lines never decide anything; every refusal is
// also the errno the request returns.

#ifndef LAMINA_OVERLAY_LAYER_WARNINGS_H_
#define LAMINA_OVERLAY_LAYER_WARNINGS_H_

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/strings/str_format.h"

namespace lamina::overlay {

// Lets through at most `burst` events per `interval`; thread-safe.
class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  RateLimiter(int burst, Clock::duration interval) : burst_(burst), interval_(interval) {}

  // Whether an event at `now` may be reported. `*dropped` gets the number
  // of events refused since the last one allowed (0 if none).
  bool Allow(Clock::time_point now, uint64_t* dropped);

 private:
  const int burst_;
  const Clock::duration interval_;
  std::mutex mu_;
  Clock::time_point window_start_;  // guarded by mu_
  int in_window_ = 0;               // guarded by mu_
  uint64_t dropped_ = 0;            // guarded by mu_
};

inline constexpr int kLayerWarningBurst = 10;
inline constexpr std::chrono::seconds kLayerWarningInterval{5};

// `text` (a name or record from a layer, or a caller's name) as a log line
// may show it: C escapes for anything unprintable (a newline could forge
// lines), at most 256 bytes of it.
std::string Printable(std::string_view text);

// Logs "overlay: <message>" as a warning, within the shared rate limit.
void WarnAboutLayer(const std::string& message);

template <typename... Args>
void WarnAboutLayer(const absl::FormatSpec<Args...>& format, const Args&... args) {
  WarnAboutLayer(absl::StrFormat(format, args...));
}

}  // namespace lamina::overlay

#endif  // LAMINA_OVERLAY_LAYER_WARNINGS_H_
