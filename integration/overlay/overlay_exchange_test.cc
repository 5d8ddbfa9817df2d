// Namespace operations that once differed from kernel overlayfs: exchanging
// directories that merge lower content (renameat2 RENAME_EXCHANGE), and
// making a 0/0 character device, which is how the upper stores a whiteout.

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

const std::vector<std::string> kLower = {"d a",
                                         "f a/from-lower-a a",
                                         "d a/sub",
                                         "f a/sub/deep a-deep",
                                         "d b",
                                         "f b/from-lower-b b",
                                         "d both",
                                         "d both/x",
                                         "f both/x/lx lx",
                                         "d both/y",
                                         "f both/y/ly ly",
                                         "d c",
                                         "f c/only-lower-c c"};
const std::vector<std::string> kUpper = {"d a", "f a/from-upper-a ua", "d n", "f n/new-dir n"};

std::string Exchange(const std::string& from, const std::string& to) {
  return Outcome(renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_EXCHANGE));
}

class OverlayExchangeTest : public OverlayPair {
 protected:
  void SetUp() override {
    kernel_options_ = "redirect_dir=on";
    Mount({kLower}, kUpper);
  }
};

TEST_F(OverlayExchangeTest, MergedDirectoriesExchangeAsOnTheKernel) {
  ExpectSame(
      [](const std::string& r) {
        std::string out = "merged<->lower:" + Exchange(r + "/a", r + "/b");
        out += " within:" + Exchange(r + "/both/x", r + "/both/y");
        out += " merged<->new:" + Exchange(r + "/b", r + "/n");
        out += " again:" + Exchange(r + "/a", r + "/c");
        out += " nested:" + Exchange(r + "/c/sub", r + "/both/x");
        return out;
      },
      "exchanges of directories with lower content");
  ExpectSame([](const std::string& r) { return DescribeTree(r); }, "tree after the exchanges");

  const std::string view = DescribeTree(lamina_root());
  UnmountLamina();
  MountLamina();
  EXPECT_EQ(DescribeTree(lamina_root()), view) << "after remount";
  // The kernel reads the redirects and opaque marks Lamina wrote.
  ASSERT_NO_FATAL_FAILURE(MountKernelOnLaminaLayers("redirect_dir=on"));
  EXPECT_EQ(DescribeTree(kernel_root()), view) << "under kernel overlayfs";
}

TEST_F(OverlayExchangeTest, NewDirectoryExchangedOntoALowerNameHidesIt) {
  // `n` merges nothing; at the name `c` it must hide the lower `c`.
  ExpectSame(
      [](const std::string& r) {
        std::string out = Exchange(r + "/n", r + "/c");
        return out + " " + DescribeTree(r);
      },
      "a new directory exchanged with a lower one");
}

TEST_F(OverlayExchangeTest, WhiteoutDevicesCannotBeMade) {
  ExpectSame(
      [](const std::string& r) {
        std::string out = "0/0:" + Outcome(mknod((r + "/w").c_str(), S_IFCHR | 0644, 0));
        out += " listed:" + Outcome(access((r + "/w").c_str(), F_OK));
        out +=
            " 0/0-over-lower:" + Outcome(mknod((r + "/a/from-lower-a").c_str(), S_IFCHR | 0644, 0));
        out +=
            " other-device:" + Outcome(mknod((r + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3)));
        out += " " + DescribeTree(r);
        return out;
      },
      "mknod of a 0/0 character device");
}

class OverlayExchangeNoRedirectTest : public OverlayPair {
 protected:
  void SetUp() override {
    lamina_options_.redirect_dir = false;
    Mount({kLower}, kUpper);
  }
};

TEST_F(OverlayExchangeNoRedirectTest, MergedDirectoriesCannotBeExchanged) {
  ExpectSame([](const std::string& r) { return Exchange(r + "/a", r + "/b"); },
             "exchange without redirects");
}

}  // namespace
}  // namespace lamina::testing
