// Confinement and credentials: the daemon never resolves a name outside the
// source, never follows a symlink for a namespace operation, and creates
// files as the calling user.

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/request_context.h"
#include "integration/passthrough/passthrough_fixture.h"

namespace lamina::testing {
namespace {

class PassthroughConfinementTest : public PassthroughTest {
 protected:
  void SetUp() override {
    PassthroughTest::SetUp();
    outside_ = outside_dir_.path();
    WriteFile(outside_ + "/secret", "host data");
    ASSERT_EQ(symlink("/", Src("escape").c_str()), 0);
    ASSERT_EQ(symlink("../../..", Src("up").c_str()), 0);
    ASSERT_EQ(symlink((outside_ + "/secret").c_str(), Src("abs").c_str()), 0);
    ASSERT_EQ(symlink(outside_.c_str(), Src("dirlink").c_str()), 0);
  }
  struct stat Secret() {
    struct stat st {};
    EXPECT_EQ(lstat((outside_ + "/secret").c_str(), &st), 0);
    return st;
  }

  TempDir outside_dir_{"lamina-outside"};
  std::string outside_;
};

TEST_P(PassthroughConfinementTest, ReadlinkReturnsTargetsUnchanged) {
  char buf[4096];
  for (auto [name, target] : {std::pair<std::string, std::string>{"escape", "/"},
                              {"up", "../../.."},
                              {"abs", outside_ + "/secret"},
                              {"dirlink", outside_}}) {
    ssize_t n = readlink(Mnt(name).c_str(), buf, sizeof(buf));
    ASSERT_GT(n, 0) << name;
    EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), target) << name;
  }
}

TEST_P(PassthroughConfinementTest, NamespaceOperationsNeverFollowSymlinks) {
  const struct stat before = Secret();
  int fd = open(Mnt("abs").c_str(), O_RDONLY | O_NOFOLLOW);
  EXPECT_EQ(fd, -1);
  EXPECT_EQ(errno, ELOOP);
  EXPECT_EQ(lchown(Mnt("abs").c_str(), 4321, 4321), 0);
  struct stat link_st {};
  ASSERT_EQ(lstat(Src("abs").c_str(), &link_st), 0);
  EXPECT_EQ(link_st.st_uid, 4321U);  // the link changed, not its target
  EXPECT_EQ(link(Mnt("abs").c_str(), Mnt("abs-hard").c_str()), 0);
  EXPECT_EQ(rename(Mnt("abs").c_str(), Mnt("abs2").c_str()), 0);
  EXPECT_EQ(lsetxattr(Mnt("abs2").c_str(), "user.x", "1", 1, 0), -1);
  EXPECT_EQ(errno, EPERM);  // user xattrs are refused on symlinks, not applied to targets
  EXPECT_EQ(unlink(Mnt("abs2").c_str()), 0);
  EXPECT_EQ(unlink(Mnt("abs-hard").c_str()), 0);
  EXPECT_EQ(rmdir(Mnt("dirlink").c_str()), -1);
  EXPECT_EQ(errno, ENOTDIR);
  const struct stat after = Secret();
  EXPECT_EQ(after.st_uid, before.st_uid);
  EXPECT_EQ(after.st_nlink, before.st_nlink);
  EXPECT_EQ(after.st_ctim.tv_sec, before.st_ctim.tv_sec);
  EXPECT_EQ(after.st_ctim.tv_nsec, before.st_ctim.tv_nsec);
  EXPECT_EQ(ReadFile(outside_ + "/secret"), "host data");
  EXPECT_EQ(ListDir(outside_), std::vector<std::string>{"secret"});
}

// Straight at the Filesystem interface, with requests a hostile or buggy
// client could craft: dot names and symlinks used as parent directories.
TEST_P(PassthroughConfinementTest, DaemonRefusesNamesOutsideTheSource) {
  PassthroughFs& fs = mount_->fs();
  RequestContext ctx;
  for (const char* name : {"..", ".", "a/b"}) {
    EXPECT_EQ(fs.Lookup(ctx, kRootNodeId, name).error(), EINVAL) << name;
    EXPECT_EQ(fs.Mkdir(ctx, kRootNodeId, name, 0755).error(), EINVAL) << name;
    EXPECT_EQ(fs.Unlink(ctx, kRootNodeId, name).error(), EINVAL) << name;
  }
  Result<Entry> link = fs.Lookup(ctx, kRootNodeId, "dirlink");
  ASSERT_TRUE(link.ok());
  ASSERT_NE(link->node, 0U);
  EXPECT_TRUE(S_ISLNK(link->attr.st_mode));
  EXPECT_EQ(fs.Mkdir(ctx, link->node, "x", 0755).error(), ENOTDIR);
  EXPECT_EQ(fs.Lookup(ctx, link->node, "secret").error(), ENOTDIR);
  EXPECT_EQ(fs.Create(ctx, link->node, "x", S_IFREG | 0644, OpenRequest{O_WRONLY}).error(),
            ENOTDIR);
  fs.Forget(link->node, 1);
  EXPECT_EQ(ListDir(outside_), std::vector<std::string>{"secret"});
}

