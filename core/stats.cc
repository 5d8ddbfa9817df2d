#include "core/stats.h"

#include <bit>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/dispatcher.h"

namespace lamina {
namespace {

int BucketFor(uint64_t nanoseconds) {
  uint64_t micros = nanoseconds / 1000;
  int bucket = micros == 0 ? 0 : std::bit_width(micros);
  return bucket < Stats::kBuckets ? bucket : Stats::kBuckets - 1;
}

// Upper bound, in microseconds, of the bucket holding the q-th quantile.
uint64_t Quantile(const Stats::Snapshot& s, double q) {
  uint64_t target = static_cast<uint64_t>(q * static_cast<double>(s.count));
  uint64_t seen = 0;
  for (int i = 0; i < Stats::kBuckets; ++i) {
    seen += s.buckets[i];
    if (seen > target) return uint64_t{1} << i;
  }
  return uint64_t{1} << (Stats::kBuckets - 1);
}

}  // namespace

void Stats::Record(uint32_t opcode, int error, uint64_t nanoseconds) {
  Counters& c = ops_[opcode < abi::kOpcodeLimit ? opcode : abi::kOpcodeLimit];
  c.count.fetch_add(1, std::memory_order_relaxed);
  if (error != 0) c.errors.fetch_add(1, std::memory_order_relaxed);
  c.total_ns.fetch_add(nanoseconds, std::memory_order_relaxed);
  c.buckets[BucketFor(nanoseconds)].fetch_add(1, std::memory_order_relaxed);
}

Stats::Snapshot Stats::Get(uint32_t opcode) const {
  const Counters& c = ops_[opcode < abi::kOpcodeLimit ? opcode : abi::kOpcodeLimit];
  Snapshot s;
  s.count = c.count.load(std::memory_order_relaxed);
  s.errors = c.errors.load(std::memory_order_relaxed);
  s.total_ns = c.total_ns.load(std::memory_order_relaxed);
  for (int i = 0; i < kBuckets; ++i) s.buckets[i] = c.buckets[i].load(std::memory_order_relaxed);
  return s;
}

uint64_t Stats::TotalRequests() const {
  uint64_t total = 0;
  for (const Counters& c : ops_) total += c.count.load(std::memory_order_relaxed);
  return total;
}

std::string Stats::ToText(const Gauges& gauges) const {
  std::string out = absl::StrFormat("%-16s %10s %8s %10s %8s %8s\n", "op", "count", "errors",
                                    "mean_us", "p50_us<", "p99_us<");
  for (uint32_t op = 0; op <= abi::kOpcodeLimit; ++op) {
    Snapshot s = Get(op);
    if (s.count == 0) continue;
    absl::StrAppendFormat(&out, "%-16s %10u %8u %10.1f %8u %8u\n", std::string(OpcodeName(op)),
                          s.count, s.errors, static_cast<double>(s.total_ns) / 1000.0 / s.count,
                          Quantile(s, 0.5), Quantile(s, 0.99));
  }
  for (const auto& [name, value] : gauges) absl::StrAppendFormat(&out, "%-16s %10u\n", name, value);
  return out;
}

std::string Stats::ToJson(const Gauges& gauges) const {
  std::string out = "{\"ops\":{";
  bool first = true;
  for (uint32_t op = 0; op <= abi::kOpcodeLimit; ++op) {
    Snapshot s = Get(op);
    if (s.count == 0) continue;
    absl::StrAppend(&out, first ? "" : ",", "\"", std::string(OpcodeName(op)),
                    "\":{\"count\":", s.count, ",\"errors\":", s.errors,
                    ",\"total_ns\":", s.total_ns, ",\"buckets_us\":[");
    for (int i = 0; i < kBuckets; ++i) absl::StrAppend(&out, i ? "," : "", s.buckets[i]);
    absl::StrAppend(&out, "]}");
    first = false;
  }
  absl::StrAppend(&out, "},\"total\":", TotalRequests(), ",\"gauges\":{");
  first = true;
  for (const auto& [name, value] : gauges) {
    absl::StrAppend(&out, first ? "" : ",", "\"", name, "\":", value);
    first = false;
  }
  absl::StrAppend(&out, "}}");
  return out;
}

}  // namespace lamina
