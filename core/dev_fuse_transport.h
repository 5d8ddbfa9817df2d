// DevFuseTransport: the kernel's /dev/fuse connection.
//
// Each extra worker gets its own descriptor cloned with FUSE_DEV_IOC_CLONE,
// so the kernel can hand a request to whichever worker is already waiting
// without all workers contending on one file's wait queue.

#ifndef LAMINA_CORE_DEV_FUSE_TRANSPORT_H_
#define LAMINA_CORE_DEV_FUSE_TRANSPORT_H_

#include "core/fd_channel.h"
#include "core/transport.h"

namespace lamina {

class DevFuseTransport : public Transport {
 public:
  // `session_fd` is the mounted connection's descriptor; it stays owned by
  // the caller (the mount) and must outlive the transport.
  explicit DevFuseTransport(int session_fd) : primary_(session_fd, /*owned=*/false) {}

  // A channel of its own on the connection behind `session_fd`: a
  // descriptor cloned with FUSE_DEV_IOC_CLONE, or `session_fd` itself (not
  // owned) where cloning is impossible.
  static std::unique_ptr<Channel> CloneChannel(int session_fd);

  Channel& primary() override { return primary_; }
  Result<std::unique_ptr<Channel>> NewChannel() override { return CloneChannel(primary_.fd()); }
  // A clone opened O_NONBLOCK (the flag belongs to the open file, so the
  // workers' blocking descriptors keep sleeping in read).
  Result<std::unique_ptr<Channel>> NewPollingChannel() override;
  Result<void> Notify(std::span<const struct iovec> iov) override;
  Result<int> OpenBacking(int fd) override;
  Result<void> CloseBacking(int backing_id) override;
  void Shutdown() override {}

 protected:
  int session_fd() const { return primary_.fd(); }

 private:
  FdChannel primary_;
};

}  // namespace lamina

#endif  // LAMINA_CORE_DEV_FUSE_TRANSPORT_H_
