// Who is asking: the caller's identity for one FUSE request.

#ifndef LAMINA_CORE_REQUEST_CONTEXT_H_
#define LAMINA_CORE_REQUEST_CONTEXT_H_

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <vector>

namespace lamina {

class Connection;

struct RequestContext {
  uint64_t unique = 0;
  uint32_t opcode = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  // The caller's umask; meaningful for MKNOD, MKDIR, CREATE and TMPFILE
  // (the kernel leaves applying it to us when POSIX ACLs are negotiated).
  mode_t umask = 0;
  // Supplementary groups the kernel sent with a create-type request
  // (FUSE_CREATE_SUPP_GROUP); empty otherwise.
  std::span<const uint32_t> kernel_groups;
  const Connection* connection = nullptr;

  // The caller's supplementary groups, from the kernel extension when it
  // sent one, else read from /proc/<pid>/status (slow: control checks only).
  std::vector<gid_t> SupplementaryGroups() const;
};

}  // namespace lamina

#endif  // LAMINA_CORE_REQUEST_CONTEXT_H_
