// Transport: how requests reach the server and replies leave it.
//
// The session never touches /dev/fuse itself. Today there are two
// transports: DevFuseTransport (the kernel device, one cloned descriptor per
// worker) and SocketTransport (a SOCK_SEQPACKET socketpair standing in for
// the kernel in tests). FUSE-over-io_uring and vhost-user-fs fit the same
// seam: a channel per queue, notifications on a side path.

#ifndef LAMINA_CORE_TRANSPORT_H_
#define LAMINA_CORE_TRANSPORT_H_

#include <sys/uio.h>

#include <cstddef>
#include <memory>
#include <span>

#include "core/result.h"

namespace lamina {

// One stream of requests, owned by one worker thread.
class Channel {
 public:
  virtual ~Channel() = default;

  // Blocks for the next request and returns its length. ENODEV means the
  // connection is gone (unmounted, aborted or shut down): the worker stops.
  // Transient conditions (EINTR, EAGAIN, ENOENT) are retried inside.
  virtual Result<size_t> Receive(std::span<std::byte> buffer) = 0;

  // Sends one complete reply (the out header is the first iovec). ENOENT
  // means the kernel already dropped an interrupted request.
  virtual Result<void> Send(std::span<const struct iovec> iov) = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;

  // The channel INIT arrives on. Owned by the transport.
  virtual Channel& primary() = 0;

  // An additional channel for another worker. May return a channel that
  // shares the primary's descriptor when cloning is unavailable.
  virtual Result<std::unique_ptr<Channel>> NewChannel() = 0;

  // Sends an unsolicited notification; safe from any thread.
  virtual Result<void> Notify(std::span<const struct iovec> iov) = 0;

  // Registers `fd` as a passthrough backing file and returns its id.
  // EPERM (no CAP_SYS_ADMIN), ENOTTY or EOPNOTSUPP mean passthrough is
  // unavailable on this connection.
  virtual Result<int> OpenBacking(int fd) = 0;
  virtual Result<void> CloseBacking(int backing_id) = 0;

  // Makes every blocked Receive return ENODEV where the transport can do so
  // by itself (tests). The kernel transport ends when the mount goes away.
  virtual void Shutdown() = 0;
};

}  // namespace lamina

#endif  // LAMINA_CORE_TRANSPORT_H_
