// IoUringTransport: FUSE-over-io_uring, with /dev/fuse alongside.
//
// What travels where:
// - /dev/fuse (the primary channel): INIT, and everything before the rings
//   are ready; FORGET, BATCH_FORGET and INTERRUPT always (the kernel never
//   puts them on a ring); our notifications and the passthrough backing
//   ioctls. One worker keeps reading it.
// - The rings: every other request, on the queue of the CPU that made it.
//
// The kernel needs /sys/module/fuse/parameters/enable_uring = 1 and then
// offers FUSE_OVER_IO_URING in INIT. Once the INIT reply accepts it, the
// kernel holds new requests back until every queue (one per possible CPU)
// has a registered entry, and registration is only possible after the reply.
// So the rings and their buffers are created before the reply
// (BeforeInitReply), and the flag is accepted only if that worked for every
// queue; otherwise the connection stays on /dev/fuse (logged, never a hang).
// After the reply each queue's worker registers its entries (IoUringQueue).
// A queue may get more rings later, each with a worker of its own
// (NewQueueChannel): the kernel accepts entries for a queue from any ring
// at any time.

#ifndef LAMINA_CORE_IO_URING_TRANSPORT_H_
#define LAMINA_CORE_IO_URING_TRANSPORT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/dev_fuse_transport.h"
#include "core/io_uring_queue.h"

namespace lamina {

class IoUringTransport : public DevFuseTransport {
 public:
  struct Options {
    // Ring entries per ring. A worker serves its ring one request at a
    // time, and the kernel hands a request to any waiting entry of the
    // queue: a second entry in the ring of a busy worker would make a
    // request wait behind whatever that worker does. Committing a reply
    // fetches the next waiting request in the same system call, so one
    // entry loses nothing.
    int queue_depth = 1;
    // Payload bytes per entry; 0: what the kernel requires. Tests set less
    // to make the kernel refuse REGISTER after the INIT reply.
    size_t payload_size = 0;
  };

  IoUringTransport(int session_fd, Options options);
  explicit IoUringTransport(int session_fd) : IoUringTransport(session_fd, Options()) {}

  void BeforeInitReply(const InitConfig& config, InitReply& reply) override;
  std::vector<std::unique_ptr<Channel>> TakeQueueChannels() override;
  // A ring of its own on queue `index` (the qid), registered by the
  // calling thread, which is pinned to the queue's CPU and becomes the
  // ring's only user. Once a queue has fallen back to /dev/fuse (the kernel
  // then serves everything there), a cloned /dev/fuse descriptor instead.
  Result<std::unique_ptr<Channel>> NewQueueChannel(int index) override;

  // Whether the kernel was told to use the rings.
  bool active() const { return active_.load(std::memory_order_acquire); }
  int queue_count() const { return queue_count_.load(std::memory_order_acquire); }
  // Requests received through queue `qid`, and through all queues.
  uint64_t requests(int qid) const;
  uint64_t requests() const;

 private:
  // Creates every queue, or none.
  Result<void> PrepareQueues(size_t payload_size);

  Options options_;
  std::vector<std::unique_ptr<IoUringQueue>> queues_;  // until taken by the session
  // How each queue's rings are made; written before the INIT reply, read
  // only afterwards.
  std::vector<IoUringQueue::Config> configs_;
  std::unique_ptr<std::atomic<uint64_t>[]> served_;
  std::atomic<int> queue_count_{0};
  std::atomic<bool> active_{false};
  std::atomic<bool> fell_back_{false};  // a queue serves /dev/fuse instead
};

// The CPUs the kernel may run tasks on (/sys/devices/system/cpu/possible);
// the kernel has one FUSE queue per entry, in this order. Empty if the list
// cannot be read.
std::vector<int> PossibleCpus();
// Parses a kernel CPU list ("0-3,6,8-9"); empty if malformed.
std::vector<int> ParseCpuList(std::string_view list);

// Why the kernel did not offer FUSE_OVER_IO_URING, for the log: the module
// parameter is off (and how to turn it on), or the kernel lacks it.
std::string IoUringUnavailableReason();

}  // namespace lamina

#endif  // LAMINA_CORE_IO_URING_TRANSPORT_H_
