#include "integration/difffuzz/known_differences.h"

#include <cstdlib>
#include <map>
#include <utility>

#include "integration/difffuzz/known_entries.h"
#include "integration/difffuzz/view_lines.h"

namespace lamina::difffuzz {
namespace {

using Masked = KnownDifference::Masked;

// LAMINA_DIFFFUZZ_WITHOUT=NAME,NAME...: entries left out, to see whether
// they still fire (scripts/difffuzz --without).
std::vector<KnownDifference> AllEntries() {
  const char* without = getenv("LAMINA_DIFFFUZZ_WITHOUT");
  const std::string left_out = std::string(",") + (without == nullptr ? "" : without) + ",";
  std::vector<KnownDifference> all;
  for (auto table : {MarkerDifferences, RedirectDifferences, OriginDifferences}) {
    for (KnownDifference& entry : table()) {
      if (left_out.find(std::string(",") + entry.name + ",") == std::string::npos) {
        all.push_back(std::move(entry));
      }
    }
  }
  return all;
}

bool Within(const std::string& path, const std::string& top) {
  return path == top || top.empty() ||
         (path.size() > top.size() && path.compare(0, top.size(), top) == 0 &&
          path[top.size()] == '/');
}

bool Below(const std::string& path, const std::map<std::string, std::string>& subtrees) {
  for (const auto& [top, entry] : subtrees) {
    if (Within(path, top)) return true;
  }
  return false;
}

}  // namespace

const std::vector<KnownDifference>& KnownDifferences() {
  // LAMINA_DIFFFUZZ_KNOWN=fail (scripts/difffuzz --known-fail): none.
  static const std::vector<KnownDifference> none;
  const char* mode = getenv("LAMINA_DIFFFUZZ_KNOWN");
  static const std::vector<KnownDifference> all = AllEntries();
  return mode != nullptr && std::string(mode) == "fail" ? none : all;
}

std::string CompareViews(const CaseSpec& spec, const View& lamina, const View& kernel,
                         const std::string& lamina_label, const std::string& kernel_label,
                         std::set<std::string>* used,
                         std::map<std::string, std::string>* diverged) {
  const auto pairs = PairViews(lamina, kernel);
  // First the subtrees the masks leave out, then what is left, path by path.
  std::map<std::string, std::string> dropped;
  for (const auto& [path, sides] : pairs) {
    if (sides.first == sides.second) continue;
    for (const KnownDifference& entry : KnownDifferences()) {
      std::string l = sides.first, k = sides.second;
      if (entry.mask(spec, path, l, k) == Masked::kSubtree) {
        dropped[RawPath(path)] = entry.name;
        used->insert(entry.name);
        break;
      }
    }
  }
  std::map<std::string, std::string> diverging = dropped;
  std::string out;
  size_t differing = 0;
  for (const auto& [path, sides] : pairs) {
    if (sides.first == sides.second || Below(RawPath(path), dropped)) continue;
    std::string l = sides.first, k = sides.second;
    // An inode first seen, on one side, in a subtree left out: the other
    // side saw it first here.
    const std::string l_ino = Field(l, "ino"), k_ino = Field(k, "ino");
    for (const auto& [one, other] : {std::pair(&l_ino, &k_ino), std::pair(&k_ino, &l_ino)}) {
      if (*other != "self" || one->empty() || *one == "self") continue;
      const std::string entry = DivergedEntry(dropped, RawPath(*one));
      if (entry.empty() || !Below(RawPath(*one), dropped)) continue;
      SetField(one == &l_ino ? l : k, "ino", "self");
      used->insert(entry);
    }
    std::vector<const KnownDifference*> helped;
    for (const KnownDifference& entry : KnownDifferences()) {
      if (entry.mask(spec, path, l, k) == Masked::kLines) helped.push_back(&entry);
      if (l == k) break;
    }
    if (l == k) {
      for (const KnownDifference* entry : helped) {
        used->insert(entry->name);
        if (entry->diverges) diverging[RawPath(path)] = entry->name;
      }
      continue;
    }
    if (++differing > 6) continue;
    out += "  " + lamina_label + ": " + (sides.first.empty() ? "(nothing)\n" : sides.first);
    out += "  " + kernel_label + ": " + (sides.second.empty() ? "(nothing)\n" : sides.second);
  }
  if (differing > 6) out += "  ... " + std::to_string(differing - 6) + " more paths differ\n";
  if (diverged != nullptr) *diverged = diverging;
  return out;
}

std::string DivergedEntry(const std::map<std::string, std::string>& diverged,
                          const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string parent = slash == std::string::npos ? "" : path.substr(0, slash);
  for (const auto& [top, entry] : diverged) {
    // At or below a diverged path, or above one (renaming or removing a
    // directory depends on what it holds).
    if (Within(path, top) || (!parent.empty() && Within(parent, top)) || Within(top, path)) {
      return entry;
    }
  }
  return "";
}

std::string KnownBroken(const CaseSpec& spec, const std::string& detail) {
  for (const KnownDifference& entry : KnownDifferences()) {
    if (entry.broken && entry.broken(spec, detail)) return entry.name;
  }
  return "";
}

std::string KnownOutcome(const CaseSpec& spec, const Op& op, const std::string& lamina,
                         const std::string& kernel) {
  for (const KnownDifference& entry : KnownDifferences()) {
    if (entry.outcome && entry.outcome(spec, op, lamina, kernel)) return entry.name;
  }
  return "";
}

}  // namespace lamina::difffuzz
