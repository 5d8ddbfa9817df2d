#include "core/session.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace lamina {
namespace {

// Buffers are vectors of uint64_t so requests are 8-byte aligned, as the
// kernel's are.
std::span<std::byte> AsBytes(std::vector<uint64_t>& words) {
  return std::as_writable_bytes(std::span<uint64_t>(words));
}

// How long the forget-only worker of an io_uring session waits after a
// FORGET before reading again. Forgets come one per evicted inode (an
// `rm -rf` makes one per file); while nobody waits on /dev/fuse the kernel
// queues them without waking a thread and hands them over as one
// BATCH_FORGET. Measured on a 2-vCPU VM: unlinking 20,000 files over
// io_uring took 0.51-0.67 s reading each forget at once, 0.39-0.46 s with
// this pause. Forgets owe no reply, so nobody waits for them; an INTERRUPT
// arriving meanwhile is read at most this much later.
constexpr auto kForgetBatchingPause = std::chrono::milliseconds(1);

bool IsForget(std::span<const std::byte> request) {
  abi::InHeader header;
  if (request.size() < sizeof header) return false;
  std::memcpy(&header, request.data(), sizeof header);
  return header.opcode == abi::kForget || header.opcode == abi::kBatchForget;
}

int DefaultThreads() {
  unsigned cores = std::thread::hardware_concurrency();
  return static_cast<int>(std::clamp(cores, 1U, 8U));
}

// A worker's buffer of `bytes`, 8-byte aligned as the kernel's requests
// are. Not zeroed: its pages are touched only as requests use them, so a
// pool of mostly idle workers costs little memory.
std::unique_ptr<uint64_t[]> NewBuffer(size_t bytes) {
  return std::unique_ptr<uint64_t[]>(new uint64_t[(bytes + 7) / 8]);
}

}  // namespace

Session::Session(Filesystem& fs, Transport& transport, SessionOptions options)
    : fs_(fs),
      transport_(transport),
      threads_(options.threads > 0 ? options.threads : DefaultThreads()),
      max_threads_(options.max_threads > 0 ? options.max_threads
                                           : SessionOptions::kDefaultMaxThreads),
      notifier_(transport, connection_),
      backing_(transport),
      dispatcher_(fs, connection_, &stats_),
      poller_(options.busy_poll) {
  connection_.SetServices(&notifier_, &backing_);
  connection_.SetInitReplyHook([this](const InitConfig& config, InitReply& reply) {
    transport_.BeforeInitReply(config, reply);
  });
}

Session::~Session() {
  if (started_.load(std::memory_order_acquire)) {
    transport_.Shutdown();
    Wait();
  }
}

size_t Session::RequestBufferSize(uint32_t max_write) {
  // Header + the largest fixed struct + payload, plus room for names and
  // request extensions; never below the kernel's minimum.
  return std::max<size_t>(abi::kMinReadBuffer, size_t{max_write} + 64 * 1024);
}

absl::Status Session::Handshake() {
  // Only INIT (64 bytes) is valid before INIT is answered; the buffer only
  // has to satisfy the kernel's minimum read size for the default max_write.
  std::vector<uint64_t> request(RequestBufferSize(1U << 20) / 8);
  std::vector<uint64_t> scratch(64 * 1024 / 8);
  while (!connection_.initialized()) {
    Result<size_t> n = transport_.primary().Receive(AsBytes(request));
    if (!n.ok()) {
      return absl::UnavailableError(
          absl::StrCat("FUSE connection ended before INIT (errno ", n.error(), ")"));
    }
    dispatcher_.Handle(AsBytes(request).first(*n), transport_.primary(), AsBytes(scratch));
    if (!dispatcher_.init_error().ok()) return dispatcher_.init_error();
  }
  return absl::OkStatus();
}

void Session::Start() {
  // FUSE-over-io_uring brings its own channels, one per CPU queue; the
  // primary channel then only carries FORGET and INTERRUPT.
  std::vector<std::unique_ptr<Channel>> queues = transport_.TakeQueueChannels();
  if (queues.empty()) {
    StartDevicePool();
  } else {
    StartQueuePools(std::move(queues));
  }
  started_.store(true, std::memory_order_release);
}

