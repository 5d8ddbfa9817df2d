#include "core/fd_channel.h"

#include <unistd.h>

#include <cerrno>

#include "core/kernel_order.h"

namespace lamina {

FdChannel::~FdChannel() {
  if (owned_ && fd_ >= 0) close(fd_);
}

Result<size_t> FdChannel::Receive(std::span<std::byte> buffer) {
  for (;;) {
    ssize_t n = read(fd_, buffer.data(), buffer.size());
    if (n > 0) {
      KernelOrderAcquire();
      return static_cast<size_t>(n);
    }
    if (n == 0) return Errno{ENODEV};  // peer closed (test transport)
    int error = errno;
    // ENOENT: the request was interrupted before we read it; read the next.
    if (error == EINTR || error == ENOENT) continue;
    if (error == EAGAIN) return Errno{EAGAIN};  // only on an O_NONBLOCK descriptor
    // EBADF/ECONNRESET/ESHUTDOWN: the other side is gone as well.
    if (error == EBADF || error == ECONNRESET || error == ESHUTDOWN || error == ECONNABORTED) {
      return Errno{ENODEV};
    }
    return Errno{error};
  }
}

Result<void> FdChannel::Send(std::span<const struct iovec> iov) {
  KernelOrderRelease();
  for (;;) {
    ssize_t n = writev(fd_, iov.data(), static_cast<int>(iov.size()));
    if (n >= 0) return Ok();
    if (errno == EINTR) continue;
    return LastErrno();
  }
}

}  // namespace lamina
