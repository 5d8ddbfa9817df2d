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

}  // namespace

Session::Session(Filesystem& fs, Transport& transport, SessionOptions options)
    : fs_(fs),
      transport_(transport),
      threads_(options.threads > 0 ? options.threads : DefaultThreads()),
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
  if (!workers_.empty()) {
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
  channels_ = transport_.TakeQueueChannels();
  const bool served_by_queues = !channels_.empty();
  for (int i = 1; !served_by_queues && i < threads_; ++i) {
    Result<std::unique_ptr<Channel>> channel = transport_.NewChannel();
    if (!channel.ok()) {
      spdlog::warn("could not open channel for worker {}: errno {}", i, channel.error());
      break;
    }
    channels_.push_back(std::move(*channel));
  }
  // Polling the queues' /dev/fuse would only catch the forgets that are
  // better left to batch up.
  if (!served_by_queues && poller_.limit() > BusyPoller::Duration::zero()) {
    Result<std::unique_ptr<Channel>> polling = transport_.NewPollingChannel();
    if (polling.ok()) {
      polling_channel_ = std::move(*polling);
    } else {
      spdlog::debug("no busy polling: the transport has no polling channel (errno {})",
                    polling.error());
    }
  }
  running_workers_.store(static_cast<int>(channels_.size()) + 1);
  workers_.emplace_back([this, served_by_queues] {
    Work(&transport_.primary(), /*batch_forgets=*/served_by_queues);
  });
  for (auto& channel : channels_) {
    workers_.emplace_back([this, c = channel.get()] { Work(c, /*batch_forgets=*/false); });
  }
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

void Session::Work(Channel* channel, bool batch_forgets) {
  std::vector<uint64_t> request(RequestBufferSize(connection_.max_write()) / 8);
  std::vector<uint64_t> scratch((std::max(connection_.max_read(), 64U * 1024) + 7) / 8);
  for (;;) {
    Channel* reply_to = channel;
    Result<std::span<const std::byte>> received =
        batch_forgets ? channel->ReceiveView(AsBytes(request))
                      : NextRequest(*channel, AsBytes(request), &reply_to);
    if (!received.ok()) {
      if (received.error() != ENODEV) {
        spdlog::error("reading a FUSE request failed: errno {}", received.error());
      }
      break;
    }
    dispatcher_.Handle(*received, *reply_to, AsBytes(scratch));
    if (batch_forgets && IsForget(*received)) std::this_thread::sleep_for(kForgetBatchingPause);
  }
  // One worker seeing the end is enough for all: wake the others.
  transport_.Shutdown();
  running_workers_.fetch_sub(1);
}

void Session::Wait() {
  for (std::thread& worker : workers_) worker.join();
  workers_.clear();
  channels_.clear();
  notifier_.Drain();
  if (!destroyed_) {
    destroyed_ = true;
    fs_.Destroy();
  }
}

absl::Status Session::Run() {
  absl::Status status = Handshake();
  if (!status.ok()) return status;
  Start();
  Wait();
  return absl::OkStatus();
}

}  // namespace lamina
