// IoUring: one io_uring instance driven by the raw syscalls.
//
// liburing is not among Lamina's dependencies, so this is the small part of
// it a FUSE queue needs: io_uring_setup, the three mmaps (SQ ring, CQ ring,
// SQE array), io_uring_enter and io_uring_register. Nothing here knows about
// FUSE. The uapi structs and constants come from <linux/io_uring.h>
// (Debian 12's linux-libc-dev 6.1 has SQE128, URING_CMD, SINGLE_ISSUER and
// DEFER_TASKRUN); io_uring_ring.cc pins the layout facts it relies on.
//
// Threading: an IoUring is used by one thread at a time. Created with
// IORING_SETUP_SINGLE_ISSUER it belongs to whichever thread calls Enable()
// (rings are created disabled so that the thread preparing them is not the
// one that must submit).

#ifndef LAMINA_CORE_IO_URING_RING_H_
#define LAMINA_CORE_IO_URING_RING_H_

#include <linux/io_uring.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/result.h"

namespace lamina {

class IoUring {
 public:
  // `entries` SQEs (rounded up to a power of two by the kernel), a CQ of
  // `cq_entries`, and the IORING_SETUP_* `flags` (IORING_SETUP_CQSIZE is
  // added). ENOSYS: no io_uring in this kernel; EPERM: disabled by the
  // kernel.io_uring_disabled sysctl or a seccomp policy.
  static Result<std::unique_ptr<IoUring>> Create(unsigned entries, unsigned cq_entries,
                                                 uint32_t flags);
  ~IoUring();

  IoUring(const IoUring&) = delete;
  IoUring& operator=(const IoUring&) = delete;

  // IORING_REGISTER_ENABLE_RINGS, for rings created with
  // IORING_SETUP_R_DISABLED; the caller becomes the single issuer.
  Result<void> Enable();
  // Registers `fd` as fixed file 0 (saves a file lookup per SQE).
  Result<void> RegisterFile(int fd);

  // A zeroed SQE (128 bytes with IORING_SETUP_SQE128) to fill in, or null
  // when the SQ is full. It is submitted by the next Enter().
  io_uring_sqe* NextSqe();
  // SQEs filled in but not yet consumed by the kernel.
  unsigned unsubmitted() const;
  // Completions waiting in the CQ.
  unsigned ready() const;

  // Submits every pending SQE and waits until at least `wait_for`
  // completions are in the CQ (always with IORING_ENTER_GETEVENTS, which also
  // runs deferred task work: with IORING_SETUP_DEFER_TASKRUN that is how
  // completions arrive at all). EINTR is retried.
  Result<void> Enter(unsigned wait_for);

  // Takes the oldest completion, if any.
  bool PopCompletion(io_uring_cqe* out);

  int fd() const { return fd_; }
  size_t sqe_size() const { return sqe_size_; }

 private:
  IoUring() = default;

  int fd_ = -1;
  size_t sqe_size_ = sizeof(io_uring_sqe);

  void* sq_ring_ = nullptr;
  size_t sq_ring_size_ = 0;
  void* cq_ring_ = nullptr;  // == sq_ring_ with IORING_FEAT_SINGLE_MMAP
  size_t cq_ring_size_ = 0;
  void* sqes_ = nullptr;
  size_t sqes_size_ = 0;

  // Pointers into the shared rings; the kernel owns sq_head and cq_tail.
  unsigned* sq_head_ = nullptr;
  unsigned* sq_tail_ = nullptr;
  unsigned sq_mask_ = 0;
  unsigned sq_entries_ = 0;
  unsigned* sq_array_ = nullptr;
  unsigned* cq_head_ = nullptr;
  unsigned* cq_tail_ = nullptr;
  unsigned cq_mask_ = 0;
  io_uring_cqe* cqes_ = nullptr;

  unsigned local_sq_tail_ = 0;  // SQEs handed out by NextSqe()
};

}  // namespace lamina

#endif  // LAMINA_CORE_IO_URING_RING_H_
