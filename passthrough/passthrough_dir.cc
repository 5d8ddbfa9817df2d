// PassthroughFs: directory listing with getdents64.
//
// The kernel's READDIR offset is the backing filesystem's d_off of the last
// entry it consumed, so a seekdir/telldir through the mount maps straight
// onto lseek of the backing directory.
//
// With kernel caching on (the default), OPENDIR answers ENOSYS: the kernel
// then opens directories without a round trip and keeps what READDIR
// returns in its readdir cache, so walking a cached tree again reaches the
// daemon not at all. Such a READDIR carries no handle; it opens the
// directory for that one request and seeks to the offset. With caching off
// (timeout=0), each open keeps its own stream: a descriptor, charged to the
// caller's uid (core/descriptor_budget.h). Entries are read into a buffer
// of the worker's, not the handle's, so an open directory costs a few
// dozen bytes besides: a READDIR that stops inside the buffer leaves the
// stream to be sought back to where the kernel resumes.

#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>

#include "passthrough/passthrough_fs.h"

namespace lamina {

namespace {

// linux_dirent64 as getdents64 returns it.
struct LinuxDirent64 {
  ino64_t d_ino;
  off64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

// The getdents64 buffer, one per worker thread (READDIR holds it only
// while it runs).
constexpr size_t kDirBufferSize = 32 * 1024;
struct DirBuffer {
  alignas(LinuxDirent64) std::array<char, kDirBufferSize> bytes;
};

}  // namespace

struct PassthroughFs::DirHandle {
  DirHandle(int dir_fd, uid_t owner) : fd(dir_fd), uid(owner) {}
  ~DirHandle() { close(fd); }

  std::mutex mu;  // one READDIR at a time per handle (they share the stream)
  const int fd;
  const uid_t uid;      // charged for `fd`
  uint64_t offset = 0;  // where the stream stands: after the entry with this d_off
};

Result<OpenReply> PassthroughFs::OpenDir(const Ctx& ctx, NodeId node, int flags) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  if (options_.entry_timeout > 0) return Errno{ENOSYS};
  if (Result<void> charged = budget_.ChargeHandle(ctx.uid); !charged.ok()) {
    return Errno{charged.error()};
  }
  // "." relative to the O_PATH descriptor is the directory itself.
  int fd = OpenForIo(inode->fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC | (flags & O_NOATIME));
  if (fd < 0) {
    Errno error = LastErrno();
    budget_.RefundHandle(ctx.uid);
    return error;
  }
  OpenReply reply;
  reply.fh = dirs_.Add(std::make_unique<DirHandle>(fd, ctx.uid));
  return reply;
}

Result<void> PassthroughFs::ReadDir(const Ctx&, NodeId node, uint64_t fh, uint64_t offset,
                                    DirentWriter& out) {
  InodePtr dir = Node(node);
  if (dir == nullptr) return Errno{ESTALE};
  std::unique_ptr<DirHandle> for_this_request;
  DirHandle* handle;
  if (fh == 0) {
    int fd = OpenForIo(dir->fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return LastErrno();
    for_this_request = std::make_unique<DirHandle>(fd, 0);
    handle = for_this_request.get();
  } else {
    handle = dirs_.Get(fh);
    if (handle == nullptr) return Errno{EBADF};
  }
  static thread_local std::unique_ptr<DirBuffer> buffer;
  if (buffer == nullptr) buffer = std::make_unique<DirBuffer>();
  std::lock_guard<std::mutex> lock(handle->mu);
  if (offset != handle->offset) {
    if (lseek(handle->fd, static_cast<off_t>(offset), SEEK_SET) < 0) return LastErrno();
    handle->offset = offset;
  }
  while (true) {
    long n = syscall(SYS_getdents64, handle->fd, buffer->bytes.data(), buffer->bytes.size());
    if (n < 0) return out.empty() ? Result<void>(LastErrno()) : Ok();
    if (n == 0) return Ok();
    for (size_t pos = 0; pos < static_cast<size_t>(n);) {
      auto* d = reinterpret_cast<LinuxDirent64*>(buffer->bytes.data() + pos);
      std::string_view name(d->d_name);
      const uint64_t next = static_cast<uint64_t>(d->d_off);
      bool added;
      if (!out.plus() || name == "." || name == "..") {
        added = out.Add(name, d->d_ino, d->d_type, next);
      } else if (!out.Fits(name)) {
        added = false;  // checked before LookupChild takes a reference
      } else {
        Result<Entry> entry = LookupChild(*dir, name);
        // A name that vanished since getdents goes out without attributes.
        added =
            entry.ok() ? out.AddPlus(name, *entry, next) : out.Add(name, d->d_ino, d->d_type, next);
        if (!added && entry.ok()) Forget(entry->node, 1);
      }
      if (!added) {
        // The reply is full inside the buffer: the stream has moved past
        // entries the kernel has not taken. Seek back to the last one it took.
        if (lseek(handle->fd, static_cast<off_t>(handle->offset), SEEK_SET) < 0) {
          handle->offset = UINT64_MAX;  // unknown: the next READDIR seeks
        }
        return Ok();
      }
      pos += d->d_reclen;
      handle->offset = next;
    }
  }
}

Result<void> PassthroughFs::ReleaseDir(const Ctx&, NodeId, uint64_t fh) {
  if (std::shared_ptr<DirHandle> handle = dirs_.Remove(fh)) budget_.RefundHandle(handle->uid);
  return Ok();
}

Result<void> PassthroughFs::FsyncDir(const Ctx&, NodeId node, uint64_t fh, bool datasync) {
  if (fh == 0) {
    InodePtr dir = Node(node);
    if (dir == nullptr) return Errno{ESTALE};
    int fd = openat(dir->fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return LastErrno();
    Result<void> result = CheckSyscall(datasync ? fdatasync(fd) : fsync(fd));
    close(fd);
    return result;
  }
  DirHandle* handle = dirs_.Get(fh);
  if (handle == nullptr) return Errno{EBADF};
  int fd = handle->fd;
  return CheckSyscall(datasync ? fdatasync(fd) : fsync(fd));
}

}  // namespace lamina
