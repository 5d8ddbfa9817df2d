#include "core/node_shedder.h"

#include <algorithm>
#include <chrono>
#include <span>
#include <thread>

#include "core/connection.h"
#include "core/notifier.h"
#include "spdlog/spdlog.h"

namespace lamina {
namespace {

// The first protocol minor with FUSE_NOTIFY_PRUNE.
constexpr uint32_t kPruneMinor = 45;

// Ids per prune notification: the kernel takes any count, but bounded
// messages keep one huge offer from holding its locks for long.
constexpr size_t kPruneChunk = 4096;

// How long a lookup at the limit waits for FORGETs: long enough for the
// usual lag (a few milliseconds), short enough not to matter when it turns
// out futile.
constexpr int kLimitWaitMs = 20;

}  // namespace

NodeShedder::NodeShedder(size_t limit, Pick pick) : policy_(limit), pick_(std::move(pick)) {}

void NodeShedder::Connected(const Connection& connection) {
  connection_ = &connection;
  if (policy_.limit() > 0 && connection.minor() < kPruneMinor) {
    // Without FUSE_NOTIFY_PRUNE the fallback would be invalidating each
    // node's dentries, which needs every parent and name.
    spdlog::warn(
        "the kernel speaks FUSE 7.{} (prune needs 7.45): the node limit of {} cannot be "
        "enforced; nodes are released only when the kernel forgets inodes by itself",
        connection.minor(), policy_.limit());
  }
}

void NodeShedder::Added(size_t load) {
  Shed(policy_.Due(load));
}

void NodeShedder::MakeRoom(absl::FunctionRef<size_t()> load) {
  if (!policy_.ShouldWait(load())) return;
  waits_.fetch_add(1, std::memory_order_relaxed);
  const size_t start = load();
  const uint64_t forgotten = forgotten_.load(std::memory_order_relaxed);
  for (int i = 0; i < kLimitWaitMs; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (load() < policy_.limit()) return;
  }
  policy_.WaitTimedOut(load() < start || forgotten_.load(std::memory_order_relaxed) != forgotten);
  spdlog::debug("load {} (limit {}): FORGETs are late, going over the limit", load(),
                policy_.limit());
}

void NodeShedder::OutOfDescriptors(size_t load) {
  Shed(policy_.Urgent(load));
}

void NodeShedder::Shed(size_t load) {
  if (load == 0 || connection_ == nullptr || connection_->minor() < kPruneMinor) return;
  Notifier* notifier = connection_->notifier();
  if (notifier == nullptr) return;
  std::vector<NodeId> ids = pick_(load);
  spdlog::debug("node limit {}: asking the kernel to forget {} nodes", policy_.limit(), ids.size());
  std::span<const NodeId> rest(ids);
  while (!rest.empty()) {
    const size_t n = std::min(rest.size(), kPruneChunk);
    notifier->Prune(rest.first(n));
    rest = rest.subspan(n);
  }
  offered_.fetch_add(ids.size(), std::memory_order_relaxed);
}

size_t DefaultNodeDescriptorLimit(rlim_t file_limit, size_t cap) {
  if (file_limit == RLIM_INFINITY) return cap;
  return std::clamp<size_t>(static_cast<size_t>(file_limit - file_limit / 4), 1, cap);
}

}  // namespace lamina
