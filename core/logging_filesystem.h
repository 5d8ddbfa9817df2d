// LoggingFilesystem: a decorator that traces every request of the
// filesystem it wraps (request id, operation, arguments, result or errno,
// latency) through spdlog at info level. Used by `laminafs -d`.

#ifndef LAMINA_CORE_LOGGING_FILESYSTEM_H_
#define LAMINA_CORE_LOGGING_FILESYSTEM_H_

#include <chrono>
#include <string>
#include <utility>

#include "core/connection.h"
#include "core/filesystem.h"

namespace lamina {

class LoggingFilesystem : public Filesystem {
 public:
  // `inner` must outlive the decorator.
  explicit LoggingFilesystem(Filesystem& inner) : inner_(inner) {}

  void Init(InitConfig& config) override;
  void Connected(Connection& connection) override { inner_.Connected(connection); }
  void Destroy() override { inner_.Destroy(); }
  Gauges GetGauges() const override { return inner_.GetGauges(); }

  Result<Entry> Lookup(const Ctx& c, NodeId p, std::string_view n) override {
    return Trace("LOOKUP", c, &Filesystem::Lookup, p, n);
  }
  void Forget(NodeId node, uint64_t nlookup) override;
  Result<Attributes> GetAttr(const Ctx& c, NodeId n, std::optional<uint64_t> fh) override {
    return Trace("GETATTR", c, &Filesystem::GetAttr, n, fh);
  }
  Result<StatxAttributes> Statx(const Ctx& c, NodeId n, std::optional<uint64_t> fh, uint32_t flags,
                                uint32_t mask) override {
    return Trace("STATX", c, &Filesystem::Statx, n, fh, flags, mask);
  }
  Result<Attributes> SetAttr(const Ctx& c, NodeId n, const SetAttrRequest& r) override {
    return Trace("SETATTR", c, &Filesystem::SetAttr, n, r);
  }
  Result<std::string> ReadLink(const Ctx& c, NodeId n) override {
    return Trace("READLINK", c, &Filesystem::ReadLink, n);
  }
  Result<void> Access(const Ctx& c, NodeId n, int mask) override {
    return Trace("ACCESS", c, &Filesystem::Access, n, mask);
  }
  Result<struct statvfs> StatFs(const Ctx& c, NodeId n) override {
    return Trace("STATFS", c, &Filesystem::StatFs, n);
  }
  Result<Entry> Mknod(const Ctx& c, NodeId p, std::string_view n, mode_t m, dev_t d) override {
    return Trace("MKNOD", c, &Filesystem::Mknod, p, n, m, d);
  }
  Result<Entry> Mkdir(const Ctx& c, NodeId p, std::string_view n, mode_t m) override {
    return Trace("MKDIR", c, &Filesystem::Mkdir, p, n, m);
  }
  Result<Entry> Symlink(const Ctx& c, NodeId p, std::string_view n, std::string_view t) override {
    return Trace("SYMLINK", c, &Filesystem::Symlink, p, n, t);
  }
  Result<Entry> Link(const Ctx& c, NodeId n, NodeId p, std::string_view name) override {
    return Trace("LINK", c, &Filesystem::Link, n, p, name);
  }
  Result<void> Unlink(const Ctx& c, NodeId p, std::string_view n) override {
    return Trace("UNLINK", c, &Filesystem::Unlink, p, n);
  }
  Result<void> Rmdir(const Ctx& c, NodeId p, std::string_view n) override {
    return Trace("RMDIR", c, &Filesystem::Rmdir, p, n);
  }
  Result<void> Rename(const Ctx& c, NodeId p, std::string_view n, NodeId np, std::string_view nn,
                      uint32_t flags) override {
    return Trace("RENAME", c, &Filesystem::Rename, p, n, np, nn, flags);
  }
  Result<CreateReply> Create(const Ctx& c, NodeId p, std::string_view n, mode_t m,
                             const OpenRequest& r) override {
    return Trace("CREATE", c, &Filesystem::Create, p, n, m, r);
  }
  Result<CreateReply> Tmpfile(const Ctx& c, NodeId p, mode_t m, const OpenRequest& r) override {
    return Trace("TMPFILE", c, &Filesystem::Tmpfile, p, m, r);
  }
  Result<OpenReply> Open(const Ctx& c, NodeId n, const OpenRequest& r) override {
    return Trace("OPEN", c, &Filesystem::Open, n, r);
  }
  Result<size_t> Read(const Ctx& c, NodeId n, uint64_t fh, uint64_t off,
                      std::span<std::byte> out) override {
    return Trace("READ", c, &Filesystem::Read, n, fh, off, out);
  }
  Result<size_t> Write(const Ctx& c, NodeId n, const WriteRequest& r) override {
    return Trace("WRITE", c, &Filesystem::Write, n, r);
  }
  Result<void> Flush(const Ctx& c, NodeId n, uint64_t fh, uint64_t owner) override {
    return Trace("FLUSH", c, &Filesystem::Flush, n, fh, owner);
  }
  Result<void> Release(const Ctx& c, NodeId n, uint64_t fh, int flags) override {
    return Trace("RELEASE", c, &Filesystem::Release, n, fh, flags);
  }
  Result<void> Fsync(const Ctx& c, NodeId n, uint64_t fh, bool datasync) override {
    return Trace("FSYNC", c, &Filesystem::Fsync, n, fh, datasync);
  }
  Result<void> Fallocate(const Ctx& c, NodeId n, uint64_t fh, int mode, uint64_t off,
                         uint64_t len) override {
    return Trace("FALLOCATE", c, &Filesystem::Fallocate, n, fh, mode, off, len);
  }
  Result<uint64_t> Lseek(const Ctx& c, NodeId n, uint64_t fh, uint64_t off, int whence) override {
    return Trace("LSEEK", c, &Filesystem::Lseek, n, fh, off, whence);
  }
  Result<size_t> CopyFileRange(const Ctx& c, const CopyRangeRequest& r) override;
  Result<IoctlReply> Ioctl(const Ctx& c, NodeId n, const IoctlRequest& r,
                           std::span<std::byte> out) override {
    return Trace("IOCTL", c, &Filesystem::Ioctl, n, r, out);
  }
  Result<uint64_t> Bmap(const Ctx& c, NodeId n, uint32_t bs, uint64_t block) override {
    return Trace("BMAP", c, &Filesystem::Bmap, n, bs, block);
  }
  Result<struct flock> GetLock(const Ctx& c, NodeId n, const LockRequest& r) override {
    return Trace("GETLK", c, &Filesystem::GetLock, n, r);
  }
  Result<void> SetLock(const Ctx& c, NodeId n, const LockRequest& r, bool wait) override {
    return Trace("SETLK", c, &Filesystem::SetLock, n, r, wait);
  }
  Result<OpenReply> OpenDir(const Ctx& c, NodeId n, int flags) override {
    return Trace("OPENDIR", c, &Filesystem::OpenDir, n, flags);
  }
  Result<void> ReadDir(const Ctx& c, NodeId n, uint64_t fh, uint64_t off,
                       DirentWriter& out) override {
    return Trace("READDIR", c, &Filesystem::ReadDir, n, fh, off, out);
  }
  Result<void> ReleaseDir(const Ctx& c, NodeId n, uint64_t fh) override {
    return Trace("RELEASEDIR", c, &Filesystem::ReleaseDir, n, fh);
  }
  Result<void> FsyncDir(const Ctx& c, NodeId n, uint64_t fh, bool datasync) override {
    return Trace("FSYNCDIR", c, &Filesystem::FsyncDir, n, fh, datasync);
  }
  Result<void> SyncFs(const Ctx& c, NodeId n) override {
    return Trace("SYNCFS", c, &Filesystem::SyncFs, n);
  }
  Result<void> SetXattr(const Ctx& c, NodeId n, std::string_view name,
                        std::span<const std::byte> value, int flags, uint32_t ext) override {
    return Trace("SETXATTR", c, &Filesystem::SetXattr, n, name, value, flags, ext);
  }
  Result<size_t> GetXattr(const Ctx& c, NodeId n, std::string_view name,
                          std::span<char> out) override {
    return Trace("GETXATTR", c, &Filesystem::GetXattr, n, name, out);
  }
  Result<size_t> ListXattr(const Ctx& c, NodeId n, std::span<char> out) override {
    return Trace("LISTXATTR", c, &Filesystem::ListXattr, n, out);
  }
  Result<void> RemoveXattr(const Ctx& c, NodeId n, std::string_view name) override {
    return Trace("REMOVEXATTR", c, &Filesystem::RemoveXattr, n, name);
  }

