// Attributes the daemon changes behind the kernel's back, side by side with
// kernel overlayfs (found by fstests' generic/277): the ctime an inode-flags
// ioctl moved stayed as the kernel had cached it (the overlay caches
// attributes for a day by default, and the kernel keeps them across
// FUSE_IOCTL).

#include "integration/overlay/overlay_harness.h"
#include "integration/stale_attrs_checks.h"

namespace lamina::testing {
namespace {

const std::vector<std::string> kLower = {"f lower data"};

class OverlayStaleAttrsTest : public OverlayPair {
 protected:
  void SetUp() override { Mount({kLower}); }
};

// The lower file is copied up by the ioctl; the upper one is changed in place.
TEST_F(OverlayStaleAttrsTest, ChattrMovesTheCtime) {
  ExpectSame([](const std::string& r) { return CtimeAfterChattr(r + "/lower"); },
             "ctime after chattr of a lower file");
  ExpectSame([](const std::string& r) { return CtimeAfterChattr(r + "/lower"); },
             "ctime after chattr of an upper file");
}

}  // namespace
}  // namespace lamina::testing
