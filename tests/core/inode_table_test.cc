#include "core/inode_table.h"

#include <string>
#include <thread>
#include <vector>

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

TEST(InodeTableTest, RenumberHandsTheSameNodeOutUnderANewId) {
  Table table;
  table.SetRoot("/", Make("root"));
  auto a = table.Acquire("a", [] { return Make("A"); });
  table.Renumber(a.id);
  table.Renumber(a.id);  // already renumbered: no effect
  auto renumbered = table.Acquire("a", []() -> std::shared_ptr<std::string> {
    ADD_FAILURE() << "make() called for a renumbered key";
    return nullptr;
  });
  EXPECT_GT(renumbered.id, a.id);
  EXPECT_EQ(renumbered.node, a.node);
  EXPECT_EQ(table.lookups(renumbered.id), 1U);
  // The old id lives on until the kernel forgets it; the key stays with
  // the new one.
  EXPECT_EQ(table.Get(a.id), a.node);
  EXPECT_EQ(table.Forget(a.id, 1), a.node);
  EXPECT_EQ(table.Get(a.id), nullptr);
  EXPECT_EQ(table.Acquire("a", [] { return Make("unused"); }).id, renumbered.id);

  // Renumbered, then forgotten before any new lookup: the next lookup
  // makes a new node.
  auto b = table.Acquire("b", [] { return Make("B"); });
  table.Renumber(b.id);
  ASSERT_NE(table.Forget(b.id, 1), nullptr);
  EXPECT_EQ(*table.Acquire("b", [] { return Make("B2"); }).node, "B2");
  table.Renumber(kRootNodeId);
  EXPECT_EQ(table.Acquire("/", [] { return Make("unused"); }).id, kRootNodeId);
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

TEST(InodeTableTest, UnmapLetsAReusedKeyMakeANewNode) {
  Table table;
  table.SetRoot("/", Make("root"));
  auto gone = table.Acquire("dev:14", [] { return Make("deleted file"); });
  // Another id given: nothing changes.
  table.Unmap("dev:14", gone.id + 1);
  EXPECT_EQ(table.Acquire("dev:14", [] { return Make("x"); }).id, gone.id);
  EXPECT_EQ(table.lookups(gone.id), 2U);
  table.Unmap("dev:14", gone.id);
  // The number now names a new object: it gets its own node, while the old
  // node lives on until the kernel forgets it.
  auto reused = table.Acquire("dev:14", [] { return Make("new symlink"); });
  EXPECT_NE(reused.id, gone.id);
  EXPECT_EQ(*reused.node, "new symlink");
  EXPECT_EQ(*table.Get(gone.id), "deleted file");
  // Forgetting the old node leaves the new one's mapping alone.
  EXPECT_NE(table.Forget(gone.id, 2), nullptr);
  EXPECT_EQ(table.Acquire("dev:14", [] { return Make("y"); }).id, reused.id);
  // Without an id, whichever node the key names; never the root.
  table.Unmap("dev:14");
  EXPECT_NE(table.Acquire("dev:14", [] { return Make("z"); }).id, reused.id);
  table.Unmap("/");
  EXPECT_TRUE(table.Contains("/"));
  // A renumbered key is unmapped too.
  auto pinned = table.Acquire("dev:20", [] { return Make("pinned"); });
  table.Renumber(pinned.id);
  table.Unmap("dev:20");
  EXPECT_EQ(*table.Acquire("dev:20", [] { return Make("fresh"); }).node, "fresh");
}

TEST(InodeTableTest, LeastRecentlyUsedFollowsUse) {
  Table table;
  table.SetRoot("/", Make("root"));
  auto add = [&](const std::string& key) {
    return table.Acquire(key, [&] { return Make(key); }).id;
  };
  const NodeId a = add("a"), b = add("b"), c = add("c"), d = add("d");
  // Get, AddRef and a repeated Acquire each count as a use; recency is
  // measured in nodes created, so each use is followed by a creation.
  table.Get(a);
  const NodeId e = add("e");
  table.AddRef(b);
  const NodeId f = add("f");
  table.Acquire("c", [] { return Make("unused"); });
  const NodeId g = add("g");
  EXPECT_EQ(table.LeastRecentlyUsed(4), (std::vector<NodeId>{d, a, e, b}));
  EXPECT_EQ(table.LeastRecentlyUsed(3), (std::vector<NodeId>{f, c, g}));
  // The root is never named, and a count past the size returns all.
  EXPECT_EQ(table.LeastRecentlyUsed(100).size(), 7U);
  EXPECT_TRUE(table.LeastRecentlyUsed(0).empty());
}

TEST(InodeTableTest, LeastRecentlyUsedRotatesPastNodesThatStay) {
  Table table;
  std::vector<NodeId> ids;
  for (const char* key : {"a", "b", "c", "d"}) {
    ids.push_back(table.Acquire(key, [&] { return Make(key); }).id);
  }
  // Nodes returned once (and not forgotten) count as used: the next call
  // names the others first rather than the same ones again.
  EXPECT_EQ(table.LeastRecentlyUsed(2), (std::vector<NodeId>{ids[0], ids[1]}));
  EXPECT_EQ(table.LeastRecentlyUsed(2), (std::vector<NodeId>{ids[2], ids[3]}));
  // Forgotten nodes are gone from the order.
  EXPECT_NE(table.Forget(ids[0], 1), nullptr);
  EXPECT_EQ(table.LeastRecentlyUsed(4).size(), 3U);
}

TEST(InodeTableTest, ConcurrentUseAndOrdering) {
  // Touching happens under the shared lock; run everything at once so the
  // sanitizers see the stamps and the ordering scan race.
  Table table;
  table.SetRoot("/", Make("root"));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&table, t] {
      for (int i = 0; i < 2000; ++i) {
        std::string key = std::to_string(t) + "/" + std::to_string(i % 50);
        auto handle = table.Acquire(key, [&] { return Make(key); });
        table.Get(handle.id);
        if (i % 7 == 0) table.LeastRecentlyUsed(10);
        table.Forget(handle.id, 1);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(table.size(), 1U);
}

}  // namespace
}  // namespace lamina
