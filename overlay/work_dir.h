// The upper's work directory: work/work, where copy-ups and whiteouts are
// staged and which every mount empties, and work/index, the inode index.
//
// Whoever mounts owns the workdir and may have left anything in it, a
// symlink to another directory included. So nothing found there is trusted:
// each name is resolved relative to a descriptor, one component at a time,
// never through a symlink and never into another mount, and emptying
// removes links instead of following them. Where the kernel finds something
// else than a directory at work/work it removes it and makes a fresh one;
// at work/index (with the index on) it refuses the mount with ENOTDIR.
// Both are done the same way here.

#ifndef LAMINA_OVERLAY_WORK_DIR_H_
#define LAMINA_OVERLAY_WORK_DIR_H_

#include <string>

#include "absl/status/statusor.h"

namespace lamina::overlay {

struct WorkDirs {
  int staging_fd = -1;  // O_PATH descriptor of work/work
  int index_fd = -1;    // O_PATH descriptor of work/index; -1 without the index
};

struct WorkDirOptions {
  // Leave work/work/incompat/volatile behind (the kernel's volatile marker).
  bool volatile_mode = false;
  // Prepare work/index (kept across mounts, never emptied).
  bool index = false;
};

// Prepares the work directory `work_fd` (`work_path` names it in errors):
// work/work made, replaced or emptied; a volatile mount's marker there
// refuses the mount, as on the kernel; work/index opened or made. The
// caller owns the descriptors returned.
absl::StatusOr<WorkDirs> PrepareWorkDirs(int work_fd, const std::string& work_path,
                                         const WorkDirOptions& options);

// Opens `name` (one component) in `dir_fd` without following a symlink or
// crossing into another mount: ELOOP for a symlink, EXDEV for a mount point.
int OpenBeneath(int dir_fd, const char* name, int flags);

// Removes everything in the directory `dir_fd` with *at() calls: symlinks
// are removed, not followed; mount points are left alone. What cannot be
// removed is logged and left.
void EmptyDirectory(int dir_fd);

}  // namespace lamina::overlay

#endif  // LAMINA_OVERLAY_WORK_DIR_H_
