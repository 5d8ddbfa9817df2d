// IoUringQueue: one io_uring registered on one FUSE-over-io_uring queue,
// served as a Channel.
//
// The kernel keeps one queue per possible CPU and puts a request on the
// queue of the CPU that made it. Each IoUringQueue is one io_uring with
// `depth` ring entries registered on such a queue, used by one worker
// pinned to that CPU, so a request is normally handled on the caller's CPU
// without waking another one (the point of the transport: see
// docs/architecture.md). A kernel queue may have several: the session
// starts a worker with a ring of its own when a queue's workers are busy
// (IoUringTransport::NewQueueChannel). One entry per ring is the default:
// an entry waiting in a ring whose worker is busy would hand its next
// request to that worker, behind whatever it is doing.
//
// A ring entry is a 288-byte abi::UringReqHeader plus a payload buffer of
// the kernel's maximum payload. For a request the kernel writes the
// fuse_in_header into `in_out`, the opcode's fixed struct (its first
// argument) into `op_in`, every further argument (names, write data,
// request extensions) into the payload, and the payload's length into
// `ring_ent_in_out`. ReceiveView() presents that as the contiguous request
// the dispatcher expects without copying the payload: the payload buffer is
// preceded by spare room into which the header and the op struct are copied.
// Send() puts the reply's out header into `in_out` and its arguments,
// concatenated, into the payload, then queues COMMIT_AND_FETCH, which both
// delivers the reply and re-arms the entry for the next request. The SQE is
// submitted by the next Receive together with the wait for the next request:
// one io_uring_enter per request.
//
// Everything read from the kernel is bounds-checked: a completion for an
// unknown entry is ignored, and a request whose lengths do not add up is
// presented so that the dispatcher answers it EINVAL.
//
// Threading: a queue belongs to the one worker thread that calls Receive and
// Send. Register() or Prepare() (or else its first Receive) pins the thread
// to the queue's CPU, enables the ring (created disabled, single issuer,
// deferred task work) and registers the entries. If that fails in Prepare()
// or Receive the queue serves a cloned /dev/fuse descriptor instead (the
// kernel falls back to /dev/fuse when a registration fails) and says so in
// the log.

#ifndef LAMINA_CORE_IO_URING_QUEUE_H_
#define LAMINA_CORE_IO_URING_QUEUE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/fuse_abi.h"
#include "core/io_uring_ring.h"
#include "core/transport.h"

namespace lamina {

// Room a ring entry's payload buffer needs in front of it for
// AssembleRingRequest(): the in header and the largest op struct.
inline constexpr size_t kRingRequestPrefix = sizeof(abi::InHeader) + abi::kUringOpInOutSize;

// Builds the contiguous request the dispatcher expects (in header, op
// struct, payload) from a ring entry: `header` as the kernel filled it,
// `payload` the entry's payload buffer of `capacity` bytes, preceded by at
// least kRingRequestPrefix writable bytes. The payload is not copied.
// Lengths that do not add up give the in header alone with len 0, which the
// dispatcher answers with EINVAL (or drops, for opcodes never answered).
std::span<const std::byte> AssembleRingRequest(const abi::UringReqHeader& header,
                                               std::byte* payload, size_t capacity);

class IoUringQueue : public Channel {
 public:
  struct Config {
    int device_fd = -1;       // the connection's /dev/fuse descriptor (not owned)
    uint16_t qid = 0;         // the kernel's queue number
    int cpu = -1;             // CPU the worker is pinned to; -1: not pinned
    int depth = 1;            // ring entries, i.e. requests the kernel may hand over at once
    size_t payload_size = 0;  // per entry; at least the kernel's maximum payload
    std::atomic<uint64_t>* served = nullptr;  // counts requests received (optional)
    // Set when a queue falls back to /dev/fuse (optional).
    std::atomic<bool>* fell_back = nullptr;
  };

  // Allocates the ring (disabled) and the entries' buffers. Called before
  // the INIT reply: the kernel must not be promised io_uring unless this
  // worked for every queue.
  static Result<std::unique_ptr<IoUringQueue>> Create(const Config& config);
  ~IoUringQueue() override;

  IoUringQueue(const IoUringQueue&) = delete;
  IoUringQueue& operator=(const IoUringQueue&) = delete;

  // Pins the calling thread, enables the ring and registers the entries
  // now, for a queue whose kernel side is already in use: the caller
  // becomes the ring's only user. Nothing falls back on failure (the
  // kernel keeps serving the queue's other rings); the queue is unusable.
  Result<void> Register();

  // Register() unless done, falling back to /dev/fuse if that fails.
  void Prepare() override;
  Result<size_t> Receive(std::span<std::byte> buffer) override;
  // The request in the entry's own memory, valid until the next Receive.
  Result<std::span<const std::byte>> ReceiveView(std::span<std::byte> buffer) override;
  Result<void> Send(std::span<const struct iovec> iov) override;

  uint16_t qid() const { return config_.qid; }

 private:
  enum class EntryState {
    kIdle,      // not known to the kernel
    kInKernel,  // REGISTER or COMMIT_AND_FETCH submitted: waiting for a request
    kHeld,      // holding a request we have not answered yet
    kDead,      // the kernel ended it (connection gone)
  };
  struct Entry {
    abi::UringReqHeader* header = nullptr;  // iov[0]
    std::byte* payload = nullptr;           // iov[1]
    struct iovec iov[2];                    // what REGISTER points the kernel at
    EntryState state = EntryState::kIdle;
    bool registering = false;  // the command in the kernel is REGISTER (not a commit)
    uint64_t commit_id = 0;
    uint64_t unique = 0;
  };

  explicit IoUringQueue(const Config& config) : config_(config) {}

  // Pins, enables and registers, on the worker thread. `*kernel_saw_it`:
  // whether a failure was the kernel refusing a REGISTER.
  Result<void> Attach(bool* kernel_saw_it);
  // First Receive without Register(): Attach(), or serve /dev/fuse.
  void AttachOrFallBack();
  // Registration failed: serve /dev/fuse instead. `kernel_saw_it`: whether
  // the kernel itself saw a REGISTER fail (it then stops waiting for rings).
  void FallBack(int error, bool kernel_saw_it);
  // The next completion: one that came during registration, else the ring's.
  bool NextCompletion(io_uring_cqe* out);

  Result<void> QueueCommand(size_t index, uint32_t command);
  // ring_->Enter(), retried while the kernel is short of memory.
  Result<void> Enter(unsigned wait_for);
  std::span<const std::byte> Present(size_t index);
  void Commit(size_t index, const abi::OutHeader& out, size_t payload_size);
  void OnEntryError(size_t index, int error);

  Config config_;
  std::unique_ptr<IoUring> ring_;
  bool fixed_file_ = false;  // the device is the ring's fixed file 0
  void* memory_ = nullptr;   // every entry's header and payload, one mapping
  size_t memory_size_ = 0;
  std::vector<Entry> entries_;
  size_t live_entries_ = 0;
  long held_ = -1;  // index of the entry whose request is being handled
  bool attached_ = false;
  // Requests that completed while the entries were being registered.
  std::vector<io_uring_cqe> early_;
  std::unique_ptr<Channel> fallback_;
};

}  // namespace lamina

#endif  // LAMINA_CORE_IO_URING_QUEUE_H_
