// A Lamina overlay and a kernel overlay over identical layers, side by side.
//
// Each test builds the same layers twice (one set per system), mounts
// Lamina's OverlayFs in-process and kernel overlayfs with mount(2), runs the
// same operations on both, and compares what they report. A difference from
// the kernel fails the test unless the test says Lamina deliberately differs.
//
// Neither overlay may change its lower layers: each set's lowers are
// digested before their first mount and checked at tear-down, after both
// are unmounted (see UntouchedLayers). The kernel's, mounted noatime and
// read-only by overlayfs, check the check.

#ifndef LAMINA_INTEGRATION_OVERLAY_OVERLAY_HARNESS_H_
#define LAMINA_INTEGRATION_OVERLAY_OVERLAY_HARNESS_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/fuse_server.h"
#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"
#include "integration/harness/untouched_layers.h"
#include "overlay/overlay_fs.h"

namespace lamina::testing {

// Writes a layer tree under `root` from a compact spec, one entry per line:
//   "d path"            directory
//   "f path content"    regular file
//   "l path target"     symlink
//   "w path"            0/0 character-device whiteout
//   "o path"            directory marked opaque (trusted.overlay.opaque=y)
//   "h path existing"   hard link to an earlier entry
//   "x path name value" extended attribute of an earlier entry
void BuildLayer(const std::string& root, const std::vector<std::string>& spec);

// A canonical description of the tree under `root`: one sorted line per
// object with type, mode, size, link count and content (or link target).
std::string DescribeTree(const std::string& root);

// "ok" or the errno's name, for comparing outcomes.
std::string Outcome(int rc);

class OverlayPair : public ::testing::Test {
 protected:
  // Layers, top first; each built twice. BuildLayers() then MountBoth().
  void Mount(const std::vector<std::vector<std::string>>& lowers,
             const std::vector<std::string>& upper = {}, bool with_upper = true);
  // Mount() in two steps, for a test that prepares the layers further
  // before either overlay sees them.
  void BuildLayers(const std::vector<std::vector<std::string>>& lowers,
                   const std::vector<std::string>& upper = {}, bool with_upper = true);
  void MountBoth();
  // Each mount first records the digests of its set's lowers, if not yet.
  void MountLamina(int set = 0);
  void UnmountLamina();
  void MountKernel();
  void UnmountKernel();
  // Unmounts both, then mounts kernel overlayfs (default options, plus
  // `options`) on the layers Lamina wrote, at kernel_root().
  void MountKernelOnLaminaLayers(const std::string& options = "");
  // Unmounts both, then mounts Lamina (lamina_options_) on the layers the
  // kernel wrote, at lamina_root().
  void MountLaminaOnKernelLayers();
  // Unmounts both, then checks that no lower layer changed.
  void TearDown() override;

  // For a test that changes lower layers itself: checks them, runs
  // `change`, records them again (UntouchedLayers::Change). Unmount first,
  // and mount again after, unless the test means to change them beside a
  // live mount.
  void ChangeLowers(const std::string& why, const std::function<void()>& change) {
    lowers_.Change(why, change);
  }
  // The check TearDown() makes; it stops watching the lowers.
  void ExpectLowersUntouched() { lowers_.ExpectUntouched(); }

  // Runs `op(root)` on both mounts and expects equal results.
  void ExpectSame(const std::function<std::string(const std::string& root)>& op,
                  const std::string& what);

  std::string lamina_root() const { return lamina_mnt_; }
  std::string kernel_root() const { return kernel_mnt_; }
  std::string lamina_upper() const { return set_[0] + "/upper"; }
  std::string kernel_upper() const { return set_[1] + "/upper"; }
  std::string lamina_lower(int i) const { return set_[0] + "/lower" + std::to_string(i); }
  std::string lamina_work() const { return set_[0] + "/work"; }
  std::string kernel_work() const { return set_[1] + "/work"; }

  // Set before Mount() to change either side's options.
  OverlayOptions lamina_options_;
  std::string kernel_options_;  // extra kernel mount options, e.g. "redirect_dir=on"
  // Lamina served over FUSE-over-io_uring (the test sets enable_uring).
  bool lamina_io_uring_ = false;
  // Lamina mounted with default_permissions (the kernel checks modes).
  bool lamina_default_permissions_ = true;

  TempDir dir_;
  std::string set_[2];
  int lower_count_ = 0;
  bool with_upper_ = true;
  std::string lamina_mnt_;
  std::string kernel_mnt_;
  std::unique_ptr<OverlayFs> fs_;
  std::unique_ptr<FuseServer> server_;
  bool kernel_mounted_ = false;

 private:
  void WatchLowers(int set);

  UntouchedLayers lowers_;
};

}  // namespace lamina::testing

#endif  // LAMINA_INTEGRATION_OVERLAY_OVERLAY_HARNESS_H_
