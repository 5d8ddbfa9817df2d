#include "core/fd_channel.h"

#include <unistd.h>

#include <cerrno>

#if defined(__SANITIZE_THREAD__)
#define LAMINA_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LAMINA_TSAN 1
#endif
#endif

#ifdef LAMINA_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace lamina {
namespace {

// The kernel orders requests across workers (a READ follows the OPEN whose
// reply it needs; FORGET follows the reply that handed out the node), but
// ThreadSanitizer cannot see through /dev/fuse. Sending a reply "releases"
// and reading a request "acquires" this token, telling it what the kernel
// guarantees.
[[maybe_unused]] char kernel_order_token;

void KernelOrderAcquire() {
#ifdef LAMINA_TSAN
  __tsan_acquire(&kernel_order_token);
#endif
}

void KernelOrderRelease() {
#ifdef LAMINA_TSAN
  __tsan_release(&kernel_order_token);
#endif
}

}  // namespace

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
    if (error == EINTR || error == EAGAIN || error == ENOENT) continue;
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
