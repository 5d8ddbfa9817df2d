// The fixture of the core's mounted tests: MemoryFilesystem mounted
// in-process with FuseServer, through the transport the test parameter
// names.

#ifndef LAMINA_INTEGRATION_CORE_MEMFS_FIXTURE_H_
#define LAMINA_INTEGRATION_CORE_MEMFS_FIXTURE_H_

#include <memory>
#include <optional>
#include <ostream>
#include <string>

#include "core/examples/memory_filesystem.h"
#include "core/fuse_server.h"
#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"

namespace lamina::testing {

enum class Via {
  kDevFuse,          // /dev/fuse, the default
  kIoUring,          // ServerOptions::io_uring, enable_uring = 1: served by the rings
  kIoUringDisabled,  // ServerOptions::io_uring, enable_uring = 0: must fall back to /dev/fuse
};

inline std::string ViaName(const ::testing::TestParamInfo<Via>& info) {
  switch (info.param) {
    case Via::kDevFuse:
      return "DevFuse";
    case Via::kIoUring:
      return "IoUring";
    case Via::kIoUringDisabled:
      return "IoUringFallback";
  }
  return "Unknown";
}

inline void PrintTo(Via via, std::ostream* os) {
  *os << ViaName(::testing::TestParamInfo<Via>(via, 0));
}

class MemfsMountTest : public ::testing::TestWithParam<Via> {
 protected:
  void SetUp() override {
    if (GetParam() != Via::kDevFuse) {
      uring_.emplace(/*enable=*/GetParam() == Via::kIoUring);
      // Falling back needs no kernel support; using the rings does.
      if (GetParam() == Via::kIoUring && !uring_->supported()) {
        GTEST_SKIP() << "FUSE-over-io_uring unsupported: " << uring_->unsupported_reason();
      }
      if (uring_->supported()) {
        ASSERT_TRUE(uring_->applied()) << "cannot set enable_uring";
      }
    }
    mnt_ = dir_.Subdir("mnt");
    fs_.AddFile("hello.txt", "hello\n");
    fs_.AddFile("docs/readme.md", "# readme\n");
    ServerOptions options;
    options.mount_options = {"fsname=lamina-test", "default_permissions", "allow_other"};
    options.session.threads = 2;
    options.io_uring = GetParam() != Via::kDevFuse;
    auto server = FuseServer::Start(fs_, mnt_, options);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    if (options.io_uring) {
      EXPECT_EQ(server_->io_uring()->active(), GetParam() == Via::kIoUring)
          << "the INIT reply's FUSE_OVER_IO_URING does not match enable_uring";
    }
  }

  void TearDown() override {
    if (server_ != nullptr && GetParam() == Via::kIoUring) {
      EXPECT_GT(server_->io_uring()->requests(), 0u) << "no request came through the rings";
    }
    if (server_ != nullptr && GetParam() == Via::kIoUringDisabled) {
      EXPECT_EQ(server_->io_uring()->requests(), 0u);
    }
    server_.reset();  // stops, unmounts and joins
    EXPECT_FALSE(IsFuseMounted(mnt_));
  }

  std::string Path(const std::string& name) const { return mnt_ + "/" + name; }

  std::optional<FuseUringSetting> uring_;  // restored after the server is gone
  TempDir dir_;
  std::string mnt_;
  examples::MemoryFilesystem fs_;
  std::unique_ptr<FuseServer> server_;
};

}  // namespace lamina::testing

#endif  // LAMINA_INTEGRATION_CORE_MEMFS_FIXTURE_H_
