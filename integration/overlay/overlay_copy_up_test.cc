// Copy-up details against kernel overlayfs: what a copied-up object keeps.

#include <sys/xattr.h>
#include <unistd.h>

#include <string>

#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

// trusted.* is the namespace a symlink can carry; its target gets a
// different value, which must not leak onto the copy.
const std::vector<std::string> kLower = {"f target content", "l link target",
                                         "x link trusted.lamina.test link",
                                         "x target trusted.lamina.test target"};

std::string XattrOf(const std::string& path, const char* name) {
  char value[64] = {};
  ssize_t n = lgetxattr(path.c_str(), name, value, sizeof(value) - 1);
  return n < 0 ? "none" : std::string(value, static_cast<size_t>(n));
}

class OverlayCopyUpTest : public OverlayPair {};

TEST_F(OverlayCopyUpTest, SymlinksKeepTheirOwnXattrs) {
  Mount({kLower});
  ExpectSame(
      [](const std::string& r) {
        std::string out = Outcome(lchown((r + "/link").c_str(), 0, 0));  // copies the link up
        return out + " " + XattrOf(r + "/link", "trusted.lamina.test") + " " +
               XattrOf(r + "/target", "trusted.lamina.test");
      },
      "copy-up of a symlink with an xattr");
  EXPECT_EQ(XattrOf(lamina_upper() + "/link", "trusted.lamina.test"), "link");
  EXPECT_EQ(XattrOf(kernel_upper() + "/link", "trusted.lamina.test"), "link");
}

}  // namespace
}  // namespace lamina::testing
