#include "tests/core/fake_kernel.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace lamina::testing {
namespace {

// Long enough for a loaded sanitizer build, short enough to fail fast.
constexpr int kReceiveTimeoutSeconds = 5;
// The largest reply a test provokes (a READ of max_read), plus a header.
constexpr size_t kMaxMessage = (1U << 20) + 4096;

}  // namespace

FakeKernel::FakeKernel() : buffer_(kMaxMessage) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    ADD_FAILURE() << "socketpair failed: " << std::strerror(errno);
    return;
  }
  kernel_fd_ = fds[0];
  server_fd_ = fds[1];
  struct timeval timeout {};
  timeout.tv_sec = kReceiveTimeoutSeconds;
  setsockopt(kernel_fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  // Large replies (READ, READDIR) must fit one datagram.
  int size = 4 << 20;
  setsockopt(server_fd_, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
  setsockopt(kernel_fd_, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

FakeKernel::~FakeKernel() {
  if (kernel_fd_ >= 0) close(kernel_fd_);
  if (server_fd_ >= 0) close(server_fd_);
}

int FakeKernel::TakeServerFd() {
  int fd = server_fd_;
  server_fd_ = -1;
  return fd;
}

std::string FakeKernel::Build(uint32_t opcode, const std::string& args,
                              const RequestOptions& options) {
  abi::InHeader header{};
  header.len = static_cast<uint32_t>(sizeof(header) + args.size() + options.extensions.size());
  header.opcode = opcode;
  header.unique = ++unique_;
  header.nodeid = options.nodeid;
  header.uid = options.uid;
  header.gid = options.gid;
  header.pid = options.pid;
  header.total_extlen = static_cast<uint16_t>(options.extensions.size() / 8);
  return Bytes(header) + args + options.extensions;
}

uint64_t FakeKernel::SendRaw(const std::string& message) {
  ssize_t n = send(kernel_fd_, message.data(), message.size(), MSG_NOSIGNAL);
  EXPECT_EQ(n, static_cast<ssize_t>(message.size())) << std::strerror(errno);
  abi::InHeader header{};
  if (message.size() < sizeof(header)) return 0;
  std::memcpy(&header, message.data(), sizeof(header));
  return header.unique;
}

std::optional<Reply> FakeKernel::Receive() {
  ssize_t n = recv(kernel_fd_, buffer_.data(), buffer_.size(), 0);
  if (n < 0) return std::nullopt;
  Reply reply;
  EXPECT_GE(static_cast<size_t>(n), sizeof(reply.header)) << "a reply shorter than its header";
  if (static_cast<size_t>(n) < sizeof(reply.header)) return std::nullopt;
  std::memcpy(&reply.header, buffer_.data(), sizeof(reply.header));
  // The kernel rejects replies whose length field disagrees with the write.
  EXPECT_EQ(reply.header.len, static_cast<uint32_t>(n));
  reply.payload.assign(buffer_.data() + sizeof(reply.header), n - sizeof(reply.header));
  return reply;
}

Reply FakeKernel::Call(uint32_t opcode, const std::string& args, const RequestOptions& options) {
  uint64_t unique = Send(opcode, args, options);
  std::optional<Reply> reply = Receive();
  if (!reply.has_value()) {
    ADD_FAILURE() << "no reply to opcode " << opcode << " #" << unique;
    return Reply{};
  }
  if (reply->header.unique != unique) {
    ADD_FAILURE() << "reply for #" << reply->header.unique << " while waiting for #" << unique;
    return Reply{};
  }
  if (reply->header.error > 0 || reply->header.error <= -1000) {
    ADD_FAILURE() << "error " << reply->header.error << " outside (-1000, 0]";
  }
  return *reply;
}

uint64_t FakeKernel::SendInit(uint32_t minor, uint64_t flags, uint32_t major) {
  abi::InitIn in{};
  in.major = major;
  in.minor = minor;
  in.max_readahead = 128 * 1024;
  in.flags = static_cast<uint32_t>(flags);
  in.flags2 = static_cast<uint32_t>(flags >> 32);
  std::string args = Bytes(in);
  if (major == abi::kKernelVersion && minor < 36) args.resize(abi::kCompatInitInSize);
  return Send(abi::kInit, args);
}

Reply FakeKernel::Init(uint32_t minor, uint64_t flags, uint32_t major) {
  uint64_t unique = SendInit(minor, flags, major);
  std::optional<Reply> reply = Receive();
  if (!reply.has_value() || reply->header.unique != unique) {
    ADD_FAILURE() << "no reply to INIT #" << unique;
    return Reply{};
  }
  return *reply;
}

void FakeKernel::ExpectNextReplyIsFor(uint32_t opcode, const std::string& args) {
  Reply reply = Call(opcode, args);
  EXPECT_NE(reply.header.unique, 0U) << "a stray message preceded the reply";
}

namespace {

SessionOptions HarnessOptions(int threads, int max_threads) {
  SessionOptions options;
  options.threads = threads;
  options.max_threads = max_threads;
  return options;
}

}  // namespace

SessionHarness::SessionHarness(Filesystem& fs, int threads, int max_threads)
    : transport_(std::make_unique<SocketTransport>(kernel_.TakeServerFd())),
      session_(std::make_unique<Session>(fs, *transport_, HarnessOptions(threads, max_threads))) {}

SessionHarness::~SessionHarness() {
  (void)Stop();
}

void SessionHarness::Start() {
  thread_ = std::thread([this] { status_ = session_->Run(); });
}

Reply SessionHarness::StartAndInit(uint32_t minor, uint64_t flags) {
  Start();
  Reply reply = kernel_.Init(minor, flags);
  EXPECT_EQ(reply.error(), 0);
  EXPECT_NE(reply.header.unique, 0U);
  return reply;
}

absl::Status SessionHarness::Stop() {
  if (thread_.joinable()) {
    session_->Shutdown();
    thread_.join();
  }
  return status_;
}

}  // namespace lamina::testing
