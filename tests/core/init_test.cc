// INIT negotiation: the pure functions, and the handshake end to end.

#include <array>
#include <thread>

#include "core/connection.h"
#include "gtest/gtest.h"
#include "tests/core/fake_kernel.h"
#include "tests/core/recording_filesystem.h"

namespace lamina::testing {
namespace {

constexpr uint64_t kLowFlags = kAllKernelFlags & 0xffffffffULL;

abi::InitIn MakeIn(uint32_t minor, uint64_t flags, uint32_t major = 7) {
  abi::InitIn in{};
  in.major = major;
  in.minor = minor;
  in.max_readahead = 65536;
  in.flags = static_cast<uint32_t>(flags);
  in.flags2 = static_cast<uint32_t>(flags >> 32);
  return in;
}

uint64_t ReplyFlags(const abi::InitOut& out) {
  return out.flags | (static_cast<uint64_t>(out.flags2) << 32);
}

TEST(MakeInitConfigTest, Flags2OnlyWithFullStructAndInitExt) {
  abi::InitIn in = MakeIn(45, kAllKernelFlags);
  EXPECT_EQ(MakeInitConfig(in, sizeof(in)).kernel_flags, kAllKernelFlags);
  // A 16-byte INIT has no flags2, whatever the (stale) bytes say.
  EXPECT_EQ(MakeInitConfig(in, abi::kCompatInitInSize).kernel_flags, kLowFlags);
  // Without INIT_EXT, flags2 is not meaningful.
  in.flags &= ~static_cast<uint32_t>(abi::kInitExt);
  EXPECT_EQ(MakeInitConfig(in, sizeof(in)).kernel_flags, kLowFlags & ~abi::kInitExt);

  InitConfig config = MakeInitConfig(in, sizeof(in));
  EXPECT_EQ(config.kernel_minor, 45U);
  EXPECT_EQ(config.kernel_max_readahead, 65536U);
  EXPECT_EQ(config.want, kDefaultWantedFlags);
}

TEST(NegotiateInitTest, RefusesOldMajorsAndMinors) {
  abi::InitIn in = MakeIn(45, kAllKernelFlags, /*major=*/6);
  EXPECT_FALSE(NegotiateInit(in, MakeInitConfig(in, sizeof(in))).ok());
  in = MakeIn(abi::kOldestMinorVersion - 1, kLowFlags);
  auto reply = NegotiateInit(in, MakeInitConfig(in, abi::kCompatInitInSize));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(NegotiateInitTest, NewerMajorGetsShortReplyAndRetry) {
  abi::InitIn in = MakeIn(0, 0, /*major=*/8);
  auto reply = NegotiateInit(in, MakeInitConfig(in, sizeof(in)));
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_FALSE(reply->final);
  EXPECT_EQ(reply->size, abi::kCompatInitOutSize);
  EXPECT_EQ(reply->out.major, 7U);
  EXPECT_EQ(reply->out.minor, abi::kKernelMinorVersion);
}

TEST(NegotiateInitTest, FlagsAreWantAndOffer) {
  abi::InitIn in = MakeIn(45, kAllKernelFlags);
  InitConfig config = MakeInitConfig(in, sizeof(in));
  config.want = abi::kAsyncRead | abi::kPosixAcl | abi::kCreateSuppGroup;
  config.kernel_flags &= ~abi::kPosixAcl;
  auto reply = NegotiateInit(in, config);
  ASSERT_TRUE(reply.ok());
  // A high bit forces INIT_EXT so the kernel reads flags2.
  EXPECT_EQ(reply->flags, abi::kAsyncRead | abi::kCreateSuppGroup | abi::kInitExt);
  EXPECT_EQ(ReplyFlags(reply->out), reply->flags);
  EXPECT_EQ(reply->minor, 45U);
  EXPECT_TRUE(reply->final);
  EXPECT_EQ(reply->size, sizeof(abi::InitOut));
  EXPECT_EQ(reply->out.max_pages, 0) << "MAX_PAGES was not wanted";
}

TEST(NegotiateInitTest, NoInitExtWhenKernelDoesNotOfferIt) {
  abi::InitIn in = MakeIn(35, kLowFlags & ~abi::kInitExt);
  InitConfig config = MakeInitConfig(in, abi::kCompatInitInSize);
  config.want |= abi::kPassthrough;
  auto reply = NegotiateInit(in, config);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->flags & abi::kInitExt, 0U);
  EXPECT_EQ(reply->out.flags2, 0U);
  EXPECT_EQ(reply->out.max_stack_depth, 0U) << "no passthrough, no stack depth";
}

TEST(NegotiateInitTest, LimitsAndStackDepth) {
  abi::InitIn in = MakeIn(45, kAllKernelFlags);
  InitConfig config = MakeInitConfig(in, sizeof(in));
  config.want |= abi::kPassthrough | abi::kWritebackCache;
  config.max_write = 100;  // raised to one page
  config.max_readahead = 1U << 30;
  config.max_stack_depth = 7;  // clamped to the kernel's maximum of 2
  auto reply = NegotiateInit(in, config);
  ASSERT_TRUE(reply.ok());
  EXPECT_NE(reply->flags & abi::kPassthrough, 0U);
  EXPECT_EQ(reply->flags & abi::kWritebackCache, 0U);
  EXPECT_EQ(reply->out.max_write, 4096U);
  EXPECT_EQ(reply->out.max_pages, 1);
  EXPECT_EQ(reply->out.max_readahead, 65536U) << "never above the kernel's";
  EXPECT_EQ(reply->out.max_stack_depth, 2U);
}

// ---- The handshake through a Session. ----

struct MinorCase {
  uint32_t minor;
  uint64_t offered;
};

class HandshakeTest : public ::testing::TestWithParam<MinorCase> {};

TEST_P(HandshakeTest, NegotiatesWhatBothSidesSupport) {
  const MinorCase& param = GetParam();
  RecordingFilesystem fs;
  SessionHarness harness(fs);
  Reply reply = harness.StartAndInit(param.minor, param.offered);
  ASSERT_EQ(reply.payload.size(), sizeof(abi::InitOut));
  auto out = reply.As<abi::InitOut>();
  EXPECT_EQ(out.major, 7U);
  EXPECT_EQ(out.minor, abi::kKernelMinorVersion);
  // 16-byte INIT before 7.36: flags2 never counts.
  uint64_t offered = param.minor < 36 ? (param.offered & kLowFlags) : param.offered;
  uint64_t expected = kDefaultWantedFlags & offered;
  EXPECT_EQ(ReplyFlags(out), expected);
  EXPECT_EQ(out.max_write, 1U << 20);
  EXPECT_EQ(out.max_pages, (expected & abi::kMaxPages) != 0 ? 256 : 0);
  EXPECT_EQ(out.max_stack_depth, 0U);

  // The connection is live: a request gets through.
  EXPECT_EQ(harness.kernel().Call(abi::kGetattr, Bytes(abi::GetattrIn{})).error(), 0);
  Connection& connection = harness.session().connection();
  EXPECT_EQ(connection.minor(), param.minor);
  EXPECT_EQ(connection.flags(), expected);
  EXPECT_EQ(connection.max_read(), 1U << 20);
  EXPECT_TRUE(harness.Stop().ok());
}

INSTANTIATE_TEST_SUITE_P(
    Minors, HandshakeTest,
    ::testing::Values(
        // 4.19: no MAX_PAGES (7.28), no INIT_EXT.
        MinorCase{27, kLowFlags & ~(abi::kMaxPages | abi::kInitExt) & ((1ULL << 22) - 1)},
        MinorCase{31, kLowFlags & ~abi::kInitExt}, MinorCase{36, kAllKernelFlags},
        MinorCase{40, kAllKernelFlags & ~abi::kPassthrough}, MinorCase{45, kAllKernelFlags}),
    [](const ::testing::TestParamInfo<MinorCase>& info) {
      return "Minor" + std::to_string(info.param.minor);
    });

TEST(InitTest, PassthroughDroppedWhenNotOffered) {
  RecordingFilesystem fs;
  fs.on_init = [](InitConfig& config) { config.want |= abi::kPassthrough; };
  SessionHarness harness(fs);
  auto out = harness.StartAndInit(40, kAllKernelFlags & ~abi::kPassthrough).As<abi::InitOut>();
  EXPECT_EQ(ReplyFlags(out) & abi::kPassthrough, 0U);
  EXPECT_EQ(out.max_stack_depth, 0U);
}

TEST(InitTest, PassthroughRemovesWritebackCache) {
  RecordingFilesystem fs;
  fs.on_init = [](InitConfig& config) {
    EXPECT_TRUE(config.KernelOffers(abi::kPassthrough));
    config.want |= abi::kPassthrough | abi::kWritebackCache;
    config.max_stack_depth = 2;
  };
  SessionHarness harness(fs);
  auto out = harness.StartAndInit().As<abi::InitOut>();
  EXPECT_NE(ReplyFlags(out) & abi::kPassthrough, 0U);
  EXPECT_EQ(ReplyFlags(out) & abi::kWritebackCache, 0U);
  EXPECT_NE(out.flags & abi::kInitExt, 0U);
  EXPECT_EQ(out.max_stack_depth, 2U);
}

TEST(InitTest, NewerMajorRetriesWithOurs) {
  RecordingFilesystem fs;
  SessionHarness harness(fs);
  harness.Start();
  Reply first = harness.kernel().Init(0, 0, /*major=*/8);
  EXPECT_EQ(first.error(), 0);
  ASSERT_EQ(first.payload.size(), abi::kCompatInitOutSize);
  // Only major and minor are sent.
  auto version = first.As<std::array<uint32_t, 2>>();
  EXPECT_EQ(version[0], 7U);
  EXPECT_EQ(version[1], abi::kKernelMinorVersion);
  EXPECT_FALSE(harness.session().connection().initialized());
  // Still waiting for INIT: other requests are refused.
  EXPECT_EQ(harness.kernel().Call(abi::kGetattr, Bytes(abi::GetattrIn{})).error(), EIO);

  Reply second = harness.kernel().Init(45, kAllKernelFlags);
  EXPECT_EQ(second.error(), 0);
  EXPECT_EQ(second.payload.size(), sizeof(abi::InitOut));
  EXPECT_EQ(harness.kernel().Call(abi::kGetattr, Bytes(abi::GetattrIn{})).error(), 0);
}

TEST(InitTest, TooOldMinorIsRefused) {
  RecordingFilesystem fs;
  FakeKernel kernel;
  SocketTransport transport(kernel.TakeServerFd());
  Session session(fs, transport, SessionOptions{1});
  absl::Status status;
  std::thread handshake([&] { status = session.Handshake(); });
  Reply reply = kernel.Init(26, kLowFlags);
  EXPECT_EQ(reply.error(), EPROTO);
  EXPECT_EQ(reply.payload.size(), 0U);
  handshake.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status.ToString();
  EXPECT_FALSE(session.connection().initialized());
}

TEST(InitTest, RequestBeforeInitIsEio) {
  RecordingFilesystem fs;
  SessionHarness harness(fs);
  harness.Start();
  EXPECT_EQ(harness.kernel().Call(abi::kLookup, Name("x")).error(), EIO);
  EXPECT_EQ(fs.calls(), 0);
  harness.kernel().Init(45, kAllKernelFlags);
  EXPECT_EQ(harness.kernel().Call(abi::kLookup, Name("x")).error(), 0);
}

TEST(InitTest, SecondInitIsEproto) {
  RecordingFilesystem fs;
  SessionHarness harness(fs);
  harness.StartAndInit();
  EXPECT_EQ(harness.kernel().Init(45, kAllKernelFlags).error(), EPROTO);
  EXPECT_EQ(harness.session().connection().minor(), 45U);
}

TEST(InitTest, ShutdownBeforeInitFailsRun) {
  RecordingFilesystem fs;
  SessionHarness harness(fs);
  harness.Start();
  EXPECT_EQ(harness.Stop().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace lamina::testing
