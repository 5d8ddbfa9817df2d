// An open whose reply never reaches the kernel (the request was interrupted
// or the connection ended) is never released by the kernel: the dispatcher
// releases it itself, or the filesystem would keep its descriptor, and the
// caller's charge for it (core/descriptor_budget.h), for good.

#include <cstring>
#include <string>
#include <vector>

#include "core/connection.h"
#include "core/dispatcher.h"
#include "core/fuse_abi.h"
#include "gtest/gtest.h"

namespace lamina::testing {
namespace {

// Takes every reply, or refuses every reply as the kernel refuses one for
// a request it no longer waits for (ENOENT).
class ReplyChannel : public Channel {
 public:
  Result<size_t> Receive(std::span<std::byte>) override { return Errno{ENODEV}; }
  Result<void> Send(std::span<const struct iovec>) override {
    if (refuse) return Errno{ENOENT};
    return Ok();
  }
  bool refuse = false;
};

// Hands out handle 77 (and node 5 on CREATE) and records what comes back.
class OpeningFilesystem : public Filesystem {
 public:
  Result<OpenReply> Open(const Ctx&, NodeId, const OpenRequest&) override { return Reply(); }
  Result<OpenReply> OpenDir(const Ctx&, NodeId, int) override { return Reply(); }
  Result<CreateReply> Create(const Ctx&, NodeId, std::string_view, mode_t,
                             const OpenRequest&) override {
    CreateReply reply;
    reply.entry.node = 5;
    reply.entry.attr.st_mode = S_IFREG | 0644;
    reply.open = Reply();
    return reply;
  }
  Result<void> Release(const Ctx&, NodeId node, uint64_t fh, int) override {
    released.push_back({node, fh});
    return Ok();
  }
  Result<void> ReleaseDir(const Ctx&, NodeId node, uint64_t fh) override {
    released_dirs.push_back({node, fh});
    return Ok();
  }
  void Forget(NodeId node, uint64_t nlookup) override { forgotten.push_back({node, nlookup}); }

  std::vector<std::pair<NodeId, uint64_t>> released, released_dirs, forgotten;

 private:
  static OpenReply Reply() {
    OpenReply reply;
    reply.fh = 77;
    return reply;
  }
};

class UnansweredOpenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    abi::InitIn init{};
    init.major = abi::kKernelVersion;
    init.minor = abi::kKernelMinorVersion;
    init.max_readahead = 1 << 20;
    Handle(abi::kInit, abi::kRootId, Bytes(init));
    ASSERT_TRUE(connection_.initialized());
  }

  template <typename T>
  static std::string Bytes(const T& value) {
    return std::string(reinterpret_cast<const char*>(&value), sizeof(value));
  }

  void Handle(uint32_t opcode, NodeId node, const std::string& args) {
    abi::InHeader header{};
    header.len = static_cast<uint32_t>(sizeof(header) + args.size());
    header.opcode = opcode;
    header.unique = ++unique_;
    header.nodeid = node;
    std::vector<uint64_t> buffer((header.len + 7) / 8);
    std::memcpy(buffer.data(), &header, sizeof(header));
    std::memcpy(reinterpret_cast<char*>(buffer.data()) + sizeof(header), args.data(), args.size());
    dispatcher_.Handle(std::as_bytes(std::span<uint64_t>(buffer)).first(header.len), channel_,
                       std::as_writable_bytes(std::span<uint64_t>(scratch_)));
  }

  OpeningFilesystem fs_;
  Connection connection_;
  Dispatcher dispatcher_{fs_, connection_, nullptr};
  ReplyChannel channel_;
  std::vector<uint64_t> scratch_ = std::vector<uint64_t>(128 * 1024 / 8);
  uint64_t unique_ = 0;
};

TEST_F(UnansweredOpenTest, AnsweredOpensAreLeftToTheKernel) {
  Handle(abi::kOpen, 3, Bytes(abi::OpenIn{}));
  Handle(abi::kOpendir, 4, Bytes(abi::OpenIn{}));
  EXPECT_TRUE(fs_.released.empty());
  EXPECT_TRUE(fs_.released_dirs.empty());
}

TEST_F(UnansweredOpenTest, OpenIsReleased) {
  channel_.refuse = true;
  Handle(abi::kOpen, 3, Bytes(abi::OpenIn{}));
  ASSERT_EQ(fs_.released.size(), 1U);
  EXPECT_EQ(fs_.released[0], std::make_pair(NodeId{3}, uint64_t{77}));
}

TEST_F(UnansweredOpenTest, OpendirIsReleased) {
  channel_.refuse = true;
  Handle(abi::kOpendir, 4, Bytes(abi::OpenIn{}));
  ASSERT_EQ(fs_.released_dirs.size(), 1U);
  EXPECT_EQ(fs_.released_dirs[0], std::make_pair(NodeId{4}, uint64_t{77}));
  EXPECT_TRUE(fs_.released.empty());
}

TEST_F(UnansweredOpenTest, CreateIsReleasedAndForgotten) {
  channel_.refuse = true;
  abi::CreateIn in{};
  in.mode = S_IFREG | 0644;
  Handle(abi::kCreate, abi::kRootId, Bytes(in) + std::string("new", 4));
  ASSERT_EQ(fs_.released.size(), 1U);
  EXPECT_EQ(fs_.released[0], std::make_pair(NodeId{5}, uint64_t{77}));
  ASSERT_EQ(fs_.forgotten.size(), 1U);
  EXPECT_EQ(fs_.forgotten[0], std::make_pair(NodeId{5}, uint64_t{1}));
}

}  // namespace
}  // namespace lamina::testing
