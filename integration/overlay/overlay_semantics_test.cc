// OverlayFs against kernel overlayfs, operation by operation.

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

const std::vector<std::string> kLower = {
    "d a",      "f a/x lower-x", "f a/shared lower-shared", "f b lower-b", "f c lower-c",
    "l link b", "d deep/er/est", "f deep/er/est/file deep", "f keep kept",
};
const std::vector<std::string> kUpper = {
    "d a",
    "f a/y upper-y",
    "f a/shared upper-shared",
    "w c",
};

class OverlaySemanticsTest : public OverlayPair {
 protected:
  void SetUp() override { Mount({kLower}, kUpper); }
};

std::string Tree(const std::string& root) {
  return DescribeTree(root);
}

TEST_F(OverlaySemanticsTest, MergedViewMatchesKernel) {
  ExpectSame(Tree, "initial tree");
  ExpectSame([](const std::string& r) { return ReadFile(r + "/a/shared"); }, "upper wins");
  ExpectSame(
      [](const std::string& r) {
        struct stat st;
        return Outcome(stat((r + "/c").c_str(), &st));
      },
      "whited-out name");
  EXPECT_EQ(ListDir(lamina_root()), (std::vector<std::string>{"a", "b", "deep", "keep", "link"}));
  // "." and ".." are listed too (readdir drops entries with inode 0).
  ExpectSame(
      [](const std::string& r) {
        std::string names;
        DIR* dir = opendir((r + "/a").c_str());
        while (struct dirent* e = readdir(dir)) {
          if (e->d_name[0] == '.')
            names += std::string(e->d_name) + (e->d_ino != 0 ? "+" : "0") + " ";
        }
        closedir(dir);
        return names;
      },
      "dot entries");
}

// Directory markers are found by one listxattr where the names fit its
// buffer (1 KiB) and by asking for each marker where they do not: an opaque
// directory and a plain one, each with 40 other xattrs, and the same
// without them, in a lower layer over another.
class OverlayMarkersTest : public OverlayPair {
 protected:
  void SetUp() override {
    std::vector<std::string> top = {
        "o opaque",      "f opaque/top top",      "d plain",      "f plain/top top",
        "o opaque-many", "f opaque-many/top top", "d plain-many", "f plain-many/top top"};
    for (int i = 0; i < 40; ++i) {
      const std::string name = "user.an-xattr-with-a-long-name-" + std::to_string(i);
      top.push_back("x opaque-many " + name + " v");
      top.push_back("x plain-many " + name + " v");
    }
    std::vector<std::string> bottom;
    for (const char* dir : {"opaque", "plain", "opaque-many", "plain-many"}) {
      bottom.push_back(std::string("f ") + dir + "/below below");
    }
    Mount({top, bottom}, {});
  }
};

TEST_F(OverlayMarkersTest, OpaqueDirectoriesHideLowerLayersHoweverManyXattrsTheyHave) {
  ExpectSame(Tree, "merged tree");
  EXPECT_EQ(ListDir(lamina_root() + "/opaque-many"), std::vector<std::string>{"top"});
  EXPECT_EQ(ListDir(lamina_root() + "/plain-many"), (std::vector<std::string>{"below", "top"}));
}

TEST_F(OverlaySemanticsTest, AppendCopiesUpAndKeepsLowerIntact) {
  ExpectSame(
      [](const std::string& r) {
        int fd = open((r + "/b").c_str(), O_WRONLY | O_APPEND);
        std::string out = Outcome(fd);
        if (fd >= 0) {
          out += Outcome(static_cast<int>(write(fd, "+more", 5)));
          close(fd);
        }
        return out + ReadFile(r + "/b");
      },
      "append to a lower file");
  EXPECT_EQ(ReadFileQuietly(lamina_lower(0) + "/b"), "lower-b");
  EXPECT_EQ(ReadFile(lamina_upper() + "/b"), "lower-b+more");
  ExpectSame(Tree, "tree after copy-up");
}

