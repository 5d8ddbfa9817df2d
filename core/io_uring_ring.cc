#include "core/io_uring_ring.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace lamina {

// The layout facts this file and io_uring_queue.cc rely on.
static_assert(sizeof(io_uring_sqe) == 64);
static_assert(sizeof(io_uring_cqe) == 16);
static_assert(offsetof(io_uring_sqe, cmd_op) == 8);
// With IORING_SETUP_SQE128 a URING_CMD's command area runs from byte 48 to
// the end of the 128-byte SQE: 80 bytes.
static_assert(offsetof(io_uring_sqe, cmd) == 48);
static_assert(IORING_OP_URING_CMD == 46);
static_assert(IORING_SETUP_SQE128 == (1U << 10));
static_assert(IORING_SETUP_SINGLE_ISSUER == (1U << 12));
static_assert(IORING_SETUP_DEFER_TASKRUN == (1U << 13));
static_assert(IORING_REGISTER_ENABLE_RINGS == 12);

namespace {

long Setup(unsigned entries, io_uring_params* params) {
  return syscall(__NR_io_uring_setup, entries, params);
}

long Register(int fd, unsigned opcode, const void* arg, unsigned count) {
  return syscall(__NR_io_uring_register, fd, opcode, arg, count);
}

void* MapRing(int fd, size_t size, off_t offset) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, offset);
  return p == MAP_FAILED ? nullptr : p;
}

template <typename T>
T* At(void* base, uint32_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}

}  // namespace

Result<std::unique_ptr<IoUring>> IoUring::Create(unsigned entries, unsigned cq_entries,
                                                 uint32_t flags) {
  io_uring_params params{};
  params.flags = flags | IORING_SETUP_CQSIZE;
  params.cq_entries = std::max(cq_entries, entries);
  long fd = Setup(entries, &params);
  if (fd < 0) return LastErrno();
  std::unique_ptr<IoUring> ring(new IoUring());
  ring->fd_ = static_cast<int>(fd);
  if ((flags & IORING_SETUP_SQE128) != 0) ring->sqe_size_ = 2 * sizeof(io_uring_sqe);

  ring->sq_ring_size_ = params.sq_off.array + params.sq_entries * sizeof(unsigned);
  ring->cq_ring_size_ = params.cq_off.cqes + params.cq_entries * sizeof(io_uring_cqe);
  bool single_mmap = (params.features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single_mmap) {
    ring->sq_ring_size_ = ring->cq_ring_size_ = std::max(ring->sq_ring_size_, ring->cq_ring_size_);
  }
  ring->sq_ring_ = MapRing(ring->fd_, ring->sq_ring_size_, IORING_OFF_SQ_RING);
  if (ring->sq_ring_ == nullptr) return LastErrno();
  if (single_mmap) {
    ring->cq_ring_ = ring->sq_ring_;
  } else {
    ring->cq_ring_ = MapRing(ring->fd_, ring->cq_ring_size_, IORING_OFF_CQ_RING);
    if (ring->cq_ring_ == nullptr) return LastErrno();
  }
  ring->sqes_size_ = params.sq_entries * ring->sqe_size_;
  ring->sqes_ = MapRing(ring->fd_, ring->sqes_size_, IORING_OFF_SQES);
  if (ring->sqes_ == nullptr) return LastErrno();

  ring->sq_head_ = At<unsigned>(ring->sq_ring_, params.sq_off.head);
  ring->sq_tail_ = At<unsigned>(ring->sq_ring_, params.sq_off.tail);
  ring->sq_mask_ = *At<unsigned>(ring->sq_ring_, params.sq_off.ring_mask);
  ring->sq_entries_ = params.sq_entries;
  ring->sq_array_ = At<unsigned>(ring->sq_ring_, params.sq_off.array);
  ring->cq_head_ = At<unsigned>(ring->cq_ring_, params.cq_off.head);
  ring->cq_tail_ = At<unsigned>(ring->cq_ring_, params.cq_off.tail);
  ring->cq_mask_ = *At<unsigned>(ring->cq_ring_, params.cq_off.ring_mask);
  ring->cqes_ = At<io_uring_cqe>(ring->cq_ring_, params.cq_off.cqes);
  ring->local_sq_tail_ = *ring->sq_tail_;
  return ring;
}

IoUring::~IoUring() {
  if (sqes_ != nullptr) munmap(sqes_, sqes_size_);
  if (cq_ring_ != nullptr && cq_ring_ != sq_ring_) munmap(cq_ring_, cq_ring_size_);
  if (sq_ring_ != nullptr) munmap(sq_ring_, sq_ring_size_);
  if (fd_ >= 0) close(fd_);
}

Result<void> IoUring::Enable() {
  return CheckSyscall(Register(fd_, IORING_REGISTER_ENABLE_RINGS, nullptr, 0));
}

Result<void> IoUring::RegisterFile(int fd) {
  return CheckSyscall(Register(fd_, IORING_REGISTER_FILES, &fd, 1));
}

io_uring_sqe* IoUring::NextSqe() {
  unsigned head = __atomic_load_n(sq_head_, __ATOMIC_ACQUIRE);
  if (local_sq_tail_ - head >= sq_entries_) return nullptr;
  unsigned index = local_sq_tail_ & sq_mask_;
  auto* sqe = reinterpret_cast<io_uring_sqe*>(static_cast<char*>(sqes_) + index * sqe_size_);
  std::memset(sqe, 0, sqe_size_);
  sq_array_[index] = index;
  ++local_sq_tail_;
  return sqe;
}

unsigned IoUring::unsubmitted() const {
  return local_sq_tail_ - __atomic_load_n(sq_head_, __ATOMIC_ACQUIRE);
}

unsigned IoUring::ready() const {
  return __atomic_load_n(cq_tail_, __ATOMIC_ACQUIRE) - *cq_head_;
}

Result<void> IoUring::Enter(unsigned wait_for) {
  // Publish the SQEs (and the array slots written before them).
  __atomic_store_n(sq_tail_, local_sq_tail_, __ATOMIC_RELEASE);
  for (;;) {
    unsigned to_submit = unsubmitted();
    long rc =
        syscall(__NR_io_uring_enter, fd_, to_submit, wait_for, IORING_ENTER_GETEVENTS, nullptr, 0);
    if (rc >= 0) return Ok();
    if (errno != EINTR) return LastErrno();
  }
}

bool IoUring::PopCompletion(io_uring_cqe* out) {
  unsigned head = *cq_head_;
  if (head == __atomic_load_n(cq_tail_, __ATOMIC_ACQUIRE)) return false;
  *out = cqes_[head & cq_mask_];
  __atomic_store_n(cq_head_, head + 1, __ATOMIC_RELEASE);
  return true;
}

}  // namespace lamina
