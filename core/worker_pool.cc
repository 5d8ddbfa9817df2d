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

int64_t WorkerPool::NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
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
  if (options_.growth == Growth::kWhenHeld) {
    monitor_ = std::thread([this] { Monitor(); });
    return;
  }
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
  self->pool_ = this;
  self->channel_ = channel;
  running_.fetch_add(1, std::memory_order_acq_rel);
  starting_.fetch_add(1, std::memory_order_acq_rel);
  peak_ = std::max(peak_, running_.load(std::memory_order_relaxed));
  // The new thread takes mu_ before it touches `self` again, so assigning
  // the handle here, under the lock, is ordered before that.
  self->thread_ = std::thread([this, self] { Run(self); });
}

void WorkerPool::Run(WorkerList::iterator self) {
  Channel* channel = self->channel_;
  if (channel == nullptr) {
    // Made here, not by the thread that asked for help: a ring must be
    // set up by the thread that will submit to it.
    Result<std::unique_ptr<Channel>> made = make_channel_();
    if (!made.ok()) {
      spdlog::warn("{}: cannot start another worker (errno {}); no more will be started",
                   options_.name, made.error());
      {
        std::lock_guard lock(mu_);
        growth_failed_ = true;
        starting_.fetch_sub(1, std::memory_order_acq_rel);
        started_one_.notify_all();
      }
      Leave(self, /*counted_free=*/false, /*counted_running=*/true);
      return;
    }
    std::lock_guard lock(mu_);
    channels_.push_back(std::move(*made));
    channel = channels_.back().get();
    self->channel_ = channel;
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
  const bool retired = serve_(*channel, *self);
  if (!retired) {
    // The channel ended: the connection is going away.
    std::lock_guard lock(mu_);
    EndLocked();
  }
  Leave(self, /*counted_free=*/!retired, /*counted_running=*/!retired);
}

void WorkerPool::Leave(WorkerList::iterator self, bool counted_free, bool counted_running) {
  std::lock_guard lock(mu_);
  if (counted_free) free_.fetch_sub(1, std::memory_order_acq_rel);
  if (counted_running) running_.fetch_sub(1, std::memory_order_acq_rel);
  // Kept for the next worker: this one no longer reads or writes it.
  if (self->channel_ != nullptr && !ending_) idle_channels_.push_back(self->channel_);
  exited_.splice(exited_.end(), workers_, self);
  if (workers_.empty()) all_gone_.notify_all();
}

void WorkerPool::EndLocked() {
  ending_ = true;
  wake_monitor_.notify_all();
}

void WorkerPool::Took(Worker& worker) {
  worker.busy_since_ns_.store(NowNs(), std::memory_order_relaxed);
  const int free = free_.fetch_sub(1, std::memory_order_acq_rel) - 1;
  if (options_.growth == Growth::kAhead) {
    if (free + starting_.load(std::memory_order_acquire) >= options_.spare) return;
    if (running_.load(std::memory_order_acquire) >= options_.max_workers) return;
    GrowAhead();
    return;
  }
  // Every worker is busy: the monitor looks whether one is held. Woken at
  // most once per stretch of busy time, not per request.
  if (free > 0 || watching_.load(std::memory_order_acquire)) return;
  if (running_.load(std::memory_order_acquire) >= options_.max_workers) return;
  std::lock_guard lock(mu_);
  if (watching_.load(std::memory_order_relaxed) || ending_) return;
  watching_.store(true, std::memory_order_release);
  wake_monitor_.notify_one();
}

void WorkerPool::GrowAhead() {
  WorkerList finished;
  {
    std::lock_guard lock(mu_);
    if (ending_ || growth_failed_) return;
    if (running_.load(std::memory_order_relaxed) >= options_.max_workers) return;
    if (free_.load(std::memory_order_acquire) + starting_.load(std::memory_order_relaxed) >=
        options_.spare) {
      return;  // another worker has just become free or started one
    }
    Grow(finished);
  }
  JoinAll(finished);
}

void WorkerPool::Grow(WorkerList& finished) {
  // Threads that have left the pool are ending or gone: joining them costs
  // little, and keeps their number bounded.
  finished.splice(finished.end(), exited_);
  Channel* channel = nullptr;
  if (!idle_channels_.empty()) {
    channel = idle_channels_.back();
    idle_channels_.pop_back();
  }
  Launch(channel);
  ++started_;
}

bool WorkerPool::HeldAndFull() const {
  if (ending_ || growth_failed_) return false;
  if (free_.load(std::memory_order_acquire) > 0 || starting_.load(std::memory_order_acquire) > 0 ||
      running_.load(std::memory_order_relaxed) >= options_.max_workers) {
    return false;
  }
  const int64_t held_since =
      NowNs() - std::chrono::duration_cast<std::chrono::nanoseconds>(options_.held_after).count();
  for (const Worker& worker : workers_) {
    const int64_t since = worker.busy_since_ns_.load(std::memory_order_relaxed);
    if (since != 0 && since <= held_since) return true;
  }
  return false;
}

void WorkerPool::Monitor() {
  std::unique_lock lock(mu_);
  while (!ending_) {
    if (!watching_.load(std::memory_order_relaxed)) {
      wake_monitor_.wait(lock,
                         [this] { return ending_ || watching_.load(std::memory_order_relaxed); });
      continue;
    }
    wake_monitor_.wait_for(lock, options_.held_after, [this] { return ending_; });
    if (ending_) break;
    if (free_.load(std::memory_order_acquire) > 0) {
      // Requests flow again; the next worker to take the last free slot
      // wakes us.
      watching_.store(false, std::memory_order_release);
      continue;
    }
    if (!HeldAndFull()) continue;
    WorkerList finished;
    Grow(finished);
    lock.unlock();
    JoinAll(finished);
    lock.lock();
  }
}

bool WorkerPool::Finished(Worker& worker) {
  worker.busy_since_ns_.store(0, std::memory_order_relaxed);
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
    EndLocked();
    finished.swap(exited_);
  }
  if (monitor_.joinable()) monitor_.join();
  JoinAll(finished);
}

void WorkerPool::JoinAll(WorkerList& workers) {
  for (Worker& worker : workers) {
    if (worker.thread_.joinable()) worker.thread_.join();
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
