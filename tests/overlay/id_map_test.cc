// IdMap: parsing the mapping text and translating in both directions,
// with fuse-overlayfs' overflow and squash rules.

#include "overlay/id_map.h"

#include <string>

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
  EXPECT_EQ(ErrorOf(""), "'' is not FROM:TO:COUNT[:FROM:TO:COUNT...]");
  EXPECT_EQ(ErrorOf("0:1000"), "'0:1000' is not FROM:TO:COUNT[:FROM:TO:COUNT...]");
  EXPECT_EQ(ErrorOf("0:1000:1:5"), "'0:1000:1:5' is not FROM:TO:COUNT[:FROM:TO:COUNT...]");
  EXPECT_EQ(ErrorOf("0:x:1"), "bad id 'x' in '0:x:1'");
  EXPECT_EQ(ErrorOf("-1:0:1"), "bad id '-1' in '-1:0:1'");
  EXPECT_EQ(ErrorOf(" 1:0:1"), "bad id ' 1' in ' 1:0:1'");
  EXPECT_EQ(ErrorOf("0:0:4294967296"), "bad id '4294967296' in '0:0:4294967296'");
  EXPECT_EQ(ErrorOf("0:1000:0"), "empty range in '0:1000:0'");
  EXPECT_EQ(ErrorOf("2:0:4294967295"), "range runs past the largest id in '2:0:4294967295'");
  EXPECT_EQ(ErrorOf("0:1:4294967295"), "");
  EXPECT_EQ(ErrorOf("0:1000:10:5:2000:1"), "overlapping ranges in '0:1000:10:5:2000:1'");
  EXPECT_EQ(ErrorOf("0:1000:10:20:1009:1"), "overlapping ranges in '0:1000:10:20:1009:1'");
  EXPECT_EQ(ErrorOf("0:1000:10:10:1010:1"), "");
}

TEST(IdMapTest, IdentityWithoutOptions) {
  IdMap ids;
  EXPECT_TRUE(ids.identity());
  EXPECT_FALSE(ids.squashed());
  EXPECT_EQ(ids.UidToView(1234), 1234u);
  EXPECT_EQ(ids.GidToLayer(1234), 1234u);
  struct stat st {};
  st.st_uid = 5;
  st.st_gid = 6;
  ids.ToView(st);
  EXPECT_EQ(st.st_uid, 5u);
  EXPECT_EQ(st.st_gid, 6u);
}

TEST(IdMapTest, TranslatesBothWaysWithOverflow) {
  IdMapConfig config;
  config.uids = *ParseIdRanges("0:1000:1:1:100000:65536");
  config.overflow_uid = 65534;
  config.overflow_gid = 65533;
  IdMap ids(config);
  EXPECT_FALSE(ids.identity());
  EXPECT_EQ(ids.UidToView(0), 1000u);
  EXPECT_EQ(ids.UidToView(1), 100000u);
  EXPECT_EQ(ids.UidToView(65536), 165535u);
  EXPECT_EQ(ids.UidToView(65537), 65534u);  // stored id no range covers
  EXPECT_EQ(ids.UidToLayer(1000), 0u);
  EXPECT_EQ(ids.UidToLayer(165535), 65536u);
  EXPECT_EQ(ids.UidToLayer(0), 65534u);  // shown id no range covers
  // No gidmapping: gids pass unchanged.
  EXPECT_EQ(ids.GidToView(42), 42u);
  EXPECT_EQ(ids.GidToLayer(42), 42u);
  struct statx stx {};
  stx.stx_uid = 1;
  stx.stx_gid = 7;
  ids.ToView(stx);
  EXPECT_EQ(stx.stx_uid, 100000u);
  EXPECT_EQ(stx.stx_gid, 7u);
}

TEST(IdMapTest, SquashReplacesOnlyTheShownOwner) {
  IdMapConfig config;
  config.gids = *ParseIdRanges("0:500:10");
  config.squash_uid = 0;
  IdMap ids(config);
  EXPECT_TRUE(ids.squashed());
  EXPECT_EQ(ids.UidToView(1234), 0u);
  EXPECT_EQ(ids.GidToView(3), 503u);
  EXPECT_EQ(ids.UidToLayer(77), 77u);  // what is stored still follows the mapping
  EXPECT_EQ(ids.GidToLayer(503), 3u);
}

}  // namespace
}  // namespace lamina::overlay
