// libFuzzer target: one FUSE request, as the kernel would send it, through
// the dispatcher into MemoryFilesystem.
//
// Each input gets a fresh filesystem and connection (INIT already done, a
// directory and a file already looked up as nodes 2 and 3), so a crash
// reproduces from its input alone. Every reply is checked the way the
// kernel checks it: at most one per request, none for FORGET and friends,
// header length equal to the bytes written, error in (-1000, 0] and no
// payload with an error.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/connection.h"
#include "core/dispatcher.h"
#include "core/examples/memory_filesystem.h"
#include "core/fuse_abi.h"
#include "spdlog/spdlog.h"

namespace lamina {
namespace {

[[noreturn]] void Fail(const char* what, uint64_t a, uint64_t b) {
  std::fprintf(stderr, "request_fuzzer: %s (%llu, %llu)\n", what,
               static_cast<unsigned long long>(a), static_cast<unsigned long long>(b));
  std::abort();
}

class CheckingChannel : public Channel {
 public:
  Result<size_t> Receive(std::span<std::byte>) override { return Errno{ENODEV}; }

  Result<void> Send(std::span<const struct iovec> iov) override {
    if (iov.empty() || iov[0].iov_len != sizeof(abi::OutHeader)) Fail("no out header", 0, 0);
    abi::OutHeader out;
    std::memcpy(&out, iov[0].iov_base, sizeof(out));
    size_t total = 0;
    for (const struct iovec& piece : iov) total += piece.iov_len;
    if (out.len != total) Fail("header length differs from the reply", out.len, total);
    if (out.error > 0 || out.error <= -1000) Fail("error out of range", -out.error, 0);
    if (out.error != 0 && total != sizeof(out)) Fail("payload with an error", total, 0);
    ++replies;
    last_unique = out.unique;
    last_error = out.error;
    return Ok();
  }

  int replies = 0;
  uint64_t last_unique = 0;
  int32_t last_error = 0;
};

// Keeps each run's memory small: files stay under 1 MiB here, so a random
// SETATTR size or WRITE offset does not allocate the example's full limit.
class BoundedMemoryFilesystem : public examples::MemoryFilesystem {
 public:
  static constexpr uint64_t kLimit = 1 << 20;

  Result<Attributes> SetAttr(const Ctx& ctx, NodeId node, const SetAttrRequest& req) override {
    if (req.Has(abi::kFattrSize) && req.size > kLimit) return Errno{EFBIG};
    return MemoryFilesystem::SetAttr(ctx, node, req);
  }
  Result<size_t> Write(const Ctx& ctx, NodeId node, const WriteRequest& req) override {
    if (req.offset > kLimit) return Errno{EFBIG};
    return MemoryFilesystem::Write(ctx, node, req);
  }
};

std::string Request(uint32_t opcode, uint64_t nodeid, const std::string& args, uint64_t unique) {
  abi::InHeader header{};
  header.len = static_cast<uint32_t>(sizeof(header) + args.size());
  header.opcode = opcode;
  header.unique = unique;
  header.nodeid = nodeid;
  std::string out(reinterpret_cast<const char*>(&header), sizeof(header));
  return out + args;
}

bool Replies(uint32_t opcode) {
  return opcode != abi::kForget && opcode != abi::kBatchForget && opcode != abi::kInterrupt &&
         opcode != abi::kNotifyReply;
}

// Requests are 8-byte aligned, as in the session's buffers.
std::vector<uint64_t>& RequestBuffer() {
  static auto* buffer = new std::vector<uint64_t>();
  return *buffer;
}

std::span<std::byte> Scratch() {
  static auto* scratch = new std::vector<uint64_t>(((1 << 20) + 64 * 1024) / 8);
  return std::as_writable_bytes(std::span<uint64_t>(*scratch));
}

// Handles one request; returns the number of replies it produced.
int Dispatch(Dispatcher& dispatcher, CheckingChannel& channel, const uint8_t* data, size_t size) {
  std::vector<uint64_t>& buffer = RequestBuffer();
  buffer.assign((size + 7) / 8, 0);
  if (size != 0) std::memcpy(buffer.data(), data, size);
  int before = channel.replies;
  dispatcher.Handle(std::as_bytes(std::span<uint64_t>(buffer)).first(size), channel, Scratch());
  return channel.replies - before;
}

int Dispatch(Dispatcher& dispatcher, CheckingChannel& channel, const std::string& request) {
  return Dispatch(dispatcher, channel, reinterpret_cast<const uint8_t*>(request.data()),
                  request.size());
}

std::string Name(const char* name) {
  return std::string(name, std::strlen(name) + 1);
}

void Setup(Dispatcher& dispatcher, CheckingChannel& channel) {
  abi::InitIn init{};
  init.major = abi::kKernelVersion;
  init.minor = abi::kKernelMinorVersion;
  init.max_readahead = 1 << 20;
  init.flags = ~0U;
  init.flags2 = ~0U;
  std::string args(reinterpret_cast<const char*>(&init), sizeof(init));
  // Node 2 is "dir", node 3 is "dir/file": the input can address both.
  const std::string setup[] = {Request(abi::kInit, 0, args, 1),
                               Request(abi::kLookup, abi::kRootId, Name("dir"), 2),
                               Request(abi::kLookup, 2, Name("file"), 3)};
  for (const std::string& request : setup) {
    if (Dispatch(dispatcher, channel, request) != 1 || channel.last_error != 0) {
      Fail("setup request failed", channel.last_unique, -channel.last_error);
    }
  }
}

int FuzzOne(const uint8_t* data, size_t size) {
  BoundedMemoryFilesystem fs;
  fs.AddFile("dir/file", "contents of the file");
  fs.AddFile("dir/other", "");
  Connection connection;
  Dispatcher dispatcher(fs, connection, nullptr);
  CheckingChannel channel;
  Setup(dispatcher, channel);

  int replies = Dispatch(dispatcher, channel, data, size);
  if (size < sizeof(abi::InHeader)) {
    if (replies != 0) Fail("reply to a request without a header", size, replies);
    return 0;
  }
  abi::InHeader header;
  std::memcpy(&header, data, sizeof(header));
  if (!Replies(header.opcode) && header.opcode < abi::kOpcodeLimit) {
    if (replies != 0) Fail("reply to a no-reply opcode", header.opcode, replies);
  } else if (replies != 1) {
    Fail("not exactly one reply", header.opcode, replies);
  }
  if (replies == 1 && channel.last_unique != header.unique) {
    Fail("reply carries another unique", channel.last_unique, header.unique);
  }
  return 0;
}

}  // namespace
}  // namespace lamina

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);  // malformed requests log by design
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return lamina::FuzzOne(data, size);
}
