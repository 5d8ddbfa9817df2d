// PassthroughFs: construction, negotiation, names and attributes.

#include "passthrough/passthrough_fs.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "core/backing_registry.h"
#include "core/connection.h"
#include "core/notifier.h"
#include "core/resource_limits.h"
#include "passthrough/credentials.h"
#include "passthrough/handles.h"
#include "passthrough/set_id_bits.h"
#include "spdlog/spdlog.h"

namespace lamina {

using passthrough::CheckName;
using passthrough::Inode;
using passthrough::InodeKey;

namespace {

Result<struct stat> StatPath(int fd) {
  struct stat st;
  if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return LastErrno();
  return st;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PassthroughFs>> PassthroughFs::Create(PassthroughOptions options) {
  const rlim_t file_limit = options.descriptor_limit ? SetDescriptorLimit(*options.descriptor_limit)
                                                     : RaiseDescriptorLimit();
  const DescriptorPlan plan = DescriptorPlan::For(file_limit, options.max_nodes, kMaxNodesCap);
  options.max_nodes = plan.nodes;
  int fd = open(options.source.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, "opening source " + options.source);
  struct stat st;
  struct statfs sfs;
  if (fstat(fd, &st) != 0 || fstatfs(fd, &sfs) != 0) {
    int error = errno;
    close(fd);
    return ErrnoToStatus(error, "examining source " + options.source);
  }
  bool on_overlay = static_cast<unsigned long>(sfs.f_type) == OVERLAYFS_SUPER_MAGIC;
  return std::unique_ptr<PassthroughFs>(
      new PassthroughFs(std::move(options), plan, fd, st, on_overlay));
}

PassthroughFs::PassthroughFs(PassthroughOptions options, const DescriptorPlan& plan, int root_fd,
                             const struct stat& root, bool source_on_overlay)
    : options_(std::move(options)),
      source_on_overlay_(source_on_overlay),
      budget_(plan, geteuid()),
      shedder_(options_.max_nodes.value_or(0),
               [this](size_t count) { return PickNodesToShed(count); }),
      cached_nodes_(options_.max_cached_nodes,
                    [this](size_t count) { return table_.LeastRecentlyUsed(count); }) {
  table_.SetRoot(InodeKey::Of(root), std::make_shared<Inode>(root_fd, root.st_mode));
  if (!ParkingPossible(root_fd)) {
    spdlog::debug(
        "files cannot be reopened by handle here: past the node limit, the kernel "
        "is asked to forget nodes");
  }
}

PassthroughFs::~PassthroughFs() {
  if (handle_mount_fd_ >= 0) close(handle_mount_fd_);
}

void PassthroughFs::Init(InitConfig& config) {
  if (options_.max_write != 0) config.max_write = options_.max_write;
  // Locks stay in the kernel, which keeps them per mount. POSIX record
  // locks forwarded to one open file per FUSE open would make two
  // descriptors of one process conflict; a forwarded flock(2) that waits
  // blocks a worker for as long as another user holds the lock, and with
  // as many waiters as workers the holder's unlock found no worker: the
  // mount hung for good.
  config.want &= ~(abi::kPosixLocks | abi::kFlockLocks);
  // FUSE_POSIX_ACL also turns the kernel's permission checks on: with it,
  // a user of the mount gets no access the source would refuse them, even
  // if the mount options lack default_permissions.
  if (options_.posix_acl && config.KernelOffers(abi::kPosixAcl | abi::kDontMask)) {
    config.want |= abi::kPosixAcl | abi::kDontMask;
  } else if (options_.posix_acl) {
    spdlog::warn(
        "the kernel does not offer FUSE_POSIX_ACL: permissions are checked only if the mount "
        "has default_permissions, and without ACLs");
  }
  // FUSE passthrough reads a backing file through a file the kernel opens
  // with the caller's flags, never O_NOATIME: on a noatime mount the reads
  // are the daemon's (its descriptors have O_NOATIME).
  if (options_.noatime && options_.passthrough == PassthroughMode::kOn) {
    spdlog::warn("noatime: serving file I/O in the daemon (FUSE passthrough would move atimes)");
  }
  if (options_.passthrough != PassthroughMode::kOff && !options_.noatime &&
      config.KernelOffers(abi::kPassthrough)) {
    config.want |= abi::kPassthrough;
    // Writeback caching and passthrough exclude each other (the kernel
    // silently drops passthrough when both are asked for).
    config.want &= ~abi::kWritebackCache;
    config.max_stack_depth = source_on_overlay_ ? 2 : 1;
  } else if (options_.passthrough == PassthroughMode::kOn) {
    spdlog::warn("the kernel does not offer FUSE passthrough; serving file I/O in the daemon");
  }
}

void PassthroughFs::Connected(Connection& connection) {
  connection_ = &connection;
  if (connection.Has(abi::kPassthrough)) backing_ = connection.backing();
  shedder_.Connected(connection);
  cached_nodes_.Connected(connection);
}

Gauges PassthroughFs::GetGauges() const {
  return {{"nodes", node_count()},
          {"node_descriptors", node_descriptors()},
          {"descriptor_limit", max_nodes()},
          {"nodes_offered", nodes_offered()},
          {"nodes_parked", nodes_parked()},
          {"open_descriptors", budget_.handles_used()},
          {"open_nodes", budget_.pins_used()},
          {"opens_refused", budget_.refusals()}};
}

bool PassthroughFs::passthrough_active() const {
  return backing_ != nullptr && backing_->available();
}

Result<PassthroughFs::InodePtr> PassthroughFs::Dir(NodeId id) const {
  InodePtr inode = Node(id);
  if (inode == nullptr) return Errno{ESTALE};
  if (!inode->is_dir()) return Errno{ENOTDIR};
  return inode;
}

Result<Attributes> PassthroughFs::AttributesOf(const Inode& inode) const {
  Result<struct stat> st = StatPath(inode.fd());
  if (!st.ok()) return Errno{st.error()};
  return Attributes{*st, options_.attr_timeout};
}

Result<Entry> PassthroughFs::MakeEntry(int fd) {
  Result<struct stat> st = StatPath(fd);
  if (!st.ok()) {
    close(fd);
    return Errno{st.error()};
  }
  bool used = false;
  const InodeKey key = InodeKey::Of(*st);
  auto make = [&] {
    used = true;
    return std::make_shared<Inode>(fd, st->st_mode);
  };
  Table::Handle handle = table_.Acquire(key, make);
  if (!used && !IsSameFile(*handle.node, fd, st->st_mode)) {
    // The inode number now belongs to another file: the node's file was
    // deleted while parked, and the kernel has not forgotten the node yet.
    // The new file gets a node of its own.
    table_.Unmap(key, handle.id);
    Forget(handle.id, 1);
    handle = table_.Acquire(key, make);
  }
  if (!used) {
    // The node has a descriptor already, or gets this one if parked.
    if (handle.node->parked()) {
      (void)Unpark(*handle.node, fd);
    } else {
      close(fd);
    }
  }
  // Only a new node can push the table over the limit. The offer is sent
  // by the notifier's thread: the kernel may need locks this request holds.
  if (used) {
    shedder_.Added(Load());
    cached_nodes_.Added(table_.size());
  }
  Entry entry;
  entry.node = handle.id;
  entry.attr = *st;
  entry.entry_timeout = options_.entry_timeout;
  entry.attr_timeout = options_.attr_timeout;
  return entry;
}

Result<Entry> PassthroughFs::LookupChild(const Inode& parent, std::string_view name) {
  int fd = openat(parent.fd(), std::string(name).c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    // Out of descriptors (the limit is above what is left, or open files
    // took the rest): shed nodes now so that later lookups succeed again.
    if (error == EMFILE || error == ENFILE) shedder_.OutOfDescriptors(Load());
    return Errno{error};
  }
  // Only a name that exists may add a node, so negative lookups never wait.
  shedder_.MakeRoom([this] { return Load(); });
  return MakeEntry(fd);
}

Result<Entry> PassthroughFs::Lookup(const Ctx&, NodeId parent, std::string_view name) {
  // The kernel never looks up "." or ".." (no NFS export support); refusing
  // them keeps ".." of the root from leaving the source.
  if (!CheckName(name).ok()) return Errno{EINVAL};
  Result<InodePtr> dir = Dir(parent);
  if (!dir.ok()) return Errno{dir.error()};
  Result<Entry> entry = LookupChild(**dir, name);
  if (entry.error() == ENOENT && options_.negative_timeout > 0) {
    Entry negative;
    negative.entry_timeout = options_.negative_timeout;
    return negative;
  }
  return entry;
}

void PassthroughFs::Forget(NodeId node, uint64_t nlookup) {
  // The returned node (if removed) closes its descriptor here, outside
  // the table's lock.
  if (InodePtr gone = table_.Forget(node, nlookup)) {
    std::lock_guard lock(gone->park_mu());
    if (gone->parked()) {
      gone->Unpark(-1);  // nothing to reopen: the kernel is done with it
      parked_now_.fetch_sub(1, std::memory_order_relaxed);
    }
    shedder_.Forgotten();
    cached_nodes_.Forgotten();
  }
}

Result<Attributes> PassthroughFs::GetAttr(const Ctx&, NodeId node, std::optional<uint64_t>) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  return AttributesOf(*inode);
}

Result<StatxAttributes> PassthroughFs::Statx(const Ctx&, NodeId node, std::optional<uint64_t>,
                                             uint32_t flags, uint32_t mask) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  StatxAttributes out;
  int sync = static_cast<int>(flags) & AT_STATX_SYNC_TYPE;
  if (statx(inode->fd(), "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | sync, mask | STATX_BTIME,
            &out.attr) != 0) {
    return LastErrno();
  }
  out.timeout = options_.attr_timeout;
  return out;
}

Result<Attributes> PassthroughFs::SetAttr(const Ctx& ctx, NodeId node, const SetAttrRequest& req) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  const std::string proc = inode->ProcPath();
  // An open that passes through keeps no descriptor: the calls below then
  // reach the file by its node, which is the same file.
  const int fh_fd = req.fh ? passthrough::FileHandle::Decode(*req.fh).fd : -1;
  // Set-ID bits are judged against the file as it was before a chown.
  std::optional<struct stat> before;
  if (req.KillsPrivileges() && !req.Has(abi::kFattrMode)) {
    Result<struct stat> st = StatPath(inode->fd());
    if (!st.ok()) return Errno{st.error()};
    before = *st;
  }
  if (req.Has(abi::kFattrMode)) {
    if (S_ISLNK(inode->type())) return Errno{EOPNOTSUPP};
    int rc = fh_fd >= 0 ? fchmod(fh_fd, req.mode & 07777) : chmod(proc.c_str(), req.mode & 07777);
    if (rc != 0) return LastErrno();
  }
  if (req.Has(abi::kFattrUid) || req.Has(abi::kFattrGid)) {
    uid_t uid = req.Has(abi::kFattrUid) ? req.uid : static_cast<uid_t>(-1);
    gid_t gid = req.Has(abi::kFattrGid) ? req.gid : static_cast<gid_t>(-1);
    if (fchownat(inode->fd(), "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
      return LastErrno();
    }
  }
  if (req.Has(abi::kFattrSize)) {
    int rc = fh_fd >= 0 ? ftruncate(fh_fd, static_cast<off_t>(req.size))
                        : truncate(proc.c_str(), static_cast<off_t>(req.size));
    if (rc != 0) return LastErrno();
  }
  if (req.Has(abi::kFattrAtime) || req.Has(abi::kFattrMtime)) {
    struct timespec times[2];
    times[0] = req.Has(abi::kFattrAtime) ? req.atime : timespec{0, UTIME_OMIT};
    times[1] = req.Has(abi::kFattrMtime) ? req.mtime : timespec{0, UTIME_OMIT};
    int rc = fh_fd >= 0 ? futimens(fh_fd, times) : utimensat(AT_FDCWD, proc.c_str(), times, 0);
    if (rc != 0) return LastErrno();
  }
  // HANDLE_KILLPRIV_V2 leaves dropping set-ID bits and file capabilities
  // to us (the daemon has CAP_FSETID, so the source's filesystem would not):
  // FATTR_KILL_SUIDGID on a chown or on a truncate by a caller without
  // CAP_FSETID, or a SETATTR that changes nothing: chown(f, -1, -1), or the
  // kernel's own file_remove_privs(). The latter is a mode change the kernel
  // has not checked, so only a caller who may chmod the file gets it; the
  // writes it may stand for drop the bits without it (Write, and kernel
  // backing files registered without CAP_FSETID).
  if (before) {
    const bool may_chmod = ctx.uid == before->st_uid ||
                           (ctx.uid == 0 && passthrough::CallerHasCapability(ctx, CAP_FOWNER));
    if (req.Has(abi::kFattrKillSuidgid) || may_chmod) {
      auto groups = [&] { return ctx.SupplementaryGroups(); };
      Result<void> killed =
          passthrough::KillPrivileges(inode->fd(), {ctx.gid, ctx.uid == 0, groups},
                                      passthrough::Capabilities::kDrop, before->st_gid);
      if (!killed.ok()) return Errno{killed.error()};
    }
  }
  return AttributesOf(*inode);
}

Result<std::string> PassthroughFs::ReadLink(const Ctx&, NodeId node) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  std::string target(PATH_MAX, '\0');
  ssize_t n = readlinkat(inode->fd(), "", target.data(), target.size());
  if (n < 0) return LastErrno();
  target.resize(static_cast<size_t>(n));
  return target;
}

