// OverlayFs: opening files, data I/O and attribute changes.
//
// Opening for writing (or truncating) copies a lower file up first; reads
// of lower files go straight to the lower file. With kernel passthrough,
// the node's backing file is registered once per kernel inode and shared by
// all its opens. The kernel pins that backing file to the inode until the
// last such open closes, and refuses any other open of the inode meanwhile,
// so an open of a node copied up while opens of its lower file are live
// renumbers the node and answers ESTALE: the kernel retries the open with a
// fresh lookup, which gets a new inode for the upper file. The old opens
// keep reading the lower file (as on the kernel's overlayfs before 4.19).
//
// An open that passes through keeps no descriptor here: the kernel holds a
// backing file of its own, opened with the open's flags (O_APPEND,
// O_DIRECT, O_SYNC act there). The requests that still come for it open
// the object for themselves (DescriptorFor). Every open is charged to its
// caller's uid (core/descriptor_budget.h), like the passthrough's.

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/backing_registry.h"
#include "overlay/overlay_fs.h"
#include "passthrough/credentials.h"
#include "passthrough/handles.h"

namespace lamina {

using overlay::FdPath;
using overlay::Node;

using passthrough::FileHandle;
using passthrough::RequestFd;

namespace {

bool WantsWrite(int flags) {
  return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC) != 0;
}

// Whether an open with `flags` of `fd` may write a set-user-ID or
// set-group-ID file: its writes are served by the daemon, which drops the
// bits only when the kernel says the writer lacks CAP_FSETID.
bool WritesSetId(int fd, int flags) {
  if ((flags & O_ACCMODE) == O_RDONLY) return false;
  struct stat st;
  return fstat(fd, &st) != 0 || (st.st_mode & (S_ISUID | S_ISGID)) != 0;
}

// A descriptor whose I/O the daemon serves is never O_DIRECT: the data of a
// WRITE follows the request's headers in its buffer, never aligned as
// direct I/O requires (EINVAL), and the caller's direct I/O reaches the
// daemon uncached whatever the descriptor says.
void ServeWithoutODirect(int fd) {
  const int status = fcntl(fd, F_GETFL);
  if (status >= 0 && (status & O_DIRECT) != 0) (void)fcntl(fd, F_SETFL, status & ~O_DIRECT);
}

}  // namespace

bool OverlayFs::WillPassThrough(const overlay::Node& node, int flags) const {
  if (backing_ == nullptr || !backing_->available() || !S_ISREG(node.type)) return false;
  return !WritesSetId(node.TopFd(), flags);
}

