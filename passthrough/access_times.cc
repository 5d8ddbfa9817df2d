#include "passthrough/access_times.h"

#include <errno.h>
#include <fcntl.h>

namespace lamina::passthrough {

int OpenatWithoutAtime(int dir_fd, const char* path, int flags) {
  const int fd = openat(dir_fd, path, flags | O_NOATIME);
  if (fd >= 0 || errno != EPERM || (flags & O_NOATIME) != 0) return fd;
  return openat(dir_fd, path, flags);
}

}  // namespace lamina::passthrough