Result<void> PassthroughFs::Access(const Ctx& ctx, NodeId node, int mask) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  Result<struct stat> st = StatPath(inode->fd());
  if (!st.ok()) return Errno{st.error()};
  if (mask == F_OK) return Ok();
  mode_t mode = st->st_mode;
  if (ctx.uid == 0) {
    // Root may do anything but execute a file no one may execute.
    bool exec_ok = S_ISDIR(mode) || (mode & (S_IXUSR | S_IXGRP | S_IXOTH)) != 0;
    return (mask & X_OK) == 0 || exec_ok ? Ok() : Result<void>(Errno{EACCES});
  }
  int shift = 0;  // "other" bits
  if (st->st_uid == ctx.uid) {
    shift = 6;
  } else {
    bool member = st->st_gid == ctx.gid;
    for (gid_t g : member ? std::vector<gid_t>{} : ctx.SupplementaryGroups()) {
      member = member || g == st->st_gid;
    }
    if (member) shift = 3;
  }
  int allowed = static_cast<int>((mode >> shift) & 7);
  return (mask & ~allowed) == 0 ? Ok() : Result<void>(Errno{EACCES});
}

Result<struct statvfs> PassthroughFs::StatFs(const Ctx&, NodeId node) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  struct statvfs st;
  if (fstatvfs(inode->fd(), &st) != 0) return LastErrno();
  return st;
}

}  // namespace lamina
