#include "tests/core/recording_filesystem.h"

#include <dirent.h>

#include <algorithm>
#include <cstring>

namespace lamina::testing {

#define LAMINA_BEGIN(op, ctx, node)                                \
  std::lock_guard<std::mutex> lock(mu_);                           \
  if (int error = Begin(op, ctx, node); error != 0) return Errno { \
      error                                                        \
    }

int RecordingFilesystem::Begin(const char* op, const Ctx& c, NodeId node) {
  ++calls_;
  seen_ = Seen{};
  seen_.op = op;
  seen_.ctx = c;
  seen_.ctx.kernel_groups = {};
  // Element by element, as a permission check would read them.
  for (uint32_t gid : c.kernel_groups) seen_.groups.push_back(gid);
  seen_.node = node;
  return fail;
}

Result<size_t> RecordingFilesystem::FillSized(std::span<char> out) const {
  if (out.empty()) return data.size();
  if (out.size() < data.size()) return Errno{ERANGE};
  std::memcpy(out.data(), data.data(), data.size());
  return data.size();
}

Result<Entry> RecordingFilesystem::Lookup(const Ctx& c, NodeId parent, std::string_view name) {
  LAMINA_BEGIN("Lookup", c, parent);
  seen_.name = name;
  return entry;
}

void RecordingFilesystem::Forget(NodeId node, uint64_t nlookup) {
  std::lock_guard<std::mutex> lock(mu_);
  forgets_.emplace_back(node, nlookup);
}

Result<Attributes> RecordingFilesystem::GetAttr(const Ctx& c, NodeId node,
                                                std::optional<uint64_t> fh) {
  LAMINA_BEGIN("GetAttr", c, node);
  seen_.fh = fh;
  return attributes;
}

Result<StatxAttributes> RecordingFilesystem::Statx(const Ctx& c, NodeId node,
                                                   std::optional<uint64_t> fh, uint32_t flags,
                                                   uint32_t mask) {
  LAMINA_BEGIN("Statx", c, node);
  seen_.fh = fh;
  seen_.flags = flags;
  seen_.flags2 = mask;
  StatxAttributes out;
  out.attr.stx_mask = mask;
  out.attr.stx_ino = attributes.attr.st_ino;
  out.attr.stx_size = static_cast<uint64_t>(attributes.attr.st_size);
  out.attr.stx_mode = static_cast<uint16_t>(attributes.attr.st_mode);
  out.attr.stx_btime.tv_sec = 1234;
  out.timeout = attributes.timeout;
  return out;
}

Result<Attributes> RecordingFilesystem::SetAttr(const Ctx& c, NodeId node,
                                                const SetAttrRequest& req) {
  LAMINA_BEGIN("SetAttr", c, node);
  seen_.setattr = req;
  return attributes;
}

Result<std::string> RecordingFilesystem::ReadLink(const Ctx& c, NodeId node) {
  LAMINA_BEGIN("ReadLink", c, node);
  return data;
}

Result<void> RecordingFilesystem::Access(const Ctx& c, NodeId node, int mask) {
  LAMINA_BEGIN("Access", c, node);
  seen_.flags = mask;
  return Ok();
}

Result<struct statvfs> RecordingFilesystem::StatFs(const Ctx& c, NodeId node) {
  LAMINA_BEGIN("StatFs", c, node);
  struct statvfs st {};
  st.f_bsize = 4096;
  st.f_frsize = 512;
  st.f_blocks = 1000;
  st.f_bfree = 600;
  st.f_bavail = 500;
  st.f_files = 70;
  st.f_ffree = 30;
  st.f_namemax = 255;
  return st;
}

Result<Entry> RecordingFilesystem::Mknod(const Ctx& c, NodeId parent, std::string_view name,
                                         mode_t mode, dev_t rdev) {
  LAMINA_BEGIN("Mknod", c, parent);
  seen_.name = name;
  seen_.mode = mode;
  seen_.rdev = rdev;
  return entry;
}

Result<Entry> RecordingFilesystem::Mkdir(const Ctx& c, NodeId parent, std::string_view name,
                                         mode_t mode) {
  LAMINA_BEGIN("Mkdir", c, parent);
  seen_.name = name;
  seen_.mode = mode;
  return entry;
}

Result<Entry> RecordingFilesystem::Symlink(const Ctx& c, NodeId parent, std::string_view name,
                                           std::string_view target) {
  LAMINA_BEGIN("Symlink", c, parent);
  seen_.name = name;
  seen_.name2 = target;
  return entry;
}

Result<Entry> RecordingFilesystem::Link(const Ctx& c, NodeId node, NodeId new_parent,
                                        std::string_view new_name) {
  LAMINA_BEGIN("Link", c, node);
  seen_.node2 = new_parent;
  seen_.name = new_name;
  return entry;
}

Result<void> RecordingFilesystem::Unlink(const Ctx& c, NodeId parent, std::string_view name) {
  LAMINA_BEGIN("Unlink", c, parent);
  seen_.name = name;
  return Ok();
}

Result<void> RecordingFilesystem::Rmdir(const Ctx& c, NodeId parent, std::string_view name) {
  LAMINA_BEGIN("Rmdir", c, parent);
  seen_.name = name;
  return Ok();
}

Result<void> RecordingFilesystem::Rename(const Ctx& c, NodeId parent, std::string_view name,
                                         NodeId new_parent, std::string_view new_name,
                                         uint32_t flags) {
  LAMINA_BEGIN("Rename", c, parent);
  seen_.name = name;
  seen_.node2 = new_parent;
  seen_.name2 = new_name;
  seen_.flags = flags;
  return Ok();
}

Result<CreateReply> RecordingFilesystem::Create(const Ctx& c, NodeId parent, std::string_view name,
                                                mode_t mode, const OpenRequest& req) {
  LAMINA_BEGIN("Create", c, parent);
  seen_.name = name;
  seen_.mode = mode;
  seen_.flags = req.flags;
  seen_.flag = req.kill_suidgid;
  return CreateReply{entry, open};
}

Result<CreateReply> RecordingFilesystem::Tmpfile(const Ctx& c, NodeId parent, mode_t mode,
                                                 const OpenRequest& req) {
  LAMINA_BEGIN("Tmpfile", c, parent);
  seen_.mode = mode;
  seen_.flags = req.flags;
  return CreateReply{entry, open};
}

Result<OpenReply> RecordingFilesystem::Open(const Ctx& c, NodeId node, const OpenRequest& req) {
  LAMINA_BEGIN("Open", c, node);
  seen_.flags = req.flags;
  seen_.flag = req.kill_suidgid;
  return open;
}

Result<size_t> RecordingFilesystem::Read(const Ctx& c, NodeId node, uint64_t fh, uint64_t offset,
                                         std::span<std::byte> out) {
  LAMINA_BEGIN("Read", c, node);
  seen_.fh = fh;
  seen_.offset = offset;
  seen_.out_size = out.size();
  size_t n = std::min(out.size(), data.size());
  std::memcpy(out.data(), data.data(), n);
  return n;
}

Result<size_t> RecordingFilesystem::Write(const Ctx& c, NodeId node, const WriteRequest& req) {
  LAMINA_BEGIN("Write", c, node);
  seen_.fh = req.fh;
  seen_.offset = req.offset;
  seen_.data.assign(reinterpret_cast<const char*>(req.data.data()), req.data.size());
  seen_.flag = req.kill_suidgid;
  seen_.flags = req.flags;
  return req.data.size();
}

Result<void> RecordingFilesystem::Flush(const Ctx& c, NodeId node, uint64_t fh,
                                        uint64_t lock_owner) {
  LAMINA_BEGIN("Flush", c, node);
  seen_.fh = fh;
  seen_.offset = lock_owner;
  return Ok();
}

Result<void> RecordingFilesystem::Release(const Ctx& c, NodeId node, uint64_t fh, int flags) {
  LAMINA_BEGIN("Release", c, node);
  seen_.fh = fh;
  seen_.flags = flags;
  return Ok();
}

Result<void> RecordingFilesystem::Fsync(const Ctx& c, NodeId node, uint64_t fh, bool datasync) {
  LAMINA_BEGIN("Fsync", c, node);
  seen_.fh = fh;
  seen_.flag = datasync;
  return Ok();
}

Result<void> RecordingFilesystem::Fallocate(const Ctx& c, NodeId node, uint64_t fh, int mode,
                                            uint64_t offset, uint64_t length) {
  LAMINA_BEGIN("Fallocate", c, node);
  seen_.fh = fh;
  seen_.mode = static_cast<uint32_t>(mode);
  seen_.offset = offset;
  seen_.length = length;
  return Ok();
}

Result<uint64_t> RecordingFilesystem::Lseek(const Ctx& c, NodeId node, uint64_t fh, uint64_t offset,
                                            int whence) {
  LAMINA_BEGIN("Lseek", c, node);
  seen_.fh = fh;
  seen_.offset = offset;
  seen_.flags = whence;
  return number;
}

Result<size_t> RecordingFilesystem::CopyFileRange(const Ctx& c, const CopyRangeRequest& req) {
  LAMINA_BEGIN("CopyFileRange", c, req.node_in);
  seen_.copy = req;
  return number;
}

Result<IoctlReply> RecordingFilesystem::Ioctl(const Ctx& c, NodeId node, const IoctlRequest& req,
                                              std::span<std::byte> out) {
  LAMINA_BEGIN("Ioctl", c, node);
  seen_.fh = req.fh;
  seen_.flags = req.cmd;
  seen_.flags2 = req.flags;
  seen_.data.assign(reinterpret_cast<const char*>(req.in.data()), req.in.size());
  seen_.out_size = out.size();
  size_t n = std::min(out.size(), data.size());
  std::memcpy(out.data(), data.data(), n);
  return IoctlReply{static_cast<int32_t>(number), n};
}

Result<uint64_t> RecordingFilesystem::Bmap(const Ctx& c, NodeId node, uint32_t blocksize,
                                           uint64_t block) {
  LAMINA_BEGIN("Bmap", c, node);
  seen_.length = blocksize;
  seen_.offset = block;
  return number;
}

Result<struct flock> RecordingFilesystem::GetLock(const Ctx& c, NodeId node,
                                                  const LockRequest& req) {
  LAMINA_BEGIN("GetLock", c, node);
  seen_.lock = req;
  struct flock conflict {};
  conflict.l_type = F_RDLCK;
  conflict.l_start = 100;
  conflict.l_len = 0;  // to end of file
  conflict.l_pid = 77;
  return conflict;
}

Result<void> RecordingFilesystem::SetLock(const Ctx& c, NodeId node, const LockRequest& req,
                                          bool wait) {
  LAMINA_BEGIN("SetLock", c, node);
  seen_.lock = req;
  seen_.flag = wait;
  return Ok();
}

Result<OpenReply> RecordingFilesystem::OpenDir(const Ctx& c, NodeId node, int flags) {
  LAMINA_BEGIN("OpenDir", c, node);
  seen_.flags = flags;
  return open;
}

Result<void> RecordingFilesystem::ReadDir(const Ctx& c, NodeId node, uint64_t fh, uint64_t offset,
                                          DirentWriter& out) {
  LAMINA_BEGIN("ReadDir", c, node);
  seen_.fh = fh;
  seen_.offset = offset;
  seen_.flag = out.plus();
  if (!out.Add(".", node, DT_DIR, 1)) return Ok();
  Entry child = entry;
  child.node = 50;
  child.attr.st_ino = 50;
  child.attr.st_mode = S_IFREG | 0644;
  if (out.plus()) {
    out.AddPlus("file", child, 2);
  } else {
    out.Add("file", 50, DT_REG, 2);
  }
  return Ok();
}

Result<void> RecordingFilesystem::ReleaseDir(const Ctx& c, NodeId node, uint64_t fh) {
  LAMINA_BEGIN("ReleaseDir", c, node);
  seen_.fh = fh;
  return Ok();
}

Result<void> RecordingFilesystem::FsyncDir(const Ctx& c, NodeId node, uint64_t fh, bool datasync) {
  LAMINA_BEGIN("FsyncDir", c, node);
  seen_.fh = fh;
  seen_.flag = datasync;
  return Ok();
}

Result<void> RecordingFilesystem::SyncFs(const Ctx& c, NodeId node) {
  LAMINA_BEGIN("SyncFs", c, node);
  return Ok();
}

Result<void> RecordingFilesystem::SetXattr(const Ctx& c, NodeId node, std::string_view name,
                                           std::span<const std::byte> value, int flags,
                                           uint32_t setxattr_flags) {
  LAMINA_BEGIN("SetXattr", c, node);
  seen_.name = name;
  seen_.data.assign(reinterpret_cast<const char*>(value.data()), value.size());
  seen_.flags = flags;
  seen_.flags2 = setxattr_flags;
  return Ok();
}

Result<size_t> RecordingFilesystem::GetXattr(const Ctx& c, NodeId node, std::string_view name,
                                             std::span<char> out) {
  LAMINA_BEGIN("GetXattr", c, node);
  seen_.name = name;
  seen_.out_size = out.size();
  return FillSized(out);
}

Result<size_t> RecordingFilesystem::ListXattr(const Ctx& c, NodeId node, std::span<char> out) {
  LAMINA_BEGIN("ListXattr", c, node);
  seen_.out_size = out.size();
  return FillSized(out);
}

Result<void> RecordingFilesystem::RemoveXattr(const Ctx& c, NodeId node, std::string_view name) {
  LAMINA_BEGIN("RemoveXattr", c, node);
  seen_.name = name;
  return Ok();
}

#undef LAMINA_BEGIN

}  // namespace lamina::testing
