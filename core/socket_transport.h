// SocketTransport: a SOCK_SEQPACKET socketpair standing in for /dev/fuse.
//
// Message boundaries are preserved like the device's, so the session, the
// dispatcher and the decoder run unmodified in unit tests and the fuzzer
// with no mount and no privileges. The test plays the kernel on the other
// end of the pair.

#ifndef LAMINA_CORE_SOCKET_TRANSPORT_H_
#define LAMINA_CORE_SOCKET_TRANSPORT_H_

#include <atomic>

#include "core/fd_channel.h"
#include "core/transport.h"

namespace lamina {

class SocketTransport : public Transport {
 public:
  // Takes ownership of `server_fd`, this side of the pair.
  explicit SocketTransport(int server_fd) : primary_(server_fd, /*owned=*/true) {}

  Channel& primary() override { return primary_; }
  // Extra channels share the socket: the kernel side sees one peer.
  Result<std::unique_ptr<Channel>> NewChannel() override;
  Result<void> Notify(std::span<const struct iovec> iov) override { return primary_.Send(iov); }
  // Backing files are simulated: ids count up when enabled, else EPERM.
  Result<int> OpenBacking(int fd) override;
  Result<void> CloseBacking(int backing_id) override;
  void Shutdown() override;

  void set_backing_supported(bool supported) { backing_supported_ = supported; }
  int open_backing_count() const { return open_backings_.load(); }

 private:
  FdChannel primary_;
  bool backing_supported_ = false;
  std::atomic<int> next_backing_id_{1};
  std::atomic<int> open_backings_{0};
};

}  // namespace lamina

#endif  // LAMINA_CORE_SOCKET_TRANSPORT_H_
