// What a mount does with whatever it finds in the workdir, side by side with
// kernel overlayfs: a symlink planted at work/work or work/index, or left
// inside work/work, is never followed. The kernel removes a non-directory
// at work/work and makes a fresh directory there, removes links found
// inside it without following them, and refuses index=on when work/index
// is not a directory (ENOTDIR); the directories the links pointed to stay
// as they were.

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

const std::vector<std::string> kLower = {"f file lower", "d dir", "f dir/in inside",
                                         "f linked shared", "h other linked"};

// A directory the overlay has no business touching: a file and a
// subdirectory with a file, as in the report.
const std::vector<std::string> kVictim = {"f keep precious", "d sub", "f sub/deep also precious"};

std::string TypeOf(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return Outcome(-1);
  if (S_ISDIR(st.st_mode)) return "dir";
  if (S_ISLNK(st.st_mode)) return "symlink";
  if (S_ISREG(st.st_mode)) return "file";
  return "other";
}

// The names in a directory, sorted, without following it if it is a link.
std::string Names(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    names.push_back(entry.path().filename().string());
  }
  if (error) return error.message();
  std::sort(names.begin(), names.end());
  std::string out;
  for (const std::string& name : names) out += name + " ";
  return out;
}

class OverlayWorkdirTest : public OverlayPair {
 protected:
  // Mounts both once (so each workdir holds what its system made there),
  // then unmounts both, leaving the layers to be tampered with.
  void SetUp() override {
    // Hard links copy up as on the kernel's default (index=off); the index
    // test turns it on where it needs it.
    lamina_options_.layers.index = false;
    Mount({kLower});
    UnmountLamina();
    UnmountKernel();
    for (int s = 0; s < 2; ++s) {
      victim_[s] = set_[s] + "/victim";
      BuildLayer(victim_[s], kVictim);
    }
    victim_tree_ = DescribeTree(victim_[0]);
    ASSERT_EQ(victim_tree_, DescribeTree(victim_[1]));
  }

  std::string work(int s) const { return set_[s] + "/work"; }

  // Replaces `path` (made by an earlier mount, or absent) with a symlink.
  void PlantSymlink(const std::string& path, const std::string& target) {
    std::error_code error;
    std::filesystem::remove_all(path, error);
    ASSERT_EQ(symlink(target.c_str(), path.c_str()), 0) << path << ": " << strerror(errno);
  }

  void ExpectVictimsIntact(const std::string& when) {
    for (int s = 0; s < 2; ++s) {
      EXPECT_EQ(DescribeTree(victim_[s]), victim_tree_)
          << (s == 0 ? "Lamina" : "the kernel") << " changed the directory a link pointed to "
          << when;
    }
  }

