// PassthroughFs: opening files and moving their data.
//
// Every open reopens the node's O_PATH descriptor through /proc/self/fd
// with the caller's flags (regular files and directories only). The kernel
// has checked the caller's permission to open (posix_acl in
// passthrough_fs.h). With kernel passthrough, the first open of an inode
// also registers a backing id that all its opens share (the kernel refuses
// mixed backings per inode); the kernel then serves read, write and mmap
// itself from a backing file of its own, opened with the open's flags, so
// the daemon closes its descriptor at once. The few requests that still
// come for such an open (FSYNC, FALLOCATE, LSEEK for holes, ioctls,
// COPY_FILE_RANGE, a SETATTR naming the handle) open the file for
// themselves (DescriptorFor). Opens the daemon serves keep their
// descriptor. Either way the open is charged to its caller's uid
// (core/descriptor_budget.h): the node it keeps from being parked, and
// the descriptor if it keeps one.

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>

#include "core/backing_registry.h"
#include "passthrough/credentials.h"
#include "passthrough/handles.h"
#include "passthrough/passthrough_fs.h"
#include "passthrough/set_id_bits.h"

namespace lamina {

using passthrough::CheckName;
using passthrough::FileHandle;
using passthrough::Inode;
using passthrough::RequestFd;

namespace {

// Flags that only make sense to the open(2) that reached the kernel, or that
// would break reopening through the /proc magic link.
constexpr int kStrippedOpenFlags = O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW;

// Reopens an opened descriptor as O_PATH, to become a node's anchor.
int PathDescriptorOf(int fd) {
  std::string proc = "/proc/self/fd/" + std::to_string(fd);
  return open(proc.c_str(), O_PATH | O_CLOEXEC);
}

// Write by an unprivileged caller: clear set-user-ID (and set-group-ID when
// group-executable) as the backing kernel would have, had it seen the caller.
// True when a bit went.
Result<bool> KillSuidgid(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return LastErrno();
  mode_t kill = S_ISUID | ((st.st_mode & S_IXGRP) ? S_ISGID : 0);
  if ((st.st_mode & kill) == 0) return false;
  if (fchmod(fd, st.st_mode & 07777 & ~kill) != 0) return LastErrno();
  return true;
}

// Writes through kernel passthrough reach the backing file with the
// credentials the backing id was registered with (the daemon's, without
// CAP_FSETID), so they drop set-user-ID and set-group-ID whoever writes:
// right for a file that became set-ID after an unprivileged open, wrong
// for root. Writable opens of files set-ID at open time are therefore
// served by the daemon, whose Write clears the bits only when the kernel
// says the writer lacks CAP_FSETID.
bool NeedsDaemonWrites(int fd, int flags) {
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

bool PassthroughFs::WillPassThrough(const Inode& inode, int flags) const {
  if (!S_ISREG(inode.type()) || !passthrough_active()) return false;
  return !NeedsDaemonWrites(inode.fd(), flags);
}

Result<OpenReply> PassthroughFs::FinishOpen(NodeId node, const Inode& inode, int fd, int flags,
                                            OpenCharge& charge) {
  OpenReply reply;
  FileHandle handle;
  handle.uid = charge.uid();
  if (S_ISREG(inode.type()) && passthrough_active() && NeedsDaemonWrites(fd, flags)) {
    reply.open_flags |= abi::kFopenDirectIo;  // may coexist with passthrough opens
  } else if (S_ISREG(inode.type()) && passthrough_active()) {
    Result<int> id = [&] {
      // Writes through the kernel then drop set-ID bits (credentials.h).
      passthrough::ScopedCapabilityDrop no_fsetid(CAP_FSETID);
      return backing_->Acquire(node, fd);
    }();
    if (id.ok()) {
      // The kernel opened a backing file of its own; nothing here needs
      // this descriptor any more.
      close(fd);
      (void)charge.SetHandle(false);  // giving back cannot fail
      handle.flags = flags;
      handle.backed = true;
      reply.fh = handle.Encode();
      reply.backing_id = *id;
      inode.opens.fetch_add(1, std::memory_order_relaxed);  // not parked while open
      charge.Commit();
      return reply;
    }
    // Other opens of this inode may already pass through; only uncached
    // I/O may coexist with them.
    if (backing_->available()) reply.open_flags |= abi::kFopenDirectIo;
  }
  if (fd > FileHandle::kMaxFd) {
    close(fd);
    return Errno{EMFILE};
  }
  // The daemon serves this open's data: it keeps the descriptor.
  if (Result<void> charged = charge.SetHandle(true); !charged.ok()) {
    close(fd);
    return Errno{charged.error()};
  }
  if (options_.attr_timeout > 0 && (reply.open_flags & abi::kFopenDirectIo) == 0) {
    reply.open_flags |= abi::kFopenKeepCache;
  }
  ServeWithoutODirect(fd);
  handle.fd = fd;
  reply.fh = handle.Encode();
  inode.opens.fetch_add(1, std::memory_order_relaxed);
  charge.Commit();
  return reply;
}

Result<OpenReply> PassthroughFs::Open(const Ctx& ctx, NodeId node, const OpenRequest& req) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  // The kernel opens FIFOs, sockets and devices on a FUSE mount itself and
  // never sends OPEN for them; opening one here could block a worker on a
  // FIFO without a writer, or reach a device as root.
  if (!S_ISREG(inode->type()) && !S_ISDIR(inode->type())) return Errno{ENXIO};
  // Charged first: a caller past its share gets EMFILE before anything is
  // opened or truncated, as from open(2) itself.
  Result<OpenCharge> charge =
      OpenCharge::Take(budget_, ctx.uid, node, !WillPassThrough(*inode, req.flags));
  if (!charge.ok()) return Errno{charge.error()};
  int fd = OpenForIo(inode->ProcPath().c_str(), (req.flags & ~kStrippedOpenFlags) | O_CLOEXEC);
  if (fd < 0) return LastErrno();
  if (req.kill_suidgid && (req.flags & O_TRUNC) != 0) {
    if (Result<bool> killed = KillSuidgid(fd); !killed.ok()) {
      close(fd);
      return Errno{killed.error()};
    }
  }
  return FinishOpen(node, *inode, fd, req.flags, *charge);
}

Result<CreateReply> PassthroughFs::Create(const Ctx& ctx, NodeId parent, std::string_view name,
                                          mode_t mode, const OpenRequest& req) {
  if (Result<void> valid = CheckName(name); !valid.ok()) return Errno{valid.error()};
  Result<InodePtr> dir = Dir(parent);
  if (!dir.ok()) return Errno{dir.error()};
  Result<OpenCharge> charge = OpenCharge::Take(budget_, ctx.uid, 0, !passthrough_active());
  if (!charge.ok()) return Errno{charge.error()};
  int flags = (req.flags & ~(O_NOCTTY | O_NOFOLLOW)) | O_CREAT | O_NOFOLLOW | O_CLOEXEC;
  int fd;
  {
    UseCallerUmask(ctx);
    passthrough::ScopedCredentials as_caller(ctx.uid, ctx.gid, ctx.kernel_groups);
    if (Result<void> s = as_caller.status(); !s.ok()) return Errno{s.error()};
    fd = openat((*dir)->fd(), std::string(name).c_str(), flags, mode & 07777);
    if (fd < 0) return LastErrno();
  }
  return FinishCreate(fd, req.flags, *charge);
}

Result<CreateReply> PassthroughFs::Tmpfile(const Ctx& ctx, NodeId parent, mode_t mode,
                                           const OpenRequest& req) {
  Result<InodePtr> dir = Dir(parent);
  if (!dir.ok()) return Errno{dir.error()};
  Result<OpenCharge> charge = OpenCharge::Take(budget_, ctx.uid, 0, !passthrough_active());
  if (!charge.ok()) return Errno{charge.error()};
  int flags = (req.flags & ~kStrippedOpenFlags) | O_TMPFILE | O_CLOEXEC;
  int fd;
  {
    UseCallerUmask(ctx);
    passthrough::ScopedCredentials as_caller(ctx.uid, ctx.gid, ctx.kernel_groups);
    if (Result<void> s = as_caller.status(); !s.ok()) return Errno{s.error()};
    fd = openat((*dir)->fd(), ".", flags, mode & 07777);
    if (fd < 0) return LastErrno();
  }
  return FinishCreate(fd, req.flags, *charge);
}

Result<CreateReply> PassthroughFs::FinishCreate(int fd, int flags, OpenCharge& charge) {
  int path_fd = PathDescriptorOf(fd);
  if (path_fd < 0) {
    Errno error = LastErrno();
    close(fd);
    return error;
  }
  Result<Entry> entry = MakeEntry(path_fd);
  if (!entry.ok()) {
    close(fd);
    return Errno{entry.error()};
  }
  charge.Bind(entry->node);
  InodePtr inode = Node(entry->node);
  if (inode == nullptr) close(fd);
  Result<OpenReply> open =
      inode ? FinishOpen(entry->node, *inode, fd, flags, charge) : Errno{ESTALE};
  if (!open.ok()) {
    table_.Forget(entry->node, 1);
    return Errno{open.error()};
  }
  return CreateReply{*entry, *open};
}

Result<RequestFd> PassthroughFs::DescriptorFor(NodeId node, uint64_t fh) const {
  const FileHandle handle = FileHandle::Decode(fh);
  if (handle.fd >= 0) return RequestFd::Borrowed(handle.fd);
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  if (!S_ISREG(inode->type())) return Errno{EBADF};  // only regular files pass through
  return passthrough::Reopen(inode->ProcPath(), handle);
}

Result<size_t> PassthroughFs::Read(const Ctx&, NodeId node, uint64_t fh, uint64_t offset,
                                   std::span<std::byte> out) {
  Result<RequestFd> fd = DescriptorFor(node, fh);
  if (!fd.ok()) return Errno{fd.error()};
  struct iovec iov = {out.data(), out.size()};
  ssize_t n = preadv(fd->get(), &iov, 1, static_cast<off_t>(offset));
  if (n < 0) return LastErrno();
  return static_cast<size_t>(n);
}

Result<size_t> PassthroughFs::Write(const Ctx&, NodeId node, const WriteRequest& req) {
  Result<RequestFd> fd = DescriptorFor(node, req.fh);
  if (!fd.ok()) return Errno{fd.error()};
  if (req.kill_suidgid) {
    Result<bool> killed = KillSuidgid(fd->get());
    if (!killed.ok()) return Errno{killed.error()};
    // The kernel keeps the mode it cached across a WRITE (fstests'
    // generic/355: a direct write by the owner showed its set-ID bits).
    if (*killed) AttributesChanged(node);
  }
  struct iovec iov = {const_cast<std::byte*>(req.data.data()), req.data.size()};
  ssize_t n = pwritev(fd->get(), &iov, 1, static_cast<off_t>(req.offset));
  if (n < 0) return LastErrno();
  return static_cast<size_t>(n);
}

Result<void> PassthroughFs::Release(const Ctx&, NodeId node, uint64_t fh, int) {
  const FileHandle handle = FileHandle::Decode(fh);
  if (handle.fd >= 0) {
    close(handle.fd);
    budget_.RefundHandle(handle.uid);
  }
  budget_.Unpin(handle.uid, node);
  if (InodePtr inode = table_.Get(node)) inode->opens.fetch_sub(1, std::memory_order_relaxed);
  if (handle.backed && backing_ != nullptr) backing_->Release(node);
  return Ok();
}

Result<void> PassthroughFs::Fsync(const Ctx&, NodeId node, uint64_t fh, bool datasync) {
  Result<RequestFd> fd = DescriptorFor(node, fh);
  if (!fd.ok()) return Errno{fd.error()};
  return CheckSyscall(datasync ? fdatasync(fd->get()) : fsync(fd->get()));
}

Result<void> PassthroughFs::Fallocate(const Ctx& ctx, NodeId node, uint64_t fh, int mode,
                                      uint64_t offset, uint64_t length) {
  Result<RequestFd> opened = DescriptorFor(node, fh);
  if (!opened.ok()) return Errno{opened.error()};
  const int fd = opened->get();
  // FUSE_FALLOCATE says nothing of set-ID bits: the kernel asked before with
  // a SETATTR that changes nothing, which drops them only for a caller who
  // may chmod the file (SetAttr), and the source's filesystem sees the
  // daemon's CAP_FSETID. A caller without it loses them here, as its write
  // would (fstests' generic/683).
  if (ctx.uid != 0) {
    struct stat st;
    if (fstat(fd, &st) != 0) return LastErrno();
    if ((st.st_mode & (S_ISUID | S_ISGID)) != 0) {
      auto groups = [&] { return ctx.SupplementaryGroups(); };
      Result<void> killed = passthrough::KillPrivileges(fd, {ctx.gid, false, groups},
                                                        passthrough::Capabilities::kKeep);
      if (!killed.ok()) return Errno{killed.error()};
      AttributesChanged(node);
    }
  }
  return CheckSyscall(fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(length)));
}

Result<uint64_t> PassthroughFs::Lseek(const Ctx&, NodeId node, uint64_t fh, uint64_t offset,
                                      int whence) {
  // Only SEEK_DATA and SEEK_HOLE reach the daemon, which a fresh
  // descriptor answers as well as the open's own.
  Result<RequestFd> fd = DescriptorFor(node, fh);
  if (!fd.ok()) return Errno{fd.error()};
  off_t pos = lseek(fd->get(), static_cast<off_t>(offset), whence);
  if (pos < 0) return LastErrno();
  return static_cast<uint64_t>(pos);
}

Result<size_t> PassthroughFs::CopyFileRange(const Ctx&, const CopyRangeRequest& req) {
  Result<RequestFd> in = DescriptorFor(req.node_in, req.fh_in);
  if (!in.ok()) return Errno{in.error()};
  Result<RequestFd> out = DescriptorFor(req.node_out, req.fh_out);
  if (!out.ok()) return Errno{out.error()};
  loff_t off_in = static_cast<loff_t>(req.off_in);
  loff_t off_out = static_cast<loff_t>(req.off_out);
  ssize_t n = copy_file_range(in->get(), &off_in, out->get(), &off_out, req.len,
                              static_cast<unsigned int>(req.flags));
  if (n < 0) return LastErrno();
  return static_cast<size_t>(n);
}

}  // namespace lamina
