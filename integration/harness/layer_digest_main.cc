// lamina-layer-digest DIR: prints the digest of the tree at DIR (see
// LayerDigest), one line per field of every object, "PATH: FIELD VALUE".
// For shell tests that check a lower layer is untouched: take it before the
// first mount and after the last, and diff(1) the two. Taking it changes
// nothing, atimes included; needs CAP_SYS_ADMIN. Exits 1, saying why, when
// the tree cannot be walked.

#include <iostream>

#include "integration/harness/layer_digest.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: lamina-layer-digest DIR\n";
    return 2;
  }
  const lamina::testing::LayerDigest digest = lamina::testing::LayerDigest::Take(argv[1]);
  if (!digest.error().empty()) {
    std::cerr << "lamina-layer-digest: " << digest.error() << "\n";
    return 1;
  }
  digest.Print(std::cout);
  return std::cout.flush() ? 0 : 1;
}
