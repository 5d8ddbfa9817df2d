// IdMap: parsing the mapping text and translating in both directions,
// with fuse-overlayfs' overflow and squash rules.

#include "overlay/id_map.h"

#include <initializer_list>
#include <string>
#include <utility>

#include "gtest/gtest.h"

namespace lamina::overlay {
namespace {

std::string ErrorOf(const std::string& text) {
  absl::StatusOr<std::vector<IdRange>> ranges = ParseIdRanges(text);
  return ranges.ok() ? "" : std::string(ranges.status().message());
}

TEST(IdMapTest, ParsesRanges) {
  absl::StatusOr<std::vector<IdRange>> ranges = ParseIdRanges("0:1000:1:1:100000:65536");
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  EXPECT_EQ(*ranges, (std::vector<IdRange>{{0, 1000, 1}, {1, 100000, 65536}}));
  EXPECT_EQ(ParseIdRanges("0:0:4294967295")->front().count, 4294967295u);
}

TEST(IdMapTest, RefusesMalformedRanges) {
  const std::pair<std::string, std::string> kCases[] = {
      {"", "'' is not FROM:TO:COUNT[:FROM:TO:COUNT...]"},
      {"0:1000", "'0:1000' is not FROM:TO:COUNT[:FROM:TO:COUNT...]"},
      {"0:1000:1:5", "'0:1000:1:5' is not FROM:TO:COUNT[:FROM:TO:COUNT...]"},
      {"0:x:1", "bad id 'x' in '0:x:1'"},
      {"-1:0:1", "bad id '-1' in '-1:0:1'"},
      {" 1:0:1", "bad id ' 1' in ' 1:0:1'"},
      {"0:0:4294967296", "bad id '4294967296' in '0:0:4294967296'"},
      {"0:1000:0", "empty range in '0:1000:0'"},
      {"2:0:4294967295", "range runs past the largest id in '2:0:4294967295'"},
      {"0:1:4294967295", ""},
      {"0:1000:10:5:2000:1", "overlapping ranges in '0:1000:10:5:2000:1'"},
      {"0:1000:10:20:1009:1", "overlapping ranges in '0:1000:10:20:1009:1'"},
      {"0:1000:10:10:1010:1", ""},
  };
  for (const auto& [text, message] : kCases) EXPECT_EQ(ErrorOf(text), message) << text;
}

// The owner `ids` shows for a layer object owned by uid:gid, the same
// through stat and statx.
std::pair<uint32_t, uint32_t> Viewed(const IdMap& ids, uint32_t uid, uint32_t gid) {
  struct stat st {};
  st.st_uid = uid;
  st.st_gid = gid;
  ids.ToView(st);
  struct statx stx {};
  stx.stx_uid = uid;
  stx.stx_gid = gid;
  ids.ToView(stx);
  EXPECT_EQ(stx.stx_uid, st.st_uid);
  EXPECT_EQ(stx.stx_gid, st.st_gid);
  return {st.st_uid, st.st_gid};
}

// One translation and the id it must give.
struct Translation {
  uint32_t (IdMap::*direction)(uint32_t) const;
  uint32_t id;
  uint32_t expected;
};

void ExpectTranslations(const IdMap& ids, std::initializer_list<Translation> cases) {
  for (const Translation& c : cases) EXPECT_EQ((ids.*c.direction)(c.id), c.expected) << c.id;
}

TEST(IdMapTest, IdentityWithoutOptions) {
  IdMap ids;
  EXPECT_TRUE(ids.identity());
  EXPECT_FALSE(ids.squashed());
  ExpectTranslations(ids, {{&IdMap::UidToView, 1234, 1234}, {&IdMap::GidToLayer, 1234, 1234}});
  EXPECT_EQ(Viewed(ids, 5, 6), std::make_pair(5u, 6u));
}

TEST(IdMapTest, TranslatesBothWaysWithOverflow) {
  IdMapConfig config;
  config.uids = *ParseIdRanges("0:1000:1:1:100000:65536");
  config.overflow_uid = 65534;
  config.overflow_gid = 65533;
  IdMap ids(config);
  EXPECT_FALSE(ids.identity());
  ExpectTranslations(ids, {
                              {&IdMap::UidToView, 0, 1000},
                              {&IdMap::UidToView, 1, 100000},
                              {&IdMap::UidToView, 65536, 165535},
                              {&IdMap::UidToView, 65537, 65534},  // stored id no range covers
                              {&IdMap::UidToLayer, 1000, 0},
                              {&IdMap::UidToLayer, 165535, 65536},
                              {&IdMap::UidToLayer, 0, 65534},  // shown id no range covers
                              // No gidmapping: gids pass unchanged.
                              {&IdMap::GidToView, 42, 42},
                              {&IdMap::GidToLayer, 42, 42},
                          });
  EXPECT_EQ(Viewed(ids, 1, 7), std::make_pair(100000u, 7u));
}

TEST(IdMapTest, SquashReplacesOnlyTheShownOwner) {
  IdMapConfig config;
  config.gids = *ParseIdRanges("0:500:10");
  config.squash_uid = 0;
  IdMap ids(config);
  EXPECT_TRUE(ids.squashed());
  ExpectTranslations(ids, {
                              {&IdMap::UidToView, 1234, 0},
                              {&IdMap::GidToView, 3, 503},
                              // What is stored still follows the mapping.
                              {&IdMap::UidToLayer, 77, 77},
                              {&IdMap::GidToLayer, 503, 3},
                          });
}

}  // namespace
}  // namespace lamina::overlay
