#include "core/connection.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace lamina {

InitConfig MakeInitConfig(const abi::InitIn& in, size_t in_size) {
  InitConfig config;
  config.kernel_minor = in.minor;
  config.kernel_flags = in.flags;
  if (in_size >= sizeof(abi::InitIn) && (in.flags & abi::kInitExt) != 0) {
    config.kernel_flags |= static_cast<uint64_t>(in.flags2) << 32;
  }
  config.kernel_max_readahead = in.max_readahead;
  return config;
}

absl::StatusOr<InitReply> NegotiateInit(const abi::InitIn& in, const InitConfig& config) {
  InitReply reply;
  if (in.major < abi::kKernelVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("kernel FUSE protocol ", in.major, ".", in.minor, " is too old"));
  }
  reply.out.major = abi::kKernelVersion;
  reply.out.minor = abi::kKernelMinorVersion;
  if (in.major > abi::kKernelVersion) {
    // Tell the kernel our major; it retries INIT with that version.
    reply.size = abi::kCompatInitOutSize;
    reply.final = false;
    return reply;
  }
  if (in.minor < abi::kOldestMinorVersion) {
    return absl::FailedPreconditionError(absl::StrCat("kernel FUSE protocol 7.", in.minor,
                                                      " is older than the oldest supported, 7.",
                                                      abi::kOldestMinorVersion, " (Linux 4.19)"));
  }

  uint64_t want = config.want;
  // Passthrough and the writeback cache exclude each other; the kernel
  // silently disables passthrough if both are set.
  if ((want & abi::kPassthrough) != 0) want &= ~abi::kWritebackCache;
  uint64_t flags = want & config.kernel_flags;
  if ((flags >> 32) != 0) flags |= abi::kInitExt;
  flags &= config.kernel_flags;

  reply.minor = std::min(in.minor, abi::kKernelMinorVersion);
  reply.flags = flags;
  reply.final = true;
  abi::InitOut& out = reply.out;
  out.max_readahead = std::min(config.max_readahead, config.kernel_max_readahead);
  out.flags = static_cast<uint32_t>(flags);
  out.flags2 = static_cast<uint32_t>(flags >> 32);
  out.max_background = config.max_background;
  out.congestion_threshold = config.congestion_threshold;
  out.max_write = std::max<uint32_t>(config.max_write, 4096);
  out.time_gran = config.time_gran;
  if ((flags & abi::kMaxPages) != 0) {
    out.max_pages = static_cast<uint16_t>(std::min<uint32_t>((out.max_write + 4095) / 4096, 65535));
  }
  if ((flags & abi::kPassthrough) != 0) {
    out.max_stack_depth = std::clamp<uint32_t>(config.max_stack_depth, 1, 2);
  }
  reply.size = in.minor < 23 ? abi::kCompat22InitOutSize : sizeof(abi::InitOut);
  return reply;
}

void GrantInitFlag(InitReply& reply, uint64_t flag) {
  if ((flag >> 32) != 0) flag |= abi::kInitExt;
  reply.flags |= flag;
  reply.out.flags = static_cast<uint32_t>(reply.flags);
  reply.out.flags2 = static_cast<uint32_t>(reply.flags >> 32);
}

void Connection::SetNegotiated(const InitReply& reply, uint32_t max_read) {
  minor_ = reply.minor;
  flags_ = reply.flags;
  max_write_ = reply.out.max_write;
  max_readahead_ = reply.out.max_readahead;
  max_read_ = max_read;
  initialized_.store(true, std::memory_order_release);
}

}  // namespace lamina
