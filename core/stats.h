// Stats: per-opcode request counters and latency histograms.
//
// Recording is lock-free (relaxed atomics); dumps are a consistent-enough
// snapshot for humans (text, on SIGUSR1) and tools (JSON).

#ifndef LAMINA_CORE_STATS_H_
#define LAMINA_CORE_STATS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/fuse_abi.h"

namespace lamina {

// Named values a filesystem reports beside the request counters.
using Gauges = std::vector<std::pair<std::string, uint64_t>>;

class Stats {
 public:
  // Bucket i counts latencies in [2^(i-1), 2^i) microseconds; bucket 0 is < 1 µs.
  static constexpr int kBuckets = 24;

  struct Snapshot {
    uint64_t count = 0;
    uint64_t errors = 0;
    uint64_t total_ns = 0;
    std::array<uint64_t, kBuckets> buckets{};
  };

  void Record(uint32_t opcode, int error, uint64_t nanoseconds);
  Snapshot Get(uint32_t opcode) const;
  uint64_t TotalRequests() const;

  std::string ToText(const Gauges& gauges = {}) const;
  // {"ops":{NAME:{count,errors,total_ns,buckets_us}},"total":N,"gauges":{NAME:N}}
  std::string ToJson(const Gauges& gauges = {}) const;

 private:
  struct Counters {
    std::atomic<uint64_t> count{0};
    std::atomic<uint64_t> errors{0};
    std::atomic<uint64_t> total_ns{0};
    std::array<std::atomic<uint64_t>, kBuckets> buckets{};
  };
  // The last slot collects opcodes we do not know.
  std::array<Counters, abi::kOpcodeLimit + 1> ops_;
};

}  // namespace lamina

#endif  // LAMINA_CORE_STATS_H_
