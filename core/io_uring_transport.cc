#include "core/io_uring_transport.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

#include "core/connection.h"
#include "spdlog/spdlog.h"

namespace lamina {
namespace {

constexpr char kEnableUring[] = "/sys/module/fuse/parameters/enable_uring";
// Far above any real machine; bounds what we read from sysfs.
constexpr int kMaxCpus = 1 << 16;

// The largest request payload the kernel puts into a ring entry: it
// refuses to register a smaller buffer.
size_t MaxPayload(const InitReply& reply) {
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  // Without MAX_PAGES the kernel keeps its default of 32 pages a request.
  size_t pages = (reply.flags & abi::kMaxPages) != 0 ? reply.out.max_pages : 32;
  return std::max({abi::kMinReadBuffer, size_t{reply.out.max_write}, pages * page});
}

}  // namespace

std::vector<int> ParseCpuList(std::string_view list) {
  std::vector<int> cpus;
  std::stringstream ranges{std::string(list)};
  std::string range;
  while (std::getline(ranges, range, ',')) {
    int first = -1;
    int last = -1;
    char dash = 0;
    std::stringstream parse(range);
    if (!(parse >> first)) return {};
    if (parse >> dash) {
      if (dash != '-' || !(parse >> last)) return {};
    } else {
      last = first;
    }
    if (first < 0 || last < first || last >= kMaxCpus) return {};
    std::string rest;
    if (parse >> rest) return {};
    for (int cpu = first; cpu <= last; ++cpu) cpus.push_back(cpu);
  }
  return cpus;
}

std::vector<int> PossibleCpus() {
  std::ifstream in("/sys/devices/system/cpu/possible");
  std::string list;
  if (!std::getline(in, list)) return {};
  return ParseCpuList(list);
}

std::string IoUringUnavailableReason() {
  std::ifstream in(kEnableUring);
  std::string value;
  if (!std::getline(in, value)) {
    return "this kernel has no FUSE-over-io_uring (Linux 6.14+ with CONFIG_FUSE_IO_URING)";
  }
  if (value == "Y" || value == "1") return "the kernel did not offer it";
  return std::string("it is off; as root: echo 1 > ") + kEnableUring;
}

IoUringTransport::IoUringTransport(int session_fd, Options options)
    : DevFuseTransport(session_fd), options_(options) {}

void IoUringTransport::BeforeInitReply(const InitConfig& config, InitReply& reply) {
  if (!config.KernelOffers(abi::kOverIoUring)) {
    spdlog::warn("FUSE-over-io_uring: {}; serving through /dev/fuse", IoUringUnavailableReason());
    return;
  }
  size_t payload = options_.payload_size > 0 ? options_.payload_size : MaxPayload(reply);
  Result<void> prepared = PrepareQueues(payload);
  if (!prepared.ok()) {
    // ENOMEM here on kernels before 5.12 is RLIMIT_MEMLOCK (ring memory was
    // charged to it); newer kernels charge the memory cgroup instead, and
    // the payload buffers are never pinned.
    spdlog::warn(
        "FUSE-over-io_uring: cannot set up the rings (errno {}); serving through "
        "/dev/fuse",
        prepared.error());
    return;
  }
  GrantInitFlag(reply, abi::kOverIoUring);
  active_.store(true, std::memory_order_release);
  spdlog::info("FUSE-over-io_uring: {} queues, {} entries of {} KiB each", queues_.size(),
               options_.queue_depth, payload / 1024);
}

Result<void> IoUringTransport::PrepareQueues(size_t payload_size) {
  std::vector<int> cpus = PossibleCpus();
  if (cpus.empty()) return Errno{ENOENT};
  served_ = std::make_unique<std::atomic<uint64_t>[]>(cpus.size());
  std::vector<std::unique_ptr<IoUringQueue>> queues;
  std::vector<IoUringQueue::Config> configs;
  for (size_t qid = 0; qid < cpus.size(); ++qid) {
    IoUringQueue::Config config;
    config.device_fd = session_fd();
    config.qid = static_cast<uint16_t>(qid);
    config.cpu = cpus[qid];
    config.depth = options_.queue_depth;
    config.payload_size = payload_size;
    config.served = &served_[qid];
    config.fell_back = &fell_back_;
    Result<std::unique_ptr<IoUringQueue>> queue = IoUringQueue::Create(config);
    if (!queue.ok()) return Errno{queue.error()};
    queues.push_back(std::move(*queue));
    configs.push_back(config);
  }
  queues_ = std::move(queues);
  configs_ = std::move(configs);
  queue_count_.store(static_cast<int>(queues_.size()), std::memory_order_release);
  return Ok();
}

std::vector<std::unique_ptr<Channel>> IoUringTransport::TakeQueueChannels() {
  std::vector<std::unique_ptr<Channel>> channels;
  for (auto& queue : queues_) channels.push_back(std::move(queue));
  queues_.clear();
  return channels;
}

Result<std::unique_ptr<Channel>> IoUringTransport::NewQueueChannel(int index) {
  if (index < 0 || static_cast<size_t>(index) >= configs_.size()) return Errno{EINVAL};
  if (fell_back_.load(std::memory_order_acquire)) return CloneChannel(session_fd());
  Result<std::unique_ptr<IoUringQueue>> queue = IoUringQueue::Create(configs_[index]);
  if (!queue.ok()) return Errno{queue.error()};
  Result<void> registered = (*queue)->Register();
  if (!registered.ok()) return Errno{registered.error()};
  return std::unique_ptr<Channel>(std::move(*queue));
}

uint64_t IoUringTransport::requests(int qid) const {
  if (qid < 0 || qid >= queue_count()) return 0;
  return served_[qid].load(std::memory_order_relaxed);
}

uint64_t IoUringTransport::requests() const {
  uint64_t total = 0;
  for (int qid = 0; qid < queue_count(); ++qid) total += requests(qid);
  return total;
}

}  // namespace lamina