TEST_F(OverlaySemanticsTest, InodeNumberStableAcrossCopyUpAndRemount) {
  struct stat before, after, remounted;
  std::string path = lamina_root() + "/deep/er/est/file";
  ASSERT_EQ(stat(path.c_str(), &before), 0);
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);  // a metadata-only copy-up
  ASSERT_EQ(stat(path.c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  UnmountLamina();
  MountLamina();
  ASSERT_EQ(stat(path.c_str(), &remounted), 0);
  EXPECT_EQ(before.st_ino, remounted.st_ino);
  EXPECT_EQ(remounted.st_mode & 07777, 0600u);
  // The parents were copied up too, keeping their metadata.
  struct stat lower_dir, upper_dir;
  ASSERT_EQ(stat((lamina_lower(0) + "/deep/er").c_str(), &lower_dir), 0);
  ASSERT_EQ(stat((lamina_upper() + "/deep/er").c_str(), &upper_dir), 0);
  EXPECT_EQ(lower_dir.st_mode, upper_dir.st_mode);
}

TEST_F(OverlaySemanticsTest, DeletingLowerObjectsWritesWhiteoutsOnly) {
  ExpectSame(
      [](const std::string& r) {
        return Outcome(unlink((r + "/b").c_str())) + Outcome(unlink((r + "/link").c_str())) +
               Outcome(system(("rm -rf " + r + "/deep").c_str()) == 0 ? 0 : -1);
      },
      "deleting lower objects");
  ExpectSame(Tree, "tree after deletes");
  // Only whiteouts in the upper: no data was copied.
  for (const char* name : {"b", "link", "deep"}) {
    struct stat st;
    ASSERT_EQ(lstat((lamina_upper() + "/" + name).c_str(), &st), 0) << name;
    EXPECT_TRUE(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) << name;
  }
}

TEST_F(OverlaySemanticsTest, RecreatedDirectoryIsOpaque) {
  ExpectSame(
      [](const std::string& r) {
        std::string out = Outcome(system(("rm -rf " + r + "/a").c_str()) == 0 ? 0 : -1);
        out += Outcome(mkdir((r + "/a").c_str(), 0755));
        WriteFile(r + "/a/new", "n");
        return out;
      },
      "rm -r then mkdir");
  ExpectSame(Tree, "tree after recreating a directory");
  char value[4] = {};
  EXPECT_EQ(getxattr((lamina_upper() + "/a").c_str(), "trusted.overlay.opaque", value, 4), 1);
  EXPECT_EQ(value[0], 'y');
}

TEST_F(OverlaySemanticsTest, CreateAndUnlinkWhileOpen) {
  ExpectSame(
      [](const std::string& r) {
        std::string path = r + "/a/tmp";
        int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0644);
        std::string out = Outcome(fd);
        out += Outcome(unlink(path.c_str()));
        out += Outcome(static_cast<int>(write(fd, "fourteen bytes", 14)));
        struct stat st {};
        out += Outcome(fstat(fd, &st));
        out += " nlink=" + std::to_string(st.st_nlink) + " size=" + std::to_string(st.st_size);
        char buf[32] = {};
        out += Outcome(static_cast<int>(pread(fd, buf, sizeof(buf), 0))) + buf;
        out += Outcome(ftruncate(fd, 4));
        out += Outcome(fstat(fd, &st));
        out += " size=" + std::to_string(st.st_size);
        close(fd);
        out += Outcome(access(path.c_str(), F_OK));
        return out;
      },
      "create-and-unlink");
}

