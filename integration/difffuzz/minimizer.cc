#include "integration/difffuzz/minimizer.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
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

namespace {

// What one side of a view difference says of its path: "nothing",
// "listed:ERRNO", the type, or "probe:RESULT".
std::string SideShape(const std::string& text) {
  if (text.empty() || text == "(nothing)") return "nothing";
  if (text.compare(0, 6, "probe ") == 0) return "probe:" + text.substr(text.rfind(' ') + 1);
  const size_t listed = text.find(" listed, lstat=");
  if (listed != std::string::npos) {
    return "listed:" + text.substr(listed + 15, text.find(' ', listed + 15) - listed - 15);
  }
  const size_t start = text.find(' ');
  return start == std::string::npos ? text
                                    : text.substr(start + 1, text.find(' ', start + 1) - start - 1);
}

// The fields two lines of one path differ in ("nlink,data").
std::string DifferingFields(const std::string& a, const std::string& b) {
  auto fields = [](const std::string& line) {
    std::map<std::string, std::string> out;
    size_t at = line.find(' ');
    while (at != std::string::npos) {
      const size_t end = line.find(' ', at + 1);
      const std::string field = line.substr(at + 1, end == std::string::npos ? end : end - at - 1);
      const size_t eq = field.find('=');
      out[eq == std::string::npos ? field : field.substr(0, eq)] = field;
      at = end;
    }
    return out;
  };
  const auto fa = fields(a), fb = fields(b);
  std::set<std::string> names;
  for (const auto& [k, v] : fa) names.insert(k);
  for (const auto& [k, v] : fb) names.insert(k);
  std::string out;
  for (const std::string& k : names) {
    auto ia = fa.find(k), ib = fb.find(k);
    if (ia == fa.end() || ib == fb.end() || ia->second != ib->second)
      out += (out.empty() ? "" : ",") + k;
  }
  return out;
}

}  // namespace

std::string DifferenceShape(const CaseResult& result) {
  // The first pair of "  LABEL: TEXT" lines of a view difference.
  std::string sides[2];
  int found = 0;
  for (size_t at = 0; at < result.detail.size() && found < 2;) {
    size_t end = result.detail.find('\n', at);
    if (end == std::string::npos) end = result.detail.size();
    const std::string line = result.detail.substr(at, end - at);
    at = end + 1;
    const size_t colon = line.find(": ");
    if (line.compare(0, 2, "  ") != 0 || colon == std::string::npos) continue;
    sides[found++] = line.substr(colon + 2);
  }
  if (found < 2) return "";
  std::string shape = SideShape(sides[0]) + "/" + SideShape(sides[1]);
  if (SideShape(sides[0]) == SideShape(sides[1])) {
    shape += ":";
    shape += DifferingFields(sides[0], sides[1]);
  }
  return shape;
}

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
  const std::string kind = FailureKind(failure) + " " + DifferenceShape(failure);
  CaseSpec best = spec;
  int runs = 0;
  auto fails = [&](const CaseSpec& candidate) {
    if (runs >= max_runs) return false;
    ++runs;
    CaseResult result = RunCase(candidate, options);
    return FailureKind(result) + " " + DifferenceShape(result) == kind &&
           still_fails(candidate, result);
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
