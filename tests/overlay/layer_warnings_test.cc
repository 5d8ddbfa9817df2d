// The rate limit on warnings about layer contents: a layer's author decides
// how often lookups meet what the overlay refuses, so the log takes a burst
// per interval and then counts what it dropped. Time is passed in, never
// waited for.

#include "overlay/layer_warnings.h"

#include <chrono>

#include "gtest/gtest.h"

namespace lamina::overlay {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(RateLimiterTest, AllowsABurstPerIntervalAndCountsTheRest) {
  RateLimiter limiter(3, seconds(5));
  const RateLimiter::Clock::time_point start{seconds(1000)};
  uint64_t dropped = 0;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(limiter.Allow(start + milliseconds(i), &dropped)) << i;
    EXPECT_EQ(dropped, 0u);
  }
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(limiter.Allow(start + seconds(4), &dropped)) << i;
  // The next interval reports what was dropped, once.
  EXPECT_TRUE(limiter.Allow(start + seconds(5), &dropped));
  EXPECT_EQ(dropped, 100u);
  EXPECT_TRUE(limiter.Allow(start + seconds(6), &dropped));
  EXPECT_EQ(dropped, 0u);
}

TEST(RateLimiterTest, AQuietSpellStartsAFreshInterval) {
  RateLimiter limiter(1, seconds(5));
  const RateLimiter::Clock::time_point start{seconds(1000)};
  uint64_t dropped = 0;
  EXPECT_TRUE(limiter.Allow(start, &dropped));
  EXPECT_FALSE(limiter.Allow(start + seconds(1), &dropped));
  EXPECT_TRUE(limiter.Allow(start + seconds(60), &dropped));
  EXPECT_EQ(dropped, 1u);
  EXPECT_FALSE(limiter.Allow(start + seconds(61), &dropped));
}

TEST(PrintableTest, EscapesWhatCouldForgeLogLines) {
  EXPECT_EQ(Printable("plain"), "plain");
  EXPECT_EQ(Printable("a\nb\x1b[31m"), "a\\nb\\x1b[31m");
  EXPECT_EQ(Printable(std::string(300, 'x')), std::string(256, 'x') + "...");
}

}  // namespace
}  // namespace lamina::overlay