TEST_F(OverlaySemanticsTest, CreateFlagsModesAndWhiteouts) {
  // O_CREAT opens with every access mode, a mode that forbids the access
  // asked for (the creator still gets it), O_APPEND, creation over a
  // whiteout (c) and over a deleted lower file (b), then the tree.
  ExpectSame(
      [](const std::string& r) {
        std::string out;
        struct Case {
          const char* name;
          int flags;
          mode_t mode;
        };
        for (const Case& c :
             {Case{"ro", O_RDONLY, 0644}, Case{"wo", O_WRONLY, 0600}, Case{"rw0444", O_RDWR, 0444},
              Case{"app", O_WRONLY | O_APPEND, 0640}, Case{"c", O_RDWR, 0600}}) {
          const std::string path = r + "/a/" + c.name;
          int fd = open(path.c_str(), c.flags | O_CREAT | O_EXCL, c.mode);
          out += std::string(c.name) + ":" + Outcome(fd);
          if (fd < 0) continue;
          out += Outcome(static_cast<int>(write(fd, "data", 4)));
          char buf[8] = {};
          out += Outcome(static_cast<int>(pread(fd, buf, sizeof(buf), 0))) + buf;
          close(fd);
          struct stat st {};
          out += Outcome(stat(path.c_str(), &st)) + " mode=" + std::to_string(st.st_mode & 07777) +
                 " size=" + std::to_string(st.st_size) + "; ";
        }
        // O_NOFOLLOW on a regular file opens it (dpkg and apt do this).
        for (const char* name : {"/b", "/a/x", "/keep"}) {
          int nofollow = open((r + name).c_str(), O_RDONLY | O_NOFOLLOW);
          out += std::string(name) + " nofollow:" + Outcome(nofollow);
          if (nofollow >= 0) close(nofollow);
        }
        int nofollow = open((r + "/keep").c_str(), O_RDWR | O_NOFOLLOW);  // copies up
        out += " rw nofollow:" + Outcome(nofollow);
        if (nofollow >= 0) close(nofollow);
        out += " link nofollow:" + Outcome(open((r + "/link").c_str(), O_RDONLY | O_NOFOLLOW));
        int fd = open((r + "/c").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);  // over "w c"
        out += "c:" + Outcome(fd);
        if (fd >= 0) close(fd);
        out += " unlink b:" + Outcome(unlink((r + "/b").c_str()));
        fd = open((r + "/b").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
        out += " b:" + Outcome(fd);
        if (fd >= 0) close(fd);
        out += " again:" + Outcome(open((r + "/b").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644));
        return out;
      },
      "creates");
  ExpectSame(Tree, "tree after creates");
}

// A POSIX ACL xattr value (version 2): entries of tag, permission, id.
std::string Acl(std::initializer_list<std::array<uint32_t, 3>> entries) {
  std::string value(4, '\0');
  const uint32_t version = 2;
  std::memcpy(value.data(), &version, 4);
  for (const auto& [tag, perm, id] : entries) {
    const uint16_t t = static_cast<uint16_t>(tag), p = static_cast<uint16_t>(perm);
    char entry[8];
    std::memcpy(entry, &t, 2);
    std::memcpy(entry + 2, &p, 2);
    std::memcpy(entry + 4, &id, 4);
    value.append(entry, 8);
  }
  return value;
}
constexpr uint32_t kUserObj = 0x01, kUser = 0x02, kGroupObj = 0x04, kMask = 0x10, kOther = 0x20;
constexpr uint32_t kNoId = 0xffffffff;

// Runs `op` as uid/gid 1000 in a child process; its errno outcome.
std::string AsUser1000(const std::function<int()>& op) {
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(1000) != 0 || setuid(1000) != 0) _exit(100);
    _exit(op() == 0 ? 0 : errno);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status)
             ? Outcome(WEXITSTATUS(status) == 0 ? 0 : (errno = WEXITSTATUS(status), -1))
             : "killed";
}

