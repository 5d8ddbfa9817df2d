// Result<T>: the data plane's error type.
//
// Every FUSE request ends in either a value or a positive errno that goes
// back to the kernel verbatim, so the hot path carries a plain int instead of
// an allocating absl::Status. Control-plane code (options, mounting, layer
// setup) uses absl::Status; ErrnoToStatus() crosses from one to the other.

#ifndef LAMINA_CORE_RESULT_H_
#define LAMINA_CORE_RESULT_H_

#include <cerrno>
#include <string_view>
#include <utility>

#include "absl/status/status.h"

namespace lamina {

// A failure carrying a positive errno. Converts to any Result<T>.
struct Errno {
  int code;
};

// Captures the current errno; use right after a failed syscall.
inline Errno LastErrno() {
  return Errno{errno != 0 ? errno : EIO};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}           // NOLINT: implicit by design
  Result(Errno e) : error_(e.code > 0 ? e.code : EIO) {}  // NOLINT

  bool ok() const { return error_ == 0; }
  // Positive errno, or 0 when ok().
  int error() const { return error_; }

  T& value() & { return value_; }
  const T& value() const& { return value_; }
  T&& value() && { return std::move(value_); }
  T& operator*() & { return value_; }
  const T& operator*() const& { return value_; }
  T* operator->() { return &value_; }
  const T* operator->() const { return &value_; }

 private:
  T value_{};
  int error_ = 0;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Errno e) : error_(e.code > 0 ? e.code : EIO) {}  // NOLINT

  bool ok() const { return error_ == 0; }
  int error() const { return error_; }

 private:
  int error_ = 0;
};

inline Result<void> Ok() {
  return Result<void>();
}

// Turns the return value of a syscall (-1 plus errno on failure) into a Result.
inline Result<void> CheckSyscall(long rc) {
  if (rc < 0) return LastErrno();
  return Ok();
}

// Maps a positive errno to the closest canonical absl code, keeping the
// errno's text and the caller's context in the message.
absl::Status ErrnoToStatus(int error, std::string_view context);

}  // namespace lamina

#endif  // LAMINA_CORE_RESULT_H_
