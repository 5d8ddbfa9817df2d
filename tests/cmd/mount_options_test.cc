// What laminafs hands to the mount: the -o list libfuse and fusermount3
// parse (JoinMountOptions), the permission checks every mount gets, and the
// warnings for options that weaken them.

#include <string>
#include <vector>

#include "cmd/daemon.h"
#include "cmd/options.h"
#include "core/fuse_mount.h"
#include "gtest/gtest.h"

namespace lamina {
namespace {

TEST(MountOptionsTest, EachOptionStaysOneOption) {
  EXPECT_EQ(JoinMountOptions({}), "");
  EXPECT_EQ(JoinMountOptions({"allow_other", "default_permissions"}),
            "allow_other,default_permissions");
  // libfuse and fusermount3 read "\x" as x and split at other commas.
  EXPECT_EQ(JoinMountOptions({"fsname=/tmp/src,ro,allow_other", "subtype=laminafs"}),
            "fsname=/tmp/src\\,ro\\,allow_other,subtype=laminafs");
  EXPECT_EQ(JoinMountOptions({"fsname=a\\b\\,c\\"}), "fsname=a\\\\b\\\\\\,c\\\\");
  // Nothing else is special to them.
  EXPECT_EQ(JoinMountOptions({"fsname=q'u\"o te\nx\\012"}), "fsname=q'u\"o te\nx\\\\012");
}

TEST(MountOptionsTest, DefaultPermissionsIsAlwaysAdded) {
  std::vector<std::string> options = {"allow_other"};
  cmd::AddPermissionChecks(options);
  EXPECT_EQ(options, (std::vector<std::string>{"allow_other", "default_permissions"}));
  cmd::AddPermissionChecks(options);
  EXPECT_EQ(options, (std::vector<std::string>{"allow_other", "default_permissions"}));
}

TEST(MountOptionsTest, OptionsThatWeakenChecksAreNamed) {
  cmd::MountCommand command;
  EXPECT_TRUE(cmd::WeakenedChecks(command).empty());
  command.posix_acl = false;  // noacl
  ASSERT_EQ(cmd::WeakenedChecks(command).size(), 1U);
  EXPECT_EQ(cmd::WeakenedChecks(command)[0].rfind("noacl: ", 0), 0U);
}

}  // namespace
}  // namespace lamina
