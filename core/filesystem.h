// Filesystem: what Lamina's FUSE core serves.
//
// One virtual method per FUSE operation. Every method has a default that
// answers ENOSYS (or the kernel's expected "not supported" reply), so an
// implementation overrides only what it supports. The dispatcher decodes and
// bounds-checks each request before calling here and encodes the result, so
// implementations never see wire structs or unchecked lengths.
//
// Threading: methods are called concurrently from the session's worker
// threads, including for the same node. Implementations do their own locking.
//
// Lookup counting: every successful Lookup, Mknod, Mkdir, Symlink, Link,
// Create, Tmpfile and every READDIRPLUS record with a node gives the kernel
// one reference on that node; Forget(node, n) returns n of them. A node may
// be dropped when its count reaches zero. InodeTable (core/inode_table.h)
// implements this bookkeeping.

#ifndef LAMINA_CORE_FILESYSTEM_H_
#define LAMINA_CORE_FILESYSTEM_H_

#include <sys/statvfs.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/dirent_writer.h"
#include "core/fs_types.h"
#include "core/request_context.h"
#include "core/result.h"
#include "core/stats.h"

namespace lamina {

class Connection;
struct InitConfig;

class Filesystem {
 public:
  using Ctx = RequestContext;

  virtual ~Filesystem() = default;

  // ---- lifecycle ----

  // Called with the kernel's offer before INIT is answered. `config.want`
  // is prefilled with the core's defaults; add or remove abi::k* bits (for
  // example kPosixAcl, kPassthrough, kFlockLocks) or tune limits.
  virtual void Init(InitConfig& /*config*/) {}
  // Called once the INIT reply is sent: the negotiated set, plus the
  // notifier and backing registry bound to this connection.
  virtual void Connected(Connection& /*connection*/) {}
  // Called when the session ends (unmount or abort), after workers stopped.
  virtual void Destroy() {}
  // The filesystem's own figures for the statistics dump (stats=FILE,
  // SIGUSR1), e.g. the nodes it holds: resource bounds are measured there.
  // Called from the signal-handling thread while requests are served.
  virtual Gauges GetGauges() const { return {}; }

  // ---- names and attributes ----

  // A negative Entry (node 0, entry_timeout > 0) or ENOENT for a missing name.
  virtual Result<Entry> Lookup(const Ctx&, NodeId /*parent*/, std::string_view /*name*/) {
    return Errno{ENOSYS};
  }
  // Returns `nlookup` references taken by replies; no reply is sent.
  virtual void Forget(NodeId /*node*/, uint64_t /*nlookup*/) {}
  virtual Result<Attributes> GetAttr(const Ctx&, NodeId, std::optional<uint64_t> /*fh*/) {
    return Errno{ENOSYS};
  }
  virtual Result<StatxAttributes> Statx(const Ctx&, NodeId, std::optional<uint64_t> /*fh*/,
                                        uint32_t /*flags*/, uint32_t /*mask*/) {
    return Errno{ENOSYS};  // the kernel then falls back to GETATTR
  }
  virtual Result<Attributes> SetAttr(const Ctx&, NodeId, const SetAttrRequest&) {
    return Errno{ENOSYS};
  }
  virtual Result<std::string> ReadLink(const Ctx&, NodeId) { return Errno{ENOSYS}; }
  virtual Result<void> Access(const Ctx&, NodeId, int /*mask*/) { return Errno{ENOSYS}; }
  virtual Result<struct statvfs> StatFs(const Ctx&, NodeId) { return Errno{ENOSYS}; }

  // ---- namespace changes ----

  // `mode` carries the file type bits; ctx.umask is the caller's umask.
  virtual Result<Entry> Mknod(const Ctx&, NodeId /*parent*/, std::string_view /*name*/,
                              mode_t /*mode*/, dev_t /*rdev*/) {
    return Errno{ENOSYS};
  }
  virtual Result<Entry> Mkdir(const Ctx&, NodeId /*parent*/, std::string_view /*name*/,
                              mode_t /*mode*/) {
    return Errno{ENOSYS};
  }
  virtual Result<Entry> Symlink(const Ctx&, NodeId /*parent*/, std::string_view /*name*/,
                                std::string_view /*target*/) {
    return Errno{ENOSYS};
  }
  virtual Result<Entry> Link(const Ctx&, NodeId /*node*/, NodeId /*new_parent*/,
                             std::string_view /*new_name*/) {
    return Errno{ENOSYS};
  }
  virtual Result<void> Unlink(const Ctx&, NodeId /*parent*/, std::string_view /*name*/) {
    return Errno{ENOSYS};
  }
  virtual Result<void> Rmdir(const Ctx&, NodeId /*parent*/, std::string_view /*name*/) {
    return Errno{ENOSYS};
  }
  // `flags` is 0 or RENAME_NOREPLACE / RENAME_EXCHANGE / RENAME_WHITEOUT.
  virtual Result<void> Rename(const Ctx&, NodeId /*parent*/, std::string_view /*name*/,
                              NodeId /*new_parent*/, std::string_view /*new_name*/,
                              uint32_t /*flags*/) {
    return Errno{ENOSYS};
  }

  // ---- files ----