  // Through both mounts: a copy-up (staged in work/work), a new file and a
  // hard-linked lower file written, then what the view shows.
  void ExpectMountsWorkAlike() {
    ExpectSame(
        [](const std::string& r) {
          int fd = open((r + "/file").c_str(), O_WRONLY | O_APPEND);
          std::string out = Outcome(fd);
          if (fd >= 0) {
            out += " " + Outcome(static_cast<int>(write(fd, "+", 1)));
            close(fd);
          }
          fd = open((r + "/new").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
          out += " " + Outcome(fd);
          if (fd >= 0) close(fd);
          fd = open((r + "/linked").c_str(), O_WRONLY | O_APPEND);
          out += " " + Outcome(fd);
          if (fd >= 0) {
            out += " " + Outcome(static_cast<int>(write(fd, "+", 1)));
            close(fd);
          }
          return out + "\n" + DescribeTree(r);
        },
        "writes through the remounted overlay");
  }

  std::string victim_[2];
  std::string victim_tree_;
};

TEST_F(OverlayWorkdirTest, SymlinkAtWorkWorkIsReplacedNotFollowed) {
  for (int s = 0; s < 2; ++s) PlantSymlink(work(s) + "/work", victim_[s]);
  MountLamina();
  MountKernel();
  ExpectVictimsIntact("at mount");
  for (int s = 0; s < 2; ++s) {
    EXPECT_EQ(TypeOf(work(s) + "/work"), "dir") << (s == 0 ? "Lamina" : "the kernel");
  }
  ExpectMountsWorkAlike();
  ExpectVictimsIntact("while mounted");
}

TEST_F(OverlayWorkdirTest, FileAtWorkWorkIsReplaced) {
  for (int s = 0; s < 2; ++s) {
    std::filesystem::remove_all(work(s) + "/work");
    WriteFile(work(s) + "/work", "not a directory");
  }
  MountLamina();
  MountKernel();
  for (int s = 0; s < 2; ++s) {
    EXPECT_EQ(TypeOf(work(s) + "/work"), "dir") << (s == 0 ? "Lamina" : "the kernel");
  }
  ExpectMountsWorkAlike();
}

// Leftovers in work/work are removed as links, never followed: links to a
// directory and to a file at the top, a link inside a leftover directory,
// and a link named incompat to a directory holding "volatile" (no volatile
// marker: both mount, and the directory it points to stays).
TEST_F(OverlayWorkdirTest, LinksLeftInWorkWorkAreRemovedNotFollowed) {
  for (int s = 0; s < 2; ++s) {
    const std::string staging = work(s) + "/work";
    const std::string fake = set_[s] + "/fake-incompat";
    BuildLayer(fake, {"d volatile", "f volatile/kept k"});
    ASSERT_EQ(symlink(victim_[s].c_str(), (staging + "/to-dir").c_str()), 0);
    ASSERT_EQ(symlink((victim_[s] + "/keep").c_str(), (staging + "/to-file").c_str()), 0);
    ASSERT_EQ(mkdir((staging + "/left").c_str(), 0700), 0);
    ASSERT_EQ(symlink(victim_[s].c_str(), (staging + "/left/inner").c_str()), 0);
    ASSERT_EQ(symlink(fake.c_str(), (staging + "/incompat").c_str()), 0);
  }
  MountLamina();
  MountKernel();
  ExpectVictimsIntact("at mount");
  for (int s = 0; s < 2; ++s) {
    const char* who = s == 0 ? "Lamina" : "the kernel";
    EXPECT_EQ(Names(work(s) + "/work"), "") << who << " left something in work/work";
    EXPECT_EQ(DescribeTree(set_[s] + "/fake-incompat"),
              "/volatile mode=40755\n/volatile/kept mode=100644 size=1 nlink=1 data=k\n")
        << who;
  }
  ExpectMountsWorkAlike();
}

// With the index on, a symlink at work/index refuses the mount (the
// kernel's ENOTDIR) and nothing is written where it points; with the index
// off both ignore it, and copying up a lower hard link writes nothing there.
TEST_F(OverlayWorkdirTest, SymlinkAtWorkIndexRefusesIndexOn) {
  for (int s = 0; s < 2; ++s) PlantSymlink(work(s) + "/index", victim_[s]);

  OverlayOptions options = lamina_options_;
  options.layers.index = true;
  options.layers.lowers = {lamina_lower(0)};
  options.layers.upper = lamina_upper();
  options.layers.work = lamina_work();
  auto refused = OverlayFs::Create(options);
  ASSERT_FALSE(refused.ok()) << "Lamina mounted with work/index a symlink";
  EXPECT_NE(refused.status().message().find(strerror(ENOTDIR)), std::string_view::npos)
      << refused.status();

  const std::string data = "lowerdir=" + set_[1] + "/lower0,upperdir=" + kernel_upper() +
                           ",workdir=" + kernel_work() + ",index=on";
  errno = 0;
  EXPECT_NE(mount("overlay", kernel_root().c_str(), "overlay", 0, data.c_str()), 0);
  EXPECT_EQ(errno, ENOTDIR) << "the kernel's outcome changed: " << strerror(errno);
  if (errno == 0) umount2(kernel_root().c_str(), MNT_DETACH);
  for (int s = 0; s < 2; ++s) EXPECT_EQ(TypeOf(work(s) + "/index"), "symlink");
  ExpectVictimsIntact("after the refused mounts");

  MountLamina();
  MountKernel();
  ExpectMountsWorkAlike();
  ExpectVictimsIntact("after a copy-up of a hard link with index=off");
  for (int s = 0; s < 2; ++s) EXPECT_EQ(TypeOf(work(s) + "/index"), "symlink");
}

}  // namespace
}  // namespace lamina::testing
