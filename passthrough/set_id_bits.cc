#include "passthrough/set_id_bits.h"

#include <sys/stat.h>
#include <sys/xattr.h>

#include <algorithm>
#include <string>

namespace lamina::passthrough {

mode_t ModeAfterKill(mode_t mode, gid_t file_gid, const SetIdCaller& caller) {
  mode_t kept = mode & 07777 & ~S_ISUID;
  if ((mode & S_ISGID) != 0) {
    const bool executable = (mode & S_IXGRP) != 0;
    auto in_group = [&] {
      if (caller.privileged || caller.gid == file_gid) return true;
      const std::vector<gid_t> groups = caller.groups();
      return std::find(groups.begin(), groups.end(), file_gid) != groups.end();
    };
    if (executable || !in_group()) kept &= ~S_ISGID;
  }
  return kept;
}

Result<void> KillPrivileges(int fd, const SetIdCaller& caller, Capabilities capabilities,
                            std::optional<gid_t> group_before) {
  struct stat st;
  if (fstat(fd, &st) != 0) return LastErrno();
  if (S_ISLNK(st.st_mode) || S_ISDIR(st.st_mode)) return Ok();
  // The magic link reaches the object itself and opens nothing.
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  const mode_t kept = ModeAfterKill(st.st_mode, group_before.value_or(st.st_gid), caller);
  if (kept != (st.st_mode & 07777) && chmod(path.c_str(), kept) != 0) return LastErrno();
  // EPERM: a daemon without CAP_SETFCAP, which could not have set one
  // either (copy-up skips what it may not copy).
  if (capabilities == Capabilities::kDrop && S_ISREG(st.st_mode) &&
      removexattr(path.c_str(), "security.capability") != 0 && errno != ENODATA &&
      errno != EOPNOTSUPP && errno != EPERM) {
    return LastErrno();
  }
  return Ok();
}

}  // namespace lamina::passthrough