TEST_F(OverlaySemanticsTest, PosixAclsAreEnforcedAndInherited) {
  // User 1000 must be able to walk to the mounts.
  ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
  ExpectSame(
      [](const std::string& r) {
        std::string out;
        const std::string dir = r + "/a/acl";
        out += Outcome(mkdir(dir.c_str(), 0755));
        // Default ACL: owner rwx, group r-x, others nothing; the umask of 022
        // must not apply under it, the ACL must be inherited.
        const std::string def =
            Acl({{kUserObj, 7, kNoId}, {kGroupObj, 5, kNoId}, {kOther, 0, kNoId}});
        out +=
            Outcome(setxattr(dir.c_str(), "system.posix_acl_default", def.data(), def.size(), 0));
        const mode_t old = umask(077);
        int fd = open((dir + "/f").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0666);
        out += Outcome(fd);
        if (fd >= 0) close(fd);
        out += Outcome(mkdir((dir + "/sub").c_str(), 0777));
        int plain = open((r + "/a/plain").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0666);
        out += Outcome(plain);
        if (plain >= 0) close(plain);
        umask(old);
        // (Outcome first: operands of + are evaluated in any order.)
        auto mode_of = [](const std::string& path) {
          struct stat st {};
          std::string outcome = Outcome(stat(path.c_str(), &st));
          return outcome + " mode=" + std::to_string(st.st_mode & 07777);
        };
        for (const char* name : {"/f", "/sub"}) {
          out += mode_of(dir + name);
          out += " default=" + std::to_string(getxattr((dir + name).c_str(),
                                                       "system.posix_acl_default", nullptr, 0));
        }
        out += " plain:" + mode_of(r + "/a/plain");
        // An access ACL grants user 1000 what the mode bits deny.
        const std::string secret = r + "/a/secret";
        WriteFile(secret, "s");
        out += Outcome(chmod(secret.c_str(), 0600));
        out +=
            " before:" + AsUser1000([&] { return open(secret.c_str(), O_RDONLY) >= 0 ? 0 : -1; });
        const std::string access = Acl({{kUserObj, 6, kNoId},
                                        {kUser, 4, 1000},
                                        {kGroupObj, 0, kNoId},
                                        {kMask, 4, kNoId},
                                        {kOther, 0, kNoId}});
        out += Outcome(
            setxattr(secret.c_str(), "system.posix_acl_access", access.data(), access.size(), 0));
        out += " after:" + AsUser1000([&] { return open(secret.c_str(), O_RDONLY) >= 0 ? 0 : -1; });
        out += " write:" + AsUser1000([&] { return open(secret.c_str(), O_WRONLY) >= 0 ? 0 : -1; });
        out += mode_of(secret);
        return out;
      },
      "ACLs");
}

TEST_F(OverlaySemanticsTest, RenameFilesAndUpperDirectories) {
  ExpectSame(
      [](const std::string& r) {
        std::string out = Outcome(rename((r + "/b").c_str(), (r + "/b2").c_str()));
        out += Outcome(rename((r + "/a/x").c_str(), (r + "/keep").c_str()));
        out += Outcome(mkdir((r + "/fresh").c_str(), 0755));
        WriteFile(r + "/fresh/f", "f");
        out += Outcome(rename((r + "/fresh").c_str(), (r + "/moved").c_str()));
        out += Outcome(renameat2(AT_FDCWD, (r + "/b2").c_str(), AT_FDCWD, (r + "/a/y").c_str(),
                                 RENAME_EXCHANGE));
        out += Outcome(renameat2(AT_FDCWD, (r + "/b2").c_str(), AT_FDCWD, (r + "/a/y").c_str(),
                                 RENAME_NOREPLACE));
        return out;
      },
      "renames");
  ExpectSame(Tree, "tree after renames");
}

// Lamina renames directories with lower content by default (the kernel's
// redirect_dir=on); compare with a kernel mounted that way.
class OverlayRedirectTest : public OverlayPair {
 protected:
  void SetUp() override {
    kernel_options_ = "redirect_dir=on";
    Mount({kLower}, kUpper);
  }
};

TEST_F(OverlayRedirectTest, RenamedMergedDirectoriesKeepTheirContents) {
  ExpectSame(
      [](const std::string& r) {
        std::string out = Outcome(rename((r + "/deep").c_str(), (r + "/deeper").c_str()));
        out += Outcome(
            rename((r + "/a").c_str(), (r + "/deeper/er/a2").c_str()));  // merged, moved down
        out += Outcome(rename((r + "/deeper/er/est").c_str(), (r + "/est").c_str()));
        WriteFile(r + "/deeper/er/a2/added", "added");
        out += Outcome(mkdir((r + "/deep").c_str(), 0755));  // the old name again, empty
        return out;
      },
      "directory renames");
  ExpectSame(Tree, "tree after directory renames");
}

TEST_F(OverlayRedirectTest, RenamedDirectoriesSurviveRemountAndKernelMount) {
  std::string r = lamina_root();
  ASSERT_EQ(rename((r + "/deep").c_str(), (r + "/deeper").c_str()), 0);
  ASSERT_EQ(rename((r + "/a").c_str(), (r + "/deeper/a2").c_str()), 0);
  std::string view = DescribeTree(r);
  EXPECT_NE(view.find("/deeper/er/est/file"), std::string::npos) << view;
  EXPECT_NE(view.find("/deeper/a2/x"), std::string::npos) << view;
  UnmountLamina();
  MountLamina();
  EXPECT_EQ(DescribeTree(r), view) << "after remount";
  // The kernel follows the redirects Lamina wrote (its default).
  ASSERT_NO_FATAL_FAILURE(MountKernelOnLaminaLayers());
  EXPECT_EQ(DescribeTree(kernel_mnt_), view) << "under kernel overlayfs";
}