  // Human-readable renderings used in the trace (also handy in tests).
  static std::string Describe(std::string_view s);
  static std::string Describe(const std::optional<uint64_t>& fh);
  static std::string Describe(const SetAttrRequest& r);
  static std::string Describe(const OpenRequest& r);
  static std::string Describe(const WriteRequest& r);
  static std::string Describe(const LockRequest& r);
  static std::string Describe(const IoctlRequest& r);
  static std::string Describe(const DirentWriter& w);
  static std::string Describe(std::span<std::byte> s);
  static std::string Describe(std::span<char> s);
  static std::string Describe(std::span<const std::byte> s);
  template <typename T>
  static std::string Describe(const T& value) requires std::is_arithmetic_v<T> {
    return std::to_string(value);
  }

  static std::string DescribeResult(const Result<void>& r);
  static std::string DescribeResult(const Result<Entry>& r);
  static std::string DescribeResult(const Result<Attributes>& r);
  static std::string DescribeResult(const Result<StatxAttributes>& r);
  static std::string DescribeResult(const Result<OpenReply>& r);
  static std::string DescribeResult(const Result<CreateReply>& r);
  static std::string DescribeResult(const Result<std::string>& r);
  static std::string DescribeResult(const Result<IoctlReply>& r);
  static std::string DescribeResult(const Result<struct flock>& r);
  static std::string DescribeResult(const Result<struct statvfs>& r);
  template <typename T>
  static std::string DescribeResult(const Result<T>& r) requires std::is_arithmetic_v<T> {
    return r.ok() ? std::to_string(*r) : ErrnoText(r.error());
  }
  static std::string ErrnoText(int error);

 private:
  template <typename R, typename... Params, typename... Args>
  R Trace(const char* op, const Ctx& ctx, R (Filesystem::*method)(const Ctx&, Params...),
          Args&&... args) {
    std::string described = DescribeAll(args...);
    auto start = std::chrono::steady_clock::now();
    R result = (inner_.*method)(ctx, std::forward<Args>(args)...);
    auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
    Log(ctx, op, described, DescribeResult(result), micros);
    return result;
  }

  template <typename... Args>
  static std::string DescribeAll(const Args&... args) {
    std::string out;
    ((out += (out.empty() ? "" : ", ") + Describe(args)), ...);
    return out;
  }

  static void Log(const Ctx& ctx, const char* op, const std::string& args,
                  const std::string& result, int64_t micros);

  Filesystem& inner_;
};

}  // namespace lamina

#endif  // LAMINA_CORE_LOGGING_FILESYSTEM_H_
