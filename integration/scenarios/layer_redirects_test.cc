// Redirects (overlay.redirect) in layers anyone may have built, and the ones
// Lamina writes, beside kernel overlayfs with redirect_dir=on: where each
// lookup finds a renamed directory's lower directories, where it stops (an
// opaque directory, a whiteout or a non-directory on the way), which
// records it refuses and with which errno, and which value a rename writes.
// What Lamina writes is also read back after a remount and by the kernel.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "integration/overlay/sync_gate.h"
#include "integration/scenarios/layer_contents.h"

namespace lamina::testing {
namespace {

constexpr char kRedirect[] = "trusted.overlay.redirect";

// Every directory of an upper layer with its redirect, one line each.
std::string UpperRedirects(const std::string& upper) {
  std::string out;
  std::vector<std::string> lines;
  std::error_code error;
  for (auto it = std::filesystem::recursive_directory_iterator(upper, error);
       !error && it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
    if (!it->is_directory() || it->is_symlink()) continue;
    const std::string path = it->path().string();
    lines.push_back(path.substr(upper.size()) + " " + LayerXattr(path, kRedirect));
  }
  std::sort(lines.begin(), lines.end());
  for (const std::string& line : lines) out += line + "\n";
  return out;
}

class LayerRedirectsTest : public OverlayPair {
 protected:
  LayerRedirectsTest() { kernel_options_ = "redirect_dir=on"; }