void Session::StartDevicePool() {
  std::vector<std::unique_ptr<Channel>> channels;
  for (int i = 1; i < threads_; ++i) {
    Result<std::unique_ptr<Channel>> channel = transport_.NewChannel();
    if (!channel.ok()) {
      spdlog::warn("could not open channel for worker {}: errno {}", i, channel.error());
      break;
    }
    channels.push_back(std::move(*channel));
  }
  if (poller_.limit() > BusyPoller::Duration::zero()) {
    Result<std::unique_ptr<Channel>> polling = transport_.NewPollingChannel();
    if (polling.ok()) {
      polling_channel_ = std::move(*polling);
    } else {
      spdlog::debug("no busy polling: the transport has no polling channel (errno {})",
                    polling.error());
    }
  }
  WorkerPool::Options options;
  options.name = "requests";
  options.min_workers = static_cast<int>(channels.size()) + 1;
  options.max_workers = std::max(max_threads_, options.min_workers);
  // Any worker that starts reading the connection takes the oldest waiting
  // request, so a worker started late loses nothing, and one started for
  // every overlap would cost (SessionOptions::kHeldAfter).
  options.growth = WorkerPool::Growth::kWhenHeld;
  options.held_after = SessionOptions::kHeldAfter;
  options.retire_idle = true;
  options.keep_idle = options.min_workers;
  WorkerPool* pool = AddPool(std::make_unique<WorkerPool>(
      options, [this] { return transport_.NewChannel(); },
      [this](Channel& channel, WorkerPool::Worker& self) {
        return Serve(channel, self, /*batch_forgets=*/false);
      }));
  pool->Start(std::move(channels), {&transport_.primary()});
}

void Session::StartQueuePools(std::vector<std::unique_ptr<Channel>> queues) {
  // Polling the queues' /dev/fuse would only catch the forgets that are
  // better left to batch up; nobody waits on those, so one worker will do.
  WorkerPool::Options forgets;
  forgets.name = "forgets";
  forgets.growth = WorkerPool::Growth::kAhead;  // with one worker at most: never
  forgets.retire_idle = false;
  WorkerPool* forget_pool = AddPool(std::make_unique<WorkerPool>(
      forgets, [] { return Result<std::unique_ptr<Channel>>(Errno{EOPNOTSUPP}); },
      [this](Channel& channel, WorkerPool::Worker& self) {
        return Serve(channel, self, /*batch_forgets=*/true);
      }));
  const int queue_count = static_cast<int>(queues.size());
  const int per_queue =
      std::max(SessionOptions::kMinQueueWorkers, (max_threads_ + queue_count - 1) / queue_count);
  for (int qid = 0; qid < queue_count; ++qid) {
    WorkerPool::Options options;
    options.name = absl::StrCat("io_uring queue ", qid);
    options.max_workers = per_queue;
    // The kernel hands a request to a ring entry that is waiting when the
    // request arrives, or else to the next entry of the queue that commits
    // a reply: an entry registered later gets only requests that come after
    // it. So a queue keeps two free workers ahead of demand, from the start,
    // and a request waits behind a slow one only if it comes in a burst of
    // more than two on the same CPU, while a new worker is being started.
    options.growth = WorkerPool::Growth::kAhead;
    options.spare = 2;
    options.prestart_spares = true;
    // The kernel has no command to take an entry back, and one whose ring
    // goes away while a request is being handed to it leaves that request
    // unanswered until the connection ends. So workers stay, idle in
    // io_uring_enter, until the session ends.
    options.retire_idle = false;
    WorkerPool* pool = AddPool(std::make_unique<WorkerPool>(
        options, [this, qid] { return transport_.NewQueueChannel(qid); },
        [this](Channel& channel, WorkerPool::Worker& self) {
          return Serve(channel, self, /*batch_forgets=*/false);
        }));
    std::vector<std::unique_ptr<Channel>> first;
    first.push_back(std::move(queues[qid]));
    pool->Start(std::move(first));
  }
  forget_pool->Start({}, {&transport_.primary()});
}

