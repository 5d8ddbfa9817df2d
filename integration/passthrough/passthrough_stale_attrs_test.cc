// Attributes the daemon changes behind the kernel's back, with attributes
// cached (timeout 3600), against the plain directory (found by fstests'
// generic/277): the ctime an inode-flags ioctl moved stayed as the kernel
// had cached it (the kernel keeps cached attributes across FUSE_IOCTL).

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

INSTANTIATE_TEST_SUITE_P(Modes, PassthroughStaleAttrsTest, LAMINA_PASSTHROUGH_PARAMS, ParamName);

}  // namespace
}  // namespace lamina::testing
