// INIT negotiation and the negotiated connection.
//
// InitConfig is what a Filesystem may adjust before INIT is answered;
// Connection is the read-only outcome, plus the per-connection services
// (notifier, backing registry) a filesystem can use afterwards.

#ifndef LAMINA_CORE_CONNECTION_H_
#define LAMINA_CORE_CONNECTION_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <utility>

#include "absl/status/statusor.h"
#include "core/fuse_abi.h"

namespace lamina {

class BackingRegistry;
class Notifier;

// The flags Lamina asks for unless a filesystem removes them. Each is there
// for a measured reason; docs/protocol.md keeps the table.
inline constexpr uint64_t kDefaultWantedFlags =
    abi::kAsyncRead | abi::kBigWrites | abi::kParallelDirops | abi::kDoReaddirplus |
    abi::kReaddirplusAuto | abi::kAsyncDio | abi::kMaxPages | abi::kCacheSymlinks |
    abi::kHandleKillprivV2 | abi::kSetxattrExt | abi::kAbortError | abi::kNoExportSupport |
    abi::kInitExt | abi::kDirectIoAllowMmap | abi::kCreateSuppGroup;

struct InitConfig {
  // What the kernel offers (read-only for the filesystem).
  uint32_t kernel_minor = 0;
  uint64_t kernel_flags = 0;
  uint32_t kernel_max_readahead = 0;

  // What we ask for; the reply carries want & kernel_flags.
  uint64_t want = kDefaultWantedFlags;
  uint32_t max_write = 1U << 20;
  uint32_t max_readahead = 1U << 20;
  uint16_t max_background = 64;
  uint16_t congestion_threshold = 48;
  uint32_t time_gran = 1;
  // With kPassthrough: 1 when backing files live on a plain filesystem,
  // 2 when they may themselves be on overlayfs or another stacked fs.
  uint32_t max_stack_depth = 1;

  bool KernelOffers(uint64_t flag) const { return (kernel_flags & flag) == flag; }
};

// Result of handling one INIT request.
struct InitReply {
  abi::InitOut out{};
  size_t size = 0;     // bytes of `out` to send (older minors take less)
  bool final = false;  // false: the kernel will send INIT again (major mismatch)
  uint32_t minor = 0;  // negotiated minor
  uint64_t flags = 0;  // negotiated flags
};

// Builds the first half of the negotiation: an InitConfig with the kernel's
// offer. `in_size` is the payload length (16 bytes before 7.36).
InitConfig MakeInitConfig(const abi::InitIn& in, size_t in_size);

// Answers INIT given what the filesystem wants. Fails for kernels older than
// abi::kOldestMinorVersion or majors below 7.
absl::StatusOr<InitReply> NegotiateInit(const abi::InitIn& in, const InitConfig& config);

// Adds `flag`, which the kernel offered, to a negotiated reply (with
// INIT_EXT when the flag lives in flags2).
void GrantInitFlag(InitReply& reply, uint64_t flag);

class Connection {
 public:
  Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool initialized() const { return initialized_.load(std::memory_order_acquire); }
  uint32_t minor() const { return minor_; }
  uint64_t flags() const { return flags_; }
  bool Has(uint64_t flag) const { return (flags_ & flag) == flag; }
  uint32_t max_write() const { return max_write_; }
  uint32_t max_read() const { return max_read_; }
  uint32_t max_readahead() const { return max_readahead_; }

  Notifier* notifier() const { return notifier_; }
  // Null when the transport cannot register backing files.
  BackingRegistry* backing() const { return backing_; }

  // Session-side setters.
  void SetNegotiated(const InitReply& reply, uint32_t max_read);

  // Runs with the final INIT reply just before it is sent (INIT's handler
  // calls it): the session lets its transport add flags that need resources
  // prepared first, i.e. FUSE_OVER_IO_URING.
  using InitReplyHook = std::function<void(const InitConfig&, InitReply&)>;
  void SetInitReplyHook(InitReplyHook hook) { init_reply_hook_ = std::move(hook); }
  void BeforeInitReply(const InitConfig& config, InitReply& reply) const {
    if (init_reply_hook_) init_reply_hook_(config, reply);
  }
  void SetServices(Notifier* notifier, BackingRegistry* backing) {
    notifier_ = notifier;
    backing_ = backing;
  }

 private:
  std::atomic<bool> initialized_{false};
  uint32_t minor_ = 0;
  uint64_t flags_ = 0;
  uint32_t max_write_ = 0;
  uint32_t max_read_ = 0;
  uint32_t max_readahead_ = 0;
  Notifier* notifier_ = nullptr;
  BackingRegistry* backing_ = nullptr;
  InitReplyHook init_reply_hook_;
};

}  // namespace lamina

#endif  // LAMINA_CORE_CONNECTION_H_
