// FdChannel: a Channel over a message-preserving descriptor (/dev/fuse or a
// SOCK_SEQPACKET socket). Shared by the kernel and test transports.

#ifndef LAMINA_CORE_FD_CHANNEL_H_
#define LAMINA_CORE_FD_CHANNEL_H_

#include "core/transport.h"

namespace lamina {

class FdChannel : public Channel {
 public:
  // `owned`: close `fd` on destruction. `fd` may be O_NONBLOCK, and then
  // Receive answers EAGAIN when no request is pending instead of waiting.
  FdChannel(int fd, bool owned) : fd_(fd), owned_(owned) {}
  ~FdChannel() override;

  FdChannel(const FdChannel&) = delete;
  FdChannel& operator=(const FdChannel&) = delete;

  Result<size_t> Receive(std::span<std::byte> buffer) override;
  Result<void> Send(std::span<const struct iovec> iov) override;

  int fd() const { return fd_; }

 private:
  int fd_;
  bool owned_;
};

}  // namespace lamina

#endif  // LAMINA_CORE_FD_CHANNEL_H_
