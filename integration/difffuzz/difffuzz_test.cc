// Differential fuzzing of hostile layer stacks against kernel overlayfs:
// random stacks (stack_generator.h) mounted by Lamina and by the kernel,
// walked, read, changed and remounted (case_runner.h); any difference in
// view or errno fails, and so does a crash, a hang, a descriptor leak or a
// change to a lower layer or to anything outside the layers.
//
// CI runs a fixed seed (a short run, a few seconds: 20 cases in release
// builds, 8 under the sanitizers, where each case takes longer).
// scripts/difffuzz runs long ones; the environment says what to run:
//   LAMINA_DIFFFUZZ_SEED=S      the seed (default 1)
//   LAMINA_DIFFFUZZ_CASES=N     how many cases, numbered from FIRST
//   LAMINA_DIFFFUZZ_FIRST=M     the first case number (default 0)
//   LAMINA_DIFFFUZZ_MINIMIZE=1  shrink each failing case (minimizer.h)
//   LAMINA_DIFFFUZZ_VERBOSE=1   print every case and its stages
//   LAMINA_DIFFFUZZ_KNOWN=fail  no difference is allowed (known_differences.h)
//   LAMINA_DIFFFUZZ_WITHOUT=L   the known differences named in L (commas)
//                               are left out
//   LAMINA_DIFFFUZZ_DEADLINE=S  seconds a case may take before it counts as a
//                               hang (default 120, 600 under the sanitizers)
// A failure prints the seed, the case number and the stack, so that
// `scripts/difffuzz --seed S --case M` replays it.

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "integration/difffuzz/case_runner.h"
#include "integration/difffuzz/known_differences.h"
#include "integration/difffuzz/minimizer.h"
#include "integration/difffuzz/stack_generator.h"
#include "integration/harness/mount_harness.h"

