// WorkerPool: the threads that serve one stream of requests, grown when
// requests would otherwise wait behind slow ones, and shrunk when a burst
// is over.
//
// A stream ("lane") is a source of requests any of its workers may take:
// the /dev/fuse connection (every cloned descriptor reads the kernel's one
// pending list), or one FUSE-over-io_uring queue (every ring registered on
// it). Workers handle requests inline, start to finish, so a request that
// takes long (a copy-up of a large file, a layer on a slow disk) holds its
// worker for as long as it takes. Were the pool fixed, a few such requests
// would leave nobody to serve the rest of the mount; kernel overlayfs makes
// only their own callers wait. So the pool starts workers, in one of two
// ways (Options::growth):
//
// - kWhenHeld: when every worker is busy and one of them has been on the
//   same request for `held_after`, a monitor thread starts another. Fast
//   requests that merely overlap never add a worker, and that matters on
//   /dev/fuse, where every idle reader costs the others (see Session).
// - kAhead: a worker that takes a request and leaves fewer than `spare`
//   free starts another at once, before handling it (io_uring, where a
//   request arriving while no entry waits is left for the next commit).
//
// A new worker makes its own channel on its own thread (a cloned /dev/fuse
// descriptor, or a ring of its own) and counts as free only once that
// channel is ready (Channel::Prepare). A worker that has answered its
// request exits instead of waiting for the next when `retire_idle` is set,
// more than `min_workers` run and `keep_idle` others are free already; its
// channel is kept for the next worker. Nothing polls: the monitor sleeps
// unless every worker is busy, and then wakes every `held_after`.
//
// Every thread is joined: exited ones by the next worker the pool starts,
// and all of them by Wait(). Thread-safe.

#ifndef LAMINA_CORE_WORKER_POOL_H_
#define LAMINA_CORE_WORKER_POOL_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/result.h"
#include "core/transport.h"

namespace lamina {

class WorkerPool {
 public:
  enum class Growth { kWhenHeld, kAhead };

  struct Options {
    std::string name;  // for the log: "requests", "io_uring queue 3"
    // Started by Start() and never retired.
    int min_workers = 1;
    // The most workers at once, the first min_workers included.
    int max_workers = 1;
    Growth growth = Growth::kWhenHeld;
    // kWhenHeld: how long a request holds its worker before it counts as
    // slow; also how often the monitor looks while every worker is busy.
    std::chrono::microseconds held_after{10000};
    // kAhead: free workers to keep ahead of demand.
    int spare = 1;
    // kAhead: Start() also starts `spare` workers beyond its channels, so
    // that the first burst of requests finds them ready.
    bool prestart_spares = false;
    // Whether workers beyond min_workers exit when a burst is over.
    bool retire_idle = true;
    // Free workers past which one that becomes free exits.
    int keep_idle = 1;
  };

  class Worker;
  // Makes the channel of a new worker; called on that worker's thread.
  using ChannelMaker = std::function<Result<std::unique_ptr<Channel>>()>;
  // Serves `channel` until it ends (returns false) or the pool lets the
  // worker go (self.Finished() said so; returns true). Calls self.Took()
  // and self.Finished() around each request.
  using Serve = std::function<bool(Channel& channel, Worker& self)>;

  // One worker, as its Serve sees it.
  class Worker {
   public:
    // It has received a request and is now busy.
    void Took() { pool_->Took(*this); }
    // It has answered its request. True: it waits for the next; false: the
    // pool has enough free workers without it, so Serve returns and the
    // thread ends.
    bool Finished() { return pool_->Finished(*this); }

   private:
    friend class WorkerPool;
    WorkerPool* pool_ = nullptr;
    std::thread thread_;
    Channel* channel_ = nullptr;  // null: make one first
    // When the request it handles arrived (steady clock, ns); 0: free.
    std::atomic<int64_t> busy_since_ns_{0};
  };

  WorkerPool(Options options, ChannelMaker make_channel, Serve serve);
  // Requires Wait() to have returned if Start() was called.
  ~WorkerPool();

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Starts one worker per channel (at least one channel; owned channels
  // are kept, borrowed ones must outlive the pool), the spares if asked
  // to, and the monitor for kWhenHeld; returns once each worker is ready
  // for requests or has given up.
  void Start(std::vector<std::unique_ptr<Channel>> owned, std::vector<Channel*> borrowed = {});

  // Blocks until every worker has ended, then joins them all and the
  // monitor. No worker starts after one has seen its channel end.
  void Wait();

  struct Counts {
    int running = 0;       // threads alive, starting ones included
    int free = 0;          // waiting for a request
    int peak = 0;          // the most running at once
    uint64_t started = 0;  // threads started beyond those Start() began with
  };
  Counts counts() const;
  bool running() const { return running_.load(std::memory_order_acquire) > 0; }
  const Options& options() const { return options_; }

 private:
  using WorkerList = std::list<Worker>;

  void Took(Worker& worker);
  bool Finished(Worker& worker);
  // kAhead: starts a worker if the pool is still short of free ones.
  void GrowAhead();
  // kWhenHeld: the monitor thread's loop.
  void Monitor();
  // Whether the monitor should start a worker now. Requires mu_.
  bool HeldAndFull() const;
  // Starts a worker on an idle channel or a new one, joining workers that
  // have exited into `finished`. Requires mu_.
  void Grow(WorkerList& finished);
  // Starts a worker on `channel` (null: it makes its own). Requires mu_.
  void Launch(Channel* channel);
  void Run(WorkerList::iterator self);
  // The worker's thread ends. `counted_free`, `counted_running`: whether
  // it still counts as free, and as running (Finished() uncounts a worker
  // it retires).
  void Leave(WorkerList::iterator self, bool counted_free, bool counted_running);
  // No worker starts any more; wakes the monitor so that it ends. Requires mu_.
  void EndLocked();
  static void JoinAll(WorkerList& workers);
  static int64_t NowNs();

  const Options options_;
  const ChannelMaker make_channel_;
  const Serve serve_;

  // Read on the request path without the lock; changed under it, except
  // free_, which workers change as they take and finish requests.
  std::atomic<int> free_{0};
  std::atomic<int> starting_{0};
  std::atomic<int> running_{0};
  // kWhenHeld: the monitor is awake (every worker was busy lately).
  std::atomic<bool> watching_{false};

  mutable std::mutex mu_;
  std::condition_variable all_gone_;
  std::condition_variable started_one_;  // a worker is ready, or gave up
  std::condition_variable wake_monitor_;
  WorkerList workers_;  // alive
  WorkerList exited_;   // ended, not joined yet
  std::vector<std::unique_ptr<Channel>> channels_;
  std::vector<Channel*> idle_channels_;  // left by workers that exited
  std::thread monitor_;
  bool ending_ = false;  // a channel ended: start nobody any more
  int peak_ = 0;
  uint64_t started_ = 0;
  bool growth_failed_ = false;
};

}  // namespace lamina

#endif  // LAMINA_CORE_WORKER_POOL_H_
