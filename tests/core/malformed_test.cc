// Malformed and truncated requests for every opcode 0..60: the session
// answers EINVAL (or nothing where no reply is allowed), never crashes, and
// keeps serving afterwards.

#include <map>
#include <random>

#include "gtest/gtest.h"
#include "tests/core/fake_kernel.h"
#include "tests/core/recording_filesystem.h"

namespace lamina::testing {
namespace {

constexpr uint32_t kMaxOpcodeTried = 60;

bool Replies(uint32_t opcode) {
  return opcode != abi::kForget && opcode != abi::kBatchForget && opcode != abi::kInterrupt &&
         opcode != abi::kNotifyReply;
}

// The fixed struct each opcode starts with (SETXATTR_EXT negotiated).
const std::map<uint32_t, size_t>& FixedArgSizes() {
  static const auto* sizes = new std::map<uint32_t, size_t>{
      {abi::kForget, sizeof(abi::ForgetIn)},
      {abi::kGetattr, sizeof(abi::GetattrIn)},
      {abi::kSetattr, sizeof(abi::SetattrIn)},
      {abi::kMknod, sizeof(abi::MknodIn)},
      {abi::kMkdir, sizeof(abi::MkdirIn)},
      {abi::kRename, sizeof(abi::RenameIn)},
      {abi::kLink, sizeof(abi::LinkIn)},
      {abi::kOpen, sizeof(abi::OpenIn)},
      {abi::kRead, sizeof(abi::ReadIn)},
      {abi::kWrite, sizeof(abi::WriteIn)},
      {abi::kRelease, sizeof(abi::ReleaseIn)},
      {abi::kFsync, sizeof(abi::FsyncIn)},
      {abi::kSetxattr, sizeof(abi::SetxattrIn)},
      {abi::kGetxattr, sizeof(abi::GetxattrIn)},
      {abi::kListxattr, sizeof(abi::GetxattrIn)},
      {abi::kFlush, sizeof(abi::FlushIn)},
      {abi::kInit, abi::kCompatInitInSize},
      {abi::kOpendir, sizeof(abi::OpenIn)},
      {abi::kReaddir, sizeof(abi::ReadIn)},
      {abi::kReleasedir, sizeof(abi::ReleaseIn)},
      {abi::kFsyncdir, sizeof(abi::FsyncIn)},
      {abi::kGetlk, sizeof(abi::LkIn)},
      {abi::kSetlk, sizeof(abi::LkIn)},
      {abi::kSetlkw, sizeof(abi::LkIn)},
      {abi::kAccess, sizeof(abi::AccessIn)},
      {abi::kCreate, sizeof(abi::CreateIn)},
      {abi::kInterrupt, sizeof(abi::InterruptIn)},
      {abi::kBmap, sizeof(abi::BmapIn)},
      {abi::kIoctl, sizeof(abi::IoctlIn)},
      {abi::kPoll, sizeof(abi::PollIn)},
      {abi::kBatchForget, sizeof(abi::BatchForgetIn)},
      {abi::kFallocate, sizeof(abi::FallocateIn)},
      {abi::kReaddirplus, sizeof(abi::ReadIn)},
      {abi::kRename2, sizeof(abi::Rename2In)},
      {abi::kLseek, sizeof(abi::LseekIn)},
      {abi::kCopyFileRange, sizeof(abi::CopyFileRangeIn)},
      {abi::kSyncfs, sizeof(abi::SyncfsIn)},
      {abi::kTmpfile, sizeof(abi::CreateIn)},
      {abi::kStatx, sizeof(abi::StatxIn)},
      {abi::kCopyFileRange64, sizeof(abi::CopyFileRangeIn)},
  };
  return *sizes;
}

// Opcodes whose fixed struct is followed by (at least) one string.
const std::map<uint32_t, size_t>& StringArgOpcodes() {
  static const auto* ops = new std::map<uint32_t, size_t>{
      {abi::kLookup, 0},
      {abi::kSymlink, 0},
      {abi::kUnlink, 0},
      {abi::kRmdir, 0},
      {abi::kRemovexattr, 0},
      {abi::kMknod, sizeof(abi::MknodIn)},
      {abi::kMkdir, sizeof(abi::MkdirIn)},
      {abi::kRename, sizeof(abi::RenameIn)},
      {abi::kLink, sizeof(abi::LinkIn)},
      {abi::kSetxattr, sizeof(abi::SetxattrIn)},
      {abi::kGetxattr, sizeof(abi::GetxattrIn)},
      {abi::kCreate, sizeof(abi::CreateIn)},
      {abi::kRename2, sizeof(abi::Rename2In)},
      {abi::kTmpfile, sizeof(abi::CreateIn)},
  };
  return *ops;
}

class MalformedTest : public ::testing::Test {
 protected:
  void SetUp() override { harness_.StartAndInit(); }

  FakeKernel& kernel() { return harness_.kernel(); }

