// Transport: how requests reach the server and replies leave it.
//
// The session never touches /dev/fuse itself. Today there are three
// transports: DevFuseTransport (the kernel device, one cloned descriptor per
// worker), IoUringTransport (FUSE-over-io_uring: a channel per CPU queue,
// /dev/fuse for INIT, FORGET, INTERRUPT and notifications) and
// SocketTransport (a SOCK_SEQPACKET socketpair standing in for the kernel in
// tests). vhost-user-fs would fit the same seam.

#ifndef LAMINA_CORE_TRANSPORT_H_
#define LAMINA_CORE_TRANSPORT_H_

#include <sys/uio.h>

#include <cerrno>
#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "core/result.h"

namespace lamina {

struct InitConfig;
struct InitReply;

// One stream of requests, owned by one worker thread at a time.
class Channel {
 public:
  virtual ~Channel() = default;

  // Blocks for the next request and returns its length. ENODEV means the
  // connection is gone (unmounted, aborted or shut down): the worker stops.
  // Transient conditions (EINTR, ENOENT) are retried inside. A polling
  // channel (Transport::NewPollingChannel) answers EAGAIN instead of
  // blocking.
  virtual Result<size_t> Receive(std::span<std::byte> buffer) = 0;

  // Like Receive(), but a channel that already holds the request in memory
  // of its own (an io_uring entry) may return it there instead of copying
  // it into `buffer`; it stays valid until the next Receive on this channel.
  virtual Result<std::span<const std::byte>> ReceiveView(std::span<std::byte> buffer) {
    Result<size_t> n = Receive(buffer);
    if (!n.ok()) return Errno{n.error()};
    return std::span<const std::byte>(buffer.first(*n));
  }

  // Sends one complete reply (the out header is the first iovec). ENOENT
  // means the kernel already dropped an interrupted request.
  virtual Result<void> Send(std::span<const struct iovec> iov) = 0;

  // Called once on the worker's thread before its first Receive: a channel
  // that must be set up by the thread that uses it (an io_uring queue)
  // does so here, so that the worker counts as ready only when it is.
  virtual void Prepare() {}
};

class Transport {
 public:
  virtual ~Transport() = default;

  // The channel INIT arrives on. Owned by the transport.
  virtual Channel& primary() = 0;

  // An additional channel for another worker. May return a channel that
  // shares the primary's descriptor when cloning is unavailable.
  virtual Result<std::unique_ptr<Channel>> NewChannel() = 0;

  // Called with the final INIT reply before it is sent, on the thread that
  // answers INIT. A transport that needs the kernel's consent prepares its
  // resources here and adds its flag only if that worked
  // (FUSE_OVER_IO_URING: once promised, the kernel waits for the rings).
  virtual void BeforeInitReply(const InitConfig& /*config*/, InitReply& /*reply*/) {}

  // After INIT: channels the transport wants served, each by a worker of its
  // own, instead of the session's NewChannel() clones (one per io_uring
  // queue). Empty: the session clones. Ownership passes to the caller.
  virtual std::vector<std::unique_ptr<Channel>> TakeQueueChannels() { return {}; }

  // Another channel on the queue TakeQueueChannels() returned at `index`,
  // for an additional worker of that queue; called on the thread that will
  // use it. EOPNOTSUPP when the transport has no queues.
  virtual Result<std::unique_ptr<Channel>> NewQueueChannel(int /*index*/) {
    return Errno{EOPNOTSUPP};
  }

  // A channel on the same connection whose Receive never blocks (EAGAIN
  // when nothing is pending), shared by all workers for busy polling: a
  // request received on it is answered on it, from any thread. EOPNOTSUPP
  // when the transport has none.
  virtual Result<std::unique_ptr<Channel>> NewPollingChannel() { return Errno{EOPNOTSUPP}; }

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
