// Differences from kernel overlayfs that are allowed, each with its reason:
//
//   kReported   known, reported and not yet fixed: allowed so that CI stays
//               green until the fix lands, when the entry is removed;
//   kDeliberate Lamina differs by design, as its documentation says;
//   kFuse       FUSE itself decides it (the kernel code that does is named).
//
// An entry is a mask over what both views say of one path: it rewrites the
// two sides into what is compared, or drops the path and everything below
// it (a directory one side refuses and the other shows). The rest of the
// case is still compared. Masks match as narrowly as they can (the lines'
// shapes and what the stack holds at that path); anything else that
// differs fails. Each case counts the entries it needed.

#ifndef LAMINA_INTEGRATION_DIFFFUZZ_KNOWN_DIFFERENCES_H_
#define LAMINA_INTEGRATION_DIFFFUZZ_KNOWN_DIFFERENCES_H_

#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "integration/difffuzz/case_spec.h"
#include "integration/difffuzz/view_walker.h"

namespace lamina::difffuzz {

struct KnownDifference {
  enum class Kind { kReported, kDeliberate, kFuse };
  enum class Masked { kNo, kLines, kSubtree };
  // Given the path (as view lines print it) and what each view says of it
  // (lines joined with newlines, "" for nothing): kLines after rewriting
  // them, kSubtree to leave the path and all below it out, kNo when the
  // entry does not apply.
  using Mask = std::function<Masked(const CaseSpec& spec, const std::string& path,
                                    std::string& lamina, std::string& kernel)>;
  // For a difference the views cannot show (a directory both list alike
  // but treat differently): whether `op` answering `lamina` on Lamina and
  // `kernel` on the kernel is this difference.
  using Outcome = std::function<bool(const CaseSpec& spec, const Op& op, const std::string& lamina,
                                     const std::string& kernel)>;

  // For a broken case (a leak, a crash): whether it is this known defect.
  using Broken = std::function<bool(const CaseSpec& spec, const std::string& detail)>;

  KnownDifference(Kind kind, std::string name, std::string issue, Mask mask, bool diverges = false,
                  Outcome outcome = nullptr, Broken broken = nullptr)
      : kind(kind),
        name(std::move(name)),
        issue(std::move(issue)),
        mask(std::move(mask)),
        diverges(diverges),
        outcome(std::move(outcome)),
        broken(std::move(broken)) {}

  Kind kind;
  std::string name;
  // The issue text it comes from and where it was reported, or the
  // documentation or kernel code that decides it.
  std::string issue;
  Mask mask;
  // The two overlays disagree on what the path is (one shows an object the
  // other refuses or hides): operations through it or below it may then
  // answer differently, which ends the case as this known difference.
  bool diverges;
  // May be empty.
  Outcome outcome;
  // May be empty: a broken case is never allowed unless an entry names it.
  Broken broken;
};

const std::vector<KnownDifference>& KnownDifferences();

// Compares two views of `spec`'s stack (see DiffViews) after the masks
// that make them agree path by path; the entries used go into `*used`,
// the paths where a `diverges` entry applied into `*diverged` (path ->
// entry; may be null). Empty when they agree.
std::string CompareViews(const CaseSpec& spec, const View& lamina, const View& kernel,
                         const std::string& lamina_label, const std::string& kernel_label,
                         std::set<std::string>* used,
                         std::map<std::string, std::string>* diverged = nullptr);

// The entry that made a path of `diverged` at or above `path` (or above
// its parent, for a name to be made), or "".
std::string DivergedEntry(const std::map<std::string, std::string>& diverged,
                          const std::string& path);

// The entry a broken case's defect is, or "".
std::string KnownBroken(const CaseSpec& spec, const std::string& detail);

// The entry an operation's differing outcomes are, or "".
std::string KnownOutcome(const CaseSpec& spec, const Op& op, const std::string& lamina,
                         const std::string& kernel);

}  // namespace lamina::difffuzz

#endif  // LAMINA_INTEGRATION_DIFFFUZZ_KNOWN_DIFFERENCES_H_
