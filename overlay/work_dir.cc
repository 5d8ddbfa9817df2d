#include "overlay/work_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace lamina::overlay {
namespace {

// work/work holds what one mount staged: files, whiteouts, empty
// directories, incompat/volatile. Anything deeper was not made by an
// overlay; past this depth it is left where it is rather than risk the
// stack on a tree built to be deep.
constexpr int kMaxEmptyDepth = 64;

// The names in the directory `dir_fd`, "." and ".." left out.
std::vector<std::string> ListNames(int dir_fd) {
  std::vector<std::string> names;
  const int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return names;
  DIR* dir = fdopendir(fd);
  if (dir == nullptr) {
    close(fd);
    return names;
  }
  while (struct dirent* e = readdir(dir)) {
    const std::string_view name = e->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  closedir(dir);
  return names;
}

void EmptyDirectoryAt(int dir_fd, int depth) {
  for (const std::string& name : ListNames(dir_fd)) {
    // A symlink, file or device goes at once (unlinkat never follows);
    // EISDIR says it is a directory, to be emptied first.
    if (unlinkat(dir_fd, name.c_str(), 0) == 0 || errno == ENOENT) continue;
    if (errno != EISDIR) {
      spdlog::warn("overlay: cannot remove {} from work/work: {}", name, strerror(errno));
      continue;
    }
    if (depth >= kMaxEmptyDepth) {
      spdlog::warn("overlay: {} in work/work is nested too deep to empty; left in place", name);
      continue;
    }
    const int child = OpenBeneath(dir_fd, name.c_str(), O_PATH | O_DIRECTORY);
    if (child < 0) {
      // EXDEV: a mount point, which is not ours to empty.
      spdlog::warn("overlay: cannot enter {} in work/work: {}", name, strerror(errno));
      continue;
    }
    EmptyDirectoryAt(child, depth + 1);
    close(child);
    if (unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0) {
      spdlog::warn("overlay: cannot remove {} from work/work: {}", name, strerror(errno));
    }
  }
}

// Opens the directory `name` in `dir_fd`, making it first if absent. With
// `replace`, something else than a directory there (a symlink, a file) is
// removed first, as the kernel does at work/work; otherwise it is ENOTDIR,
// as the kernel answers for work/index. The descriptor, or -errno.
int OpenOrMakeDirectory(int dir_fd, const char* name, bool replace) {
  struct stat st;
  if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      if (!replace) return -ENOTDIR;
      if (unlinkat(dir_fd, name, 0) != 0 && errno != ENOENT) return -errno;
    }
  } else if (errno != ENOENT) {
    return -errno;
  }
  if (mkdirat(dir_fd, name, 0700) != 0 && errno != EEXIST) return -errno;
  // Whatever is there now (a symlink may have been planted meanwhile) is
  // opened only if it is a directory on this mount.
  const int fd = OpenBeneath(dir_fd, name, O_PATH | O_DIRECTORY);
  return fd >= 0 ? fd : -errno;
}

// Whether work/work holds incompat/volatile, reached without following
// symlinks (a symlink named incompat is no marker: it is removed with the
// rest, as the kernel removes it).
bool HasVolatileMarker(int staging_fd) {
  const int incompat = OpenBeneath(staging_fd, "incompat", O_PATH | O_DIRECTORY);
  if (incompat < 0) return false;
  struct stat st;
  const bool found = fstatat(incompat, "volatile", &st, AT_SYMLINK_NOFOLLOW) == 0;
  close(incompat);
  return found;
}

int MakeVolatileMarker(int staging_fd) {
  const int incompat = OpenOrMakeDirectory(staging_fd, "incompat", /*replace=*/false);
  if (incompat < 0) return -incompat;
  const int error = mkdirat(incompat, "volatile", 0700) == 0 || errno == EEXIST ? 0 : errno;
  close(incompat);
  return error;
}

}  // namespace

int OpenBeneath(int dir_fd, const char* name, int flags) {
  struct open_how how {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  return static_cast<int>(syscall(SYS_openat2, dir_fd, name, &how, sizeof(how)));
}

void EmptyDirectory(int dir_fd) {
  EmptyDirectoryAt(dir_fd, 0);
}

absl::StatusOr<WorkDirs> PrepareWorkDirs(int work_fd, const std::string& work_path,
                                         const WorkDirOptions& options) {
  WorkDirs dirs;
  // Like the kernel, stage in work/work so the workdir itself stays put.
  dirs.staging_fd = OpenOrMakeDirectory(work_fd, "work", /*replace=*/true);
  if (dirs.staging_fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot prepare ", work_path, "/work: ", strerror(-dirs.staging_fd)));
  }
  auto fail = [&dirs](absl::Status status) {
    close(dirs.staging_fd);
    if (dirs.index_fd >= 0) close(dirs.index_fd);
    return status;
  };
  // A volatile mount's marker: the upper may have lost writes in a crash.
  // Refuse, as the kernel does, until the user removes it.
  if (HasVolatileMarker(dirs.staging_fd)) {
    return fail(absl::FailedPreconditionError(
        absl::StrCat("the upper layer was used by a volatile mount (", work_path,
                     "/work/incompat/volatile exists); its contents may be incomplete: remove that "
                     "directory to mount anyway")));
  }
  EmptyDirectory(dirs.staging_fd);
  if (options.volatile_mode) {
    if (int error = MakeVolatileMarker(dirs.staging_fd); error != 0) {
      return fail(absl::InvalidArgumentError(
          absl::StrCat("cannot create ", work_path, "/work/incompat/volatile: ", strerror(error))));
    }
  }
  // The index keeps what earlier mounts (Lamina's or the kernel's) copied
  // up there; it is never emptied.
  if (options.index) {
    dirs.index_fd = OpenOrMakeDirectory(work_fd, "index", /*replace=*/false);
    if (dirs.index_fd < 0) {
      const int error = -dirs.index_fd;
      dirs.index_fd = -1;
      return fail(absl::InvalidArgumentError(
          absl::StrCat("cannot use ", work_path, "/index for index=on: ", strerror(error))));
    }
  }
  return dirs;
}

}  // namespace lamina::overlay
