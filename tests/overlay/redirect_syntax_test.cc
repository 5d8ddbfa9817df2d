// Which overlay.redirect values the kernel reads and which it calls invalid
// (EINVAL): what CheckRedirect decides before any lookup follows one. "."
// and ".." pass here: the kernel refuses them (EACCES) only where a lookup
// meets them (integration/scenarios/layer_redirects_test.cc).

#include <cerrno>

#include "gtest/gtest.h"
#include "overlay/layer_object.h"

namespace lamina::overlay {
namespace {

TEST(RedirectSyntaxTest, NamesAndPathsFromTheRoot) {
  for (const char* valid : {"a", "..", ".", "/a", "/a/b", "/a/../b", "/.."}) {
    EXPECT_EQ(CheckRedirect(valid), 0) << valid;
  }
  for (const char* invalid : {"a/b", "../b", "a/", "/", "//", "/a/", "/a//b", "//a"}) {
    EXPECT_EQ(CheckRedirect(invalid), EINVAL) << invalid;
  }
}

}  // namespace
}  // namespace lamina::overlay
