#include "integration/difffuzz/minimizer.h"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace lamina::difffuzz {
namespace {

// The operation number in a stage ("op 3: ..." or "view after op 3: ..."),
// or 0.
size_t OpNumber(const std::string& stage) {
  size_t at = stage.find("op ");
  if (at == std::string::npos) return 0;
  return static_cast<size_t>(std::atoi(stage.c_str() + at + 3));
}

}  // namespace

std::string FailureKind(const CaseResult& result) {
  std::string stage = result.stage;
  const size_t colon = stage.find(": op ");
  if (colon != std::string::npos) {
    // "op 3: op rename a b" -> "op rename"; "view after op 3: op ..." too.
    const size_t name_end = stage.find(' ', colon + 5);
    std::string head = stage.substr(0, colon);
    head = head.substr(0, head.rfind("op ") + 2);
    stage = head + " " + stage.substr(colon + 5, name_end - colon - 5);
  }
  return StatusName(result.status) + " " + stage;
}

CaseSpec Minimize(const CaseSpec& spec, const CaseResult& failure, const RunnerOptions& options,
                  const std::function<bool(const CaseSpec&, const CaseResult&)>& still_fails,
                  int max_runs) {
  const std::string kind = FailureKind(failure);
  CaseSpec best = spec;
  int runs = 0;
  auto fails = [&](const CaseSpec& candidate) {
    if (runs >= max_runs) return false;
    ++runs;
    CaseResult result = RunCase(candidate, options);
    return FailureKind(result) == kind && still_fails(candidate, result);
  };
  // Operations after the failing one play no part.
  if (size_t n = OpNumber(failure.stage); n > 0 && n < best.ops.size()) {
    CaseSpec candidate = best;
    candidate.ops.resize(n);
    if (fails(candidate)) best = candidate;
  }
  for (bool progress = true; progress && runs < max_runs;) {
    progress = false;
    // Chunks of entries first (halves, quarters, ...), then one at a time.
    for (size_t chunk = std::max<size_t>(best.entries.size() / 2, 1); chunk >= 1; chunk /= 2) {
      for (size_t start = 0; start < best.entries.size() && runs < max_runs;) {
        CaseSpec candidate = best;
        const size_t end = std::min(start + chunk, candidate.entries.size());
        candidate.entries.erase(candidate.entries.begin() + static_cast<long>(start),
                                candidate.entries.begin() + static_cast<long>(end));
        if (fails(candidate)) {
          best = candidate;
          progress = true;
        } else {
          start += chunk;
        }
      }
      if (chunk == 1) break;
    }
    for (size_t i = best.ops.size(); i-- > 0 && runs < max_runs;) {
      CaseSpec candidate = best;
      candidate.ops.erase(candidate.ops.begin() + static_cast<long>(i));
      if (fails(candidate)) {
        best = candidate;
        progress = true;
      }
    }
    if (best.options.index) {
      CaseSpec candidate = best;
      candidate.options.index = false;
      if (fails(candidate)) {
        best = candidate;
        progress = true;
      }
    }
  }
  fprintf(stderr, "minimized in %d runs: %zu entries, %zu operations\n", runs, best.entries.size(),
          best.ops.size());
  return best;
}

}  // namespace lamina::difffuzz