INSTANTIATE_TEST_SUITE_P(passthrough, PassthroughConfinementTest, LAMINA_PASSTHROUGH_PARAMS,
                         ParamName);

// Runs `body` in a child process of uid and gid 1000 without supplementary
// groups and returns its exit code (`body`'s result; 100 if the switch
// failed, -1 if the child did not exit).
int RunAsUser1000(const std::function<int()>& body) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setresgid(1000, 1000, 1000) != 0 ||
        setresuid(1000, 1000, 1000) != 0) {
      _exit(100);
    }
    _exit(body());
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

class PassthroughCredentialsTest : public PassthroughTest {};

// A process of uid/gid 1000 creates files through a root daemon: they
// must belong to it, and a directory it may not write stays closed.
TEST_P(PassthroughCredentialsTest, CreatesAsTheCaller) {
  ASSERT_EQ(geteuid(), 0U) << "needs root";
  ASSERT_EQ(chmod(Src().c_str(), 0777), 0);
  ASSERT_EQ(mkdir(Src("rootonly").c_str(), 0755), 0);
  const std::string file = Mnt("user-file"), dir = Mnt("user-dir"), link = Mnt("user-link"),
                    fifo = Mnt("user-fifo"), denied = Mnt("rootonly/nope"),
                    tmpdir = Mnt("user-dir");
  EXPECT_EQ(RunAsUser1000([&] {
              int code = 0;
              int fd = open(file.c_str(), O_CREAT | O_WRONLY, 0644);
              if (fd < 0) code |= 1;
              close(fd);
              if (mkdir(dir.c_str(), 0755) != 0) code |= 2;
              if (symlink("target", link.c_str()) != 0) code |= 4;
              if (mkfifo(fifo.c_str(), 0600) != 0) code |= 8;
              if (open(denied.c_str(), O_CREAT | O_WRONLY, 0644) >= 0 || errno != EACCES)
                code |= 16;
              int tmp = open(tmpdir.c_str(), O_TMPFILE | O_RDWR, 0600);
              if (tmp < 0) code |= 32;
              return code;
            }),
            0);
  for (const char* name : {"user-file", "user-dir", "user-link", "user-fifo"}) {
    struct stat st {};
    ASSERT_EQ(lstat(Src(name).c_str(), &st), 0) << name;
    EXPECT_EQ(st.st_uid, 1000U) << name;
    EXPECT_EQ(st.st_gid, 1000U) << name;
  }
  // The daemon's own identity is back after each request.
  WriteFile(Mnt("root-file"), "");
  struct stat st {};
  ASSERT_EQ(lstat(Src("root-file").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0U);
}

// An unprivileged write drops set-user-ID, in both I/O modes (with kernel
// passthrough the backing write runs with the daemon's CAP_FSETID, so such
// opens must be served by the daemon).
TEST_P(PassthroughCredentialsTest, UnprivilegedWriteClearsSetuid) {
  WriteFile(Src("suid"), "x");
  ASSERT_EQ(chmod(Src("suid").c_str(), 04777), 0);
  const std::string path = Mnt("suid");
  EXPECT_EQ(RunAsUser1000([&] {
              int fd = open(path.c_str(), O_WRONLY | O_APPEND);
              return fd >= 0 && write(fd, "y", 1) == 1 ? 0 : 1;
            }),
            0);
  struct stat st {};
  ASSERT_EQ(stat(Src("suid").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0777U);
  EXPECT_EQ(ReadFile(Src("suid")), "xy");
}

// Truncating (truncate(2), or O_TRUNC) as an unprivileged user drops
// set-user-ID and set-group-ID as on the plain twin.
TEST_P(PassthroughCredentialsTest, UnprivilegedTruncateClearsSetuidAndSetgid) {
  for (const std::string& base : {Src(), Twin()}) {
    for (const char* name : {"/by-truncate", "/by-open"}) {
      WriteFile(base + name, "xyz");
      ASSERT_EQ(chmod((base + name).c_str(), 06777), 0);
    }
  }
  const std::vector<std::string> bases = {Mnt(), Twin()};
  ASSERT_EQ(RunAsUser1000([&] {
              int code = 0;
              for (const std::string& base : bases) {
                if (truncate((base + "/by-truncate").c_str(), 1) != 0) code |= 1;
                int fd = open((base + "/by-open").c_str(), O_WRONLY | O_TRUNC);
                if (fd < 0) code |= 2;
                close(fd);
              }
              return code;
            }),
            0);
  for (const char* name : {"by-truncate", "by-open"}) {
    struct stat made {
    }, plain{};
    ASSERT_EQ(stat(Src(name).c_str(), &made), 0);
    ASSERT_EQ(stat(Twin(name).c_str(), &plain), 0);
    EXPECT_EQ(made.st_mode, plain.st_mode) << name;
    EXPECT_EQ(made.st_mode & 07777, 0777U) << name;
    EXPECT_EQ(made.st_size, plain.st_size) << name;
  }
}

// A default ACL granting user::rwx, group::rwx, other::--- in the kernel's
// xattr form (version 2; entries sorted by tag).
std::string DefaultAclUserGroupOnly() {
  struct Entry {
    uint16_t tag, perm;
    uint32_t id;
  };
  constexpr uint32_t kVersion = 2, kUndefinedId = ~0U;
  const Entry entries[] = {
      {0x01, 7, kUndefinedId}, {0x04, 7, kUndefinedId}, {0x20, 0, kUndefinedId}};
  std::string acl(reinterpret_cast<const char*>(&kVersion), sizeof kVersion);
  acl.append(reinterpret_cast<const char*>(entries), sizeof entries);
  return acl;
}

// What a caller makes in a setgid directory and under a default ACL is what
// the same caller makes in the plain twin directory: owner, group, mode
// (the ACL, not the umask, masks it) and the inherited ACL.
TEST_P(PassthroughCredentialsTest, SetgidDirectoriesAndDefaultAclsActAsForTheCaller) {
  ASSERT_EQ(geteuid(), 0U) << "needs root";
  const std::string acl = DefaultAclUserGroupOnly();
  for (const std::string& base : {Src(), Twin()}) {
    ASSERT_EQ(chmod(base.c_str(), 0777), 0);
    ASSERT_EQ(mkdir((base + "/sgid").c_str(), 0777), 0);
    ASSERT_EQ(chown((base + "/sgid").c_str(), 0, 4321), 0);
    ASSERT_EQ(chmod((base + "/sgid").c_str(), 02777), 0);
    ASSERT_EQ(mkdir((base + "/acl").c_str(), 0777), 0);
    ASSERT_EQ(chmod((base + "/acl").c_str(), 0777), 0);
    if (setxattr((base + "/acl").c_str(), "system.posix_acl_default", acl.data(), acl.size(), 0) !=
        0) {
      GTEST_SKIP() << "the source filesystem takes no ACLs: " << strerror(errno);
    }
  }
  const std::vector<std::string> bases = {Mnt(), Twin()};
  ASSERT_EQ(RunAsUser1000([&] {
              umask(022);
              int code = 0;
              for (const std::string& base : bases) {
                for (const char* dir : {"/sgid", "/acl"}) {
                  int fd = open((base + dir + "/file").c_str(), O_CREAT | O_WRONLY, 0666);
                  if (fd < 0) code |= 1;
                  close(fd);
                  if (mkdir((base + dir + "/dir").c_str(), 0777) != 0) code |= 2;
                  if (mkfifo((base + dir + "/fifo").c_str(), 0666) != 0) code |= 4;
                }
              }
              return code;
            }),
            0);
  for (const char* name :
       {"sgid/file", "sgid/dir", "sgid/fifo", "acl/file", "acl/dir", "acl/fifo"}) {
    struct stat made {
    }, plain{};
    ASSERT_EQ(lstat(Src(name).c_str(), &made), 0) << name;
    ASSERT_EQ(lstat(Twin(name).c_str(), &plain), 0) << name;
    EXPECT_EQ(made.st_uid, plain.st_uid) << name;
    EXPECT_EQ(made.st_gid, plain.st_gid) << name;
    EXPECT_EQ(made.st_mode, plain.st_mode) << name;
  }
  // The kernel's rules, spelled out: the setgid directory's group and bit
  // are inherited, and the ACL (0660/0770), not the umask (0644/0755), masks.
  struct stat st {};
  ASSERT_EQ(lstat(Src("sgid/file").c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, 4321U);
  ASSERT_EQ(lstat(Src("sgid/dir").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 02755U);
  ASSERT_EQ(lstat(Src("acl/file").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660U);
  ASSERT_EQ(lstat(Src("acl/dir").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0770U);
  char inherited[64];
  ssize_t n =
      getxattr(Src("acl/dir").c_str(), "system.posix_acl_default", inherited, sizeof inherited);
  ASSERT_GT(n, 0) << strerror(errno);
  EXPECT_EQ(std::string(inherited, static_cast<size_t>(n)), acl);
}

INSTANTIATE_TEST_SUITE_P(passthrough, PassthroughCredentialsTest, LAMINA_PASSTHROUGH_PARAMS,
                         ParamName);

}  // namespace
}  // namespace lamina::testing
