// RecordingFilesystem: a Filesystem that records the decoded arguments of
// the last call and answers with canned results, so a test can check both
// halves of the dispatcher (decode and encode) through a real Session.

#ifndef LAMINA_TESTS_CORE_RECORDING_FILESYSTEM_H_
#define LAMINA_TESTS_CORE_RECORDING_FILESYSTEM_H_

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/connection.h"
#include "core/filesystem.h"

namespace lamina::testing {

// What the last call saw. Fields a given operation does not have stay at
// their defaults.
struct Seen {
  std::string op;
  RequestContext ctx;  // kernel_groups is copied into `groups` instead
  std::vector<uint32_t> groups;
  NodeId node = 0;
  NodeId node2 = 0;
  std::string name;
  std::string name2;
  std::optional<uint64_t> fh;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint32_t mode = 0;
  uint64_t rdev = 0;
  int64_t flags = 0;
  uint32_t flags2 = 0;
  bool flag = false;  // datasync, wait, kill_suidgid
  size_t out_size = 0;
  std::string data;
  SetAttrRequest setattr;
  LockRequest lock;
  CopyRangeRequest copy;
};

class RecordingFilesystem : public Filesystem {
 public:
  // Canned results, set before the request is sent.
  int fail = 0;                 // when non-zero, every call returns this errno
  Entry entry;                  // LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, CREATE, TMPFILE
  Attributes attributes;        // GETATTR, SETATTR
  OpenReply open;               // OPEN, OPENDIR, CREATE, TMPFILE
  std::string data = "canned";  // READ, READLINK, GETXATTR, LISTXATTR, IOCTL output
  uint64_t number = 0;          // LSEEK, BMAP, COPY_FILE_RANGE results
  std::function<void(InitConfig&)> on_init;

  Seen seen() const {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }
  int calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  // (node, nlookup) of every FORGET, in order.
  std::vector<std::pair<NodeId, uint64_t>> forgets() const {
    std::lock_guard<std::mutex> lock(mu_);
    return forgets_;
  }

  void Init(InitConfig& config) override {
    if (on_init) on_init(config);
  }
  Result<Entry> Lookup(const Ctx& c, NodeId parent, std::string_view name) override;
  void Forget(NodeId node, uint64_t nlookup) override;
  Result<Attributes> GetAttr(const Ctx& c, NodeId node, std::optional<uint64_t> fh) override;
  Result<StatxAttributes> Statx(const Ctx& c, NodeId node, std::optional<uint64_t> fh,
                                uint32_t flags, uint32_t mask) override;
  Result<Attributes> SetAttr(const Ctx& c, NodeId node, const SetAttrRequest& req) override;
  Result<std::string> ReadLink(const Ctx& c, NodeId node) override;
  Result<void> Access(const Ctx& c, NodeId node, int mask) override;
  Result<struct statvfs> StatFs(const Ctx& c, NodeId node) override;
  Result<Entry> Mknod(const Ctx& c, NodeId parent, std::string_view name, mode_t mode,
                      dev_t rdev) override;
  Result<Entry> Mkdir(const Ctx& c, NodeId parent, std::string_view name, mode_t mode) override;
  Result<Entry> Symlink(const Ctx& c, NodeId parent, std::string_view name,
                        std::string_view target) override;
  Result<Entry> Link(const Ctx& c, NodeId node, NodeId new_parent,
                     std::string_view new_name) override;
  Result<void> Unlink(const Ctx& c, NodeId parent, std::string_view name) override;
  Result<void> Rmdir(const Ctx& c, NodeId parent, std::string_view name) override;
  Result<void> Rename(const Ctx& c, NodeId parent, std::string_view name, NodeId new_parent,
                      std::string_view new_name, uint32_t flags) override;
  Result<CreateReply> Create(const Ctx& c, NodeId parent, std::string_view name, mode_t mode,
                             const OpenRequest& req) override;
  Result<CreateReply> Tmpfile(const Ctx& c, NodeId parent, mode_t mode,
                              const OpenRequest& req) override;
  Result<OpenReply> Open(const Ctx& c, NodeId node, const OpenRequest& req) override;
  Result<size_t> Read(const Ctx& c, NodeId node, uint64_t fh, uint64_t offset,
                      std::span<std::byte> out) override;
  Result<size_t> Write(const Ctx& c, NodeId node, const WriteRequest& req) override;
  Result<void> Flush(const Ctx& c, NodeId node, uint64_t fh, uint64_t lock_owner) override;
  Result<void> Release(const Ctx& c, NodeId node, uint64_t fh, int flags) override;
  Result<void> Fsync(const Ctx& c, NodeId node, uint64_t fh, bool datasync) override;
  Result<void> Fallocate(const Ctx& c, NodeId node, uint64_t fh, int mode, uint64_t offset,
                         uint64_t length) override;
  Result<uint64_t> Lseek(const Ctx& c, NodeId node, uint64_t fh, uint64_t offset,
                         int whence) override;
  Result<size_t> CopyFileRange(const Ctx& c, const CopyRangeRequest& req) override;
  Result<IoctlReply> Ioctl(const Ctx& c, NodeId node, const IoctlRequest& req,
                           std::span<std::byte> out) override;
  Result<uint64_t> Bmap(const Ctx& c, NodeId node, uint32_t blocksize, uint64_t block) override;
  Result<struct flock> GetLock(const Ctx& c, NodeId node, const LockRequest& req) override;
  Result<void> SetLock(const Ctx& c, NodeId node, const LockRequest& req, bool wait) override;
  Result<OpenReply> OpenDir(const Ctx& c, NodeId node, int flags) override;
  Result<void> ReadDir(const Ctx& c, NodeId node, uint64_t fh, uint64_t offset,
                       DirentWriter& out) override;
  Result<void> ReleaseDir(const Ctx& c, NodeId node, uint64_t fh) override;
  Result<void> FsyncDir(const Ctx& c, NodeId node, uint64_t fh, bool datasync) override;
  Result<void> SyncFs(const Ctx& c, NodeId node) override;
  Result<void> SetXattr(const Ctx& c, NodeId node, std::string_view name,
                        std::span<const std::byte> value, int flags,
                        uint32_t setxattr_flags) override;
  Result<size_t> GetXattr(const Ctx& c, NodeId node, std::string_view name,
                          std::span<char> out) override;
  Result<size_t> ListXattr(const Ctx& c, NodeId node, std::span<char> out) override;
  Result<void> RemoveXattr(const Ctx& c, NodeId node, std::string_view name) override;

 private:
  // Starts recording a call: resets `seen_` and fills the common fields.
  // Returns the errno to fail with (0 to succeed). Callers hold mu_.
  int Begin(const char* op, const Ctx& c, NodeId node);
  // Copies `data` into `out`, as much as fits; ERANGE for a too-small,
  // non-empty buffer, the full size for a probe.
  Result<size_t> FillSized(std::span<char> out) const;

  mutable std::mutex mu_;
  Seen seen_;
  int calls_ = 0;
  std::vector<std::pair<NodeId, uint64_t>> forgets_;
};

}  // namespace lamina::testing

#endif  // LAMINA_TESTS_CORE_RECORDING_FILESYSTEM_H_
