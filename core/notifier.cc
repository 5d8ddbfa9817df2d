#include "core/notifier.h"

#include <cstring>

#include "core/connection.h"
#include "core/fuse_abi.h"
#include "core/transport.h"
#include "spdlog/spdlog.h"

namespace lamina {
namespace {

template <typename T>
std::string Bytes(const T& value, std::string_view name = {}, bool nul = false) {
  std::string out(reinterpret_cast<const char*>(&value), sizeof(value));
  out.append(name);
  if (nul) out.push_back('\0');
  return out;
}

}  // namespace

Notifier::Notifier(Transport& transport, const Connection& connection)
    : transport_(transport), connection_(connection), thread_([this] { Run(); }) {}

Notifier::~Notifier() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Notifier::InvalidateEntry(NodeId parent, std::string_view name, bool expire_only) {
  abi::NotifyInvalEntryOut out{};
  out.parent = parent;
  out.namelen = static_cast<uint32_t>(name.size());
  if (expire_only && connection_.Has(abi::kHasExpireOnly)) out.flags = abi::kExpireOnly;
  Post(abi::kNotifyInvalEntry, Bytes(out, name, /*nul=*/true));
}

void Notifier::InvalidateInode(NodeId node, int64_t offset, int64_t length) {
  abi::NotifyInvalInodeOut out{node, offset, length};
  Post(abi::kNotifyInvalInode, Bytes(out));
}

void Notifier::InvalidateAttributesNow(NodeId node) {
  abi::NotifyInvalInodeOut out{node, /*off=*/-1, /*len=*/0};
  abi::OutHeader header{};
  header.len = static_cast<uint32_t>(sizeof(header) + sizeof(out));
  header.error = abi::kNotifyInvalInode;
  struct iovec iov[2] = {{&header, sizeof(header)}, {&out, sizeof(out)}};
  Result<void> result = transport_.Notify(std::span<const struct iovec>(iov, 2));
  // ENOENT: the kernel no longer knows the node, which is fine.
  const bool ok = result.ok() || result.error() == ENOENT;
  if (!ok) spdlog::debug("attribute invalidation failed: errno {}", result.error());
  std::lock_guard<std::mutex> lock(mu_);
  ++(ok ? sent_ : failed_);
}

void Notifier::Delete(NodeId parent, NodeId child, std::string_view name) {
  abi::NotifyDeleteOut out{};
  out.parent = parent;
  out.child = child;
  out.namelen = static_cast<uint32_t>(name.size());
  Post(abi::kNotifyDelete, Bytes(out, name, /*nul=*/true));
}

void Notifier::Prune(std::span<const NodeId> nodes) {
  if (connection_.minor() < 45 || nodes.empty()) return;
  abi::NotifyPruneOut out{};
  out.count = static_cast<uint32_t>(nodes.size());
  std::string payload = Bytes(out);
  payload.append(reinterpret_cast<const char*>(nodes.data()), nodes.size_bytes());
  Post(abi::kNotifyPrune, std::move(payload));
}

void Notifier::IncrementEpoch() {
  if (connection_.minor() < 44) return;
  Post(abi::kNotifyIncEpoch, std::string());
}

void Notifier::Post(int32_t code, std::string payload) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(Message{code, std::move(payload)});
  }
  wake_.notify_one();
}

void Notifier::Drain() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_.wait(lock, [this] { return queue_.empty() && !busy_; });
}

uint64_t Notifier::sent() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sent_;
}

uint64_t Notifier::failed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failed_;
}

void Notifier::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) {
      if (stopping_) return;
      continue;
    }
    Message message = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lock.unlock();

    abi::OutHeader header{};
    header.len = static_cast<uint32_t>(sizeof(header) + message.payload.size());
    header.error = message.code;
    header.unique = 0;
    struct iovec iov[2] = {{&header, sizeof(header)},
                           {message.payload.data(), message.payload.size()}};
    Result<void> result = transport_.Notify(std::span<const struct iovec>(iov, 2));
    // ENOENT: the kernel no longer knows the node or name, which is fine.
    bool ok = result.ok() || result.error() == ENOENT;
    if (!ok) spdlog::debug("notification {} failed: errno {}", message.code, result.error());

    lock.lock();
    busy_ = false;
    ++(ok ? sent_ : failed_);
    if (queue_.empty()) idle_.notify_all();
  }
}

}  // namespace lamina
