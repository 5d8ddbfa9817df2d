// Attributes the daemon changes behind the kernel's back, side by side with
// kernel overlayfs (found by fstests' generic/277, generic/355 and
// generic/683): the ctime an inode-flags ioctl moved, and the set-ID bits
// the daemon dropped for a direct write by the file's owner, stayed as the
// kernel had cached them (the overlay caches attributes for a day by
// default, and the kernel keeps them across FUSE_IOCTL and WRITE); a
// fallocate by a writer without CAP_FSETID kept the set-ID bits.

#include "integration/overlay/overlay_harness.h"
#include "integration/stale_attrs_checks.h"

namespace lamina::testing {
namespace {

const std::vector<std::string> kLower = {"f lower data"};

class OverlayStaleAttrsTest : public OverlayPair {
 protected:
  void SetUp() override {
    chmod(dir_.path().c_str(), 0755);  // uid 1000 reaches both mounts
    Mount({kLower});
  }
};

// The lower file is copied up by the ioctl; the upper one is changed in place.
TEST_F(OverlayStaleAttrsTest, ChattrMovesTheCtime) {
  ExpectSame([](const std::string& r) { return CtimeAfterChattr(r + "/lower"); },
             "ctime after chattr of a lower file");
  ExpectSame([](const std::string& r) { return CtimeAfterChattr(r + "/lower"); },
             "ctime after chattr of an upper file");
}

// Set-user-ID always goes; set-group-ID only with group-execute.
TEST_F(OverlayStaleAttrsTest, OwnersDirectWriteDropsSetIdBits) {
  for (mode_t mode : {06644, 06754}) {
    ExpectSame(
        [mode](const std::string& r) {
          chmod(r.c_str(), 0777);
          return ModeAfterOwnersDirectWrite(r + "/setid", mode);
        },
        "mode after the owner's direct write");
  }
}

// A writer outside the file's group loses both bits; set-group-ID goes even
// without group-execute (the kernel's setattr_should_drop_sgid).
TEST_F(OverlayStaleAttrsTest, StrangersFallocateDropsSetIdBits) {
  for (mode_t mode : {06666, 06676}) {
    ExpectSame(
        [mode](const std::string& r) {
          chmod(r.c_str(), 0777);
          return ModeAfterStrangersFallocate(r + "/falloc", mode);
        },
        "mode after a stranger's fallocate");
  }
}

}  // namespace
}  // namespace lamina::testing