class OverlayNoRedirectTest : public OverlayPair {
 protected:
  void SetUp() override {
    lamina_options_.redirect_dir = false;
    Mount({kLower}, kUpper);
  }
};

TEST_F(OverlayNoRedirectTest, RenameOfLowerDirectoryIsExdev) {
  // redirect_dir=off, the kernel's default: EXDEV, and mv falls back to copying.
  ExpectSame(
      [](const std::string& r) {
        return Outcome(rename((r + "/deep").c_str(), (r + "/deeper").c_str()));
      },
      "rename of a lower directory");
}

TEST_F(OverlaySemanticsTest, CallerRenameWhiteoutIsInvalid) {
  ExpectSame(
      [](const std::string& r) {
        return Outcome(renameat2(AT_FDCWD, (r + "/a/y").c_str(), AT_FDCWD, (r + "/z").c_str(),
                                 RENAME_WHITEOUT));
      },
      "RENAME_WHITEOUT from a caller");
}

TEST_F(OverlaySemanticsTest, HardLinkToLowerFileSharesTheInode) {
  ExpectSame(
      [](const std::string& r) {
        std::string out = Outcome(link((r + "/keep").c_str(), (r + "/keep2").c_str()));
        WriteFile(r + "/keep2", "changed");
        struct stat a {
        }, b{};
        stat((r + "/keep").c_str(), &a);
        stat((r + "/keep2").c_str(), &b);
        return out + ReadFile(r + "/keep") + " same_ino=" + std::to_string(a.st_ino == b.st_ino) +
               " nlink=" + std::to_string(a.st_nlink);
      },
      "link of a lower file");
}

TEST_F(OverlaySemanticsTest, XattrsPassThroughAndPrivateOnesAreHidden) {
  ExpectSame(
      [](const std::string& r) {
        std::string path = r + "/keep";
        std::string out = Outcome(setxattr(path.c_str(), "user.color", "blue", 4, 0));
        out += Outcome(setxattr(path.c_str(), "trusted.overlay.mine", "v", 1, 0));
        char list[256] = {};
        ssize_t n = listxattr(path.c_str(), list, sizeof(list));
        std::string names;
        for (ssize_t i = 0; i < n; i += static_cast<ssize_t>(strlen(list + i)) + 1) {
          names += std::string(list + i) + ",";
        }
        char value[16] = {};
        out += Outcome(static_cast<int>(getxattr(path.c_str(), "trusted.overlay.mine", value, 16)));
        return out + " names=" + names + " value=" + value;
      },
      "xattrs");
  // Stored escaped, as the kernel stores it.
  char value[4] = {};
  EXPECT_EQ(getxattr((lamina_upper() + "/keep").c_str(), "trusted.overlay.overlay.mine", value, 4),
            1);
}

// Removing a name a lower object lacks answers ENODATA and copies nothing
// up, as on the kernel (found by differential fuzzing: Lamina copied the
// object up first).
TEST_F(OverlaySemanticsTest, RemovingAnAbsentXattrCopiesNothingUp) {
  ExpectSame(
      [](const std::string& r) {
        std::string out;
        for (const char* name : {"/keep", "/deep/er", "/link"}) {
          out += Outcome(lremovexattr((r + name).c_str(), "user.absent")) + " ";
        }
        return out;
      },
      "removexattr of absent names");
  for (const std::string& upper : {lamina_upper(), kernel_upper()}) {
    EXPECT_EQ(ListDir(upper), (std::vector<std::string>{"a", "c"})) << upper;
  }
}