namespace lamina::difffuzz {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kDefaultCases = 8;
constexpr std::chrono::seconds kDeadline{600};
#else
constexpr int kDefaultCases = 20;
constexpr std::chrono::seconds kDeadline{120};
#endif

long EnvNumber(const char* name, long fallback) {
  const char* value = getenv(name);
  return value != nullptr && *value != '\0' ? strtol(value, nullptr, 10) : fallback;
}

bool EnvFlag(const char* name, const char* value = "1") {
  const char* set = getenv(name);
  return set != nullptr && std::string(set) == value;
}

// A reason without the case's temporary paths, to count alike ones.
std::string Normalized(const std::string& reason) {
  static const std::regex kTempPath("/tmp/lamina-difffuzz-[A-Za-z0-9]+/?[^ ,:\\]]*");
  static const std::regex kHandle("[0-9a-f]{32,}");
  static const std::regex kNumbers("(nlink|ino|err)=-?[0-9]+");
  std::string out = std::regex_replace(reason, kTempPath, "PATH");
  out = std::regex_replace(out, kHandle, "HEX");
  return std::regex_replace(out, kNumbers, "$1=N");
}

std::string Report(const CaseSpec& spec, const CaseResult& result) {
  std::string out = "seed " + std::to_string(spec.seed) + " case " + std::to_string(spec.number) +
                    ": " + StatusName(result.status) + " at " + result.stage + "\n" +
                    result.detail + "\nstack:\n" + ToText(spec);
  if (!result.log.empty()) out += "Lamina's log (tail):\n" + result.log;
  out += "replay: scripts/difffuzz --seed " + std::to_string(spec.seed) + " --case " +
         std::to_string(spec.number) + "\n";
  return out;
}

TEST(DiffFuzz, HostileStacksMatchKernelOverlayfs) {
  if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) != 0) {
    GTEST_SKIP() << "needs root and /dev/fuse";
  }
  const uint64_t seed = static_cast<uint64_t>(EnvNumber("LAMINA_DIFFFUZZ_SEED", 1));
  const int first = static_cast<int>(EnvNumber("LAMINA_DIFFFUZZ_FIRST", 0));
  const int cases = static_cast<int>(EnvNumber("LAMINA_DIFFFUZZ_CASES", kDefaultCases));
  const bool minimize = EnvFlag("LAMINA_DIFFFUZZ_MINIMIZE");
  const bool known_fail = EnvFlag("LAMINA_DIFFFUZZ_KNOWN", "fail");
  RunnerOptions options;
  options.deadline = std::chrono::seconds(EnvNumber("LAMINA_DIFFFUZZ_DEADLINE", kDeadline.count()));
  options.verbose = EnvFlag("LAMINA_DIFFFUZZ_VERBOSE");

  std::map<std::string, int> counts;
  std::map<std::string, std::vector<int>> reasons;  // skips and refusals: cases by reason
  std::map<std::string, int> failures_by_kind;
  std::map<std::string, int> allowed;  // allowed differences, by the cases that needed them
  int failures = 0;
  std::vector<std::string> failure_lines;  // one per failing case
  for (int number = first; number < first + cases; ++number) {
    const CaseSpec spec = GenerateCase(seed, number);
    if (options.verbose) fprintf(stderr, "--- case %d\n%s", number, ToText(spec).c_str());
    const CaseResult result = RunCase(spec, options);
    std::string status = StatusName(result.status);
    if (result.status == CaseResult::Status::kSkipped ||
        result.status == CaseResult::Status::kBothRefused) {
      reasons[status + " at " + result.stage + ": " + Normalized(result.detail)].push_back(number);
    }
    for (const std::string& name : result.allowed) ++allowed[name];
    if (!result.known.empty() && !known_fail) {
      status = "known: " + result.known;
    } else if (result.status == CaseResult::Status::kDifferent ||
               result.status == CaseResult::Status::kBroken) {
      ++failures;
      ++failures_by_kind[FailureKind(result)];
      std::string first = result.detail.substr(0, result.detail.find('\n', 2));
      failure_lines.push_back("case " + std::to_string(number) + ": " + FailureKind(result) + " |" +
                              first.substr(0, 160));
      ADD_FAILURE() << Report(spec, result);
      if (minimize) {
        const CaseSpec small =
            Minimize(spec, result, options, [&](const CaseSpec& candidate, const CaseResult& r) {
              (void)candidate;
              return known_fail || r.known.empty();
            });
        fprintf(stderr, "minimized case (seed %llu case %d):\n%s\n",
                static_cast<unsigned long long>(seed), number,
                Report(small, RunCase(small, options)).c_str());
      }
    }
    ++counts[status];
  }

  fprintf(stderr, "\ndifffuzz: seed %llu, cases %d..%d\n", static_cast<unsigned long long>(seed),
          first, first + cases - 1);
  for (const auto& [status, count] : counts) fprintf(stderr, "  %5d %s\n", count, status.c_str());
  if (!reasons.empty()) fprintf(stderr, "skipped or refused by both, by reason:\n");
  for (const auto& [reason, numbers] : reasons) {
    std::string some;
    for (size_t i = 0; i < numbers.size() && i < 8; ++i) some += " " + std::to_string(numbers[i]);
    fprintf(stderr, "  %5zu %s (cases%s%s)\n", numbers.size(), reason.c_str(), some.c_str(),
            numbers.size() > 8 ? " ..." : "");
  }
  if (!allowed.empty()) fprintf(stderr, "allowed differences (known_differences.cc), by cases:\n");
  for (const auto& [name, count] : allowed) fprintf(stderr, "  %5d %s\n", count, name.c_str());
  if (!failures_by_kind.empty()) fprintf(stderr, "failures by kind:\n");
  for (const auto& [kind, count] : failures_by_kind) {
    fprintf(stderr, "  %5d %s\n", count, kind.c_str());
  }
  for (const std::string& line : failure_lines) fprintf(stderr, "  %s\n", line.c_str());
  // A run where most stacks are never compared proves nothing.
  const int compared = cases - counts["skipped"] - counts["both-refused"];
  EXPECT_GE(compared * 4, cases * 3) << "most cases were skipped or refused";
  EXPECT_EQ(failures, 0);
}

// The runner's own check: a case that stops answering while both overlays
// are mounted fails as a hang, within its deadline, and leaves nothing
// mounted and no process behind.
TEST(DiffFuzz, AHungCaseFailsAndIsTornDown) {
  if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) != 0) {
    GTEST_SKIP() << "needs root and /dev/fuse";
  }
  // The first case of seed 1 that mounts both overlays and has operations.
  CaseSpec spec;
  for (int number = 0;; ++number) {
    spec = GenerateCase(1, number);
    if (spec.options.upper && !spec.ops.empty() &&
        RunCase(spec, {}).status == CaseResult::Status::kSame)
      break;
  }
  RunnerOptions options;
  options.deadline = std::chrono::seconds(3);
  options.stall_at = "op 1";
  const CaseResult result = RunCase(spec, options);
  EXPECT_EQ(result.status, CaseResult::Status::kBroken);
  EXPECT_EQ(result.stage.compare(0, 4, "op 1"), 0) << result.stage;
  EXPECT_NE(result.detail.find("a hang"), std::string::npos) << result.detail;
  // (Only this case's mounts: other runs may have theirs.)
  ASSERT_FALSE(result.scratch.empty());
  std::string mounts = testing::ReadFile("/proc/self/mountinfo");
  EXPECT_EQ(mounts.find(" " + result.scratch + "/"), std::string::npos) << mounts;
}

}  // namespace
}  // namespace lamina::difffuzz