Result<std::span<const std::byte>> Session::NextRequest(Channel& own, std::span<std::byte> buffer,
                                                        Channel** reply_to) {
  *reply_to = &own;
  if (polling_channel_ == nullptr) return own.ReceiveView(buffer);
  using Clock = BusyPoller::Clock;
  const Clock::time_point free_since = Clock::now();
  poller_.WorkerFree(free_since);
  if (const BusyPoller::Duration window = poller_.BeginPoll(); window > window.zero()) {
    const Clock::time_point deadline = free_since + window;
    do {
      Result<std::span<const std::byte>> polled = polling_channel_->ReceiveView(buffer);
      if (polled.ok() || polled.error() != EAGAIN) {
        poller_.EndPoll(/*caught=*/polled.ok());
        if (polled.ok()) {
          poller_.RequestArrived(Clock::now());
          *reply_to = polling_channel_.get();
        }
        return polled;
      }
    } while (Clock::now() < deadline);
    poller_.EndPoll(/*caught=*/false);
  }
  Result<std::span<const std::byte>> request = own.ReceiveView(buffer);
  if (request.ok()) poller_.RequestArrived(Clock::now());
  return request;
}

bool Session::Serve(Channel& channel, WorkerPool::Worker& self, bool batch_forgets) {
  const size_t request_size = RequestBufferSize(connection_.max_write());
  const size_t scratch_size = std::max(connection_.max_read(), 64U * 1024);
  std::unique_ptr<uint64_t[]> request_words = NewBuffer(request_size);
  std::unique_ptr<uint64_t[]> scratch_words = NewBuffer(scratch_size);
  const std::span<std::byte> request(reinterpret_cast<std::byte*>(request_words.get()),
                                     request_size);
  const std::span<std::byte> scratch(reinterpret_cast<std::byte*>(scratch_words.get()),
                                     scratch_size);
  for (;;) {
    Channel* reply_to = &channel;
    Result<std::span<const std::byte>> received =
        batch_forgets ? channel.ReceiveView(request) : NextRequest(channel, request, &reply_to);
    if (!received.ok()) {
      if (received.error() != ENODEV) {
        spdlog::error("reading a FUSE request failed: errno {}", received.error());
      }
      // One worker seeing the end is enough for all: wake the others.
      transport_.Shutdown();
      return false;
    }
    // Before handling: this request may take long, and the pool must not
    // be left without a free worker meanwhile.
    self.Took();
    dispatcher_.Handle(*received, *reply_to, scratch);
    if (batch_forgets && IsForget(*received)) std::this_thread::sleep_for(kForgetBatchingPause);
    if (!self.Finished()) return true;
  }
}

void Session::Wait() {
  std::vector<WorkerPool*> pools;
  {
    std::lock_guard lock(pools_mu_);
    for (const std::unique_ptr<WorkerPool>& pool : pools_) pools.push_back(pool.get());
  }
  for (WorkerPool* pool : pools) pool->Wait();
  notifier_.Drain();
  if (!destroyed_) {
    destroyed_ = true;
    fs_.Destroy();
  }
}

std::vector<const WorkerPool*> Session::pools() const {
  std::lock_guard lock(pools_mu_);
  std::vector<const WorkerPool*> pools;
  for (const std::unique_ptr<WorkerPool>& pool : pools_) pools.push_back(pool.get());
  return pools;
}

WorkerPool* Session::AddPool(std::unique_ptr<WorkerPool> pool) {
  std::lock_guard lock(pools_mu_);
  pools_.push_back(std::move(pool));
  return pools_.back().get();
}

bool Session::running() const {
  for (const WorkerPool* pool : pools()) {
    if (pool->running()) return true;
  }
  return false;
}

WorkerPool::Counts Session::workers() const {
  WorkerPool::Counts total;
  for (const WorkerPool* pool : pools()) {
    WorkerPool::Counts counts = pool->counts();
    total.running += counts.running;
    total.free += counts.free;
    total.peak += counts.peak;
    total.started += counts.started;
  }
  return total;
}

absl::Status Session::Run() {
  absl::Status status = Handshake();
  if (!status.ok()) return status;
  Start();
  Wait();
  return absl::OkStatus();
}

}  // namespace lamina