Result<OpenReply> OverlayFs::OpenNode(NodeId id, const NodePtr& node, int flags, OpenCharge& charge,
                                      int fd) {
  // The kernel sends OPEN for regular files only (it opens FIFOs, sockets
  // and devices itself); the daemon never opens anything else it serves.
  if (!S_ISREG(node->type)) {
    if (fd >= 0) close(fd);
    return Errno{EINVAL};
  }
  bool upper = true;  // a descriptor the caller made is of a new upper file
  // Whether reads must not move the file's access time (Layer::open_noatime).
  bool keep_atime = layers_.has_upper() && layers_.upper().open_noatime;
  if (fd < 0) {
    const bool write = WantsWrite(flags);
    if (write) {
      Result<void> up = CopyUp(node);
      if (!up.ok()) return Errno{up.error()};
    }
    const Node::TopObject top = node->Top();
    // Never a lower object for writing (copy-up above made the upper one).
    if (write && !top.upper) return Errno{EIO};
    upper = top.upper;
    // The kernel resolved the name already; O_NOFOLLOW would refuse the
    // /proc/self/fd link itself (ELOOP). Reading a lower file leaves its
    // atime alone, and so does reading an upper one on a noatime mount.
    const std::string path = FdPath(top.fd);
    const int open_flags = (flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW)) | O_CLOEXEC;
    const overlay::Layer& layer =
        upper ? layers_.upper() : layers_.layer(node->lowers.front().layer);
    keep_atime = layer.open_noatime;
    fd = overlay::OpenInLayer(layer, AT_FDCWD, path.c_str(), open_flags);
    if (fd < 0) return LastErrno();
  }
  sync_points_.Reach(overlay::SyncPoint::kOpenBeforeRegister);

  OpenReply reply;
  FileHandle handle;
  handle.uid = charge.uid();
  handle.lower = !upper;
  if (backing_ != nullptr) {
    std::unique_lock lock(node->mu);
    if (upper && node->lower_backed_opens > 0 && node->lower_backed_id == id) {
      lock.unlock();
      close(fd);
      table_.Renumber(id);
      return Errno{ESTALE};
    }
    // EBUSY: the kernel inode passes through another object than `fd`'s
    // (this open raced a copy-up and holds the lower file, while opens of
    // the upper one pass through): the daemon serves this open's I/O. The
    // kernel runs passthrough writes with the credentials the id was
    // registered with: without CAP_FSETID, a write drops set-ID bits as
    // the upper filesystem does for an unprivileged writer (a file may
    // become set-ID after a stranger opened it). Root's writes must keep
    // them, so writable opens of files set-ID now are the daemon's. And
    // the kernel reads a backing file through a file it opens with the
    // caller's flags, never O_NOATIME: where reads must leave access times
    // alone, opens that may read are the daemon's too (its descriptor has
    // O_NOATIME).
    Result<int> backing_id = Errno{EBUSY};
    const bool reads_move_atime = keep_atime && (flags & O_ACCMODE) != O_WRONLY;
    if (!WritesSetId(fd, flags) && !reads_move_atime) {
      passthrough::ScopedCapabilityDrop without_fsetid(CAP_FSETID);
      backing_id = backing_->Acquire(id, fd);
    }
    if (backing_id.ok()) {
      reply.backing_id = *backing_id;
      handle.backed = true;
      if (!upper) {
        ++node->lower_backed_opens;
        node->lower_backed_id = id;
      }
    }
  }
  if (handle.backed) {
    // The kernel opened a backing file of its own: nothing here needs
    // this descriptor any more.
    close(fd);
    (void)charge.SetHandle(false);  // giving back cannot fail
    handle.flags = flags;
  } else {
    ServeWithoutODirect(fd);
    // Mixing page-cached and passthrough opens of one inode is refused by
    // the kernel; direct I/O opens may coexist with passthrough ones.
    if (backing_ != nullptr) {
      reply.open_flags |= abi::kFopenDirectIo;
    } else if (options_.attr_timeout > 0) {
      reply.open_flags |= abi::kFopenKeepCache;
    }
    // The daemon serves this open's data: it keeps the descriptor.
    Result<void> charged = fd > FileHandle::kMaxFd ? Errno{EMFILE} : charge.SetHandle(true);
    if (!charged.ok()) {
      close(fd);
      return Errno{charged.error()};
    }
    handle.fd = fd;
  }
  reply.fh = handle.Encode();
  node->opens.fetch_add(1, std::memory_order_relaxed);  // not parked while open
  charge.Commit();
  return reply;
}

Result<OpenReply> OverlayFs::Open(const Ctx& ctx, NodeId id, const OpenRequest& req) {
  NodePtr node = Get(id);
  if (node == nullptr) return Errno{ENOENT};
  if (WantsWrite(req.flags)) {
    Result<void> writable = RequireUpper();
    if (!writable.ok()) return Errno{writable.error()};
  }
  // Charged first: a caller past its share gets EMFILE before anything is
  // copied up or truncated, as from open(2) itself.
  Result<OpenCharge> charge =
      OpenCharge::Take(budget_, ctx.uid, id, !WillPassThrough(*node, req.flags));
  if (!charge.ok()) return Errno{charge.error()};
  Result<OpenReply> reply = OpenNode(id, node, req.flags, *charge);
  if (reply.ok() && req.kill_suidgid) {
    // O_TRUNC by a caller without CAP_FSETID: the open wrote, so the
    // object is the upper one.
    Result<void> killed = KillPrivileges(ctx, node->UpperFd(), passthrough::Capabilities::kKeep);
    if (!killed.ok()) {
      (void)Release(Ctx{}, id, reply->fh, 0);
      return Errno{killed.error()};
    }
  }
  return reply;
}

