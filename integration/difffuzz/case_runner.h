// Runs one case: builds its stack twice, mounts Lamina on one copy and
// kernel overlayfs on the other, and compares them stage by stage:
//
//   mount      both mount, or both refuse (a stack only the kernel refuses
//              is skipped, with the kernel's reason; one only Lamina
//              refuses is a difference)
//   view       the walk of both views (view_walker.h)
//   op N       each operation's outcome, then the view after it
//   remount    both unmounted and mounted again: the views
//   lamina on kernel's layers / kernel on lamina's layers
//              each system mounts what the other wrote (Lamina's copy with
//              its Lamina-only forms rewritten, see TranslateForKernel),
//              and must show what the other showed at the remount
//
// plus, always: no lower layer changed (LayerDigest), nothing outside the
// layers changed, Lamina's process holds as many descriptors after each
// unmount as before its mount, and no sanitizer reported anything.
//
// The case runs in a child process with a deadline: a crash or a hang
// fails the case (with the stage it was in) instead of the run, and the
// parent unmounts what the child left. The parent must have no other
// threads (it forks).

#ifndef LAMINA_INTEGRATION_DIFFFUZZ_CASE_RUNNER_H_
#define LAMINA_INTEGRATION_DIFFFUZZ_CASE_RUNNER_H_

#include <chrono>
#include <set>
#include <string>

#include "integration/difffuzz/case_spec.h"

namespace lamina::difffuzz {

struct CaseResult {
  enum class Status {
    kSame,         // no difference at any stage
    kBothRefused,  // both refused to mount the stack
    kSkipped,      // only the kernel refused it: nothing to compare
    kDifferent,    // a difference in view or errno
    kBroken,       // crash, hang, descriptor leak, a lower or outside file changed
  };
  Status status = Status::kSame;
  std::string stage;   // where it happened, e.g. "op 3 rename a b"
  std::string detail;  // what differed, both sides
  // Lamina's log lines (and sanitizer reports) of the case, for kBroken
  // and kDifferent.
  std::string log;
  // The allowed differences (known_differences.h) the case needed, by name.
  std::set<std::string> allowed;
  // For a kDifferent in an operation on a subtree an allowed difference
  // left out (the two overlays disagree there already): that entry's name.
  // The case stops there, and counts as that known difference.
  std::string known;
  // The case's temporary directory (gone when RunCase returns): every
  // mount point of the case was below it.
  std::string scratch;
};

std::string StatusName(CaseResult::Status status);

struct RunnerOptions {
  std::chrono::seconds deadline{120};
  // Prints each stage as it starts (to follow a hang).
  bool verbose = false;
  // For the runner's own test: the case stops (as if hung) when it enters
  // the first stage whose name starts with this.
  std::string stall_at;
};

CaseResult RunCase(const CaseSpec& spec, const RunnerOptions& options);

}  // namespace lamina::difffuzz

#endif  // LAMINA_INTEGRATION_DIFFFUZZ_CASE_RUNNER_H_
