// Lookup-count accounting with a real filesystem: every reference a reply
// hands the kernel comes back through FORGET / BATCH_FORGET, and neither
// is ever answered.

#include <map>

#include "core/examples/memory_filesystem.h"
#include "gtest/gtest.h"
#include "tests/core/fake_kernel.h"

namespace lamina::testing {
namespace {

class ForgetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs_.AddFile("dir/a", "alpha");
    fs_.AddFile("dir/b", "beta");
    harness_.StartAndInit();
  }

  NodeId Lookup(NodeId parent, const std::string& name) {
    RequestOptions options;
    options.nodeid = parent;
    Reply reply = harness_.kernel().Call(abi::kLookup, Name(name), options);
    EXPECT_EQ(reply.error(), 0) << name;
    return reply.As<abi::EntryOut>().nodeid;
  }

  // The names and node ids of a READDIRPLUS listing of `dir`.
  std::map<std::string, NodeId> ReaddirPlus(NodeId dir) {
    abi::ReadIn in{};
    in.size = 4096;
    RequestOptions options;
    options.nodeid = dir;
    Reply reply = harness_.kernel().Call(abi::kReaddirplus, Bytes(in), options);
    std::map<std::string, NodeId> entries;
    size_t offset = 0;
    while (offset + sizeof(abi::Direntplus) <= reply.payload.size()) {
      auto plus = reply.As<abi::Direntplus>(offset);
      entries[reply.payload.substr(offset + sizeof(plus), plus.dirent.namelen)] =
          plus.entry_out.nodeid;
      offset += abi::DirentAlign(sizeof(plus) + plus.dirent.namelen);
    }
    EXPECT_EQ(offset, reply.payload.size());
    return entries;
  }

  void Forget(NodeId node, uint64_t count) {
    RequestOptions options;
    options.nodeid = node;
    harness_.kernel().Send(abi::kForget, Bytes(abi::ForgetIn{count}), options);
  }

  void BatchForget(const std::vector<abi::ForgetOne>& forgets) {
    std::string args = Bytes(abi::BatchForgetIn{static_cast<uint32_t>(forgets.size()), 0});
    for (const abi::ForgetOne& one : forgets) args += Bytes(one);
    harness_.kernel().Send(abi::kBatchForget, args);
  }

  // Proves no reply was queued for the forgets sent so far, and that they
  // have all been handled (one worker serves requests in order).
  void Sync() { harness_.kernel().ExpectNextReplyIsFor(abi::kGetattr, Bytes(abi::GetattrIn{})); }

  examples::MemoryFilesystem fs_;
  SessionHarness harness_{fs_};
};

TEST_F(ForgetTest, LookupsThenForgetsDropNodes) {
  EXPECT_EQ(fs_.referenced_nodes(), 1U) << "only the root";
  NodeId dir = Lookup(abi::kRootId, "dir");
  EXPECT_EQ(Lookup(abi::kRootId, "dir"), dir);
  NodeId a = Lookup(dir, "a");
  EXPECT_EQ(fs_.referenced_nodes(), 3U);

  Forget(dir, 1);
  Sync();
  EXPECT_EQ(fs_.referenced_nodes(), 3U) << "one lookup on dir remains";
  Forget(a, 1);
  Forget(dir, 1);
  Sync();
  EXPECT_EQ(fs_.referenced_nodes(), 1U);

  // A forgotten node is gone for the kernel too; a fresh lookup gets a new id.
  RequestOptions options;
  options.nodeid = a;
  EXPECT_EQ(harness_.kernel().Call(abi::kGetattr, Bytes(abi::GetattrIn{}), options).error(),
            ENOENT);
  NodeId dir_again = Lookup(abi::kRootId, "dir");
  EXPECT_NE(dir_again, dir);
  Forget(dir_again, 1);
  Sync();
  EXPECT_EQ(fs_.referenced_nodes(), 1U);
}

TEST_F(ForgetTest, ReaddirplusCountsOneLookupPerEntry) {
  NodeId dir = Lookup(abi::kRootId, "dir");
  std::map<std::string, NodeId> entries = ReaddirPlus(dir);
  ASSERT_EQ(entries.size(), 4U);
  EXPECT_EQ(entries["."], 0U);
  EXPECT_EQ(entries[".."], 0U);
  NodeId a = entries["a"];
  NodeId b = entries["b"];
  EXPECT_NE(a, 0U);
  EXPECT_NE(b, 0U);
  EXPECT_EQ(fs_.referenced_nodes(), 4U);

  // A second listing plus a lookup: a holds three references, b two.
  ReaddirPlus(dir);
  EXPECT_EQ(Lookup(dir, "a"), a);
  BatchForget({{a, 2}, {b, 2}});
  Sync();
  EXPECT_EQ(fs_.referenced_nodes(), 3U) << "a still has one lookup";
  BatchForget({{a, 1}, {dir, 1}});
  Sync();
  EXPECT_EQ(fs_.referenced_nodes(), 1U);
}

TEST_F(ForgetTest, ForgetIsNeverAnsweredEvenWhenMalformed) {
  NodeId dir = Lookup(abi::kRootId, "dir");
  // Truncated FORGET, mismatched length, forgetting the root, an unknown
  // node, and more than was looked up: all silent.
  RequestOptions options;
  options.nodeid = dir;
  harness_.kernel().Send(abi::kForget, "abc", options);
  std::string mismatched = harness_.kernel().Build(abi::kForget, Bytes(abi::ForgetIn{1}), options);
  mismatched.resize(mismatched.size() - 1);
  harness_.kernel().SendRaw(mismatched);
  harness_.kernel().Send(abi::kBatchForget, "xy");
  Forget(abi::kRootId, 100);
  Forget(999, 1);
  Sync();
  EXPECT_EQ(fs_.referenced_nodes(), 2U) << "malformed forgets change nothing";
  Forget(dir, 50);
  Sync();
  EXPECT_EQ(fs_.referenced_nodes(), 1U);
  // The root is pinned.
  RequestOptions root;
  EXPECT_EQ(harness_.kernel().Call(abi::kGetattr, Bytes(abi::GetattrIn{}), root).error(), 0);
}

}  // namespace
}  // namespace lamina::testing