TEST_F(OverlaySemanticsTest, TruncateAndMetadataCopyUp) {
  ExpectSame(
      [](const std::string& r) {
        std::string out = Outcome(truncate((r + "/a/x").c_str(), 3));
        out += Outcome(chmod((r + "/keep").c_str(), 0640));
        struct timespec times[2] = {{100, 0}, {200, 0}};
        out += Outcome(utimensat(AT_FDCWD, (r + "/b").c_str(), times, 0));
        struct stat st;
        stat((r + "/b").c_str(), &st);
        return out + " mtime=" + std::to_string(st.st_mtim.tv_sec);
      },
      "truncate, chmod, utimens");
  ExpectSame(Tree, "tree after metadata changes");
}

TEST_F(OverlaySemanticsTest, SymlinksAndSpecialFiles) {
  ExpectSame(
      [](const std::string& r) {
        std::string out = Outcome(symlink("keep", (r + "/newlink").c_str()));
        out += Outcome(mkfifo((r + "/fifo").c_str(), 0600));
        out += Outcome(mknod((r + "/c").c_str(), S_IFREG | 0644, 0));  // over a whiteout
        char target[16] = {};
        out += Outcome(static_cast<int>(readlink((r + "/link").c_str(), target, sizeof(target))));
        return out + target + ReadFile(r + "/newlink");
      },
      "symlink, fifo, mknod over whiteout");
  ExpectSame(Tree, "tree after creating special files");
}

TEST_F(OverlaySemanticsTest, RmdirOfNonEmptyMergedDirectoryFails) {
  ExpectSame(
      [](const std::string& r) {
        std::string out = Outcome(rmdir((r + "/a").c_str()));
        out += Outcome(unlink((r + "/a/x").c_str())) + Outcome(unlink((r + "/a/y").c_str()));
        out += Outcome(unlink((r + "/a/shared").c_str()));
        out += Outcome(rmdir((r + "/a").c_str()));
        return out;
      },
      "rmdir of a merged directory");
  ExpectSame(Tree, "tree after rmdir");
}

TEST_F(OverlaySemanticsTest, UpperMountsUnderKernelWithTheSameView) {
  // Work through Lamina, then hand Lamina's layers to the kernel.
  std::string r = lamina_root();
  ASSERT_EQ(unlink((r + "/b").c_str()), 0);
  ASSERT_EQ(system(("rm -rf " + r + "/a").c_str()), 0);
  ASSERT_EQ(mkdir((r + "/a").c_str(), 0700), 0);
  WriteFile(r + "/a/again", "again");
  WriteFile(r + "/keep", "rewritten");
  ASSERT_EQ(rename((r + "/deep/er/est/file").c_str(), (r + "/file").c_str()), 0);
  ASSERT_EQ(symlink("file", (r + "/deep/ln").c_str()), 0);
  std::string lamina_view = DescribeTree(r);
  ASSERT_NO_FATAL_FAILURE(MountKernelOnLaminaLayers());
  EXPECT_EQ(DescribeTree(kernel_mnt_), lamina_view);
}

TEST_F(OverlaySemanticsTest, SparseCopyUpAllocatesOnlyData) {
  // A 1 GiB file with 4 KiB of data, appended to through the mount.
  UnmountLamina();
  UnmountKernel();
  ChangeLowers("a sparse file added", [&] {
    for (const std::string& lower : {lamina_lower(0), set_[1] + "/lower0"}) {
      int fd = open((lower + "/sparse").c_str(), O_CREAT | O_WRONLY, 0644);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(pwrite(fd, std::string(4096, 'x').data(), 4096, 512 << 20), 4096);
      ASSERT_EQ(ftruncate(fd, 1LL << 30), 0);
      close(fd);
    }
  });
  MountBoth();
  ExpectSame(
      [](const std::string& r) {
        int fd = open((r + "/sparse").c_str(), O_WRONLY | O_APPEND);
        std::string out = Outcome(fd) + Outcome(static_cast<int>(write(fd, "!", 1)));
        close(fd);
        struct stat st;
        stat((r + "/sparse").c_str(), &st);
        return out + " size=" + std::to_string(st.st_size);
      },
      "append to a sparse file");
  struct stat st;
  ASSERT_EQ(stat((lamina_upper() + "/sparse").c_str(), &st), 0);
  EXPECT_LT(st.st_blocks * 512, 1 << 20) << "copy-up allocated " << st.st_blocks * 512 << " bytes";
}

