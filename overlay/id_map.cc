#include "overlay/id_map.h"

#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace lamina::overlay {
namespace {

// Where `id` falls in `ranges`, from the side `from` to the side `to`.
uint32_t Translate(const std::vector<IdRange>& ranges, uint32_t id, uint32_t IdRange::*from,
                   uint32_t IdRange::*to, uint32_t overflow) {
  if (ranges.empty()) return id;
  for (const IdRange& range : ranges) {
    uint32_t start = range.*from;
    if (id >= start && id - start < range.count) return range.*to + (id - start);
  }
  return overflow;
}

bool Overlap(uint32_t a, uint32_t b, uint32_t count_a, uint32_t count_b) {
  return uint64_t{a} < uint64_t{b} + count_b && uint64_t{b} < uint64_t{a} + count_a;
}

uint32_t ReadOverflowId(const char* path) {
  std::ifstream file(path);
  uint32_t id = 0;
  if (file >> id && id != 0) return id;
  return 65534;
}

}  // namespace

std::optional<uint32_t> ParseId(std::string_view text) {
  uint32_t id;
  // SimpleAtoi accepts signs and surrounding spaces; ids are plain digits.
  if (text.empty() || text.find_first_not_of("0123456789") != std::string_view::npos ||
      !absl::SimpleAtoi(absl::string_view(text.data(), text.size()), &id)) {
    return std::nullopt;
  }
  return id;
}

absl::StatusOr<std::vector<IdRange>> ParseIdRanges(std::string_view text) {
  std::vector<std::string> fields =
      absl::StrSplit(absl::string_view(text.data(), text.size()), ':');
  if (fields.size() % 3 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", std::string(text), "' is not FROM:TO:COUNT[:FROM:TO:COUNT...]"));
  }
  std::vector<IdRange> ranges;
  for (size_t i = 0; i < fields.size(); i += 3) {
    uint32_t values[3];
    for (size_t j = 0; j < 3; ++j) {
      std::optional<uint32_t> id = ParseId(fields[i + j]);
      if (!id) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad id '", fields[i + j], "' in '", std::string(text), "'"));
      }
      values[j] = *id;
    }
    IdRange range{values[0], values[1], values[2]};
    if (range.count == 0) {
      return absl::InvalidArgumentError(absl::StrCat("empty range in '", std::string(text), "'"));
    }
    if (uint64_t{range.layer} + range.count > (uint64_t{1} << 32) ||
        uint64_t{range.view} + range.count > (uint64_t{1} << 32)) {
      return absl::InvalidArgumentError(
          absl::StrCat("range runs past the largest id in '", std::string(text), "'"));
    }
    for (const IdRange& other : ranges) {
      if (Overlap(range.layer, other.layer, range.count, other.count) ||
          Overlap(range.view, other.view, range.count, other.count)) {
        return absl::InvalidArgumentError(
            absl::StrCat("overlapping ranges in '", std::string(text), "'"));
      }
    }
    ranges.push_back(range);
  }
  return ranges;
}

uint32_t KernelOverflowUid() {
  return ReadOverflowId("/proc/sys/kernel/overflowuid");
}

uint32_t KernelOverflowGid() {
  return ReadOverflowId("/proc/sys/kernel/overflowgid");
}

IdMap::IdMap(IdMapConfig config)
    : config_(std::move(config)),
      identity_(config_.uids.empty() && config_.gids.empty() && !squashed()) {}

uint32_t IdMap::UidToView(uint32_t stored) const {
  if (config_.squash_uid) return *config_.squash_uid;
  return Translate(config_.uids, stored, &IdRange::layer, &IdRange::view, config_.overflow_uid);
}

uint32_t IdMap::GidToView(uint32_t stored) const {
  if (config_.squash_gid) return *config_.squash_gid;
  return Translate(config_.gids, stored, &IdRange::layer, &IdRange::view, config_.overflow_gid);
}

uint32_t IdMap::UidToLayer(uint32_t shown) const {
  return Translate(config_.uids, shown, &IdRange::view, &IdRange::layer, config_.overflow_uid);
}

uint32_t IdMap::GidToLayer(uint32_t shown) const {
  return Translate(config_.gids, shown, &IdRange::view, &IdRange::layer, config_.overflow_gid);
}

}  // namespace lamina::overlay
