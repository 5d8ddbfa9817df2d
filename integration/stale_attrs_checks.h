// The check shared by the passthrough's and the overlay's stale-attribute
// tests (fstests' generic/277): a request that changes attributes the kernel
// does not know it changed must drop the kernel's cached ones.

#ifndef LAMINA_INTEGRATION_STALE_ATTRS_CHECKS_H_
#define LAMINA_INTEGRATION_STALE_ATTRS_CHECKS_H_

#include <fcntl.h>
#include <linux/fs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <string>

namespace lamina::testing {

// The ctime through `path` after FS_IOC_SETFLAGS changed the file, once the
// clock has passed the ctime the kernel cached: "moved" or "stale".
inline std::string CtimeAfterChattr(const std::string& path) {
  struct stat before {};
  if (stat(path.c_str(), &before) != 0) return "stat failed";
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
  if (fd < 0) return "open failed";
  int flags = 0;
  bool set = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
  flags |= FS_NOATIME_FL;
  set = set && ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
  close(fd);
  if (!set) return "chattr failed";
  struct stat after {};
  if (stat(path.c_str(), &after) != 0) return "stat failed";
  return after.st_ctim.tv_sec == before.st_ctim.tv_sec &&
                 after.st_ctim.tv_nsec == before.st_ctim.tv_nsec
             ? "stale"
             : "moved";
}

}  // namespace lamina::testing

#endif  // LAMINA_INTEGRATION_STALE_ATTRS_CHECKS_H_
