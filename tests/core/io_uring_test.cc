// FUSE-over-io_uring without a kernel: turning a ring entry into the
// request the dispatcher reads (and refusing entries whose lengths do not
// add up), the CPU list that sizes the queues, and the INIT flag.

#include <cstring>
#include <string>
#include <vector>

#include "core/connection.h"
#include "core/io_uring_queue.h"
#include "core/io_uring_transport.h"
#include "gtest/gtest.h"

namespace lamina::testing {
namespace {

// A ring entry as the kernel would fill it: header struct plus a payload
// buffer with the room in front that AssembleRingRequest needs.
class RingEntry {
 public:
  explicit RingEntry(size_t capacity)
      : memory_(kRingRequestPrefix + capacity), capacity_(capacity) {}

  void Fill(uint32_t opcode, const void* op, size_t op_size, const std::string& payload,
            uint32_t len_adjust = 0) {
    abi::InHeader in{};
    in.len = static_cast<uint32_t>(sizeof(in) + op_size + payload.size()) + len_adjust;
    in.opcode = opcode;
    in.unique = 42;
    in.nodeid = 1;
    std::memcpy(header_.in_out, &in, sizeof(in));
    if (op_size > 0) std::memcpy(header_.op_in, op, op_size);
    abi::UringEntInOut meta{};
    meta.commit_id = 42;
    meta.payload_sz = static_cast<uint32_t>(payload.size());
    std::memcpy(&header_.ring_ent_in_out, &meta, sizeof(meta));
    std::memcpy(payload_data(), payload.data(), std::min(payload.size(), capacity_));
  }

  void SetPayloadSize(uint32_t size) {
    std::memcpy(reinterpret_cast<char*>(&header_.ring_ent_in_out) +
                    offsetof(abi::UringEntInOut, payload_sz),
                &size, sizeof(size));
  }

  std::span<const std::byte> Assemble() {
    return AssembleRingRequest(header_, payload_data(), capacity_);
  }
  std::byte* payload_data() { return memory_.data() + kRingRequestPrefix; }

