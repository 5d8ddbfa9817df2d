// The layers a test mounts read-only (an overlay's lower layers), each with
// the digest taken before its first mount, and the check that none of them
// changed. Checked after the test unmounted them and the daemon ended, so
// that the daemon's late work (releases, forgets) is included.
//
// A test that changes a watched layer itself (a hostile layer edited between
// mounts, a file added to a lower) says so with Change(), which checks
// everything up to the change and records the layers afresh after it;
// nothing turns the check off.

#ifndef LAMINA_INTEGRATION_HARNESS_UNTOUCHED_LAYERS_H_
#define LAMINA_INTEGRATION_HARNESS_UNTOUCHED_LAYERS_H_

#include <functional>
#include <string>
#include <vector>

#include "integration/harness/layer_digest.h"

namespace lamina::testing {

class UntouchedLayers {
 public:
  // Records the digest of the directory tree at `root`, unless it is
  // watched already. A tree that cannot be digested fails the test.
  void Watch(const std::string& root);
  bool Watching(const std::string& root) const;

  // A test's own deliberate change to watched layers: checks every watched
  // layer as ExpectUntouched() does, runs `change`, and records them all
  // again. `why` names the change in later failure messages.
  void Change(const std::string& why, const std::function<void()>& change);

  // Adds a test failure for each watched layer that differs from its
  // record, naming the layer and listing its first 20 differences; then
  // stops watching them all.
  void ExpectUntouched();

 private:
  struct Watched {
    std::string root;
    LayerDigest digest;
    std::string recorded;  // when, for the failure message
  };
  void Check(const Watched& layer) const;

  std::vector<Watched> layers_;
};

}  // namespace lamina::testing

#endif  // LAMINA_INTEGRATION_HARNESS_UNTOUCHED_LAYERS_H_
