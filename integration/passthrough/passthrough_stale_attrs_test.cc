// Attributes the daemon changes behind the kernel's back, with attributes
// cached (timeout 3600), against the plain directory (found by fstests'
// generic/277, generic/355 and generic/683): the ctime an inode-flags ioctl
// moved, and the set-ID bits the daemon dropped for a direct write by the
// file's owner, stayed as the kernel had cached them (the kernel keeps
// cached attributes across FUSE_IOCTL and WRITE); a fallocate by a writer
// without CAP_FSETID kept the set-ID bits.

#include "integration/passthrough/passthrough_fixture.h"
#include "integration/stale_attrs_checks.h"

namespace lamina::testing {
namespace {

class PassthroughStaleAttrsTest : public PassthroughTest {
 protected:
  double Timeout() const override { return 3600; }
};

TEST_P(PassthroughStaleAttrsTest, ChattrMovesTheCtime) {
  WriteFile(Mnt("f"), "data");
  WriteFile(Twin("f"), "data");
  EXPECT_EQ(CtimeAfterChattr(Mnt("f")), CtimeAfterChattr(Twin("f")));
}

// Set-user-ID always goes; set-group-ID only with group-execute.
TEST_P(PassthroughStaleAttrsTest, OwnersDirectWriteDropsSetIdBits) {
  chmod(mount_->mnt().c_str(), 0777);
  chmod(mount_->twin().c_str(), 0777);
  for (mode_t mode : {06644, 06754}) {
    EXPECT_EQ(ModeAfterOwnersDirectWrite(Mnt("setid"), mode),
              ModeAfterOwnersDirectWrite(Twin("setid"), mode))
        << std::oct << mode;
  }
}

// A writer outside the file's group loses both bits; set-group-ID goes even
// without group-execute (the kernel's setattr_should_drop_sgid).
TEST_P(PassthroughStaleAttrsTest, StrangersFallocateDropsSetIdBits) {
  chmod(mount_->mnt().c_str(), 0777);
  chmod(mount_->twin().c_str(), 0777);
  for (mode_t mode : {06666, 06676}) {
    EXPECT_EQ(ModeAfterStrangersFallocate(Mnt("falloc"), mode),
              ModeAfterStrangersFallocate(Twin("falloc"), mode))
        << std::oct << mode;
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, PassthroughStaleAttrsTest, LAMINA_PASSTHROUGH_PARAMS, ParamName);

}  // namespace
}  // namespace lamina::testing
