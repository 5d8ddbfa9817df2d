// NodeLimit: the schedule of offers to the kernel to forget nodes.

#include "core/node_limit.h"

#include "gtest/gtest.h"

namespace lamina {
namespace {

TEST(NodeLimitTest, OffersPastTheHighMarkDownToTheLowMark) {
  NodeLimit limit(1600);  // marks at 1400 and 1200, step 100
  EXPECT_EQ(limit.Due(1400), 0U);
  EXPECT_EQ(limit.Due(1401), 201U);
  // The kernel has not forgotten yet: no new offer until one step later.
  EXPECT_EQ(limit.Due(1450), 0U);
  EXPECT_EQ(limit.Due(1501), 0U);
  EXPECT_EQ(limit.Due(1502), 302U);
  // Back under the mark, the next crossing offers at once.
  EXPECT_EQ(limit.Due(1300), 0U);
  EXPECT_EQ(limit.Due(1401), 201U);
  EXPECT_EQ(limit.Urgent(10), 100U);
  EXPECT_EQ(limit.Urgent(1700), 500U);
}

TEST(NodeLimitTest, ZeroMeansNoLimit) {
  NodeLimit limit(0);
  EXPECT_EQ(limit.Due(1000000), 0U);
  EXPECT_EQ(limit.Urgent(400), 100U);
}

TEST(NodeLimitTest, GivesUpWaitingOnlyAfterSeveralFruitlessWaits) {
  NodeLimit limit(1600);
  EXPECT_TRUE(limit.ShouldWait(1600));
  limit.WaitTimedOut(false);
  limit.WaitTimedOut(false);
  limit.WaitTimedOut(true);  // progress resets the count
  limit.WaitTimedOut(false);
  limit.WaitTimedOut(false);
  EXPECT_TRUE(limit.ShouldWait(1600));
  limit.WaitTimedOut(false);
  EXPECT_FALSE(limit.ShouldWait(1600));
  // Back under the high mark, waiting is worth it again.
  EXPECT_EQ(limit.Due(1300), 0U);
  EXPECT_TRUE(limit.ShouldWait(1600));
}

}  // namespace
}  // namespace lamina
