// Lower layers reached only through private, read-only clones of their
// mounts, as kernel overlayfs reaches its lowers.
//
// The overlay never writes a lower layer, but a bug that reaches a lower
// object (a descriptor reopened for writing, a FUSE passthrough backing file
// the kernel reopens with the caller's flags) would otherwise land in it.
// Each lower root is therefore a recursive clone of its mount
// (open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)) made read-only, noatime and
// private: everything opened relative to it, reopened through
// /proc/self/fd/N or decoded with open_by_handle_at stays on the clone, so
// the kernel refuses any write with EROFS and never updates an access time.
// A clone shares the layer's superblock: st_dev, inode numbers and file
// handles are those of the layer itself.
//
// Who may clone: a daemon with CAP_SYS_ADMIN over its mount namespace (root,
// or root of a user namespace that owns its mount namespace) clones
// directly; any other daemon asks a helper child that enters a user and a
// mount namespace of its own and passes the clone back over a socket. In a
// user namespace the inherited atime flags are locked, so such clones are
// read-only but not noatime, and readers open lower objects with O_NOATIME
// (Layer::noatime says which). Where no clone can be made (user namespaces
// disabled, an old kernel) the layer's own mount is used, as before, and the
// reason is logged once.

#ifndef LAMINA_OVERLAY_LOWER_MOUNT_H_
#define LAMINA_OVERLAY_LOWER_MOUNT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lamina::overlay {

// The root of one lower layer, as the overlay holds it.
struct LowerRoot {
  int fd = -1;             // O_PATH descriptor of the root (on the clone if any)
  bool read_only = false;  // fd is on a read-only clone: writes fail with EROFS
  bool noatime = false;    // fd is on a noatime clone: reads never touch atimes
};

// Opens the lower layer roots `paths` (symlinks in the paths are followed,
// as the kernel follows the layer paths it is given). An error only when a
// path cannot be opened as a directory; a root that could not be cloned is
// returned on its own mount (read_only false).
absl::StatusOr<std::vector<LowerRoot>> OpenLowerRoots(const std::vector<std::string>& paths);

}  // namespace lamina::overlay

#endif  // LAMINA_OVERLAY_LOWER_MOUNT_H_
