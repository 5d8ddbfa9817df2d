// Users of a passthrough mount get what the same users get on the source
// directory, and nothing more: the permission matrix (permission_matrix.h)
// as root, capability-less root, an owner, a group member and a stranger,
// through a root daemon mounted with allow_other and *without*
// default_permissions (the daemon turns the kernel's checks on itself),
// against the plain twin directory. Then the reported attack, step by step,
// through `laminafs passthrough -o allow_other`.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <tuple>
#include <vector>

#include "integration/harness/mount_harness.h"
#include "integration/passthrough/passthrough_fixture.h"
#include "integration/passthrough/permission_matrix.h"

namespace lamina::testing {
namespace {

using MatrixParam = std::tuple<PassthroughParam, Principal>;

class PassthroughPermissionMatrixTest : public ::testing::TestWithParam<MatrixParam> {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0U) << "needs root";
    MountSetup setup;
    setup.mount_options = {"allow_other"};  // no default_permissions
    mount_ = std::make_unique<MountedPassthrough>(std::get<0>(GetParam()).mode, setup);
  }
  void TearDown() override { mount_.reset(); }

  std::unique_ptr<MountedPassthrough> mount_;
};

TEST_P(PassthroughPermissionMatrixTest, SameOutcomesAndStateAsThePlainDirectory) {
  const Principal& who = std::get<1>(GetParam());
  const std::string source = mount_->source() + "/m", twin = mount_->twin() + "/m";
  for (const std::string& root : {source, twin}) {
    ASSERT_EQ(mkdir(root.c_str(), 0755), 0);
    ASSERT_EQ(BuildMatrixTree(root), "");
  }
  ASSERT_EQ(StateDifference(DescribeMatrixState(source), DescribeMatrixState(twin)), "");
  const std::vector<std::vector<std::string>> outcomes =
      RunMatrixAs(who, {mount_->mnt() + "/m", twin});
  ASSERT_EQ(outcomes.size(), 2U);
  ASSERT_FALSE(outcomes[0].empty()) << "the child did not run";
  ASSERT_EQ(outcomes[0].size(), outcomes[1].size()) << outcomes[0].front();
  for (size_t i = 0; i < outcomes[0].size(); ++i) {
    EXPECT_EQ(outcomes[0][i], outcomes[1][i]) << "through the mount (left) and on the plain twin";
  }
  EXPECT_EQ(StateDifference(DescribeMatrixState(source), DescribeMatrixState(twin)), "")
      << "- the source after the operations through the mount, + the plain twin";
}

std::string MatrixName(const ::testing::TestParamInfo<MatrixParam>& info) {
  return std::string(std::get<0>(info.param).name) + "_" + std::get<1>(info.param).name;
}

INSTANTIATE_TEST_SUITE_P(passthrough, PassthroughPermissionMatrixTest,
                         ::testing::Combine(LAMINA_PASSTHROUGH_PARAMS,
                                            ::testing::ValuesIn(MatrixPrincipals())),
                         MatrixName);

}  // namespace
}  // namespace lamina::testing
