// Session: serves one FUSE connection with pools of worker threads.
//
// Threading model: a worker reads a request and handles it inline, start
// to finish, on its own thread: no queue, no hand-off. Each worker has its
// own channel (a FUSE_DEV_IOC_CLONE'd descriptor on /dev/fuse) and its own
// request and reply buffers. Since a request may take long (a copy-up, a
// layer on a slow disk) and holds its worker meanwhile, the workers form a
// WorkerPool: `threads` to start with, another started whenever a request
// finds none free, up to `max_threads`, and the extra ones gone again once
// idle. With FUSE-over-io_uring the transport brings the channels instead:
// one pool per CPU queue, its workers pinned to that CPU, each with a ring
// of its own; plus the primary /dev/fuse worker (FORGET, INTERRUPT), which
// reads forgets in batches. Over /dev/fuse, a worker that has just replied
// first polls a shared non-blocking channel for the next request
// (BusyPoller: one poller at a time, an adaptive window) before it sleeps
// in read. The session ends when the transport reports ENODEV (unmount,
// abort, shutdown).

#ifndef LAMINA_CORE_SESSION_H_
#define LAMINA_CORE_SESSION_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
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
#include "core/worker_pool.h"

namespace lamina {

struct SessionOptions {
  // Workers started with the session and kept; 0 means min(hardware
  // threads, 8). Ignored when the transport brings its own channels
  // (FUSE-over-io_uring: one worker per CPU queue to start with).
  int threads = 0;
  // The most workers serving requests at once (a slow request holds its
  // worker until it is answered, so more may be needed than `threads`).
  // Over /dev/fuse another starts when every worker is busy and one has
  // been on its request for kHeldAfter, and workers beyond `threads` exit
  // once they find `threads` others free. Over FUSE-over-io_uring the
  // limit is shared out evenly among the CPU queues, each allowed at least
  // kMinQueueWorkers, and each keeps two free ahead of demand. 0 means
  // kDefaultMaxThreads; `threads` or less keeps a /dev/fuse pool fixed.
  int max_threads = 0;
  // The longest a free worker polls for the next request before sleeping
  // (BusyPoller); zero never polls. Not used over FUSE-over-io_uring.
  std::chrono::microseconds busy_poll = kDefaultBusyPoll;

  // Measured on the 2-vCPU VM of docs/benchmarks.md, creating and removing
  // 20,000 files one by one: a 20 us window caught as much as 50 or 200 us
  // did; 50 leaves room for a slower caller.
  static constexpr std::chrono::microseconds kDefaultBusyPoll{50};
  // Workers start only while every worker is busy, one at a time, so the
  // cap is reached only with this many requests in progress at once. Each
  // costs a thread and buffers whose pages are touched only as requests
  // use them.
  static constexpr int kDefaultMaxThreads = 64;
  // How long a request holds its worker before the pool counts it as slow
  // and, if no other worker is free, starts another (over /dev/fuse).
  // Requests that merely overlap (a RELEASE in the background beside the
  // next OPEN) take microseconds and must not add workers: every idle
  // reader of /dev/fuse slows the others (a fixed 7 workers made creating
  // a file 116 us against 81 with 2, on the 2-vCPU VM). And on a busy
  // machine a worker may wait a few milliseconds for a CPU in the middle
  // of a fast request: with 2 ms, some runs of a create benchmark started
  // up to 29 workers. What this is for takes seconds (a copy-up of a large
  // file, a lower that does not answer).
  static constexpr std::chrono::microseconds kHeldAfter{10000};
  // Each io_uring queue keeps two workers free ahead of demand (see
  // Session::StartQueuePools), so it needs room for a busy one besides.
  static constexpr int kMinQueueWorkers = 4;
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

  bool running() const;
  // Workers started with the session (over /dev/fuse).
  int thread_count() const { return threads_; }
  // The worker pools started so far: over /dev/fuse one; over io_uring the
  // primary channel's, then one per CPU queue in queue order.
  std::vector<const WorkerPool*> pools() const;
  // All pools together (peak: the sum of their peaks).
  WorkerPool::Counts workers() const;
  Connection& connection() { return connection_; }
  Notifier& notifier() { return notifier_; }
  BackingRegistry& backing() { return backing_; }
  Stats& stats() { return stats_; }
  // Null when busy polling is off or the transport cannot poll.
  const BusyPoller* busy_poller() const { return polling_channel_ ? &poller_ : nullptr; }

  // Bytes a request buffer needs for a given max_write.
  static size_t RequestBufferSize(uint32_t max_write);

 private:
  // Keeps `pool` and returns it.
  WorkerPool* AddPool(std::unique_ptr<WorkerPool> pool);
  // One pool for the /dev/fuse connection (or the test transport's socket).
  void StartDevicePool();
  // The primary channel's worker and one pool per FUSE-over-io_uring queue.
  void StartQueuePools(std::vector<std::unique_ptr<Channel>> queues);
  // A pool's Serve: serves `channel` until it reports the end (false) or
  // the pool retires the worker (true). `batch_forgets`: the channel
  // carries only FORGET and INTERRUPT (io_uring's primary), so pausing after
  // a forget lets the kernel batch the next ones instead of waking us for
  // each.
  bool Serve(Channel& channel, WorkerPool::Worker& self, bool batch_forgets);
  // The next request for a worker whose own channel is `own`: polled from
  // the shared polling channel when the worker gets the poller's role and a
  // request comes within the window, else read from `own`. `*reply_to` is
  // the channel it came from, which must carry the reply.
  Result<std::span<const std::byte>> NextRequest(Channel& own, std::span<std::byte> buffer,
                                                 Channel** reply_to);

  Filesystem& fs_;
  Transport& transport_;
  int threads_;
  int max_threads_;
  Connection connection_;
  Stats stats_;
  Notifier notifier_;
  BackingRegistry backing_;
  Dispatcher dispatcher_;
  BusyPoller poller_;
  std::unique_ptr<Channel> polling_channel_;  // shared; null: no polling
  // Added to while Start() runs, when earlier pools already serve.
  mutable std::mutex pools_mu_;
  std::vector<std::unique_ptr<WorkerPool>> pools_;  // guarded by pools_mu_
  std::atomic<bool> started_{false};                // Start() has run
  bool destroyed_ = false;
};

}  // namespace lamina

#endif  // LAMINA_CORE_SESSION_H_
