#include "integration/difffuzz/ops.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "integration/difffuzz/fs_util.h"

namespace lamina::difffuzz {
namespace {

std::string Outcome(int rc) {
  return rc >= 0 ? "ok" : ErrnoName(errno);
}

// The parent directory of `path` below `root` (see ops.h).
class ParentDir {
 public:
  ParentDir(int root, const std::string& path) {
    const size_t slash = path.rfind('/');
    leaf_ = slash == std::string::npos ? path : path.substr(slash + 1);
    const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
    struct open_how how {};
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    fd_ = static_cast<int>(syscall(SYS_openat2, root, dir.c_str(), &how, sizeof(how)));
    if (fd_ < 0) error_ = "parent:" + ErrnoName(errno);
  }
  ~ParentDir() {
    if (fd_ >= 0) close(fd_);
  }
  ParentDir(const ParentDir&) = delete;
  ParentDir& operator=(const ParentDir&) = delete;

  bool ok() const { return fd_ >= 0; }
  const std::string& error() const { return error_; }
  int fd() const { return fd_; }
  const char* leaf() const { return leaf_.c_str(); }
  // The object itself by a path that does not follow it if a symlink.
  std::string Path() const { return ProcPath(fd_, leaf_); }
  // The type of the object (0 if missing), not followed.
  mode_t Type() const {
    struct stat st;
    return fstatat(fd_, leaf(), &st, AT_SYMLINK_NOFOLLOW) == 0 ? st.st_mode & S_IFMT : 0;
  }

 private:
  int fd_ = -1;
  std::string leaf_;
  std::string error_;
};

// For the calls that would follow a symlink or block on a FIFO: only
// regular files and directories (and missing names, for the errno) pass.
bool FollowSafe(mode_t type, bool directories) {
  return type == 0 || type == S_IFREG || (directories && type == S_IFDIR);
}

std::string Skipped(mode_t type) {
  return "skipped:" + std::to_string(type >> 12);
}

std::string WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0) return "write=" + ErrnoName(errno);
    done += static_cast<size_t>(n);
  }
  return "ok";
}

std::string Apply(int root, const Op& op) {
  ParentDir at(root, op.path);
  if (!at.ok()) return at.error();
  switch (op.kind) {
    case Op::Kind::kRename:
    case Op::Kind::kRenameNoReplace:
    case Op::Kind::kExchange:
    case Op::Kind::kLink: {
      ParentDir to(root, op.path2);
      if (!to.ok()) return "to-" + to.error();
      if (op.kind == Op::Kind::kLink) {
        return Outcome(linkat(at.fd(), at.leaf(), to.fd(), to.leaf(), 0));
      }
      unsigned flags = op.kind == Op::Kind::kRenameNoReplace ? RENAME_NOREPLACE
                       : op.kind == Op::Kind::kExchange      ? RENAME_EXCHANGE
                                                             : 0;
      return Outcome(renameat2(at.fd(), at.leaf(), to.fd(), to.leaf(), flags));
    }
    case Op::Kind::kChmod: {
      mode_t type = at.Type();
      if (!FollowSafe(type, true)) return Skipped(type);
      return Outcome(fchmodat(at.fd(), at.leaf(), op.mode, 0));
    }
    case Op::Kind::kChown:
      return Outcome(fchownat(at.fd(), at.leaf(), op.uid, op.gid, AT_SYMLINK_NOFOLLOW));
    case Op::Kind::kAppend:
    case Op::Kind::kTruncate: {
      mode_t type = at.Type();
      if (!FollowSafe(type, true)) return Skipped(type);
      int flags = op.kind == Op::Kind::kAppend ? O_WRONLY | O_APPEND : O_WRONLY;
      int fd = openat(at.fd(), at.leaf(), flags | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) return Outcome(fd);
      std::string out = op.kind == Op::Kind::kAppend
                            ? WriteAll(fd, op.data)
                            : Outcome(ftruncate(fd, static_cast<off_t>(op.data.size())));
      close(fd);
      return out;
    }
    case Op::Kind::kUnlink:
      return Outcome(unlinkat(at.fd(), at.leaf(), 0));
    case Op::Kind::kRmdir:
      return Outcome(unlinkat(at.fd(), at.leaf(), AT_REMOVEDIR));
    case Op::Kind::kMkdir:
      return Outcome(mkdirat(at.fd(), at.leaf(), op.mode));
    case Op::Kind::kCreate: {
      int fd =
          openat(at.fd(), at.leaf(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, op.mode);
      if (fd < 0) return Outcome(fd);
      std::string out = WriteAll(fd, op.data);
      close(fd);
      return out;
    }
    case Op::Kind::kSymlink:
      return Outcome(symlinkat(op.data.c_str(), at.fd(), at.leaf()));
    case Op::Kind::kSetXattr:
      return Outcome(
          lsetxattr(at.Path().c_str(), op.name.c_str(), op.data.data(), op.data.size(), 0));
    case Op::Kind::kRemoveXattr:
      return Outcome(lremovexattr(at.Path().c_str(), op.name.c_str()));
    case Op::Kind::kMknodWhiteout:
      return Outcome(mknodat(at.fd(), at.leaf(), S_IFCHR | 0, makedev(0, 0)));
  }
  return "unknown op";
}

}  // namespace

std::string ApplyOp(const std::string& root, const Op& op) {
  int fd = open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return "root:" + ErrnoName(errno);
  std::string out = Apply(fd, op);
  close(fd);
  return out;
}

}  // namespace lamina::difffuzz
