// The index's overlay.nlink record: its format and the view's link count
// computed from it, as the kernel's ovl_get_nlink does.

#include "overlay/index.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "overlay/layer_object.h"

namespace lamina::overlay {
namespace {

class IndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/lamina-index-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    std::filesystem::create_directory(dir_ + "/lower");
    LayerConfig config;
    config.lowers = {dir_ + "/lower"};
    absl::StatusOr<LayerStack> stack = LayerStack::Open(config);
    ASSERT_TRUE(stack.ok()) << stack.status();
    layers_.emplace(std::move(*stack));
    fd_ = open((dir_ + "/lower/file").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    ASSERT_GE(fd_, 0);
  }
  void TearDown() override {
    if (fd_ >= 0) close(fd_);
    layers_.reset();
    std::filesystem::remove_all(dir_);
  }
  void SetRecord(const std::string& value) {
    ASSERT_EQ(fsetxattr(fd_, layers_->PrivateXattr("nlink").c_str(), value.data(), value.size(), 0),
              0);
  }
  std::string Record() {
    char value[32] = {};
    ssize_t n = fgetxattr(fd_, layers_->PrivateXattr("nlink").c_str(), value, sizeof(value));
    return n < 0 ? "" : std::string(value, static_cast<size_t>(n));
  }

  std::string dir_;
  std::optional<LayerStack> layers_;
  int fd_ = -1;
};

TEST_F(IndexTest, RecordsAreWrittenAsTheKernelWritesThem) {
  ASSERT_TRUE(WriteNlinkRecord(*layers_, fd_, {'U', 1}).ok());
  EXPECT_EQ(Record(), "U+1");
  ASSERT_TRUE(WriteNlinkRecord(*layers_, fd_, {'L', -2}).ok());
  EXPECT_EQ(Record(), "L-2");
  ASSERT_TRUE(WriteNlinkRecord(*layers_, fd_, {'U', 0}).ok());
  EXPECT_EQ(Record(), "U+0");
  std::optional<NlinkRecord> read = ReadNlinkRecord(*layers_, fd_);
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->base, 'U');
  EXPECT_EQ(read->diff, 0);
}

TEST_F(IndexTest, ViewCountFollowsTheRecordsBase) {
  SetRecord("U+1");
  EXPECT_EQ(ViewNlink(*layers_, fd_, /*upper=*/2, /*lower=*/3), 3u);
  SetRecord("L-2");
  EXPECT_EQ(ViewNlink(*layers_, fd_, 5, 3), 1u);
  SetRecord("U-1");
  EXPECT_EQ(ViewNlink(*layers_, fd_, 4, 3), 3u);
  // A lower with one name: the record does not apply.
  EXPECT_EQ(ViewNlink(*layers_, fd_, 4, 1), 4u);
}

TEST_F(IndexTest, BadOrNonPositiveRecordsFallBackToTheUpperCount) {
  for (const char* bad : {"X+1", "U1", "U+", "U+1x", "L+-1", "", "U+99999999999"}) {
    SetRecord(bad);
    EXPECT_FALSE(ReadNlinkRecord(*layers_, fd_).has_value()) << bad;
    EXPECT_EQ(ViewNlink(*layers_, fd_, 2, 3), 2u) << bad;
  }
  SetRecord("U-2");
  EXPECT_EQ(ViewNlink(*layers_, fd_, 2, 3), 2u);  // 0 links: not believed
  ASSERT_EQ(fremovexattr(fd_, layers_->PrivateXattr("nlink").c_str()), 0);
  EXPECT_EQ(ViewNlink(*layers_, fd_, 2, 3), 2u);
}

TEST_F(IndexTest, IndexNameIsTheOriginRecordInHex) {
  int path_fd = open((dir_ + "/lower/file").c_str(), O_PATH | O_CLOEXEC);
  ASSERT_GE(path_fd, 0);
  const std::string origin = EncodeOrigin(layers_->layer(0), path_fd);
  const std::string name = IndexName(layers_->layer(0), path_fd);
  close(path_fd);
  if (origin.empty()) GTEST_SKIP() << "no file handles on this filesystem";
  ASSERT_EQ(name.size(), origin.size() * 2);
  EXPECT_EQ(name.substr(0, 4), "00fb");  // version 0, magic 0xfb
  for (size_t i = 0; i < origin.size(); ++i) {
    EXPECT_EQ(std::stoi(name.substr(i * 2, 2), nullptr, 16), static_cast<unsigned char>(origin[i]));
  }
}

}  // namespace
}  // namespace lamina::overlay
