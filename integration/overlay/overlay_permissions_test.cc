// Users of Lamina's overlay get what the same users get on kernel overlayfs
// over identical layers: the permission matrix (permission_matrix.h) as
// root, capability-less root, an owner, a group member and a stranger, with
// the tree in the lower layer (every change copies up) and in the upper.
// Each operation's outcome and the merged view left behind are compared.

#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <tuple>
#include <vector>

#include "integration/overlay/overlay_harness.h"
#include "integration/passthrough/permission_matrix.h"

namespace lamina::testing {
namespace {

enum class TreeLayer { kLower, kUpper };

// Differences from kernel overlayfs that remain (CompareMatrix: an entry
// that no longer differs fails the test, so it goes with its fix).
bool LacksCapabilities(const Principal& who) {
  return who.uid != 0 || who.drop_capabilities;
}
const std::vector<KnownDifference>& KnownDifferences() {
  static const std::vector<KnownDifference> known = {
      // A FUSE protocol limit: the SETATTR that changes nothing is also how
      // the kernel asks before a passthrough write, which must not fail.
      {"chown(f, -1, -1) of another's set-ID file answers OK and changes nothing "
       "(kernel: EPERM)",
       {"chown-none setid-chown-none:"},
       [](const Principal& who) { return who.uid != kMatrixOwner && LacksCapabilities(who); }},
  };
  return known;
}

void PrintTo(TreeLayer layer, std::ostream* os) {
  *os << (layer == TreeLayer::kLower ? "lower" : "upper");
}

using MatrixParam = std::tuple<TreeLayer, Principal>;

class OverlayPermissionMatrixTest : public OverlayPair,
                                    public ::testing::WithParamInterface<MatrixParam> {};

TEST_P(OverlayPermissionMatrixTest, SameOutcomesAndViewAsKernelOverlayfs) {
  ASSERT_EQ(geteuid(), 0U) << "needs root";
  const auto& [layer, who] = GetParam();
  ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);  // other users reach the mounts
  // Lamina's defaults, which renames of lower directories and hard links
  // of lower files depend on.
  kernel_options_ = "redirect_dir=on,index=on";
  // The tree goes into the layers between building and mounting them.
  BuildLayers({{"d m"}}, {});
  for (const std::string& set : set_) {
    const std::string root = set + (layer == TreeLayer::kLower ? "/lower0/m" : "/upper/m");
    if (layer == TreeLayer::kUpper) {
      ASSERT_EQ(mkdir(root.c_str(), 0755), 0);
    }
    ASSERT_EQ(chmod(root.c_str(), 0755), 0);
    ASSERT_EQ(BuildMatrixTree(root), "");
  }
  MountBoth();
  const std::string lamina = lamina_root() + "/m", kernel = kernel_root() + "/m";
  ASSERT_EQ(StateDifference(DescribeMatrixState(lamina), DescribeMatrixState(kernel)), "");
  const std::vector<std::vector<std::string>> outcomes = RunMatrixAs(who, {lamina, kernel});
  EXPECT_EQ(CompareMatrix(who, outcomes, DescribeMatrixState(lamina), DescribeMatrixState(kernel),
                          KnownDifferences()),
            "")
      << "left: Lamina, right: kernel overlayfs";
}

std::string MatrixName(const ::testing::TestParamInfo<MatrixParam>& info) {
  return std::string(std::get<0>(info.param) == TreeLayer::kLower ? "Lower" : "Upper") + "_" +
         std::get<1>(info.param).name;
}

INSTANTIATE_TEST_SUITE_P(overlay, OverlayPermissionMatrixTest,
                         ::testing::Combine(::testing::Values(TreeLayer::kLower, TreeLayer::kUpper),
                                            ::testing::ValuesIn(MatrixPrincipals())),
                         MatrixName);

}  // namespace
}  // namespace lamina::testing