Result<CreateReply> OverlayFs::Create(const Ctx& ctx, NodeId parent, std::string_view name,
                                      mode_t mode, const OpenRequest& req) {
  // The new node is charged before the file is made (see Open).
  Result<OpenCharge> charge =
      OpenCharge::Take(budget_, ctx.uid, 0, backing_ == nullptr || !backing_->available());
  if (!charge.ok()) return Errno{charge.error()};
  // The descriptor that creates the file is the one the open uses.
  const int flags =
      (req.flags & ~(O_TRUNC | O_NOCTTY | O_NOFOLLOW)) | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  int fd = -1;
  Result<Entry> entry = CreateObject(
      ctx, parent, name, S_IFREG,
      [&](int dir, const std::string& n) -> Result<int> {
        int made = openat(dir, n.c_str(), flags, mode & 07777);
        if (made < 0) return LastErrno();
        return made;
      },
      /*new_inode=*/true, &fd);
  if (!entry.ok()) return Errno{entry.error()};
  charge->Bind(entry->node);
  NodePtr node = Get(entry->node);
  Result<OpenReply> open = OpenNode(entry->node, node, req.flags, *charge, fd);
  if (!open.ok()) {
    table_.Forget(entry->node, 1);
    return Errno{open.error()};
  }
  return CreateReply{*entry, *open};
}

Result<CreateReply> OverlayFs::Tmpfile(const Ctx& ctx, NodeId parent, mode_t mode,
                                       const OpenRequest& req) {
  Result<void> ok = RequireUpper();
  if (!ok.ok()) return Errno{ok.error()};
  Result<NodePtr> dir = Dir(parent);
  if (!dir.ok()) return Errno{dir.error()};
  // The daemon serves an unnamed file's data: a descriptor and a new node.
  Result<OpenCharge> charge = OpenCharge::Take(budget_, ctx.uid, 0, /*handle=*/true);
  if (!charge.ok()) return Errno{charge.error()};
  ok = CopyUp(*dir);
  if (!ok.ok()) return Errno{ok.error()};
  UseCallerUmask(ctx);
  int access = (req.flags & O_ACCMODE) == O_RDONLY ? O_RDWR : (req.flags & O_ACCMODE);
  int fd = openat((*dir)->UpperFd(), ".", O_TMPFILE | access | O_CLOEXEC, mode & 07777);
  if (fd < 0) return LastErrno();
  struct stat st;
  int path_fd = open(FdPath(fd).c_str(), O_PATH | O_CLOEXEC);
  // The caller owns it, and a setgid directory passes on its group, as for
  // any new file (CreateObject). A chown also drops the set-group-ID bit
  // the kernel let through, so none when the ids are the daemon's already.
  const overlay::IdMap& ids = options_.ids;
  const uid_t uid = ids.UidToLayer(ctx.uid);
  gid_t gid = ids.GidToLayer(ctx.gid);
  bool owned = path_fd >= 0 && fstat((*dir)->UpperFd(), &st) == 0;
  const bool setgid_dir = owned && (st.st_mode & S_ISGID) != 0;
  if (setgid_dir) gid = st.st_gid;
  if (owned && (uid != geteuid() || gid != (setgid_dir ? st.st_gid : getegid()))) {
    owned = fchown(fd, uid, gid) == 0 || ids.squashed();
  }
  if (!owned || fstat(fd, &st) != 0 || fd > FileHandle::kMaxFd) {
    Result<void> error = fd > FileHandle::kMaxFd ? Errno{EMFILE} : LastErrno();
    if (path_fd >= 0) close(path_fd);
    close(fd);
    return Errno{error.error()};
  }
  // An unnamed upper file: its own identity, nothing to copy up, ever.
  auto handle = table_.Acquire(overlay::NodeKey{st.st_dev, st.st_ino}, [&] {
    auto node = std::make_shared<Node>(S_IFREG, layers_.MergedInode(0, st.st_ino));
    std::unique_lock lock(node->mu);
    node->upper_fd = path_fd;
    node->parent = *dir;
    node->CountDescriptorsIn(&held_descriptors_);
    return node;
  });
  handle.node->opens.fetch_add(1, std::memory_order_relaxed);
  charge->Bind(handle.id);
  charge->Commit();
  CreateReply reply;
  reply.entry = MakeEntry(handle.id, *handle.node, st);
  FileHandle file;
  file.uid = ctx.uid;
  file.fd = fd;
  reply.open.fh = file.Encode();
  if (backing_ != nullptr) reply.open.open_flags |= abi::kFopenDirectIo;
  return reply;
}

