#include "core/inode_table.h"

#include <string>

#include "gtest/gtest.h"

namespace lamina {
namespace {

using Table = InodeTable<std::string, std::string>;

std::shared_ptr<std::string> Make(const std::string& value) {
  return std::make_shared<std::string>(value);
}

TEST(InodeTableTest, AcquireCountsAndForgetDrops) {
  Table table;
  table.SetRoot("/", Make("root"));
  auto a = table.Acquire("a", [] { return Make("A"); });
  EXPECT_EQ(a.id, 2U);
  EXPECT_EQ(*a.node, "A");
  // A second acquire finds the same node without calling make().
  auto again = table.Acquire("a", []() -> std::shared_ptr<std::string> {
    ADD_FAILURE() << "make() called for an existing key";
    return nullptr;
  });
  EXPECT_EQ(again.id, a.id);
  EXPECT_EQ(again.node, a.node);
  EXPECT_EQ(table.lookups(a.id), 2U);
  EXPECT_TRUE(table.AddRef(a.id));
  EXPECT_EQ(table.lookups(a.id), 3U);

  EXPECT_EQ(table.Forget(a.id, 2), nullptr);
  EXPECT_EQ(table.lookups(a.id), 1U);
  std::shared_ptr<std::string> dropped = table.Forget(a.id, 1);
  ASSERT_NE(dropped, nullptr);
  EXPECT_EQ(*dropped, "A");
  EXPECT_EQ(table.Get(a.id), nullptr);
  EXPECT_EQ(table.size(), 1U);

  // Ids are never reused, so a stale id cannot alias the new node.
  auto fresh = table.Acquire("a", [] { return Make("A2"); });
  EXPECT_GT(fresh.id, a.id);
  EXPECT_EQ(table.Forget(a.id, 1), nullptr);
  EXPECT_FALSE(table.AddRef(a.id));
}

TEST(InodeTableTest, RootIsPinnedAndOverForgetClamps) {
  Table table;
  table.SetRoot("/", Make("root"));
  EXPECT_EQ(table.Forget(kRootNodeId, 1000), nullptr);
  EXPECT_NE(table.Get(kRootNodeId), nullptr);
  auto b = table.Acquire("b", [] { return Make("B"); });
  EXPECT_NE(table.Forget(b.id, 1000), nullptr) << "forgetting too much drops it";
  EXPECT_EQ(table.lookups(b.id), 0U);
}

TEST(InodeTableTest, FailedMakeReturnsNoNode) {
  Table table;
  auto none = table.Acquire("x", [] { return std::shared_ptr<std::string>(); });
  EXPECT_EQ(none.id, 0U);
  EXPECT_EQ(none.node, nullptr);
  EXPECT_EQ(table.size(), 0U);
}

TEST(InodeTableTest, RekeyMovesTheIdentity) {
  Table table;
  auto lower = table.Acquire("lower/f", [] { return Make("f"); });
  table.Rekey(lower.id, "upper/f");
  auto found = table.Acquire("upper/f", [] { return Make("other"); });
  EXPECT_EQ(found.id, lower.id);
  EXPECT_EQ(table.lookups(lower.id), 2U);
  // The old key no longer finds it.
  auto old = table.Acquire("lower/f", [] { return Make("new"); });
  EXPECT_NE(old.id, lower.id);
  // Dropping the node removes only its own key mapping.
  EXPECT_NE(table.Forget(lower.id, 2), nullptr);
  EXPECT_EQ(table.Get(old.id).get() != nullptr, true);
  EXPECT_EQ(table.size(), 1U);
}

}  // namespace
}  // namespace lamina
