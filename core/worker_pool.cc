#include "core/worker_pool.h"

#include <algorithm>
#include <utility>

#include "spdlog/spdlog.h"

namespace lamina {

WorkerPool::WorkerPool(Options options, ChannelMaker make_channel, Serve serve)
    : options_(std::move(options)),
      make_channel_(std::move(make_channel)),
      serve_(std::move(serve)) {}

WorkerPool::~WorkerPool() {
  // Wait() has joined every thread; what is left is the channels.
  channels_.clear();
}

void WorkerPool::Start(std::vector<std::unique_ptr<Channel>> owned,
                       std::vector<Channel*> borrowed) {
  std::unique_lock lock(mu_);
  for (std::unique_ptr<Channel>& channel : owned) {
    channels_.push_back(std::move(channel));
    borrowed.push_back(channels_.back().get());
  }
  for (Channel* channel : borrowed) Launch(channel);
  auto all_ready = [this] { return starting_.load(std::memory_order_acquire) == 0; };
  started_one_.wait(lock, all_ready);
  // Only now: how a spare makes its channel may depend on how the first
  // ones fared (an io_uring queue that fell back to /dev/fuse).
  if (!options_.prestart_spares) return;
  const int spares =
      std::min(options_.spare, options_.max_workers - running_.load(std::memory_order_relaxed));
  for (int i = 0; i < spares; ++i) Launch(nullptr);
  started_one_.wait(lock, all_ready);
}

void WorkerPool::Launch(Channel* channel) {
  workers_.emplace_back();
  WorkerList::iterator self = std::prev(workers_.end());
  self->channel = channel;
  running_.fetch_add(1, std::memory_order_acq_rel);
  starting_.fetch_add(1, std::memory_order_acq_rel);
  peak_ = std::max(peak_, running_.load(std::memory_order_relaxed));
  // The new thread takes mu_ before it touches `self` again, so assigning
  // the handle here, under the lock, is ordered before that.
  self->thread = std::thread([this, self] { Run(self); });
}

void WorkerPool::Run(WorkerList::iterator self) {
  Channel* channel = self->channel;
  if (channel == nullptr) {
    // Made here, not by the worker that asked for help: that one has a
    // request to handle, and a ring must be set up by the thread that
    // will submit to it.
    Result<std::unique_ptr<Channel>> made = make_channel_();
    if (!made.ok()) {
      spdlog::warn("{}: cannot start another worker (errno {}); no more will be started",
                   options_.name, made.error());
      {
        std::lock_guard lock(mu_);
        growth_failed_ = true;
      }
      {
        std::lock_guard lock(mu_);
        starting_.fetch_sub(1, std::memory_order_acq_rel);
        started_one_.notify_all();
      }
      Leave(self, /*counted_free=*/false, /*counted_running=*/true);
      return;
    }
    std::lock_guard lock(mu_);
    channels_.push_back(std::move(*made));
    channel = channels_.back().get();
    self->channel = channel;
  }
  channel->Prepare();
  {
    // Free first, then no longer starting: the sum never dips, so no
    // worker sees a shortage that is not there.
    std::lock_guard lock(mu_);
    free_.fetch_add(1, std::memory_order_acq_rel);
    starting_.fetch_sub(1, std::memory_order_acq_rel);
    started_one_.notify_all();
  }
  const bool retired = serve_(*channel, *this);
  if (!retired) {
    // The channel ended: the connection is going away.
    std::lock_guard lock(mu_);
    ending_ = true;
  }
  Leave(self, /*counted_free=*/!retired, /*counted_running=*/!retired);
}

void WorkerPool::Leave(WorkerList::iterator self, bool counted_free, bool counted_running) {
  std::lock_guard lock(mu_);
  if (counted_free) free_.fetch_sub(1, std::memory_order_acq_rel);
  if (counted_running) running_.fetch_sub(1, std::memory_order_acq_rel);
  // Kept for the next worker: this one no longer reads or writes it.
  if (self->channel != nullptr && !ending_) idle_channels_.push_back(self->channel);
  exited_.splice(exited_.end(), workers_, self);
  if (workers_.empty()) all_gone_.notify_all();
}

void WorkerPool::Took() {
  const int free = free_.fetch_sub(1, std::memory_order_acq_rel) - 1;
  if (free + starting_.load(std::memory_order_acquire) >= options_.spare) return;
  if (running_.load(std::memory_order_acquire) >= options_.max_workers) return;
  Grow();
}

void WorkerPool::Grow() {
  WorkerList finished;
  {
    std::lock_guard lock(mu_);
    if (ending_ || growth_failed_) return;
    if (running_.load(std::memory_order_relaxed) >= options_.max_workers) return;
    if (free_.load(std::memory_order_acquire) + starting_.load(std::memory_order_relaxed) >=
        options_.spare) {
      return;  // another worker has just become free or started one
    }
    finished.splice(finished.end(), exited_);
    Channel* channel = nullptr;
    if (!idle_channels_.empty()) {
      channel = idle_channels_.back();
      idle_channels_.pop_back();
    }
    Launch(channel);
    ++started_;
  }
  // Threads that have left the pool are ending or gone: joining them costs
  // little, and keeps their number bounded.
  JoinAll(finished);
}

bool WorkerPool::Finished() {
  int free = free_.load(std::memory_order_acquire);
  for (;;) {
    // A worker still starting will be free in a moment.
    if (options_.retire_idle &&
        free + starting_.load(std::memory_order_acquire) >= options_.keep_idle &&
        running_.load(std::memory_order_acquire) > options_.min_workers) {
      std::lock_guard lock(mu_);
      // Uncounted under the lock, so that workers finishing at once cannot
      // take the pool below its minimum.
      if (running_.load(std::memory_order_relaxed) > options_.min_workers) {
        running_.fetch_sub(1, std::memory_order_acq_rel);
        return false;
      }
      free_.fetch_add(1, std::memory_order_acq_rel);
      return true;
    }
    // Counted free only if no other worker became free (or busy) since we
    // looked: of several finishing at once, each decides on the count the
    // others left, so no more than keep_idle stay idle.
    if (free_.compare_exchange_weak(free, free + 1, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
      return true;
    }
  }
}

void WorkerPool::Wait() {
  WorkerList finished;
  {
    std::unique_lock lock(mu_);
    all_gone_.wait(lock, [this] { return workers_.empty(); });
    finished.swap(exited_);
  }
  JoinAll(finished);
}

void WorkerPool::JoinAll(WorkerList& workers) {
  for (Worker& worker : workers) {
    if (worker.thread.joinable()) worker.thread.join();
  }
  workers.clear();
}

WorkerPool::Counts WorkerPool::counts() const {
  std::lock_guard lock(mu_);
  Counts counts;
  counts.running = running_.load(std::memory_order_relaxed);
  counts.free = free_.load(std::memory_order_relaxed);
  counts.peak = peak_;
  counts.started = started_;
  return counts;
}

}  // namespace lamina
