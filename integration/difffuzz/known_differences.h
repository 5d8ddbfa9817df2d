// Differences from kernel overlayfs that are allowed, each with its reason:
//
//   kReported   known, reported and not yet fixed: allowed so that CI stays
//               green until the fix lands, when the entry is removed;
//   kDeliberate Lamina differs by design, as its documentation says;
//   kFuse       FUSE itself decides it (the kernel code that does is named).
//
// An entry either rewrites view lines before the two views are compared (a
// mask: the rest of the case is still compared), or matches a whole
// result (the case stops there). Both match as narrowly as they can;
// anything else that differs fails. Each case counts the entries it needed.

#ifndef LAMINA_INTEGRATION_DIFFFUZZ_KNOWN_DIFFERENCES_H_
#define LAMINA_INTEGRATION_DIFFFUZZ_KNOWN_DIFFERENCES_H_

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "integration/difffuzz/case_runner.h"
#include "integration/difffuzz/case_spec.h"
#include "integration/difffuzz/view_walker.h"

namespace lamina::difffuzz {

struct KnownDifference {
  enum class Kind { kReported, kDeliberate, kFuse };
  Kind kind = Kind::kReported;
  std::string name;
  // The issue text it comes from and where it was reported, or the
  // documentation or kernel code that decides it.
  std::string issue;
  // A mask: rewrites what both views say of one path (their lines joined
  // with newlines, "" when a view has none) into what is compared, and
  // returns whether it changed anything. May be empty.
  std::function<bool(std::string& lamina, std::string& kernel)> mask;
  // Whole results: a difference at a stage (mount refusals, errnos).
  std::function<bool(const CaseSpec&, const CaseResult&)> matches;
};

const std::vector<KnownDifference>& KnownDifferences();

// Compares two views (see DiffViews) after the masks that make them equal
// line by line; the entries used go into `*used`. Empty when they agree.
std::string CompareViews(const View& lamina, const View& kernel, const std::string& lamina_label,
                         const std::string& kernel_label, std::set<std::string>* used);

// The first entry that matches `result` (a kDifferent), or null.
const KnownDifference* MatchKnown(const CaseSpec& spec, const CaseResult& result);

}  // namespace lamina::difffuzz

#endif  // LAMINA_INTEGRATION_DIFFFUZZ_KNOWN_DIFFERENCES_H_
