// Checks shared by the passthrough's and the overlay's stale-attribute tests
// (fstests' generic/277, generic/355 and generic/683): a request that
// changes attributes the kernel does not know it changed must drop the
// kernel's cached ones, and must change them as the kernel would have.

#ifndef LAMINA_INTEGRATION_STALE_ATTRS_CHECKS_H_
#define LAMINA_INTEGRATION_STALE_ATTRS_CHECKS_H_

#include <fcntl.h>
#include <grp.h>
#include <linux/fs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "gtest/gtest.h"

namespace lamina::testing {

// A step of a check failed: a failure of the test, never an answer that both
// sides of a comparison could share.
inline std::string StepFailed(const std::string& what) {
  ADD_FAILURE() << what << ": " << strerror(errno);
  return what;
}

// The ctime through `path` after FS_IOC_SETFLAGS changed the file, once the
// clock has passed the ctime the kernel cached: "moved" or "stale".
inline std::string CtimeAfterChattr(const std::string& path) {
  struct stat before {};
  if (stat(path.c_str(), &before) != 0) return StepFailed("stat failed");
  // A later ctime needs a later clock tick (ctime comes from the coarse
  // clock); the wait ends as soon as the tick passed.
  struct timespec now {};
  for (int i = 0; i < 1000000; ++i) {
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    if (now.tv_sec > before.st_ctim.tv_sec ||
        (now.tv_sec == before.st_ctim.tv_sec && now.tv_nsec > before.st_ctim.tv_nsec)) {
      break;
    }
    sched_yield();
  }
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return StepFailed("open failed");
  int flags = 0;
  bool set = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
  flags |= FS_NOATIME_FL;
  set = set && ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
  close(fd);
  if (!set) return StepFailed("chattr failed");
  struct stat after {};
  if (stat(path.c_str(), &after) != 0) return StepFailed("stat failed");
  return after.st_ctim.tv_sec == before.st_ctim.tv_sec &&
                 after.st_ctim.tv_nsec == before.st_ctim.tv_nsec
             ? "stale"
             : "moved";
}

// The mode of a file at `path` owned by uid 1000 with mode `mode` after
// uid 1000 wrote 4 KiB to it with O_DIRECT (as fstests' generic/355 does),
// asked for as `stat -c %A` asks: statx for STATX_MODE alone, which the
// kernel answers from its cache unless the mode itself was invalidated (a
// write invalidates size and times only). The directory must let uid 1000
// reach the file.
inline std::string ModeAfterOwnersDirectWrite(const std::string& path, mode_t mode) {
  int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return StepFailed("create failed");
  close(fd);
  if (chown(path.c_str(), 1000, 1000) != 0 || chmod(path.c_str(), mode) != 0) {
    return StepFailed("chmod failed");
  }
  struct statx stx {};
  if (statx(AT_FDCWD, path.c_str(), 0, STATX_MODE, &stx) != 0) return StepFailed("statx failed");
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(1000) != 0 || setuid(1000) != 0) _exit(2);
    void* buffer = nullptr;
    if (posix_memalign(&buffer, 4096, 4096) != 0) _exit(3);
    memset(buffer, 'x', 4096);
    int out = open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
    if (out < 0 || pwrite(out, buffer, 4096, 0) != 4096) _exit(4);
    close(out);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return StepFailed("uid 1000's direct write failed at step " +
                      std::to_string(WEXITSTATUS(status)));
  }
  if (statx(AT_FDCWD, path.c_str(), 0, STATX_MODE, &stx) != 0) return StepFailed("statx failed");
  char shown[16];
  snprintf(shown, sizeof(shown), "%04o", stx.stx_mode & 07777);
  return shown;
}

// The mode of a root-owned file at `path` with mode `mode` (writable by
// all) after uid 1000, outside its group and without CAP_FSETID, allocated
// 64 KiB inside it with fallocate(2) (as fstests' generic/683 does), asked
// for as statx(STATX_MODE). The directory must let uid 1000 reach the file.
inline std::string ModeAfterStrangersFallocate(const std::string& path, mode_t mode) {
  int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return StepFailed("create failed");
  const bool sized = ftruncate(fd, 196608) == 0;
  close(fd);
  if (!sized) return StepFailed("truncate failed");
  if (chmod(path.c_str(), mode) != 0) return StepFailed("chmod failed");
  struct statx stx {};
  if (statx(AT_FDCWD, path.c_str(), 0, STATX_MODE, &stx) != 0) return StepFailed("statx failed");
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(1000) != 0 || setuid(1000) != 0) _exit(2);
    int out = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (out < 0 || fallocate(out, 0, 65536, 65536) != 0) _exit(3);
    close(out);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return StepFailed("uid 1000's fallocate failed at step " + std::to_string(WEXITSTATUS(status)));
  }
  if (statx(AT_FDCWD, path.c_str(), 0, STATX_MODE, &stx) != 0) return StepFailed("statx failed");
  char shown[16];
  snprintf(shown, sizeof(shown), "%04o", stx.stx_mode & 07777);
  return shown;
}

}  // namespace lamina::testing

#endif  // LAMINA_INTEGRATION_STALE_ATTRS_CHECKS_H_
