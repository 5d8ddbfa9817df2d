// BusyPoller's window: how it grows, shrinks and hands out the poller's
// role, driven with made-up times (the mounted behaviour is tested in
// integration/core/memfs_busy_poll_test.cc).

#include "core/busy_poller.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace lamina {
namespace {

using std::chrono::microseconds;

// Plays a worker that became free at `now` and received its next request
// `gap` later; returns the time of arrival.
BusyPoller::Clock::time_point FreeThenArrive(BusyPoller& poller, BusyPoller::Clock::time_point now,
                                             BusyPoller::Duration gap) {
  poller.WorkerFree(now);
  poller.RequestArrived(now + gap);
  return now + gap;
}

class BusyPollerTest : public ::testing::Test {
 protected:
  BusyPoller::Clock::time_point now_ = BusyPoller::Clock::now();
};

TEST_F(BusyPollerTest, StartsOpenAtTheLimit) {
  BusyPoller poller(microseconds(50));
  EXPECT_EQ(poller.window(), microseconds(50));
  EXPECT_EQ(poller.BeginPoll(), microseconds(50));
  poller.EndPoll(/*caught=*/true);
  EXPECT_EQ(poller.caught(), 1u);
}

TEST_F(BusyPollerTest, ZeroLimitNeverPolls) {
  BusyPoller poller(microseconds(0));
  FreeThenArrive(poller, now_, microseconds(1));
  EXPECT_EQ(poller.window(), microseconds(0));
  EXPECT_EQ(poller.BeginPoll(), microseconds(0));
}

TEST_F(BusyPollerTest, OnePollerAtATime) {
  BusyPoller poller(microseconds(50));
  ASSERT_GT(poller.BeginPoll(), microseconds(0));
  EXPECT_EQ(poller.BeginPoll(), microseconds(0)) << "a second worker got the role";
  poller.EndPoll(/*caught=*/false);
  EXPECT_GT(poller.BeginPoll(), microseconds(0)) << "the role was not given back";
  poller.EndPoll(/*caught=*/false);
  EXPECT_EQ(poller.caught(), 0u);
}

TEST_F(BusyPollerTest, GapsPastTheLimitHalveTheWindowToNothing) {
  BusyPoller poller(microseconds(80));
  // Below kGrowStart (10 us) the window closes.
  for (int expected : {40, 20, 10, 0}) {
    now_ = FreeThenArrive(poller, now_, microseconds(500));
    EXPECT_EQ(poller.window(), microseconds(expected));
  }
  EXPECT_EQ(poller.BeginPoll(), microseconds(0));
}

TEST_F(BusyPollerTest, ARequestBeforeAnyWorkerWasFreeChangesNothing) {
  BusyPoller poller(microseconds(80));
  poller.RequestArrived(now_);
  EXPECT_EQ(poller.window(), microseconds(80));
}

TEST_F(BusyPollerTest, RequestsAlreadyOnTheirWayChangeNothing) {
  BusyPoller poller(microseconds(80));
  poller.WorkerFree(now_);
  // Another worker received a request sent before the first became free.
  poller.RequestArrived(now_ - microseconds(5));
  EXPECT_EQ(poller.window(), microseconds(80));
}

TEST_F(BusyPollerTest, RequestsComingCloseTogetherReopenAClosedWindow) {
  BusyPoller poller(microseconds(80));
  for (int i = 0; i < 4; ++i) now_ = FreeThenArrive(poller, now_, microseconds(500));
  ASSERT_EQ(poller.window(), microseconds(0));
  // {gap, window after it}: a gap of 30 us after a worker became free says
  // a poll of 30 us would have caught it; a gap within the window changes
  // nothing; the window never passes the limit.
  const std::pair<int, int> steps[] = {{30, 10}, {30, 20}, {30, 40}, {30, 40}, {70, 80}, {79, 80}};
  for (auto [gap, expected] : steps) {
    now_ = FreeThenArrive(poller, now_, microseconds(gap));
    EXPECT_EQ(poller.window(), microseconds(expected)) << "after a gap of " << gap << " us";
  }
}

TEST_F(BusyPollerTest, ConcurrentWorkersShareTheRoleSafely) {
  BusyPoller poller(microseconds(50));
  std::atomic<int> holders{0};
  std::atomic<bool> overlap{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        if (poller.BeginPoll() > microseconds(0)) {
          if (holders.fetch_add(1) != 0) overlap = true;
          holders.fetch_sub(1);
          poller.EndPoll(/*caught=*/true);
        }
        FreeThenArrive(poller, BusyPoller::Clock::now(), microseconds(i % 2 ? 20 : 200));
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  EXPECT_FALSE(overlap) << "two workers polled at once";
  EXPECT_LE(poller.window(), microseconds(50));
  EXPECT_GT(poller.caught(), 0u);
}

}  // namespace
}  // namespace lamina
