#include "integration/difffuzz/known_differences.h"

#include <string_view>

namespace lamina::difffuzz {
namespace {

using Kind = KnownDifference::Kind;

// " FIELD=value" in a view line: the value, or "" when absent.
std::string Field(const std::string& line, std::string_view field) {
  const std::string key = " " + std::string(field) + "=";
  size_t at = line.find(key);
  if (at == std::string::npos) return "";
  at += key.size();
  return line.substr(at, line.find_first_of(" \n", at) - at);
}

// Replaces the value of " FIELD=" (if present) with `value`.
bool SetField(std::string& line, std::string_view field, const std::string& value) {
  const std::string key = " " + std::string(field) + "=";
  size_t at = line.find(key);
  if (at == std::string::npos) return false;
  at += key.size();
  const size_t end = line.find_first_of(" \n", at);
  if (line.compare(at, end - at, value) == 0) return false;
  line.replace(at, end - at, value);
  return true;
}

bool Erase(std::string& line, std::string_view text) {
  const size_t at = line.find(text);
  if (at == std::string::npos) return false;
  line.erase(at, text.size());
  return true;
}

// The object's type as a view line gives it (its second field).
std::string TypeOf(const std::string& line) {
  const size_t start = line.find(' ');
  if (start == std::string::npos) return "";
  return line.substr(start + 1, line.find(' ', start + 1) - start - 1);
}

const std::vector<KnownDifference>& Entries() {
  static const std::vector<KnownDifference> entries = {
      {
          Kind::kReported,
          "merged-dir-nlink",
          "Kernel overlayfs reports st_nlink 1 for a merged directory (ovl_getattr: "
          "\"nlink=1 seems to pacify 'find'\"); Lamina reports the top directory's count, "
          "which can be 2 while lower subdirectories exist (find's leaf optimisation would "
          "skip them). Reported by task F (difffuzz).",
          [](std::string& lamina, std::string& kernel) {
            if (TypeOf(lamina) != "dir" || TypeOf(kernel) != "dir") return false;
            if (Field(kernel, "nlink") != "1") return false;
            return SetField(lamina, "nlink", "1");
          },
          nullptr,
      },
      {
          Kind::kDeliberate,
          "d_ino-without-impure",
          "In a merged directory whose upper is not marked overlay.impure, the kernel's "
          "readdir gives an upper entry's own inode number as d_ino while lstat gives its "
          "origin's (ovl_iterate fixes d_ino only in impure directories); Lamina reports "
          "the same number in both, reading origins itself (docs/overlay.md, on-disk "
          "formats: impure is not needed to read). Only the kernel's side is masked.",
          [](std::string& lamina, std::string& kernel) {
            if (lamina.find(" d_ino!=ino") != std::string::npos) return false;
            return Erase(kernel, " d_ino!=ino");
          },
          nullptr,
      },
  };
  return entries;
}

}  // namespace

const std::vector<KnownDifference>& KnownDifferences() {
  return Entries();
}

std::string CompareViews(const View& lamina, const View& kernel, const std::string& lamina_label,
                         const std::string& kernel_label, std::set<std::string>* used) {
  std::string out;
  size_t differing = 0;
  for (auto& [path, sides] : PairViews(lamina, kernel)) {
    if (sides.first == sides.second) continue;
    std::string l = sides.first, k = sides.second;
    std::vector<std::string> helped;
    for (const KnownDifference& entry : KnownDifferences()) {
      if (entry.mask && entry.mask(l, k)) helped.push_back(entry.name);
      if (l == k) break;
    }
    if (l == k) {
      used->insert(helped.begin(), helped.end());
      continue;
    }
    if (++differing > 6) continue;
    out += "  " + lamina_label + ": " + (l.empty() ? "(nothing)\n" : l);
    out += "  " + kernel_label + ": " + (k.empty() ? "(nothing)\n" : k);
  }
  if (differing > 6) out += "  ... " + std::to_string(differing - 6) + " more paths differ\n";
  return out;
}

const KnownDifference* MatchKnown(const CaseSpec& spec, const CaseResult& result) {
  if (result.status != CaseResult::Status::kDifferent) return nullptr;
  for (const KnownDifference& k : KnownDifferences()) {
    if (k.matches && k.matches(spec, result)) return &k;
  }
  return nullptr;
}

}  // namespace lamina::difffuzz
