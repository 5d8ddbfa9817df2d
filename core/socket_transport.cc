#include "core/socket_transport.h"

#include <sys/socket.h>

namespace lamina {

Result<std::unique_ptr<Channel>> SocketTransport::NewChannel() {
  return std::unique_ptr<Channel>(std::make_unique<FdChannel>(primary_.fd(), /*owned=*/false));
}

Result<int> SocketTransport::OpenBacking(int fd) {
  if (!backing_supported_) return Errno{EPERM};
  if (fd < 0) return Errno{EBADF};
  open_backings_.fetch_add(1);
  return next_backing_id_.fetch_add(1);
}

Result<void> SocketTransport::CloseBacking(int backing_id) {
  if (!backing_supported_ || backing_id <= 0) return Errno{EINVAL};
  open_backings_.fetch_sub(1);
  return Ok();
}

void SocketTransport::Shutdown() {
  shutdown(primary_.fd(), SHUT_RDWR);
}

}  // namespace lamina
