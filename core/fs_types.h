// Value types that cross the Filesystem interface.
//
// They are protocol-neutral (struct stat, seconds as doubles) so a filesystem
// never touches wire structs; the dispatcher encodes them.

#ifndef LAMINA_CORE_FS_TYPES_H_
#define LAMINA_CORE_FS_TYPES_H_

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "core/fuse_abi.h"

namespace lamina {

// The kernel's handle for an inode. 1 is the root; 0 means "no inode".
using NodeId = uint64_t;
inline constexpr NodeId kRootNodeId = abi::kRootId;

// A name handed to the kernel. Every Entry with node != 0 that reaches the
// kernel adds one to that node's lookup count; FORGET takes it back.
// node == 0 with entry_timeout > 0 is a negative entry: the kernel caches
// "this name does not exist" for that long and nothing is counted.
struct Entry {
  NodeId node = 0;
  uint64_t generation = 0;
  struct stat attr {};
  double entry_timeout = 0;
  double attr_timeout = 0;
};

struct Attributes {
  struct stat attr {};
  double timeout = 0;
};

struct StatxAttributes {
  struct statx attr {};
  double timeout = 0;
};

// What OPEN, OPENDIR and CREATE hand back.
struct OpenReply {
  uint64_t fh = 0;
  // abi::kFopen* bits (KEEP_CACHE, DIRECT_IO, CACHE_DIR, NOFLUSH, ...).
  uint32_t open_flags = 0;
  // A backing id from BackingRegistry; when > 0 the dispatcher adds
  // FOPEN_PASSTHROUGH and the kernel serves read/write/mmap itself.
  int32_t backing_id = 0;
};

struct CreateReply {
  Entry entry;
  OpenReply open;
};

// SETATTR: which fields change, as abi::kFattr* bits, and their values.
struct SetAttrRequest {
  uint32_t valid = 0;
  std::optional<uint64_t> fh;
  mode_t mode = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t size = 0;
  struct timespec atime {};  // tv_nsec may be UTIME_NOW
  struct timespec mtime {};
  struct timespec ctime {};

  bool Has(uint32_t bit) const { return (valid & bit) != 0; }
  // Whether the request drops set-user-ID, set-group-ID (when
  // group-executable) and file capabilities, as HANDLE_KILLPRIV_V2 leaves
  // to the server: FATTR_KILL_SUIDGID (chown of a non-directory, truncate
  // by a caller without CAP_FSETID), or a SETATTR that changes no
  // attribute at all, which is how the kernel's file_remove_privs() reaches
  // the server. It sends one before a FUSE passthrough write by such a
  // caller (the write itself never reaches the server) and for
  // chown(f, -1, -1).
  bool KillsPrivileges() const { return Has(abi::kFattrKillSuidgid) || (valid & kChanges) == 0; }
  // No attribute to change and no FATTR_KILL_SUIDGID: chown(f, -1, -1), or
  // the kernel's file_remove_privs(). To the server that is a mode change
  // the kernel has not checked.
  bool ChangesNothing() const { return (valid & (kChanges | abi::kFattrKillSuidgid)) == 0; }

  static constexpr uint32_t kChanges = abi::kFattrMode | abi::kFattrUid | abi::kFattrGid |
                                       abi::kFattrSize | abi::kFattrAtime | abi::kFattrMtime |
                                       abi::kFattrAtimeNow | abi::kFattrMtimeNow | abi::kFattrCtime;
};

struct OpenRequest {
  int flags = 0;              // O_* flags of the open(2)
  bool kill_suidgid = false;  // HANDLE_KILLPRIV_V2: O_TRUNC by a non-owner
};

struct WriteRequest {
  uint64_t fh = 0;
  uint64_t offset = 0;
  std::span<const std::byte> data;
  bool kill_suidgid = false;  // HANDLE_KILLPRIV_V2
  int flags = 0;              // O_* flags of the open file
};

struct LockRequest {
  uint64_t fh = 0;
  uint64_t owner = 0;
  struct flock lock {};
  bool is_flock = false;  // flock(2) rather than fcntl(2) locks
};

struct IoctlRequest {
  uint64_t fh = 0;
  uint32_t cmd = 0;
  uint32_t flags = 0;  // abi::kIoctl*
  std::span<const std::byte> in;
  uint32_t out_size = 0;
};

struct IoctlReply {
  int32_t result = 0;
  size_t out_size = 0;  // bytes written to the output buffer
};

struct CopyRangeRequest {
  NodeId node_in = 0;
  uint64_t fh_in = 0;
  uint64_t off_in = 0;
  NodeId node_out = 0;
  uint64_t fh_out = 0;
  uint64_t off_out = 0;
  uint64_t len = 0;
  uint64_t flags = 0;
};

}  // namespace lamina

#endif  // LAMINA_CORE_FS_TYPES_H_
