// Shrinking a failing case to the entries and operations its failure needs.
//
// Greedy: drops the operations after the one that failed, then chunks of
// entries and single entries and operations, and tries the simpler mount
// options (index off), keeping each change after which the case still
// fails the same way (same status, same kind of stage, same kind of first
// difference: see FailureKind and DifferenceShape).
// Each try is a full run of the case, so this is for long runs and replays,
// not for CI.

#ifndef LAMINA_INTEGRATION_DIFFFUZZ_MINIMIZER_H_
#define LAMINA_INTEGRATION_DIFFFUZZ_MINIMIZER_H_

#include <functional>
#include <string>

#include "integration/difffuzz/case_runner.h"
#include "integration/difffuzz/case_spec.h"

namespace lamina::difffuzz {

// The status and the stage without its operation number and operands
// ("op 3: op rename a b" -> "different op rename").
std::string FailureKind(const CaseResult& result);

// The kind of the first difference a result shows, for a view difference:
// what each side says of the first path ("nothing", "listed:EINVAL", the
// type) and, when both name the same type, the fields that differ.
std::string DifferenceShape(const CaseResult& result);

// `still_fails(result)` may refuse a result of the same kind (say, one that
// now matches a known difference). At most `max_runs` runs.
CaseSpec Minimize(const CaseSpec& spec, const CaseResult& failure, const RunnerOptions& options,
                  const std::function<bool(const CaseSpec&, const CaseResult&)>& still_fails,
                  int max_runs = 200);

}  // namespace lamina::difffuzz

#endif  // LAMINA_INTEGRATION_DIFFFUZZ_MINIMIZER_H_
