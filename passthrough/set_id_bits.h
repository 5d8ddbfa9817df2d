// Dropping set-ID bits and file capabilities when an object is written,
// truncated or given away, as a server that negotiated HANDLE_KILLPRIV_V2
// must (the kernel leaves it to the server, and a daemon running with
// CAP_FSETID would otherwise keep them on the layer).
//
// The rule is the kernel's (should_remove_suid, setattr_should_drop_sgid):
// set-user-ID always goes; set-group-ID goes when the file is
// group-executable, or else when the caller is neither in the file's group
// nor privileged (a set-group-ID file without group-execute is a
// mandatory-locking marker, which its own group may keep).

#ifndef LAMINA_PASSTHROUGH_SET_ID_BITS_H_
#define LAMINA_PASSTHROUGH_SET_ID_BITS_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <optional>
#include <vector>

#include "absl/functional/function_ref.h"
#include "core/result.h"

namespace lamina::passthrough {

// Who asks, as the layer sees it (ids mapped to the layer's).
struct SetIdCaller {
  gid_t gid;
  bool privileged;  // root, taken as holding CAP_FSETID
  // The supplementary groups, asked for only when the answer depends on
  // them (a set-group-ID file without group-execute): it may read /proc.
  absl::FunctionRef<std::vector<gid_t>()> groups;
};

// The permission bits `mode` keeps once the caller writes, truncates or
// chowns a file owned by group `file_gid`.
mode_t ModeAfterKill(mode_t mode, gid_t file_gid, const SetIdCaller& caller);

// What to drop besides the set-ID bits.
enum class Capabilities {
  kKeep,  // WRITE and OPEN with O_TRUNC: the kernel checked for file
          // capabilities itself and asked with a SETATTR if there were any
  kDrop,  // SETATTR: security.capability goes too
};

// Drops what the rule says from the object `fd` (O_PATH allowed: nothing
// is opened, so a FIFO or device is safe). `group_before`: the file's group
// before a chown in the same request, which is what the caller's
// membership is checked against (default: its group now). Symlinks and
// directories are left alone (a directory's set-group-ID is inheritance,
// which no write drops).
Result<void> KillPrivileges(int fd, const SetIdCaller& caller, Capabilities capabilities,
                            std::optional<gid_t> group_before = std::nullopt);

}  // namespace lamina::passthrough

#endif  // LAMINA_PASSTHROUGH_SET_ID_BITS_H_