Result<RequestFd> OverlayFs::DescriptorFor(NodeId id, uint64_t fh) const {
  const FileHandle handle = FileHandle::Decode(fh);
  if (handle.fd >= 0) return RequestFd::Borrowed(handle.fd);
  NodePtr node = Get(id);  // never parked: the open still counts
  if (node == nullptr) return Errno{ESTALE};
  if (!S_ISREG(node->type)) return Errno{EBADF};  // only regular files pass through
  if (!handle.lower) {
    const int upper = node->UpperFd();
    if (upper < 0) return Errno{EBADF};
    return passthrough::Reopen(FdPath(upper), handle);
  }
  // The lower object the open (and the kernel's backing file) is of,
  // whatever was copied up since.
  const overlay::LowerRef& lower = node->lowers.front();
  const int fd = overlay::OpenInLayer(
      layers_.layer(lower.layer), AT_FDCWD, FdPath(lower.fd).c_str(),
      (handle.flags & FileHandle::kReopenFlags) | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return LastErrno();
  return RequestFd::Owned(fd);
}

Result<size_t> OverlayFs::Read(const Ctx&, NodeId id, uint64_t fh, uint64_t offset,
                               std::span<std::byte> out) {
  Result<RequestFd> opened = DescriptorFor(id, fh);
  if (!opened.ok()) return Errno{opened.error()};
  int fd = opened->get();
  // Reads through an open made before a copy-up follow it, as the
  // kernel's do: the lower file is no longer what the name shows.
  NodePtr node = FileHandle::Decode(fh).lower ? Get(id) : nullptr;
  if (node != nullptr) {
    Result<int> upper = node->UpperReadFd();
    if (!upper.ok()) return Errno{upper.error()};
    if (*upper >= 0) fd = *upper;
  }
  ssize_t n = pread(fd, out.data(), out.size(), static_cast<off_t>(offset));
  if (n < 0) return LastErrno();
  return static_cast<size_t>(n);
}

Result<size_t> OverlayFs::Write(const Ctx& ctx, NodeId id, const WriteRequest& req) {
  Result<RequestFd> opened = DescriptorFor(id, req.fh);
  if (!opened.ok()) return Errno{opened.error()};
  const int fd = opened->get();
  struct stat st;
  if (req.kill_suidgid && (fstat(fd, &st) != 0 || (st.st_mode & (S_ISUID | S_ISGID)) != 0)) {
    Result<void> killed = KillPrivileges(ctx, fd, passthrough::Capabilities::kKeep);
    if (!killed.ok()) return Errno{killed.error()};
    // The kernel keeps the mode it cached across a WRITE (fstests'
    // generic/355: a direct write by the owner showed its set-ID bits).
    AttributesChanged(id);
  }
  ssize_t n = pwrite(fd, req.data.data(), req.data.size(), static_cast<off_t>(req.offset));
  if (n < 0) return LastErrno();
  return static_cast<size_t>(n);
}

Result<size_t> OverlayFs::CopyFileRange(const Ctx&, const CopyRangeRequest& req) {
  // Writable opens are of upper files (copied up at open); never a lower.
  if (FileHandle::Decode(req.fh_out).lower) return Errno{EBADF};
  // Opens served by FUSE passthrough keep no descriptor: one each for this.
  Result<RequestFd> in = DescriptorFor(req.node_in, req.fh_in);
  if (!in.ok()) return Errno{in.error()};
  Result<RequestFd> out = DescriptorFor(req.node_out, req.fh_out);
  if (!out.ok()) return Errno{out.error()};
  loff_t off_in = static_cast<loff_t>(req.off_in);
  loff_t off_out = static_cast<loff_t>(req.off_out);
  // The upper filesystem checks what the kernel cannot see on a FUSE inode
  // (an immutable or append-only output: EPERM). EXDEV between layers on
  // different filesystems makes the kernel copy through reads and writes.
  ssize_t n = copy_file_range(in->get(), &off_in, out->get(), &off_out, req.len,
                              static_cast<unsigned int>(req.flags));
  if (n < 0) return LastErrno();
  return static_cast<size_t>(n);
}

Result<void> OverlayFs::Release(const Ctx&, NodeId id, uint64_t fh, int) {
  const FileHandle handle = FileHandle::Decode(fh);
  if (handle.fd >= 0) {
    close(handle.fd);
    budget_.RefundHandle(handle.uid);
  }
  budget_.Unpin(handle.uid, id);
  NodePtr node = table_.Get(id);  // never parked: this open still counts
  if (handle.backed && backing_ != nullptr) {
    sync_points_.Reach(overlay::SyncPoint::kReleaseBeforeUnregister);
    if (handle.lower && node != nullptr) {
      // The count and the registration go together: a write open of the
      // node that saw the count drop must not find the lower file's id.
      std::unique_lock lock(node->mu);
      --node->lower_backed_opens;
      backing_->Release(id);
    } else {
      backing_->Release(id);
    }
  }
  if (node != nullptr) node->opens.fetch_sub(1, std::memory_order_relaxed);
  return Ok();
}

Result<void> OverlayFs::Fsync(const Ctx&, NodeId id, uint64_t fh, bool datasync) {
  if (options_.volatile_mode) return Ok();
  // A lower object was only read through this open: nothing of ours to
  // sync (the kernel's overlayfs syncs upper files only).
  if (FileHandle::Decode(fh).lower) return Ok();
  Result<RequestFd> fd = DescriptorFor(id, fh);
  if (!fd.ok()) return Errno{fd.error()};
  return CheckSyscall(datasync ? fdatasync(fd->get()) : fsync(fd->get()));
}

Result<void> OverlayFs::Fallocate(const Ctx& ctx, NodeId id, uint64_t fh, int mode, uint64_t offset,
                                  uint64_t length) {
  Result<RequestFd> opened = DescriptorFor(id, fh);
  if (!opened.ok()) return Errno{opened.error()};
  const int fd = opened->get();
  // FUSE_FALLOCATE says nothing of set-ID bits: the kernel asked before with
  // a SETATTR that changes nothing, which drops them only for a caller who
  // may chmod the file (SetAttr), and the upper filesystem sees the
  // daemon's CAP_FSETID. A caller without it loses them here, as its write
  // would (fstests' generic/683).
  struct stat st;
  if (ctx.uid != 0 && (fstat(fd, &st) != 0 || (st.st_mode & (S_ISUID | S_ISGID)) != 0)) {
    Result<void> killed = KillPrivileges(ctx, fd, passthrough::Capabilities::kKeep);
    if (!killed.ok()) return Errno{killed.error()};
    AttributesChanged(id);
  }
  return CheckSyscall(fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(length)));
}

