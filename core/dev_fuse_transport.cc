#include "core/dev_fuse_transport.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "core/fuse_abi.h"
#include "spdlog/spdlog.h"

namespace lamina {
namespace {

// A new descriptor on the connection behind `session_fd`, opened with
// `flags` besides O_RDWR | O_CLOEXEC.
Result<int> OpenClone(int session_fd, int flags) {
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC | flags);
  if (fd < 0) return LastErrno();
  uint32_t master = static_cast<uint32_t>(session_fd);
  if (ioctl(fd, abi::kDevIocClone, &master) != 0) {
    Errno error = LastErrno();
    close(fd);
    return error;
  }
  return fd;
}

}  // namespace

std::unique_ptr<Channel> DevFuseTransport::CloneChannel(int session_fd) {
  Result<int> fd = OpenClone(session_fd, 0);
  if (fd.ok()) return std::make_unique<FdChannel>(*fd, /*owned=*/true);
  // Unprivileged mounts through fusermount3 may not be able to open the
  // device themselves; sharing the session descriptor still works.
  spdlog::debug("cannot clone the FUSE descriptor (errno {}); workers share one", fd.error());
  return std::make_unique<FdChannel>(session_fd, /*owned=*/false);
}

Result<std::unique_ptr<Channel>> DevFuseTransport::NewPollingChannel() {
  Result<int> fd = OpenClone(primary_.fd(), O_NONBLOCK);
  if (!fd.ok()) return Errno{fd.error()};
  return std::unique_ptr<Channel>(std::make_unique<FdChannel>(*fd, /*owned=*/true));
}

Result<void> DevFuseTransport::Notify(std::span<const struct iovec> iov) {
  return primary_.Send(iov);
}

Result<int> DevFuseTransport::OpenBacking(int fd) {
  abi::BackingMap map{};
  map.fd = fd;
  int id = ioctl(primary_.fd(), abi::kDevIocBackingOpen, &map);
  if (id < 0) return LastErrno();
  return id;
}

Result<void> DevFuseTransport::CloseBacking(int backing_id) {
  uint32_t id = static_cast<uint32_t>(backing_id);
  return CheckSyscall(ioctl(primary_.fd(), abi::kDevIocBackingClose, &id));
}

}  // namespace lamina
