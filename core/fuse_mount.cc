#define FUSE_USE_VERSION 314
#include "core/fuse_mount.h"

#include <fuse3/fuse_lowlevel.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "spdlog/spdlog.h"

namespace lamina {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountinfo(const std::string& field) {
  auto octal = [](char d) { return d >= '0' && d <= '7'; };
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && octal(field[i + 1]) && octal(field[i + 2]) &&
        octal(field[i + 3])) {
      out.push_back(static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                                      (field[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

}  // namespace

int FindMountMinor(const std::string& mountpoint) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  int minor = -1;
  while (std::getline(mountinfo, line)) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    if (fields.size() < 5 || UnescapeMountinfo(fields[4]) != mountpoint) continue;
    std::vector<std::string> dev = absl::StrSplit(fields[2], ':');
    if (dev.size() == 2) minor = std::atoi(dev[1].c_str());  // the last match is on top
  }
  return minor;
}

absl::StatusOr<std::unique_ptr<FuseMount>> FuseMount::Create(
    const std::string& mountpoint, const std::vector<std::string>& options) {
  char resolved[PATH_MAX];
  if (realpath(mountpoint.c_str(), resolved) == nullptr) {
    return absl::NotFoundError(absl::StrCat("mountpoint ", mountpoint, ": ", strerror(errno)));
  }
  struct stat st;
  if (stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("mountpoint ", mountpoint,
                                                   " is not a directory"));
  }

  std::vector<std::string> argv_storage = {"lamina"};
  if (!options.empty()) {
    argv_storage.push_back("-o");
    argv_storage.push_back(absl::StrJoin(options, ","));
  }
  std::vector<char*> argv;
  for (std::string& arg : argv_storage) argv.push_back(arg.data());
  struct fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  struct fuse_lowlevel_ops no_ops {};

  std::unique_ptr<FuseMount> mount(new FuseMount());
  mount->session_ = fuse_session_new(&args, &no_ops, sizeof(no_ops), nullptr);
  fuse_opt_free_args(&args);
  if (mount->session_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("libfuse rejected the mount options: ", absl::StrJoin(options, ",")));
  }
  if (fuse_session_mount(mount->session_, resolved) != 0) {
    fuse_session_destroy(mount->session_);
    mount->session_ = nullptr;
    return absl::PermissionDeniedError(absl::StrCat("cannot mount FUSE at ", resolved,
                                                    " (see the message above)"));
  }
  mount->mountpoint_ = resolved;
  mount->fd_ = fuse_session_fd(mount->session_);
  mount->connection_id_ = FindMountMinor(resolved);
  return mount;
}

FuseMount::~FuseMount() {
  if (session_ == nullptr) return;
  Unmount();
  fuse_session_destroy(session_);  // also closes fd_
}

void FuseMount::Unmount() {
  std::lock_guard<std::mutex> lock(unmount_mu_);
  if (unmounted_ || session_ == nullptr) return;
  unmounted_ = true;
  // libfuse detaches lazily (via fusermount3 when unprivileged) but skips
  // connections that are already aborted, which would leave a dead mount
  // ("transport endpoint is not connected") behind: detach that one here.
  fuse_session_unmount(session_);
  if (connection_id_ >= 0 && FindMountMinor(mountpoint_) == connection_id_) {
    if (geteuid() == 0) {
      umount2(mountpoint_.c_str(), MNT_DETACH);
    } else {
      std::string command = absl::StrCat("fusermount3 -u -z -- '", mountpoint_, "' 2>/dev/null");
      if (system(command.c_str()) != 0) spdlog::warn("could not unmount {}", mountpoint_);
    }
  }
}

bool FuseMount::Abort() {
  if (connection_id_ < 0) return false;
  const char* kFusectl = "/sys/fs/fuse/connections";
  std::string path = absl::StrCat(kFusectl, "/", connection_id_, "/abort");
  if (access(path.c_str(), W_OK) != 0 && geteuid() == 0) {
    mount("fusectl", kFusectl, "fusectl", 0, nullptr);  // absent on minimal hosts
  }
  std::ofstream abort_file(path);
  if (!abort_file) return false;
  abort_file << "1";
  abort_file.close();
  return !abort_file.fail();
}

std::string FuseMount::LibfuseVersion() { return fuse_pkgversion(); }

}  // namespace lamina
