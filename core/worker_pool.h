// WorkerPool: the threads that serve one stream of requests, grown when a
// request finds no worker free and shrunk when a burst is over.
//
// A stream ("lane") is a source of requests any of its workers may take:
// the /dev/fuse connection (every cloned descriptor reads the kernel's one
// pending list), or one FUSE-over-io_uring queue (every ring registered on
// it). Workers handle requests inline, start to finish, so a request that
// takes long (a copy-up of a large file, a layer on a slow disk) holds its
// worker for as long as it takes. Were the pool fixed, a few such requests
// would leave nobody to serve the rest of the mount; kernel overlayfs makes
// only their own callers wait. So:
//
// - A worker that takes a request and leaves fewer than `spare` workers
//   free starts another one, up to `max_workers`. The new worker makes its
//   own channel on its own thread (a cloned /dev/fuse descriptor, or a ring
//   of its own), and counts as free only once that channel is ready
//   (Channel::Prepare).
// - A worker that has answered its request exits instead of waiting for
//   the next when `retire_idle` is set, more than `min_workers` run and
//   `keep_idle` others are free already. Its channel is kept for the next
//   worker the pool starts. Nothing waits on a timer and nothing polls:
//   the decisions are made on the request path, by the worker concerned.
//
// Every thread is joined: exited ones by the next worker the pool starts,
// and all of them by Wait(). Thread-safe.

#ifndef LAMINA_CORE_WORKER_POOL_H_
#define LAMINA_CORE_WORKER_POOL_H_

#include <atomic>
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
  struct Options {
    std::string name;  // for the log: "/dev/fuse", "io_uring queue 3"
    // Started by Start() and never retired.
    int min_workers = 1;
    // The most workers at once, the first min_workers included.
    int max_workers = 1;
    // Free workers to keep ahead of demand: a worker that takes a request
    // and leaves fewer starts another. One is enough where any worker can
    // take a request that is already waiting (/dev/fuse).
    int spare = 1;
    // Whether workers beyond min_workers exit when a burst is over.
    bool retire_idle = true;
    // Free workers past which one that becomes free exits.
    int keep_idle = 1;
    // Start() also starts `spare` workers beyond its channels, so that the
    // first burst of requests finds them ready.
    bool prestart_spares = false;
  };

  // Makes the channel of a new worker; called on that worker's thread.
  using ChannelMaker = std::function<Result<std::unique_ptr<Channel>>()>;
  // Serves `channel` until it ends (returns false) or the pool lets the
  // worker go (Finished() said so; returns true). Calls the pool's Took()
  // and Finished() around each request.
  using Serve = std::function<bool(Channel& channel, WorkerPool& pool)>;

  WorkerPool(Options options, ChannelMaker make_channel, Serve serve);
  // Requires Wait() to have returned if Start() was called.
  ~WorkerPool();

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Starts one worker per channel (at least one channel; owned channels
  // are kept, borrowed ones must outlive the pool), and the spares if
  // asked to, and returns once each is ready for requests or has given up.
  void Start(std::vector<std::unique_ptr<Channel>> owned, std::vector<Channel*> borrowed = {});

  // The calling worker has received a request and is now busy.
  void Took();
  // The calling worker has answered its request. True: it waits for the
  // next; false: the pool has enough free workers without it, so its Serve
  // returns and the thread ends.
  bool Finished();

  // Blocks until every worker has ended, then joins them all. No worker
  // starts after the first one has seen its channel end.
  void Wait();

  struct Counts {
    int running = 0;       // threads alive, starting ones included
    int free = 0;          // waiting for a request
    int peak = 0;          // the most running at once
    uint64_t started = 0;  // threads started beyond the first min_workers
  };
  Counts counts() const;
  bool running() const { return running_.load(std::memory_order_acquire) > 0; }
  const Options& options() const { return options_; }

 private:
  struct Worker {
    std::thread thread;
    Channel* channel = nullptr;  // null: make one first
  };
  using WorkerList = std::list<Worker>;

  // Starts a worker if the pool is still short of free workers.
  void Grow();
  // Starts a worker on `channel` (null: it makes its own). Requires mu_.
  void Launch(Channel* channel);
  void Run(WorkerList::iterator self);
  // The worker's thread ends. `counted_free`, `counted_running`: whether
  // it still counts as free, and as running (Finished() uncounts a worker
  // it retires).
  void Leave(WorkerList::iterator self, bool counted_free, bool counted_running);
  static void JoinAll(WorkerList& workers);

  const Options options_;
  const ChannelMaker make_channel_;
  const Serve serve_;

  // Read on the request path without the lock; changed under it, except
  // free_, which workers change as they take and finish requests.
  std::atomic<int> free_{0};
  std::atomic<int> starting_{0};
  std::atomic<int> running_{0};

  mutable std::mutex mu_;
  std::condition_variable all_gone_;
  std::condition_variable started_one_;  // a worker is ready, or gave up
  WorkerList workers_;                   // alive
  WorkerList exited_;                    // ended, not joined yet
  std::vector<std::unique_ptr<Channel>> channels_;
  std::vector<Channel*> idle_channels_;  // left by workers that exited
  bool ending_ = false;                  // a channel ended: start nobody any more
  int peak_ = 0;
  uint64_t started_ = 0;
  bool growth_failed_ = false;
};

}  // namespace lamina

#endif  // LAMINA_CORE_WORKER_POOL_H_