  // Sends `message` and checks the answer: EINVAL when `expect_einval`,
  // otherwise any well-formed reply; nothing for no-reply opcodes.
  void Expect(uint32_t opcode, const std::string& message, bool expect_einval) {
    uint64_t unique = kernel().SendRaw(message);
    if (message.size() < sizeof(abi::InHeader) || !Replies(opcode)) return;
    std::optional<Reply> reply = kernel().Receive();
    ASSERT_TRUE(reply.has_value()) << "no reply to opcode " << opcode;
    ASSERT_EQ(reply->header.unique, unique) << "opcode " << opcode;
    EXPECT_LE(reply->header.error, 0) << "opcode " << opcode;
    EXPECT_GT(reply->header.error, -1000) << "opcode " << opcode;
    if (expect_einval) {
      EXPECT_EQ(reply->error(), EINVAL) << "opcode " << opcode;
    }
  }

  void ExpectEinval(uint32_t opcode, const std::string& args) {
    Expect(opcode, kernel().Build(opcode, args), /*expect_einval=*/true);
  }

  void ExpectStillServing() {
    Reply reply = kernel().Call(abi::kGetattr, Bytes(abi::GetattrIn{}));
    EXPECT_EQ(reply.error(), 0);
    EXPECT_EQ(reply.payload.size(), sizeof(abi::AttrOut));
  }

  RecordingFilesystem fs_;
  SessionHarness harness_{fs_};
};

TEST_F(MalformedTest, TruncatedFixedStructs) {
  for (const auto& [opcode, size] : FixedArgSizes()) {
    ExpectEinval(opcode, "");
    ExpectEinval(opcode, std::string(size - 1, '\x7f'));
  }
  EXPECT_EQ(fs_.calls(), 0);
  ExpectStillServing();
}

TEST_F(MalformedTest, MissingNul) {
  for (const auto& [opcode, fixed] : StringArgOpcodes()) {
    ExpectEinval(opcode, std::string(fixed, '\0') + "no-terminator");
  }
  EXPECT_EQ(fs_.calls(), 0);
  ExpectStillServing();
}

TEST_F(MalformedTest, LengthMismatchEveryOpcode) {
  constexpr size_t kArgs = 64;
  constexpr uint32_t kRealLen = sizeof(abi::InHeader) + kArgs;
  for (uint32_t opcode = 0; opcode <= kMaxOpcodeTried; ++opcode) {
    for (uint32_t len : {kRealLen + 1, kRealLen - 1, 0U, 40U, UINT32_MAX}) {
      std::string request = kernel().Build(opcode, std::string(kArgs, '\0'));
      std::memcpy(request.data() + offsetof(abi::InHeader, len), &len, sizeof(len));
      Expect(opcode, request, /*expect_einval=*/true);
    }
  }
  EXPECT_EQ(fs_.calls(), 0);
  ExpectStillServing();
}

TEST_F(MalformedTest, ExtensionsLongerThanRequest) {
  for (uint32_t opcode = 0; opcode <= kMaxOpcodeTried; ++opcode) {
    std::string request = kernel().Build(opcode, std::string(16, '\0'));
    abi::InHeader header;
    std::memcpy(&header, request.data(), sizeof(header));
    header.total_extlen = 3;  // 24 bytes, but only 16 follow the header
    std::memcpy(request.data(), &header, sizeof(header));
    Expect(opcode, request, /*expect_einval=*/true);
  }
  // A well-sized but malformed extension record.
  RequestOptions options;
  options.extensions = Bytes(abi::ExtHeader{4, abi::kExtGroups});
  Expect(abi::kLookup, kernel().Build(abi::kLookup, Name("x"), options), true);
  EXPECT_EQ(fs_.calls(), 0);
  ExpectStillServing();
}

TEST_F(MalformedTest, ShorterThanHeaderIsDropped) {
  for (size_t size : {1, 8, 16, 39}) kernel().SendRaw(std::string(size, '\x01'));
  ExpectStillServing();
}

TEST_F(MalformedTest, RandomStormEveryOpcode) {
  std::mt19937_64 rng(20240607);
  auto random_bytes = [&rng](size_t n) {
    std::string out(n, '\0');
    for (char& c : out) c = static_cast<char>(rng());
    return out;
  };
  constexpr int kPerOpcode = 60;
  for (uint32_t opcode = 0; opcode <= kMaxOpcodeTried; ++opcode) {
    for (int i = 0; i < kPerOpcode; ++i) {
      RequestOptions options;
      options.nodeid = rng() % 4 == 0 ? rng() : 1 + rng() % 3;
      if (rng() % 4 == 0) options.extensions = random_bytes(8 * (rng() % 4));
      std::string request = kernel().Build(opcode, random_bytes(rng() % 320), options);
      bool corrupt_len = rng() % 5 == 0;
      if (corrupt_len) {
        uint32_t len = static_cast<uint32_t>(rng());
        if (len == request.size()) ++len;
        std::memcpy(request.data(), &len, sizeof(len));
      }
      if (rng() % 16 == 0) {
        uint16_t extlen = static_cast<uint16_t>(rng());
        std::memcpy(request.data() + offsetof(abi::InHeader, total_extlen), &extlen,
                    sizeof(extlen));
      }
      Expect(opcode, request, corrupt_len);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
  // Pieces of headers, too.
  for (int i = 0; i < 200; ++i) kernel().SendRaw(random_bytes(1 + rng() % 39));
  ExpectStillServing();
  EXPECT_TRUE(harness_.session().connection().initialized());
}

}  // namespace
}  // namespace lamina::testing