TEST_F(OverlaySemanticsTest, TmpfileLinksIntoTheView) {
  ExpectSame(
      [](const std::string& r) {
        int fd = open((r + "/a").c_str(), O_TMPFILE | O_RDWR, 0600);
        std::string out = Outcome(fd);
        if (fd < 0) return out;
        out += Outcome(static_cast<int>(write(fd, "anonymous", 9)));
        std::string proc = "/proc/self/fd/" + std::to_string(fd);
        out += Outcome(
            linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, (r + "/a/named").c_str(), AT_SYMLINK_FOLLOW));
        close(fd);
        return out + ReadFile(r + "/a/named");
      },
      "O_TMPFILE then linkat");
}

TEST_F(OverlaySemanticsTest, VolatileMountLeavesTheKernelsMarker) {
  UnmountLamina();
  OverlayOptions options;
  options.layers.lowers = {lamina_lower(0)};
  options.layers.upper = lamina_upper();
  options.layers.work = set_[0] + "/work";
  options.layers.volatile_mode = true;
  {
    auto fs = OverlayFs::Create(options);
    ASSERT_TRUE(fs.ok()) << fs.status().ToString();
  }
  struct stat st;
  EXPECT_EQ(stat((set_[0] + "/work/work/incompat/volatile").c_str(), &st), 0);
  options.layers.volatile_mode = false;
  auto refused = OverlayFs::Create(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().ToString().find("volatile"), std::string::npos);
}

TEST_F(OverlaySemanticsTest, ConcurrentCopyUpsOfOneFileHappenOnce) {
  // Eight threads race to append to the same lower file: one copy-up, and
  // every append lands exactly once.
  for (const std::string& root : {lamina_root(), kernel_root()}) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&root, t] {
        int fd = open((root + "/b").c_str(), O_WRONLY | O_APPEND);
        ASSERT_GE(fd, 0);
        std::string line = "line" + std::to_string(t) + "\n";
        ASSERT_EQ(write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
        close(fd);
      });
    }
    for (std::thread& t : threads) t.join();
  }
  ExpectSame(
      [](const std::string& r) {
        std::string data = ReadFile(r + "/b");
        std::vector<std::string> lines;
        size_t start = std::string("lower-b").size();
        for (size_t end; (end = data.find('\n', start)) != std::string::npos; start = end + 1) {
          lines.push_back(data.substr(start, end - start));
        }
        std::sort(lines.begin(), lines.end());
        std::string out = data.substr(0, 7);
        for (const std::string& l : lines) out += " " + l;
        return out;
      },
      "concurrent appends through copy-up");
  // No half-built copy was left in the staging area.
  EXPECT_TRUE(ListDir(set_[0] + "/work/work").empty());
}

TEST_F(OverlaySemanticsTest, ParallelCreatesAndDeletesInOneDirectory) {
  auto churn = [](const std::string& root) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&root, t] {
        for (int i = 0; i < 200; ++i) {
          std::string name = "t" + std::to_string(t) + "-" + std::to_string(i);
          WriteFile(root + "/a/" + name, name);
          if (i % 2 == 0) unlink((root + "/a/" + name).c_str());
        }
      });
    }
    for (std::thread& t : threads) t.join();
    return DescribeTree(root + "/a");
  };
  EXPECT_EQ(churn(lamina_root()).size(), churn(kernel_root()).size());
  ExpectSame(Tree, "tree after parallel churn");
}

class ReadOnlyOverlayTest : public OverlayPair {
 protected:
  // Two lowers: the kernel needs at least two without an upper.
  void SetUp() override { Mount({kUpper, kLower}, {}, /*with_upper=*/false); }
};

TEST_F(ReadOnlyOverlayTest, MergesLowersAndRefusesWrites) {
  ExpectSame(Tree, "read-only tree");
  ExpectSame(
      [](const std::string& r) {
        return Outcome(open((r + "/b").c_str(), O_WRONLY)) +
               Outcome(mkdir((r + "/n").c_str(), 0755)) + Outcome(unlink((r + "/b").c_str())) +
               Outcome(chmod((r + "/b").c_str(), 0600));
      },
      "writes to a read-only overlay");
}

}  // namespace
}  // namespace lamina::testing