  // `mode` includes S_IFREG; ctx.umask is the caller's umask.
  virtual Result<CreateReply> Create(const Ctx&, NodeId /*parent*/, std::string_view /*name*/,
                                     mode_t /*mode*/, const OpenRequest&) {
    return Errno{ENOSYS};
  }
  // O_TMPFILE: an unnamed regular file in directory `parent`.
  virtual Result<CreateReply> Tmpfile(const Ctx&, NodeId /*parent*/, mode_t /*mode*/,
                                      const OpenRequest&) {
    return Errno{EOPNOTSUPP};
  }
  virtual Result<OpenReply> Open(const Ctx&, NodeId, const OpenRequest&) { return Errno{ENOSYS}; }
  // Fills `out` (sized to the request, at most max_read) and returns the
  // byte count; short counts mean end of file.
  virtual Result<size_t> Read(const Ctx&, NodeId, uint64_t /*fh*/, uint64_t /*offset*/,
                              std::span<std::byte> /*out*/) {
    return Errno{ENOSYS};
  }
  virtual Result<size_t> Write(const Ctx&, NodeId, const WriteRequest&) { return Errno{ENOSYS}; }
  // FLUSH is sent on every close(2) of a descriptor; ENOSYS makes the
  // kernel stop sending it for good.
  virtual Result<void> Flush(const Ctx&, NodeId, uint64_t /*fh*/, uint64_t /*lock_owner*/) {
    return Errno{ENOSYS};
  }
  virtual Result<void> Release(const Ctx&, NodeId, uint64_t /*fh*/, int /*flags*/) { return Ok(); }
  virtual Result<void> Fsync(const Ctx&, NodeId, uint64_t /*fh*/, bool /*datasync*/) {
    return Errno{ENOSYS};
  }
  virtual Result<void> Fallocate(const Ctx&, NodeId, uint64_t /*fh*/, int /*mode*/,
                                 uint64_t /*offset*/, uint64_t /*length*/) {
    return Errno{ENOSYS};
  }
  virtual Result<uint64_t> Lseek(const Ctx&, NodeId, uint64_t /*fh*/, uint64_t /*offset*/,
                                 int /*whence*/) {
    return Errno{ENOSYS};  // the kernel then handles SEEK_DATA/HOLE generically
  }
  virtual Result<size_t> CopyFileRange(const Ctx&, const CopyRangeRequest&) {
    return Errno{ENOSYS};  // the kernel then falls back to read + write
  }
  virtual Result<IoctlReply> Ioctl(const Ctx&, NodeId, const IoctlRequest&,
                                   std::span<std::byte> /*out*/) {
    return Errno{ENOTTY};
  }
  virtual Result<uint64_t> Bmap(const Ctx&, NodeId, uint32_t /*blocksize*/, uint64_t /*block*/) {
    return Errno{ENOSYS};
  }

  // ---- locks (only sent when kPosixLocks / kFlockLocks are negotiated) ----

  virtual Result<struct flock> GetLock(const Ctx&, NodeId, const LockRequest&) {
    return Errno{ENOSYS};
  }
  virtual Result<void> SetLock(const Ctx&, NodeId, const LockRequest&, bool /*wait*/) {
    return Errno{ENOSYS};
  }

  // ---- directories ----

  virtual Result<OpenReply> OpenDir(const Ctx&, NodeId, int /*flags*/) { return Errno{ENOSYS}; }
  // Appends entries starting after `offset` (0 = from the start) until the
  // writer is full or the directory ends. writer.plus() selects READDIRPLUS.
  virtual Result<void> ReadDir(const Ctx&, NodeId, uint64_t /*fh*/, uint64_t /*offset*/,
                               DirentWriter& /*out*/) {
    return Errno{ENOSYS};
  }
  virtual Result<void> ReleaseDir(const Ctx&, NodeId, uint64_t /*fh*/) { return Ok(); }
  virtual Result<void> FsyncDir(const Ctx&, NodeId, uint64_t /*fh*/, bool /*datasync*/) {
    return Errno{ENOSYS};
  }
  virtual Result<void> SyncFs(const Ctx&, NodeId) { return Errno{ENOSYS}; }

  // ---- extended attributes ----

  // `flags` is XATTR_CREATE / XATTR_REPLACE; `setxattr_flags` carries
  // abi::kSetxattrAclKillSgid when SETXATTR_EXT is negotiated.
  virtual Result<void> SetXattr(const Ctx&, NodeId, std::string_view /*name*/,
                                std::span<const std::byte> /*value*/, int /*flags*/,
                                uint32_t /*setxattr_flags*/) {
    return Errno{ENOSYS};
  }
  // With an empty `out`, returns the value's size; otherwise fills `out`
  // and returns the size, or ERANGE when it does not fit.
  virtual Result<size_t> GetXattr(const Ctx&, NodeId, std::string_view /*name*/,
                                  std::span<char> /*out*/) {
    return Errno{ENOSYS};
  }
  // Same size protocol as GetXattr, for the NUL-separated name list.
  virtual Result<size_t> ListXattr(const Ctx&, NodeId, std::span<char> /*out*/) {
    return Errno{ENOSYS};
  }
  virtual Result<void> RemoveXattr(const Ctx&, NodeId, std::string_view /*name*/) {
    return Errno{ENOSYS};
  }
};

}  // namespace lamina

#endif  // LAMINA_CORE_FILESYSTEM_H_