  // Unmounts both and mounts them again on the same layers.
  void Remount() {
    UnmountLamina();
    UnmountKernel();
    MountBoth();
  }
};

// A directory rename in a tree whose lower history hides something: a
// layer that deleted a directory and made a new one of the same name (an
// opaque directory), whited it out, or put a file there.
struct RenameCase {
  const char* name;
  std::vector<std::vector<std::string>> lowers;
  const char* from;
  const char* to;
  std::vector<std::string> shown;  // paths compared after the rename
};

class DirectoryRenameTest : public LayerRedirectsTest,
                            public ::testing::WithParamInterface<RenameCase> {};

TEST_P(DirectoryRenameTest, KeepsWhatTheLayersAboveHidHidden) {
  const RenameCase& c = GetParam();
  Mount(c.lowers);
  ExpectSame([&](const std::string& r) { return ShowAll(r, c.shown); }, "before the rename");
  ExpectSame(
      [&](const std::string& r) {
        return Outcome(rename((r + "/" + c.from).c_str(), (r + "/" + c.to).c_str()));
      },
      "the rename");
  ExpectSame([&](const std::string& r) { return ShowAll(r, c.shown); }, "after the rename");
  // Written as the kernel writes it: a name for a rename within one
  // directory, a path from the root otherwise.
  EXPECT_EQ(UpperRedirects(lamina_upper()), UpperRedirects(kernel_upper()));

  Remount();
  ExpectSame([&](const std::string& r) { return ShowAll(r, c.shown); }, "after a remount");
  ExpectSame(DescribeTree, "the tree after a remount");
  const std::string kernel_view = DescribeTree(kernel_root());
  ASSERT_NO_FATAL_FAILURE(MountKernelOnLaminaLayers(kernel_options_));
  EXPECT_EQ(DescribeTree(kernel_root()), kernel_view)
      << "the kernel reads Lamina's upper otherwise";
}

const RenameCase kRenameCases[] = {
    // rm -rf e; mkdir -p e/c in the top layer: e is opaque there.
    {"OpaqueParentSameDirectory",
     {{"o e", "d e/c"}, {"f e/c/secret s"}},
     "e/c",
     "e/d",
     {"e", "e/d"}},
    {"OpaqueAncestorAcrossDirectories",
     {{"o a", "d a/b/c", "d z"}, {"f a/b/c/secret s"}},
     "a/b/c",
     "z/c",
     {"a/b", "z/c"}},
    {"WhiteoutInTheMiddleLayer",
     {{"d a/b/c", "d z"}, {"w a"}, {"f a/b/c/secret s"}},
     "a/b/c",
     "z/c",
     {"a/b", "z/c"}},
    {"FileInTheMiddleLayer",
     {{"d a/b/c", "d z"}, {"f a file"}, {"f a/b/c/secret s"}},
     "a/b/c",
     "z/c",
     {"a/b", "z/c"}},
    {"OpaqueInTheMiddleLayer",
     {{"d a/b/c", "d z"}, {"o a", "d a/b"}, {"f a/b/c/secret s"}},
     "a/b/c",
     "z/c",
     {"a/b", "z/c"}},
    {"WhiteoutInTheMiddleLayerSameDirectory",
     {{"d e/c"}, {"w e"}, {"f e/c/secret s"}},
     "e/c",
     "e/d",
     {"e", "e/d"}},
    {"MergedDirectoryAcrossDirectories",
     {{"d a/b/c", "f a/b/c/top t", "d z"}, {"f a/b/c/bottom b"}},
     "a/b/c",
     "z/c",
     {"a/b", "z/c"}},
};

INSTANTIATE_TEST_SUITE_P(Cases, DirectoryRenameTest, ::testing::ValuesIn(kRenameCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(LayerRedirectsTest, WritesRedirectsAsTheKernelDoes) {
  Mount({{"d p/q/r/s", "f p/q/r/s/f r", "d p/q/t", "f p/q/t/f t", "d z", "f z/f z"},
         {"f p/q/r/below b", "f z/below b"}});
  // Within one directory (twice: the first record stays), across
  // directories (a path, through the parents' own records), and of a
  // directory holding a moved one.
  const std::vector<std::pair<std::string, std::string>> moves = {
      {"p/q/r", "p/q/r2"}, {"p/q/r2", "p/q/r3"}, {"p/q/r3", "z/r"},  {"p/q", "p/q2"},
      {"p/q2/t", "z/t"},   {"z", "z2"},          {"z2/r/s", "z2/s"}, {"z2", "p/z3"},
  };
  for (const auto& move : moves) {
    const std::string& from = move.first;
    const std::string& to = move.second;
    ExpectSame(
        [&](const std::string& r) {
          return Outcome(rename((r + "/" + from).c_str(), (r + "/" + to).c_str()));
        },
        "rename " + from + " " + to);
    EXPECT_EQ(UpperRedirects(lamina_upper()), UpperRedirects(kernel_upper())) << from << " " << to;
  }
  ExpectSame(DescribeTree, "the tree after the renames");
  Remount();
  ExpectSame(DescribeTree, "the tree after a remount");
  const std::string kernel_view = DescribeTree(kernel_root());
  ASSERT_NO_FATAL_FAILURE(MountKernelOnLaminaLayers(kernel_options_));
  EXPECT_EQ(DescribeTree(kernel_root()), kernel_view)
      << "the kernel reads Lamina's upper otherwise";
}

// Redirect values a layer may carry, good and bad, on directories where the
// kernel reads them and where it never does.
struct BadRedirect {
  const char* name;
  const char* value;
};

class RedirectValueTest
    : public LayerRedirectsTest,
      public ::testing::WithParamInterface<std::tuple<BadRedirect, bool /*follow*/>> {};

TEST_P(RedirectValueTest, IsReadAndRefusedWhereTheKernelReadsAndRefusesIt) {
  const BadRedirect& redirect = std::get<0>(GetParam());
  const bool follow = std::get<1>(GetParam());
  if (!follow) {
    lamina_options_.redirect_dir = false;
    lamina_options_.redirect_follow = false;
    kernel_options_ = "redirect_dir=nofollow";
  }
  auto on = [&](const std::string& path) {
    std::string line = "x " + path + " " + kRedirect;
    if (*redirect.value != '\0') line += std::string(" ") + redirect.value;
    return line;
  };
  // bot: only in the bottom layer (never read); top: above its own name;
  // only/sub, x/t: in the top layer alone; up: an upper directory over
  // lower ones; newp/sub: an upper directory with nothing below; mid: in a
  // middle layer under a file of the top one (never reached).
  Mount({{"d top", on("top"), "d only/sub", on("only/sub"), "d x/t", on("x/t"), "f mid m"},
         {"d top", "d a", "d b", "f b/f b", "d mid", on("mid")},
         {"d mid/deep", "d bot", on("bot")}},
        {"d up", on("up"), "d newp/sub", on("newp/sub")});
  ExpectSame(
      [](const std::string& r) {
        return ShowAll(r, {"bot", "top", "only/sub", "up", "newp/sub", "x/t", "mid", ""});
      },
      std::string("lookups with redirect '") + redirect.value + "'");
}

const BadRedirect kRedirectValues[] = {
    {"DotDotSlash", "../b"},  {"SlashSlash", "//"},    {"Dot", "."},
    {"TrailingSlash", "/a/"}, {"Empty", ""},           {"Slash", "/"},
    {"DotDot", ".."},         {"RelativePath", "a/b"}, {"DotDotInPath", "/a/../b"},
    {"DotDotAtEnd", "/x/.."}, {"Name", "b"},           {"Path", "/b"},
};

INSTANTIATE_TEST_SUITE_P(Values, RedirectValueTest,
                         ::testing::Combine(::testing::ValuesIn(kRedirectValues),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) +
                                  (std::get<1>(info.param) ? "Follow" : "NoFollow");
                         });

TEST_F(LayerRedirectsTest, AbsoluteRedirectsWalkEachLayerAsTheKernelDoes) {
  // r<N> (upper) records /e<N>/c; what lies on the way in each layer decides
  // what it merges.
  auto to = [](int n) {
    return std::string("x r") + std::to_string(n) + " " + kRedirect + " /e" + std::to_string(n) +
           "/c";
  };
  std::vector<std::string> upper;
  for (int n = 1; n <= 8; ++n) {
    upper.push_back("d r" + std::to_string(n));
    upper.push_back(to(n));
  }
  BuildLayers({{"w e1", "f e2 file", "o e3", "d e4", std::string("x e4 ") + kRedirect + " /f",
                "o e5", "d e5/c", std::string("x e5/c ") + kRedirect + " /g", "d e6",
                std::string("x e6 ") + kRedirect, "d e7", std::string("x e7 ") + kRedirect + " /"},
               {"f e1/c/secret s", "f e2/c/secret s", "f e3/c/secret s", "f f/c/secret s",
                "f g/gsecret g", "f e6/c/secret s", "f e7/c/secret s", "o e8"},
               {"f e8/c/secret s"}},
              upper);
  MountBoth();
  ExpectSame(
      [](const std::string& r) {
        return ShowAll(r, {"r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"});
      },
      "absolute walks");
}

// One lower directory reached under two names (a redirect to a directory
// that also shows under its own name): the same directory until one name
// gets an upper directory; then the other name's lookup is stale, as on the
// kernel, instead of showing the first one's upper.
TEST_F(LayerRedirectsTest, OneLowerDirectoryUnderTwoNames) {
  Mount({{"d x", std::string("x x ") + kRedirect + " /c"}, {"d c/a", "f c/a/old o"}});
  const std::vector<std::string> paths = {"x/a", "c/a", "x/a/new", "c/a/new", "x/a/old", "c", "x"};
  ExpectSame([&](const std::string& r) { return ShowAll(r, paths); }, "before any change");
  ExpectSame([](const std::string& r) { return ShowAll(r, {"c/a"}); }, "c/a looked up last");
  ExpectSame(
      [](const std::string& r) {
        int fd = open((r + "/x/a/new").c_str(), O_CREAT | O_WRONLY, 0644);
        if (fd >= 0) close(fd);
        return Outcome(fd);
      },
      "a file created through x/a");
  ExpectSame([&](const std::string& r) { return ShowAll(r, paths); }, "after the create");
  Remount();
  ExpectSame([&](const std::string& r) { return ShowAll(r, paths); }, "after a remount");
}

// A lookup that resolved a known directory just before another request
// copied it up is still the same directory, not a stale one: only an upper
// directory that is not the node's makes a lookup stale.
TEST_F(LayerRedirectsTest, ALookupRacingACopyUpOfItsDirectoryIsNotStale) {
  Mount({{"d d", "f d/f f"}});
  ASSERT_EQ(ListDir(lamina_root() + "/d"), std::vector<std::string>{"f"});  // its node exists
  auto gate = std::make_shared<SyncGate>();
  fs_->sync_points().Set(overlay::SyncPoint::kLookupBeforeAdopt, [gate] { gate->Hold(); });
  Result<Entry> found = Errno{EIO};
  // (Straight to the daemon: a lookup through the kernel that failed would
  // be retried by its revalidation.)
  std::thread lookup([&] { found = fs_->Lookup(RequestContext{}, kRootNodeId, "d"); });
  const bool reached = gate->WaitUntilReached();
  if (reached) WriteFile(lamina_root() + "/d/new", "n");  // copies d up
  gate->Open();
  lookup.join();
  fs_->sync_points().Set(overlay::SyncPoint::kLookupBeforeAdopt, nullptr);
  ASSERT_TRUE(reached) << "the lookup never reached the sync point";
  EXPECT_TRUE(overlay::StatAt(AT_FDCWD, lamina_upper() + "/d").has_value())
      << "d was not copied up";
  ASSERT_TRUE(found.ok()) << strerror(found.error());
  fs_->Forget(found->node, 1);
  EXPECT_EQ(ListDir(lamina_root() + "/d"), (std::vector<std::string>{"f", "new"}));
}

}  // namespace
}  // namespace lamina::testing