 private:
  abi::UringReqHeader header_{};
  std::vector<std::byte> memory_;
  size_t capacity_;
};

abi::InHeader HeaderOf(std::span<const std::byte> request) {
  abi::InHeader in{};
  EXPECT_GE(request.size(), sizeof(in));
  std::memcpy(&in, request.data(), std::min(request.size(), sizeof(in)));
  return in;
}

TEST(AssembleRingRequestTest, NameOnlyRequestIsHeaderThenPayload) {
  RingEntry entry(4096);
  std::string name("file.txt", 9);  // with its NUL
  entry.Fill(abi::kLookup, nullptr, 0, name);
  std::span<const std::byte> request = entry.Assemble();
  ASSERT_EQ(request.size(), sizeof(abi::InHeader) + name.size());
  EXPECT_EQ(HeaderOf(request).len, request.size());
  EXPECT_EQ(HeaderOf(request).opcode, abi::kLookup);
  EXPECT_EQ(std::memcmp(request.data() + sizeof(abi::InHeader), name.data(), name.size()), 0);
}

TEST(AssembleRingRequestTest, OpStructLandsRightBeforeThePayloadWhichIsNotCopied) {
  RingEntry entry(1 << 20);
  abi::WriteIn write{};
  write.fh = 7;
  write.offset = 4096;
  write.size = 100000;
  std::string data(100000, 'x');
  entry.Fill(abi::kWrite, &write, sizeof(write), data);
  std::span<const std::byte> request = entry.Assemble();
  ASSERT_EQ(request.size(), sizeof(abi::InHeader) + sizeof(write) + data.size());
  // The payload stays where the kernel put it.
  EXPECT_EQ(request.data() + sizeof(abi::InHeader) + sizeof(write), entry.payload_data());
  abi::WriteIn read_back;
  std::memcpy(&read_back, request.data() + sizeof(abi::InHeader), sizeof(read_back));
  EXPECT_EQ(read_back.fh, 7u);
  EXPECT_EQ(read_back.size, 100000u);
}

TEST(AssembleRingRequestTest, PayloadLargerThanTheBufferIsRefused) {
  RingEntry entry(4096);
  entry.Fill(abi::kLookup, nullptr, 0, std::string("a\0", 2));
  entry.SetPayloadSize(1 << 30);
  std::span<const std::byte> request = entry.Assemble();
  ASSERT_EQ(request.size(), sizeof(abi::InHeader));
  EXPECT_EQ(HeaderOf(request).len, 0u);  // answered EINVAL by the dispatcher
  EXPECT_EQ(HeaderOf(request).unique, 42u);
}

TEST(AssembleRingRequestTest, LengthShorterThanThePayloadIsRefused) {
  RingEntry entry(4096);
  entry.Fill(abi::kLookup, nullptr, 0, std::string("abc\0", 4));
  entry.SetPayloadSize(64);  // more than len leaves room for
  std::span<const std::byte> request = entry.Assemble();
  ASSERT_EQ(request.size(), sizeof(abi::InHeader));
  EXPECT_EQ(HeaderOf(request).len, 0u);
}

TEST(AssembleRingRequestTest, OpStructLargerThanItsAreaIsRefused) {
  RingEntry entry(4096);
  entry.Fill(abi::kGetattr, nullptr, 0, "", /*len_adjust=*/abi::kUringOpInOutSize + 8);
  std::span<const std::byte> request = entry.Assemble();
  ASSERT_EQ(request.size(), sizeof(abi::InHeader));
  EXPECT_EQ(HeaderOf(request).len, 0u);
}

TEST(AssembleRingRequestTest, LengthBelowTheHeaderIsRefused) {
  RingEntry entry(4096);
  entry.Fill(abi::kStatfs, nullptr, 0, "", static_cast<uint32_t>(-37));  // len 3
  std::span<const std::byte> request = entry.Assemble();
  ASSERT_EQ(request.size(), sizeof(abi::InHeader));
  EXPECT_EQ(HeaderOf(request).len, 0u);
}

TEST(ParseCpuListTest, RangesAndSingles) {
  EXPECT_EQ(ParseCpuList("0-1"), (std::vector<int>{0, 1}));
  EXPECT_EQ(ParseCpuList("0"), (std::vector<int>{0}));
  EXPECT_EQ(ParseCpuList("0-2,4,6-7"), (std::vector<int>{0, 1, 2, 4, 6, 7}));
}

TEST(ParseCpuListTest, MalformedListsAreEmpty) {
  EXPECT_TRUE(ParseCpuList("").empty());
  EXPECT_TRUE(ParseCpuList("x").empty());
  EXPECT_TRUE(ParseCpuList("3-1").empty());
  EXPECT_TRUE(ParseCpuList("0-1x").empty());
  EXPECT_TRUE(ParseCpuList("0-99999999").empty());
  EXPECT_TRUE(ParseCpuList("-1").empty());
}

TEST(PossibleCpusTest, MatchesThisMachine) {
  std::vector<int> cpus = PossibleCpus();
  ASSERT_FALSE(cpus.empty());
  EXPECT_GE(cpus.size(), 1u);
}

TEST(GrantInitFlagTest, HighFlagGoesToFlags2WithInitExt) {
  InitReply reply;
  reply.flags = abi::kAsyncRead;
  reply.out.flags = static_cast<uint32_t>(abi::kAsyncRead);
  GrantInitFlag(reply, abi::kOverIoUring);
  EXPECT_EQ(reply.flags, abi::kAsyncRead | abi::kInitExt | abi::kOverIoUring);
  EXPECT_EQ(reply.out.flags, static_cast<uint32_t>(abi::kAsyncRead | abi::kInitExt));
  EXPECT_EQ(reply.out.flags2, static_cast<uint32_t>(abi::kOverIoUring >> 32));
}

}  // namespace
}  // namespace lamina::testing
