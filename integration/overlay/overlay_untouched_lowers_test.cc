// OverlayPair's check of the lower layers, end to end: a change that
// reaches a lower layer while the overlays use it (here a stray byte
// written beside the mounts, as a daemon writing through a lower would
// leave it) fails the test at tear-down, naming the object and field.

#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest-spi.h"
#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

class OverlayUntouchedLowersTest : public OverlayPair {
 protected:
  void SetUp() override { Mount({{"d dir", "f dir/inner lower-inner", "f other other"}}); }
};

TEST_F(OverlayUntouchedLowersTest, AStrayByteInALowerFileFailsTheTest) {
  // Both overlays at work first: a listing, reads, a copy-up.
  ExpectSame(
      [](const std::string& r) {
        std::string out = ReadFile(r + "/dir/inner") + ReadFile(r + "/other");
        int fd = open((r + "/other").c_str(), O_WRONLY | O_APPEND);
        out += Outcome(fd);
        if (fd >= 0) close(fd);
        return out + " " + std::to_string(ListDir(r + "/dir").size());
      },
      "reads, a copy-up and a listing");
  int fd = open((lamina_lower(0) + "/dir/inner").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "L", 1, 0), 1);  // the size stays
  close(fd);
  UnmountLamina();
  UnmountKernel();
  // One failure: Lamina's lower changed, the kernel's did not.
  EXPECT_NONFATAL_FAILURE(ExpectLowersUntouched(), "/dir/inner: contents xxh3-128:");
}

}  // namespace
}  // namespace lamina::testing
