#include "core/io_uring_queue.h"

#include <sched.h>
#include <sys/mman.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "core/dev_fuse_transport.h"
#include "core/kernel_order.h"
#include "spdlog/spdlog.h"

namespace lamina {
namespace {

// Each entry's memory: one page holding the kernel's header struct at its
// start and, at its end, the room where a request's in header and op struct
// are copied so that they run straight into the payload that follows.
constexpr size_t kEntryPrefix = 4096;
static_assert(sizeof(abi::UringReqHeader) + kRingRequestPrefix <= kEntryPrefix);

size_t RoundUp(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}

// Completion errors that mean the connection (or the ring) is going away:
// the entry will not come back.
bool IsTeardown(int error) {
  return error == ENOTCONN || error == ECONNABORTED || error == ENODEV || error == ECANCELED;
}

// Enter errors worth retrying: the kernel is short of memory for a moment.
bool IsTransient(int error) {
  return error == EAGAIN || error == EBUSY || error == ENOMEM;
}

void SetCommand(io_uring_sqe* sqe, const abi::UringCmdReq& request) {
  std::memcpy(reinterpret_cast<char*>(sqe) + offsetof(io_uring_sqe, cmd), &request,
              sizeof(request));
}

// Makes the kernel give up io_uring for this connection when our own ring
// broke before any REGISTER reached it: a REGISTER without buffers fails,
// and a failing REGISTER is the kernel's cue to serve /dev/fuse again.
// Without this the kernel would wait for our queue forever.
void RefuseIoUring(int device_fd, uint16_t qid) {
  Result<std::unique_ptr<IoUring>> ring = IoUring::Create(1, 2, IORING_SETUP_SQE128);
  if (!ring.ok()) {
    spdlog::error(
        "FUSE-over-io_uring: cannot tell the kernel to stop waiting for queue {}: "
        "errno {}; the mount may hang until it is unmounted",
        qid, ring.error());
    return;
  }
  io_uring_sqe* sqe = (*ring)->NextSqe();
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = device_fd;
  sqe->cmd_op = abi::kUringCmdRegister;
  abi::UringCmdReq request{};
  request.qid = qid;
  SetCommand(sqe, request);
  Result<void> entered = (*ring)->Enter(1);
  io_uring_cqe cqe{};
  if (!entered.ok() || !(*ring)->PopCompletion(&cqe) || cqe.res >= 0) {
    spdlog::error("FUSE-over-io_uring: the kernel did not refuse the empty REGISTER for queue {}",
                  qid);
  }
}

}  // namespace

Result<std::unique_ptr<IoUringQueue>> IoUringQueue::Create(const Config& config) {
  if (config.depth < 1 || config.depth > 1024 || config.payload_size == 0) return Errno{EINVAL};
  std::unique_ptr<IoUringQueue> queue(new IoUringQueue(config));
  unsigned depth = static_cast<unsigned>(config.depth);
  // Disabled so that the worker, not this thread, becomes the single issuer;
  // deferred task work so the kernel copies requests in when the worker
  // waits, instead of interrupting it while it handles one.
  Result<std::unique_ptr<IoUring>> ring =
      IoUring::Create(depth, 2 * depth,
                      IORING_SETUP_SQE128 | IORING_SETUP_R_DISABLED | IORING_SETUP_SINGLE_ISSUER |
                          IORING_SETUP_DEFER_TASKRUN);
  if (!ring.ok()) return Errno{ring.error()};
  queue->ring_ = std::move(*ring);

  size_t page = 4096;
  size_t payload = RoundUp(config.payload_size, page);
  size_t stride = kEntryPrefix + payload;
  queue->memory_size_ = stride * depth;
  // Reserved, not committed: pages are touched only as large requests use
  // them.
  void* memory = mmap(nullptr, queue->memory_size_, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (memory == MAP_FAILED) return LastErrno();
  queue->memory_ = memory;
  queue->config_.payload_size = payload;
  queue->entries_.resize(depth);
  for (unsigned i = 0; i < depth; ++i) {
    std::byte* base = static_cast<std::byte*>(memory) + i * stride;
    Entry& e = queue->entries_[i];
    e.header = reinterpret_cast<abi::UringReqHeader*>(base);
    e.payload = base + kEntryPrefix;
    e.iov[0] = {e.header, sizeof(abi::UringReqHeader)};
    e.iov[1] = {e.payload, payload};
  }
  return queue;
}

IoUringQueue::~IoUringQueue() {
  // Close the ring first: it ends the kernel's use of the entries' buffers.
  ring_.reset();
  if (memory_ != nullptr) munmap(memory_, memory_size_);
}

Result<void> IoUringQueue::Attach(bool* kernel_saw_it) {
  attached_ = true;
  *kernel_saw_it = false;
  if (config_.cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(config_.cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) {
      spdlog::debug("io_uring queue {}: cannot pin to CPU {}: errno {}", config_.qid, config_.cpu,
                    errno);
    }
  }
  Result<void> enabled = ring_->Enable();
  if (!enabled.ok()) return enabled;
  fixed_file_ = ring_->RegisterFile(config_.device_fd).ok();
  for (size_t i = 0; i < entries_.size(); ++i) {
    Result<void> queued = QueueCommand(i, abi::kUringCmdRegister);
    if (!queued.ok()) return queued;
  }
  Result<void> entered = Enter(0);
  if (!entered.ok()) return entered;
  live_entries_ = entries_.size();
  // A REGISTER the kernel refuses completes at once; one that succeeds
  // completes only when a request arrives, which on a queue already in use
  // may be at once too: that one is kept for Receive.
  io_uring_cqe cqe;
  while (ring_->PopCompletion(&cqe)) {
    if (cqe.res < 0) {
      *kernel_saw_it = true;
      return Errno{-cqe.res};
    }
    early_.push_back(cqe);
  }
  return Ok();
}

void IoUringQueue::AttachOrFallBack() {
  bool kernel_saw_it = false;
  Result<void> attached = Attach(&kernel_saw_it);
  if (!attached.ok()) FallBack(attached.error(), kernel_saw_it);
}

Result<void> IoUringQueue::Register() {
  bool kernel_saw_it = false;
  Result<void> attached = Attach(&kernel_saw_it);
  if (!attached.ok()) {
    spdlog::warn("io_uring queue {}: cannot register another ring: errno {}", config_.qid,
                 attached.error());
    ring_.reset();
    live_entries_ = 0;
  }
  return attached;
}

void IoUringQueue::Prepare() {
  if (!attached_) AttachOrFallBack();
}

bool IoUringQueue::NextCompletion(io_uring_cqe* out) {
  if (!early_.empty()) {
    *out = early_.front();
    early_.erase(early_.begin());
    return true;
  }
  return ring_->PopCompletion(out);
}

void IoUringQueue::FallBack(int error, bool kernel_saw_it) {
  spdlog::warn(
      "FUSE-over-io_uring: queue {} could not register its ring (errno {}); "
      "serving through /dev/fuse",
      config_.qid, error);
  if (!kernel_saw_it) RefuseIoUring(config_.device_fd, config_.qid);
  ring_.reset();
  fallback_ = DevFuseTransport::CloneChannel(config_.device_fd);
  if (config_.fell_back != nullptr) config_.fell_back->store(true, std::memory_order_release);
}

Result<void> IoUringQueue::QueueCommand(size_t index, uint32_t command) {
  io_uring_sqe* sqe = ring_->NextSqe();
  if (sqe == nullptr) {
    // Cannot happen with one command per entry and an SQ of `depth`, but
    // submitting what is queued makes room.
    Result<void> entered = ring_->Enter(0);
    if (!entered.ok()) return entered;
    sqe = ring_->NextSqe();
    if (sqe == nullptr) return Errno{EBUSY};
  }
  Entry& e = entries_[index];
  sqe->opcode = IORING_OP_URING_CMD;
  if (fixed_file_) {
    sqe->fd = 0;
    sqe->flags = IOSQE_FIXED_FILE;
  } else {
    sqe->fd = config_.device_fd;
  }
  sqe->cmd_op = command;
  sqe->user_data = index;
  abi::UringCmdReq request{};
  request.qid = config_.qid;
  if (command == abi::kUringCmdRegister) {
    sqe->addr = reinterpret_cast<uint64_t>(e.iov);
    sqe->len = 2;
  } else {
    request.commit_id = e.commit_id;
  }
  SetCommand(sqe, request);
  e.state = EntryState::kInKernel;
  e.registering = command == abi::kUringCmdRegister;
  return Ok();
}

std::span<const std::byte> AssembleRingRequest(const abi::UringReqHeader& header,
                                               std::byte* payload, size_t capacity) {
  abi::InHeader in;
  std::memcpy(&in, header.in_out, sizeof(in));
  abi::UringEntInOut meta;
  std::memcpy(&meta, &header.ring_ent_in_out, sizeof(meta));
  size_t payload_size = meta.payload_sz;
  size_t op_size = 0;
  bool consistent = payload_size <= capacity && in.len >= sizeof(in) + payload_size;
  if (consistent) {
    op_size = in.len - sizeof(in) - payload_size;
    consistent = op_size <= abi::kUringOpInOutSize;
  }
  if (!consistent) {
    spdlog::warn("io_uring: request #{} has inconsistent lengths (len {}, payload {})", in.unique,
                 in.len, meta.payload_sz);
    in.len = 0;
    op_size = 0;
    payload_size = 0;
  }
  std::byte* start = payload - sizeof(in) - op_size;
  std::memcpy(start, &in, sizeof(in));
  std::memcpy(start + sizeof(in), header.op_in, op_size);
  return {start, sizeof(in) + op_size + payload_size};
}

std::span<const std::byte> IoUringQueue::Present(size_t index) {
  Entry& e = entries_[index];
  abi::UringEntInOut meta;
  std::memcpy(&meta, &e.header->ring_ent_in_out, sizeof(meta));
  e.commit_id = meta.commit_id;
  abi::InHeader in;
  std::memcpy(&in, e.header->in_out, sizeof(in));
  e.unique = in.unique;
  return AssembleRingRequest(*e.header, e.payload, config_.payload_size);
}

void IoUringQueue::Commit(size_t index, const abi::OutHeader& out, size_t payload_size) {
  Entry& e = entries_[index];
  std::memcpy(e.header->in_out, &out, sizeof(out));
  uint32_t size = static_cast<uint32_t>(payload_size);
  std::memcpy(reinterpret_cast<char*>(&e.header->ring_ent_in_out) +
                  offsetof(abi::UringEntInOut, payload_sz),
              &size, sizeof(size));
  held_ = -1;
  KernelOrderRelease();
  Result<void> queued = QueueCommand(index, abi::kUringCmdCommitAndFetch);
  if (!queued.ok()) {
    // The ring is broken; the kernel ends the request when the connection
    // ends. Nothing else can be done for it.
    spdlog::error("io_uring queue {}: cannot queue a commit: errno {}", config_.qid,
                  queued.error());
    e.state = EntryState::kDead;
    --live_entries_;
  }
}

void IoUringQueue::OnEntryError(size_t index, int error) {
  Entry& e = entries_[index];
  if (!IsTeardown(error) && !e.registering) {
    // The kernel refused a commit (ENOENT: it no longer knew the request).
    // The entry itself is fine: hand it back for the next request.
    spdlog::debug("io_uring queue {}: commit refused: errno {}", config_.qid, error);
    if (QueueCommand(index, abi::kUringCmdRegister).ok()) return;
  } else if (!IsTeardown(error)) {
    spdlog::warn("io_uring queue {}: entry {} ended: errno {}", config_.qid, index, error);
  }
  e.state = EntryState::kDead;
  --live_entries_;
}

Result<std::span<const std::byte>> IoUringQueue::ReceiveView(std::span<std::byte> buffer) {
  if (!attached_) AttachOrFallBack();
  if (fallback_ != nullptr) return fallback_->ReceiveView(buffer);
  if (ring_ == nullptr) return Errno{ENODEV};  // Register() failed
  if (held_ >= 0) {
    // The last request got no reply (an opcode that is never answered, or
    // one dropped as malformed). The kernel still waits for the entry.
    spdlog::debug("io_uring queue {}: request #{} got no reply; answering EIO", config_.qid,
                  entries_[held_].unique);
    abi::OutHeader out{};
    out.len = sizeof(out);
    out.error = -EIO;
    out.unique = entries_[held_].unique;
    Commit(static_cast<size_t>(held_), out, 0);
  }
  // Submit the commit of the last reply and wait for the next request in
  // one system call (without waiting if a request is already there).
  if (ring_->unsubmitted() > 0) {
    Result<void> entered = Enter(ring_->ready() > 0 || !early_.empty() ? 0 : 1);
    if (!entered.ok()) return Errno{entered.error()};
  }
  for (;;) {
    io_uring_cqe cqe;
    if (NextCompletion(&cqe)) {
      if (cqe.user_data >= entries_.size() ||
          entries_[cqe.user_data].state != EntryState::kInKernel) {
        spdlog::warn("io_uring queue {}: completion for unknown entry {} ignored", config_.qid,
                     cqe.user_data);
        continue;
      }
      size_t index = static_cast<size_t>(cqe.user_data);
      if (cqe.res < 0) {
        OnEntryError(index, -cqe.res);
        continue;
      }
      entries_[index].state = EntryState::kHeld;
      held_ = static_cast<long>(index);
      KernelOrderAcquire();
      if (config_.served != nullptr) config_.served->fetch_add(1, std::memory_order_relaxed);
      return Present(index);
    }
    if (live_entries_ == 0) return Errno{ENODEV};
    Result<void> entered = Enter(1);
    if (!entered.ok()) return Errno{entered.error()};
  }
}

Result<void> IoUringQueue::Enter(unsigned wait_for) {
  for (;;) {
    Result<void> entered = ring_->Enter(wait_for);
    if (entered.ok() || !IsTransient(entered.error())) return entered;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

Result<size_t> IoUringQueue::Receive(std::span<std::byte> buffer) {
  Result<std::span<const std::byte>> request = ReceiveView(buffer);
  if (!request.ok()) return Errno{request.error()};
  if (request->data() == buffer.data()) return request->size();
  // Too large for the caller's buffer: left unanswered, it gets EIO.
  if (request->size() > buffer.size()) return Errno{EINVAL};
  std::memcpy(buffer.data(), request->data(), request->size());
  return request->size();
}

Result<void> IoUringQueue::Send(std::span<const struct iovec> iov) {
  if (fallback_ != nullptr) return fallback_->Send(iov);
  if (held_ < 0) return Errno{EINVAL};  // no request to answer
  Entry& e = entries_[static_cast<size_t>(held_)];
  abi::OutHeader out{};
  if (iov.empty() || iov[0].iov_len < sizeof(out)) {
    out.error = -EIO;
    out.unique = e.unique;
    Commit(static_cast<size_t>(held_), out, 0);
    return Errno{EINVAL};
  }
  std::memcpy(&out, iov[0].iov_base, sizeof(out));
  size_t total = 0;
  for (const struct iovec& piece : iov.subspan(1)) total += piece.iov_len;
  if (total > config_.payload_size) {
    spdlog::warn("io_uring queue {}: a {}-byte reply to #{} does not fit the ring entry",
                 config_.qid, total, e.unique);
    out.error = -EIO;
    Commit(static_cast<size_t>(held_), out, 0);
    return Errno{EIO};
  }
  size_t offset = 0;
  for (const struct iovec& piece : iov.subspan(1)) {
    // memmove: a reply piece may come from the request, which lives in
    // this same payload buffer.
    std::memmove(e.payload + offset, piece.iov_base, piece.iov_len);
    offset += piece.iov_len;
  }
  out.len = static_cast<uint32_t>(sizeof(out) + total);
  Commit(static_cast<size_t>(held_), out, total);
  return Ok();
}

}  // namespace lamina
