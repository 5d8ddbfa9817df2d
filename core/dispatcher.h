// Dispatcher: one FUSE request in, one reply out.
//
// Decoding, bounds checks, the call into the Filesystem and the encoding of
// its result all happen here, driven by a table indexed by opcode. Each
// table row names a handler whose parameter list *is* its wire format
// (fixed structs, names, payload); a template reads those parameters in
// order with bounds checks, so adding an opcode touches one row and one
// small handler.
//
// A request whose lengths or strings are inconsistent is answered with
// EINVAL (or dropped when no reply is allowed, or when it is too short to
// carry a header) and logged. Unknown opcodes get ENOSYS.

#ifndef LAMINA_CORE_DISPATCHER_H_
#define LAMINA_CORE_DISPATCHER_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "core/connection.h"
#include "core/filesystem.h"
#include "core/stats.h"
#include "core/transport.h"

namespace lamina {

// "LOOKUP", "GETATTR", ...; "UNKNOWN" for opcodes we do not know.
std::string_view OpcodeName(uint32_t opcode);

class Dispatcher {
 public:
  // `stats` may be null. All references must outlive the dispatcher.
  Dispatcher(Filesystem& fs, Connection& connection, Stats* stats)
      : fs_(fs), connection_(connection), stats_(stats) {}

  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Handles one request. `scratch` is a per-thread buffer for reply
  // payloads (read data, directory listings, xattrs), at least max_read.
  // Thread-safe: workers call this concurrently with their own scratch.
  void Handle(std::span<const std::byte> request, Channel& channel, std::span<std::byte> scratch);

  // The error from the last INIT that could not be negotiated, if any.
  absl::Status init_error() const;

 private:
  Filesystem& fs_;
  Connection& connection_;
  Stats* stats_;
  absl::Status init_error_;  // written only before the connection is initialized
};

}  // namespace lamina

#endif  // LAMINA_CORE_DISPATCHER_H_
