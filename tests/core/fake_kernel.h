// FakeKernel: plays the kernel's side of a FUSE connection over a
// SOCK_SEQPACKET socketpair, so a real Session can be driven from a test
// with no mount and no privileges.
//
// The kernel end has a receive timeout: a test that expects a reply the
// server never sends fails within seconds instead of hanging.

#ifndef LAMINA_TESTS_CORE_FAKE_KERNEL_H_
#define LAMINA_TESTS_CORE_FAKE_KERNEL_H_

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "core/filesystem.h"
#include "core/fuse_abi.h"
#include "core/session.h"
#include "core/socket_transport.h"

namespace lamina::testing {

// Every INIT flag up to 7.45: what a kernel that supports everything offers.
inline constexpr uint64_t kAllKernelFlags = (abi::kRequestTimeout << 1) - 1;

// The raw bytes of a wire struct.
template <typename T>
std::string Bytes(const T& value) {
  static_assert(std::is_trivially_copyable_v<T>);
  return std::string(reinterpret_cast<const char*>(&value), sizeof(value));
}

// A NUL-terminated name as the kernel sends it.
inline std::string Name(std::string_view name) {
  return std::string(name) + '\0';
}

// Concatenates request arguments: strings as-is, structs as their bytes.
inline void AppendArg(std::string* out, const std::string& part) {
  out->append(part);
}
template <typename T>
void AppendArg(std::string* out, const T& part) {
  static_assert(!std::is_pointer_v<T>, "wrap C strings in Name() or std::string");
  out->append(Bytes(part));
}
template <typename... Parts>
std::string Args(const Parts&... parts) {
  std::string out;
  (AppendArg(&out, parts), ...);
  return out;
}

// One message from the server: a reply or a notification.
struct Reply {
  abi::OutHeader header{};
  std::string payload;

  int error() const { return -header.error; }
  // The payload (from `offset`) as a wire struct; zeroes if it is too short,
  // so callers check payload.size() first.
  template <typename T>
  T As(size_t offset = 0) const {
    T value{};
    if (offset + sizeof(T) <= payload.size()) {
      std::memcpy(&value, payload.data() + offset, sizeof(T));
    }
    return value;
  }
};

struct RequestOptions {
  uint64_t nodeid = abi::kRootId;
  uint32_t uid = 1000;
  uint32_t gid = 1000;
  uint32_t pid = 4242;
  // Appended after the arguments; total_extlen is set from its size.
  std::string extensions;
};

class FakeKernel {
 public:
  FakeKernel();
  ~FakeKernel();

  FakeKernel(const FakeKernel&) = delete;
  FakeKernel& operator=(const FakeKernel&) = delete;

  // The server's end of the pair; ownership passes to the caller.
  int TakeServerFd();

  // Builds a request with a fresh unique id (header.len = total size).
  std::string Build(uint32_t opcode, const std::string& args, const RequestOptions& options = {});
  // Sends one message as-is; returns the unique id it carries (0 if shorter
  // than a header).
  uint64_t SendRaw(const std::string& message);
  uint64_t Send(uint32_t opcode, const std::string& args, const RequestOptions& options = {}) {
    return SendRaw(Build(opcode, args, options));
  }

  // The next message from the server, or nullopt after the timeout.
  std::optional<Reply> Receive();
  // Sends a request and returns its reply. A missing reply, or one for
  // another unique, fails the current test and yields a Reply with
  // unique 0.
  Reply Call(uint32_t opcode, const std::string& args, const RequestOptions& options = {});

  // Sends INIT for 7.`minor` offering `flags` (bits above 31 travel in
  // flags2); the struct is 16 bytes before 7.36, as the kernel sends it.
  uint64_t SendInit(uint32_t minor, uint64_t flags, uint32_t major = abi::kKernelVersion);
  Reply Init(uint32_t minor, uint64_t flags, uint32_t major = abi::kKernelVersion);

  // Checks that no message is pending: a GETATTR on the root must get the
  // very next reply. Use after requests that must not be answered.
  void ExpectNextReplyIsFor(uint32_t opcode, const std::string& args);

  uint64_t last_unique() const { return unique_; }

 private:
  std::vector<char> buffer_;  // reused: large, and allocated once
  int kernel_fd_ = -1;
  int server_fd_ = -1;
  uint64_t unique_ = 0;
};

// A Session served over a FakeKernel on a background thread. By default
// one worker that never gets help, so replies come in request order.
class SessionHarness {
 public:
  explicit SessionHarness(Filesystem& fs, int threads = 1, int max_threads = 1);
  ~SessionHarness();

  // Runs Session::Run() on a thread; kernel() then plays INIT and requests.
  void Start();
  // Start() and a 7.`minor` INIT offering `flags`; fails the test unless
  // the INIT is answered successfully.
  Reply StartAndInit(uint32_t minor = abi::kKernelMinorVersion, uint64_t flags = kAllKernelFlags);
  // Ends the session and returns what Run() returned.
  absl::Status Stop();

  FakeKernel& kernel() { return kernel_; }
  Session& session() { return *session_; }
  SocketTransport& transport() { return *transport_; }

 private:
  FakeKernel kernel_;
  std::unique_ptr<SocketTransport> transport_;
  std::unique_ptr<Session> session_;
  std::thread thread_;
  absl::Status status_;
};

}  // namespace lamina::testing

#endif  // LAMINA_TESTS_CORE_FAKE_KERNEL_H_
