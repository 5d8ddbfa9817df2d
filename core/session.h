// Session: serves one FUSE connection with a pool of worker threads.
//
// Threading model: N workers (default min(cores, 8)), each with its own
// channel (a FUSE_DEV_IOC_CLONE'd descriptor on /dev/fuse) and its own
// request and reply buffers. A worker reads a request and handles it inline,
// start to finish, on its own thread: no queue, no hand-off. With
// FUSE-over-io_uring the transport brings the channels instead: one worker
// per CPU queue, pinned to that CPU, besides the primary /dev/fuse worker
// (FORGET, INTERRUPT), which reads forgets in batches. Over /dev/fuse, a
// worker that has just replied first polls a shared non-blocking channel
// for the next request (BusyPoller: one poller at a time, an adaptive
// window) before it sleeps in read. The session ends when the transport
// reports ENODEV (unmount, abort, shutdown).

#ifndef LAMINA_CORE_SESSION_H_
#define LAMINA_CORE_SESSION_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "core/backing_registry.h"
#include "core/busy_poller.h"
#include "core/connection.h"
#include "core/dispatcher.h"
#include "core/filesystem.h"
#include "core/notifier.h"
#include "core/stats.h"
#include "core/transport.h"

namespace lamina {

struct SessionOptions {
  // Worker threads; 0 means min(hardware threads, 8). Ignored when the
  // transport brings its own channels (FUSE-over-io_uring: one per queue).
  int threads = 0;
  // The longest a free worker polls for the next request before sleeping
  // (BusyPoller); zero never polls. Not used over FUSE-over-io_uring.
  std::chrono::microseconds busy_poll = kDefaultBusyPoll;

  // Measured on the 2-vCPU VM of docs/benchmarks.md, creating and removing
  // 20,000 files one by one: a 20 us window caught as much as 50 or 200 us
  // did; 50 leaves room for a slower caller.
  static constexpr std::chrono::microseconds kDefaultBusyPoll{50};
};

class Session {
 public:
  // `fs` and `transport` must outlive the session.
  Session(Filesystem& fs, Transport& transport, SessionOptions options = {});
  // Shuts the transport down and joins any running workers.
  ~Session();

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Serves requests on the primary channel until INIT has been answered.
  // Once this returns OK the connection is live (the mount serves).
  absl::Status Handshake();
  // Starts the workers. Requires a successful Handshake().
  void Start();
  // Blocks until every worker has stopped, then calls fs.Destroy().
  void Wait();
  // Handshake(), Start(), Wait().
  absl::Status Run();
  // Asks the transport to end the session (tests); the kernel transport
  // ends by unmounting instead.
  void Shutdown() { transport_.Shutdown(); }

  bool running() const { return running_workers_.load() > 0; }
  int thread_count() const { return threads_; }
  Connection& connection() { return connection_; }
  Notifier& notifier() { return notifier_; }
  BackingRegistry& backing() { return backing_; }
  Stats& stats() { return stats_; }
  // Null when busy polling is off or the transport cannot poll.
  const BusyPoller* busy_poller() const { return polling_channel_ ? &poller_ : nullptr; }

  // Bytes a request buffer needs for a given max_write.
  static size_t RequestBufferSize(uint32_t max_write);

 private:
  // Serves `channel` until it reports the end. `batch_forgets`: the channel
  // carries only FORGET and INTERRUPT (io_uring's primary), so pausing after
  // a forget lets the kernel batch the next ones instead of waking us for
  // each.
  void Work(Channel* channel, bool batch_forgets);
  // The next request for a worker whose own channel is `own`: polled from
  // the shared polling channel when the worker gets the poller's role and a
  // request comes within the window, else read from `own`. `*reply_to` is
  // the channel it came from, which must carry the reply.
  Result<std::span<const std::byte>> NextRequest(Channel& own, std::span<std::byte> buffer,
                                                 Channel** reply_to);

  Filesystem& fs_;
  Transport& transport_;
  int threads_;
  Connection connection_;
  Stats stats_;
  Notifier notifier_;
  BackingRegistry backing_;
  Dispatcher dispatcher_;
  std::vector<std::unique_ptr<Channel>> channels_;
  BusyPoller poller_;
  std::unique_ptr<Channel> polling_channel_;  // shared; null: no polling
  std::vector<std::thread> workers_;
  std::atomic<int> running_workers_{0};
  bool destroyed_ = false;
};

}  // namespace lamina

#endif  // LAMINA_CORE_SESSION_H_
