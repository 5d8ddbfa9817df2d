#include "core/stats.h"

#include <cmath>
#include <limits>

#include "core/dispatcher.h"
#include "core/wire_encode.h"
#include "gtest/gtest.h"

namespace lamina {
namespace {

TEST(StatsTest, CountsErrorsAndBuckets) {
  Stats stats;
  stats.Record(abi::kLookup, 0, 500);        // < 1 us: bucket 0
  stats.Record(abi::kLookup, ENOENT, 3000);  // 3 us: bucket 2
  stats.Record(abi::kRead, 0, 1ULL << 40);   // huge: last bucket
  stats.Record(9999, ENOSYS, 100);           // unknown opcode
  Stats::Snapshot lookup = stats.Get(abi::kLookup);
  EXPECT_EQ(lookup.count, 2U);
  EXPECT_EQ(lookup.errors, 1U);
  EXPECT_EQ(lookup.total_ns, 3500U);
  EXPECT_EQ(lookup.buckets[0], 1U);
  EXPECT_EQ(lookup.buckets[2], 1U);
  EXPECT_EQ(stats.Get(abi::kRead).buckets[Stats::kBuckets - 1], 1U);
  EXPECT_EQ(stats.Get(12345).count, 1U) << "unknown opcodes share one slot";
  EXPECT_EQ(stats.TotalRequests(), 4U);
}

TEST(StatsTest, TextAndJson) {
  Stats stats;
  stats.Record(abi::kLookup, 0, 1000);
  stats.Record(abi::kLookup, EIO, 1000);
  stats.Record(200, ENOSYS, 1000);
  std::string text = stats.ToText();
  EXPECT_NE(text.find("LOOKUP"), std::string::npos) << text;
  EXPECT_NE(text.find("UNKNOWN"), std::string::npos) << text;
  EXPECT_EQ(text.find("GETATTR"), std::string::npos) << "idle ops are omitted";

  std::string json = stats.ToJson();
  EXPECT_EQ(json.rfind("{\"ops\":{\"LOOKUP\":{\"count\":2,\"errors\":1,\"total_ns\":2000,", 0), 0U)
      << json;
  EXPECT_NE(json.find("\"UNKNOWN\":{\"count\":1,\"errors\":1"), std::string::npos) << json;
  EXPECT_NE(json.find("},\"total\":3,\"gauges\":{}}"), std::string::npos) << json;
  EXPECT_EQ(Stats().ToJson(), "{\"ops\":{},\"total\":0,\"gauges\":{}}");
}

// A filesystem's gauges (its node count, say) follow the request counters.
TEST(StatsTest, Gauges) {
  Gauges gauges = {{"nodes", 12}, {"node_descriptors", 30}};
  EXPECT_EQ(Stats().ToJson(gauges),
            "{\"ops\":{},\"total\":0,\"gauges\":{\"nodes\":12,\"node_descriptors\":30}}");
  std::string text = Stats().ToText(gauges);
  EXPECT_NE(text.find("nodes                    12\n"), std::string::npos) << text;
}

TEST(OpcodeNameTest, KnownAndUnknown) {
  EXPECT_EQ(OpcodeName(abi::kLookup), "LOOKUP");
  EXPECT_EQ(OpcodeName(abi::kCopyFileRange64), "COPY_FILE_RANGE_64");
  EXPECT_EQ(OpcodeName(7), "UNKNOWN");
  EXPECT_EQ(OpcodeName(abi::kOpcodeLimit), "UNKNOWN");
}

void ExpectTimeout(double seconds, uint64_t sec, uint32_t nsec) {
  uint64_t got_sec = 1;
  uint32_t got_nsec = 1;
  EncodeTimeout(seconds, &got_sec, &got_nsec);
  EXPECT_EQ(got_sec, sec) << seconds;
  EXPECT_EQ(got_nsec, nsec) << seconds;
}

TEST(EncodeTimeoutTest, SplitsClampsAndSaturates) {
  ExpectTimeout(0, 0, 0);
  ExpectTimeout(1.5, 1, 500000000);
  ExpectTimeout(0.25, 0, 250000000);
  ExpectTimeout(86400, 86400, 0);
  ExpectTimeout(-3, 0, 0);
  ExpectTimeout(std::nan(""), 0, 0);
  ExpectTimeout(std::numeric_limits<double>::infinity(), 1000000000000000ULL, 0);
  ExpectTimeout(1e300, 1000000000000000ULL, 0);
  uint64_t sec;
  uint32_t nsec;
  EncodeTimeout(0.9999999999999, &sec, &nsec);
  EXPECT_EQ(sec, 0U);
  EXPECT_LE(nsec, 999999999U);
}

}  // namespace
}  // namespace lamina
