// UidShares and DescriptorBudget: how much one uid may keep, what is left
// to the others and to the daemon, and that every charge comes back.

#include "core/descriptor_budget.h"

#include "core/uid_shares.h"
#include "gtest/gtest.h"

namespace lamina::testing {
namespace {

constexpr uid_t kOwner = 1000;
constexpr uid_t kStranger = 65534;

TEST(UidSharesTest, AUidGetsAQuarterRootAndTheOwnerAHalf) {
  UidShares shares(400, kOwner);
  EXPECT_EQ(shares.ShareOf(kStranger), 100U);
  EXPECT_EQ(shares.ShareOf(0), 200U);
  EXPECT_EQ(shares.ShareOf(kOwner), 200U);
  EXPECT_EQ(shares.Charge(kStranger, 100), UidShares::Outcome::kCharged);
  EXPECT_EQ(shares.Charge(kStranger, 1), UidShares::Outcome::kOverShare);
  // Others still get theirs.
  EXPECT_EQ(shares.Charge(2000, 100), UidShares::Outcome::kCharged);
  EXPECT_EQ(shares.Charge(0, 200), UidShares::Outcome::kCharged);
  EXPECT_EQ(shares.used(), 400U);
  // Everything is handed out: a uid under its share hits the total.
  EXPECT_EQ(shares.Charge(3000, 1), UidShares::Outcome::kOverTotal);
  EXPECT_EQ(shares.refusals(), 2U);
  shares.Refund(kStranger, 100);
  EXPECT_EQ(shares.used_by(kStranger), 0U);
  EXPECT_EQ(shares.Charge(3000, 1), UidShares::Outcome::kCharged);
}

TEST(UidSharesTest, RefundsNeverGoBelowZero) {
  UidShares shares(40, kOwner);
  shares.Refund(kStranger, 5);  // never charged
  EXPECT_EQ(shares.used(), 0U);
  EXPECT_EQ(shares.Charge(kStranger, 3), UidShares::Outcome::kCharged);
  shares.Refund(kStranger, 7);
  EXPECT_EQ(shares.used(), 0U);
  EXPECT_EQ(shares.Charge(kStranger, 10), UidShares::Outcome::kCharged);
}

TEST(UidSharesTest, NoTotalMeansNoLimit) {
  UidShares shares(0, kOwner);
  EXPECT_EQ(shares.Charge(kStranger, size_t{1} << 40), UidShares::Outcome::kCharged);
  EXPECT_EQ(shares.used_by(kStranger), size_t{1} << 40);
}

TEST(DescriptorPlanTest, SharesOutTheLimit) {
  const DescriptorPlan plan = DescriptorPlan::For(20000, std::nullopt, 1 << 18);
  EXPECT_EQ(plan.limit, 20000U);
  EXPECT_EQ(plan.nodes, 15000U);   // 3/4, as before
  EXPECT_EQ(plan.pins, 7500U);     // half of the nodes'
  EXPECT_EQ(plan.handles, 2500U);  // 1/8
  EXPECT_EQ(plan.reserve, 2500U);  // the rest
  // The node cap leaves more to the daemon.
  const DescriptorPlan large = DescriptorPlan::For(1 << 20, std::nullopt, 1 << 18);
  EXPECT_EQ(large.nodes, size_t{1} << 18);
  EXPECT_EQ(large.pins, size_t{1} << 17);
  EXPECT_EQ(large.handles, size_t{1} << 17);
  EXPECT_EQ(large.reserve, (size_t{1} << 20) - (size_t{1} << 18) - (size_t{1} << 17));
  // An explicit node limit too large for the descriptors leaves no reserve.
  EXPECT_EQ(DescriptorPlan::For(1000, 1000, 1 << 18).reserve, 0U);
  // No node limit: pins bounded as under the default.
  EXPECT_EQ(DescriptorPlan::For(4096, 0, 1 << 18).pins, 1536U);
}

TEST(DescriptorBudgetTest, HandlesAreRefusedPastTheShareWithEmfile) {
  DescriptorBudget budget(DescriptorPlan::For(4096, std::nullopt, 1 << 18), kOwner);
  ASSERT_EQ(budget.plan().handles, 512U);
  for (int i = 0; i < 128; ++i) ASSERT_TRUE(budget.ChargeHandle(kStranger).ok()) << i;
  Result<void> refused = budget.ChargeHandle(kStranger);
  EXPECT_EQ(refused.error(), EMFILE);
  EXPECT_TRUE(budget.ChargeHandle(kOwner).ok());
  EXPECT_TRUE(budget.ChargeHandle(0).ok());
  budget.RefundHandle(kStranger);
  EXPECT_TRUE(budget.ChargeHandle(kStranger).ok());
}

TEST(DescriptorBudgetTest, PastTheTotalIsEnfile) {
  DescriptorBudget budget(DescriptorPlan::For(64, std::nullopt, 1 << 18), kOwner);
  ASSERT_EQ(budget.plan().handles, 8U);
  // Four uids of two each take all eight.
  for (uid_t uid = 2000; uid < 2004; ++uid) {
    ASSERT_TRUE(budget.ChargeHandle(uid).ok());
    ASSERT_TRUE(budget.ChargeHandle(uid).ok());
  }
  EXPECT_EQ(budget.ChargeHandle(3000).error(), ENFILE);
  EXPECT_EQ(budget.ChargeHandle(0).error(), ENFILE);
}

TEST(DescriptorBudgetTest, AUidPinsANodeOnce) {
  DescriptorBudget budget(DescriptorPlan::For(4096, std::nullopt, 1 << 18), kOwner);
  ASSERT_EQ(budget.plan().pins, 1536U);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(budget.Pin(kStranger, 7).ok());
  EXPECT_EQ(budget.pins_used_by(kStranger), 1U);
  ASSERT_TRUE(budget.Pin(kOwner, 7).ok());  // another uid: charged to it
  EXPECT_EQ(budget.pins_used(), 2U);
  for (int i = 0; i < 999; ++i) budget.Unpin(kStranger, 7);
  EXPECT_EQ(budget.pins_used_by(kStranger), 1U);
  budget.Unpin(kStranger, 7);
  EXPECT_EQ(budget.pins_used_by(kStranger), 0U);
  // Distinct nodes: a quarter of the pins.
  NodeId node = 100;
  while (budget.Pin(kStranger, node).ok()) ++node;
  EXPECT_EQ(node - 100, 384U);
  EXPECT_EQ(budget.Pin(kStranger, node).error(), EMFILE);
  EXPECT_TRUE(budget.Pin(kStranger, 100).ok()) << "a node it holds costs nothing more";
}

TEST(DescriptorBudgetTest, ACreatedNodeIsBoundToItsPin) {
  DescriptorBudget budget(DescriptorPlan::For(4096, std::nullopt, 1 << 18), kOwner);
  ASSERT_TRUE(budget.Pin(kStranger, 9).ok());
  ASSERT_TRUE(budget.Pin(kStranger, 0).ok());  // a create, node unknown yet
  EXPECT_EQ(budget.pins_used_by(kStranger), 2U);
  budget.Bind(kStranger, 9);  // it opened the file it holds already
  EXPECT_EQ(budget.pins_used_by(kStranger), 1U);
  budget.Unpin(kStranger, 9);
  budget.Unpin(kStranger, 9);
  EXPECT_EQ(budget.pins_used_by(kStranger), 0U);
  ASSERT_TRUE(budget.Pin(kStranger, 0).ok());
  budget.Unpin(kStranger, 0);  // a create that failed
  EXPECT_EQ(budget.pins_used(), 0U);
}

TEST(OpenChargeTest, GivenBackUnlessCommitted) {
  DescriptorBudget budget(DescriptorPlan::For(4096, std::nullopt, 1 << 18), kOwner);
  {
    Result<OpenCharge> charge = OpenCharge::Take(budget, kStranger, 3, /*handle=*/true);
    ASSERT_TRUE(charge.ok());
    EXPECT_EQ(budget.handles_used(), 1U);
    EXPECT_EQ(budget.pins_used(), 1U);
  }
  EXPECT_EQ(budget.handles_used(), 0U);
  EXPECT_EQ(budget.pins_used(), 0U);
  {
    Result<OpenCharge> charge = OpenCharge::Take(budget, kStranger, 0, /*handle=*/false);
    ASSERT_TRUE(charge.ok());
    ASSERT_TRUE(charge->SetHandle(true).ok());  // passthrough refused after all
    charge->Bind(4);
    charge->Commit();
  }
  EXPECT_EQ(budget.handles_used(), 1U);
  EXPECT_EQ(budget.pins_used(), 1U);
  budget.RefundHandle(kStranger);
  budget.Unpin(kStranger, 4);
  EXPECT_EQ(budget.handles_used(), 0U);
  EXPECT_EQ(budget.pins_used(), 0U);
}

TEST(OpenChargeTest, RefusedWhenEitherShareIsFull) {
  DescriptorBudget budget(DescriptorPlan::For(4096, std::nullopt, 1 << 18), kOwner);
  for (int i = 0; i < 128; ++i) ASSERT_TRUE(budget.ChargeHandle(kStranger).ok());
  Result<OpenCharge> charge = OpenCharge::Take(budget, kStranger, 3, /*handle=*/true);
  EXPECT_EQ(charge.error(), EMFILE);
  EXPECT_EQ(budget.pins_used(), 0U) << "the pin was given back";
  // An open that keeps no descriptor is still allowed.
  Result<OpenCharge> passing = OpenCharge::Take(budget, kStranger, 3, /*handle=*/false);
  EXPECT_TRUE(passing.ok());
}

}  // namespace
}  // namespace lamina::testing