Result<uint64_t> OverlayFs::Lseek(const Ctx&, NodeId id, uint64_t fh, uint64_t offset, int whence) {
  // Only SEEK_DATA and SEEK_HOLE reach the daemon, which a fresh
  // descriptor answers as well as the open's own.
  Result<RequestFd> fd = DescriptorFor(id, fh);
  if (!fd.ok()) return Errno{fd.error()};
  off_t result = lseek(fd->get(), static_cast<off_t>(offset), whence);
  if (result < 0) return LastErrno();
  return static_cast<uint64_t>(result);
}

Result<void> OverlayFs::KillPrivileges(const Ctx& ctx, int fd,
                                       passthrough::Capabilities capabilities,
                                       std::optional<gid_t> group_before) const {
  const overlay::IdMap& ids = options_.ids;
  auto groups = [&] {
    std::vector<gid_t> mapped;
    for (gid_t gid : ctx.SupplementaryGroups()) mapped.push_back(ids.GidToLayer(gid));
    return mapped;
  };
  return passthrough::KillPrivileges(fd, {ids.GidToLayer(ctx.gid), ctx.uid == 0, groups},
                                     capabilities, group_before);
}

Result<Attributes> OverlayFs::SetAttr(const Ctx& ctx, NodeId id, const SetAttrRequest& req) {
  NodePtr node = Get(id);
  if (node == nullptr) return Errno{ENOENT};
  // A SETATTR that changes nothing drops set-ID bits and capabilities
  // (KillsPrivileges), a mode change the kernel has not checked: only a
  // caller who may chmod the object gets it. The writes it also stands for
  // drop the bits without it (Write, and backing files registered without
  // CAP_FSETID); for anyone else nothing changes, and nothing is copied up.
  if (req.ChangesNothing()) {
    struct stat st;
    if (fstatat(node->TopFd(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
      return LastErrno();
    }
    const bool may_chmod = options_.ids.UidToLayer(ctx.uid) == st.st_uid ||
                           (ctx.uid == 0 && passthrough::CallerHasCapability(ctx, CAP_FOWNER));
    if (!may_chmod) return AttributesOf(*node);
  }
  Result<void> ok = CopyUp(node);
  if (!ok.ok()) return Errno{ok.error()};
  const int upper = node->UpperFd();
  const std::string path = FdPath(upper);
  // The /proc/self/fd path of a symlink's O_PATH descriptor reaches the
  // symlink itself (times, xattrs); its mode cannot change, and it has no
  // set-ID bits to kill.
  const bool symlink = S_ISLNK(node->type);
  // A chown's set-group-ID decision looks at the group it had.
  std::optional<gid_t> group_before;
  if (struct stat st; req.Has(abi::kFattrGid) && fstat(upper, &st) == 0) group_before = st.st_gid;
  if (req.Has(abi::kFattrUid) || req.Has(abi::kFattrGid)) {
    const overlay::IdMap& ids = options_.ids;
    uid_t uid = req.Has(abi::kFattrUid) ? ids.UidToLayer(req.uid) : static_cast<uid_t>(-1);
    gid_t gid = req.Has(abi::kFattrGid) ? ids.GidToLayer(req.gid) : static_cast<gid_t>(-1);
    ok = CheckSyscall(fchownat(upper, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW));
    if (ids.squashed()) ok = Ok();  // the view would not show the change anyway
  }
  if (ok.ok() && req.Has(abi::kFattrMode) && !symlink) {
    ok = CheckSyscall(chmod(path.c_str(), req.mode & 07777));
  }
  if (ok.ok() && req.Has(abi::kFattrSize)) {
    // An open that passes through keeps no descriptor: the path reaches
    // the same upper file.
    const int fh_fd = req.fh ? FileHandle::Decode(*req.fh).fd : -1;
    ok = fh_fd >= 0 ? CheckSyscall(ftruncate(fh_fd, static_cast<off_t>(req.size)))
                    : CheckSyscall(truncate(path.c_str(), static_cast<off_t>(req.size)));
  }
  if (ok.ok() && req.KillsPrivileges() && !req.Has(abi::kFattrMode)) {
    ok = KillPrivileges(ctx, upper, passthrough::Capabilities::kDrop, group_before);
  }
  if (ok.ok() && (req.Has(abi::kFattrAtime) || req.Has(abi::kFattrMtime))) {
    struct timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    if (req.Has(abi::kFattrAtime)) times[0] = req.atime;
    if (req.Has(abi::kFattrMtime)) times[1] = req.mtime;
    ok = CheckSyscall(utimensat(AT_FDCWD, path.c_str(), times, 0));
  }
  if (!ok.ok()) return Errno{ok.error()};
  return AttributesOf(*node);
}

}  // namespace lamina
