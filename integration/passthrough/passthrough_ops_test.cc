// Each operation through the mount against the same operation on a plain
// directory: results, errno and the resulting metadata.

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>

#include "integration/passthrough/passthrough_fixture.h"

namespace lamina::testing {
namespace {

class PassthroughOpsTest : public PassthroughTest {};

struct stat Lstat(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path << ": " << strerror(errno);
  return st;
}

void ExpectSameMetadata(const struct stat& a, const struct stat& b) {
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_mode, b.st_mode);
  EXPECT_EQ(a.st_nlink, b.st_nlink);
  EXPECT_EQ(a.st_uid, b.st_uid);
  EXPECT_EQ(a.st_gid, b.st_gid);
  EXPECT_EQ(a.st_size, b.st_size);
  EXPECT_EQ(a.st_mtim.tv_sec, b.st_mtim.tv_sec);
  EXPECT_EQ(a.st_mtim.tv_nsec, b.st_mtim.tv_nsec);
}

TEST_P(PassthroughOpsTest, WrittenDataReachesSourceAndReadsBack) {
  WriteFile(Mnt("f"), "through the mount");
  EXPECT_EQ(ReadFile(Src("f")), "through the mount");
  WriteFile(Src("g"), "from the source");
  EXPECT_EQ(ReadFile(Mnt("g")), "from the source");
  ExpectSameMetadata(Lstat(Mnt("f")), Lstat(Src("f")));
  if (GetParam().mode != PassthroughMode::kOff) {
    EXPECT_TRUE(mount_->fs().passthrough_active()) << "kernel passthrough did not engage";
  }
}

TEST_P(PassthroughOpsTest, NamespaceOperationsMatchPlainDirectory) {
  for (const std::string& root : {Mnt(), Twin()}) {
    ASSERT_EQ(mkdir((root + "/d").c_str(), 0750), 0);
    WriteFile(root + "/d/file", "x");
    WriteFile(root + "/other", "y");
    ASSERT_EQ(mkdir((root + "/empty").c_str(), 0700), 0);
  }
  auto at = [](const std::string& r, const char* rel) { return r + "/" + rel; };
  ExpectSame([&](auto& r) { return mkdir(at(r, "d").c_str(), 0755); });                // EEXIST
  ExpectSame([&](auto& r) { return rmdir(at(r, "d").c_str()); });                      // ENOTEMPTY
  ExpectSame([&](auto& r) { return unlink(at(r, "d").c_str()); });                     // EISDIR
  ExpectSame([&](auto& r) { return rmdir(at(r, "other").c_str()); });                  // ENOTDIR
  ExpectSame([&](auto& r) { return open(at(r, "missing").c_str(), O_RDONLY); });       // ENOENT
  ExpectSame([&](auto& r) { return link(at(r, "d").c_str(), at(r, "dl").c_str()); });  // EPERM
  ExpectSame([&](auto& r) {
    return renameat2(AT_FDCWD, at(r, "other").c_str(), AT_FDCWD, at(r, "d/file").c_str(),
                     RENAME_NOREPLACE);  // EEXIST
  });
  ExpectSame([&](auto& r) {
    return renameat2(AT_FDCWD, at(r, "other").c_str(), AT_FDCWD, at(r, "d/file").c_str(),
                     RENAME_EXCHANGE);
  });
  EXPECT_EQ(ReadFile(Mnt("other")), "x");
  EXPECT_EQ(ReadFile(Mnt("d/file")), "y");
  ExpectSame([&](auto& r) { return rename(at(r, "other").c_str(), at(r, "empty").c_str()); });
  ExpectSame([&](auto& r) { return rename(at(r, "empty").c_str(), at(r, "d2").c_str()); });
  ExpectSame([&](auto& r) { return link(at(r, "other").c_str(), at(r, "d2/hard").c_str()); });
  EXPECT_EQ(Lstat(Mnt("other")).st_nlink, 2U);
  EXPECT_EQ(Lstat(Src("d2/hard")).st_ino, Lstat(Src("other")).st_ino);
  ExpectSame([&](auto& r) { return unlink(at(r, "other").c_str()); });
  ExpectSame([&](auto& r) { return rmdir(at(r, "d2").c_str()); });  // ENOTEMPTY
  EXPECT_EQ(ListDir(Src()), ListDir(Twin()));
  EXPECT_EQ(ListDir(Mnt()), ListDir(Src()));
}

TEST_P(PassthroughOpsTest, SymlinksAndSpecialFiles) {
  ASSERT_EQ(symlink("../some/where", Mnt("link").c_str()), 0);
  char buf[64] = {};
  ASSERT_EQ(readlink(Mnt("link").c_str(), buf, sizeof(buf)), 13);
  EXPECT_STREQ(buf, "../some/where");
  EXPECT_TRUE(S_ISLNK(Lstat(Src("link")).st_mode));
  ASSERT_EQ(mkfifo(Mnt("fifo").c_str(), 0640), 0);
  EXPECT_TRUE(S_ISFIFO(Lstat(Src("fifo")).st_mode));
  EXPECT_EQ(Lstat(Src("fifo")).st_mode & 07777, 0640U & ~022U);
  ASSERT_EQ(mknod(Mnt("null").c_str(), S_IFCHR | 0600, makedev(1, 3)), 0);
  EXPECT_EQ(Lstat(Src("null")).st_rdev, makedev(1, 3));
  ExpectSameMetadata(Lstat(Mnt("link")), Lstat(Src("link")));
  ExpectSameMetadata(Lstat(Mnt("null")), Lstat(Src("null")));
  ASSERT_EQ(mknod(Mnt("loop").c_str(), S_IFBLK | 0660, makedev(7, 0)), 0);
  EXPECT_TRUE(S_ISBLK(Lstat(Src("loop")).st_mode));
  EXPECT_EQ(Lstat(Src("loop")).st_rdev, makedev(7, 0));
  ASSERT_EQ(mknod(Mnt("sock").c_str(), S_IFSOCK | 0600, 0), 0);
  EXPECT_TRUE(S_ISSOCK(Lstat(Src("sock")).st_mode));
  ExpectSameMetadata(Lstat(Mnt("loop")), Lstat(Src("loop")));
  ExpectSameMetadata(Lstat(Mnt("sock")), Lstat(Src("sock")));
  // An existing name fails as it would on the plain directory.
  EXPECT_EQ(Call(mknod(Mnt("sock").c_str(), S_IFIFO | 0600, 0)), (Outcome{-1, EEXIST}));
}

TEST_P(PassthroughOpsTest, UmaskAppliedOnceOnCreate) {
  umask(027);
  int fd = open(Mnt("masked").c_str(), O_CREAT | O_WRONLY, 0666);
  ASSERT_GE(fd, 0);
  close(fd);
  ASSERT_EQ(mkdir(Mnt("maskdir").c_str(), 0777), 0);
  EXPECT_EQ(Lstat(Src("masked")).st_mode & 07777, 0640U);
  EXPECT_EQ(Lstat(Src("maskdir")).st_mode & 07777, 0750U);
  umask(022);
}

TEST_P(PassthroughOpsTest, SetattrModeOwnerSizeTimes) {
  WriteFile(Mnt("f"), "0123456789");
  ASSERT_EQ(chmod(Mnt("f").c_str(), 04711), 0);
  ASSERT_EQ(chown(Mnt("f").c_str(), 1234, 5678), 0);
  ASSERT_EQ(truncate(Mnt("f").c_str(), 4), 0);
  struct timespec times[2] = {{1000, 5}, {0, UTIME_OMIT}};
  ASSERT_EQ(utimensat(AT_FDCWD, Mnt("f").c_str(), times, 0), 0);
  struct stat st = Lstat(Src("f"));
  EXPECT_EQ(st.st_uid, 1234U);
  EXPECT_EQ(st.st_gid, 5678U);
  EXPECT_EQ(st.st_size, 4);
  EXPECT_EQ(st.st_atim.tv_sec, 1000);
  EXPECT_EQ(st.st_atim.tv_nsec, 5);
  ExpectSameMetadata(Lstat(Mnt("f")), st);
  int fd = open(Mnt("f").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(ftruncate(fd, 100), 0);
  close(fd);
  EXPECT_EQ(Lstat(Src("f")).st_size, 100);
}

TEST_P(PassthroughOpsTest, StatxReturnsBirthTime) {
  WriteFile(Mnt("f"), "x");
  struct statx mounted {
  }, plain{};
  ASSERT_EQ(statx(AT_FDCWD, Mnt("f").c_str(), 0, STATX_ALL, &mounted), 0);
  ASSERT_EQ(statx(AT_FDCWD, Src("f").c_str(), 0, STATX_ALL, &plain), 0);
  EXPECT_EQ(mounted.stx_mask & STATX_BTIME, plain.stx_mask & STATX_BTIME);
  EXPECT_EQ(mounted.stx_btime.tv_sec, plain.stx_btime.tv_sec);
  EXPECT_EQ(mounted.stx_btime.tv_nsec, plain.stx_btime.tv_nsec);
}

TEST_P(PassthroughOpsTest, ExtendedAttributes) {
  WriteFile(Mnt("f"), "x");
  WriteFile(Twin("f"), "x");
  ExpectSame([](auto& r) { return setxattr((r + "/f").c_str(), "user.k", "v1", 2, 0); });
  ExpectSame([](auto& r) {
    return setxattr((r + "/f").c_str(), "user.k", "v2", 2, XATTR_CREATE);  // EEXIST
  });
  ExpectSame([](auto& r) {
    return setxattr((r + "/f").c_str(), "user.n", "v", 1, XATTR_REPLACE);  // ENODATA
  });
  char value[16] = {};
  EXPECT_EQ(getxattr(Mnt("f").c_str(), "user.k", value, sizeof(value)), 2);
  EXPECT_STREQ(value, "v1");
  EXPECT_EQ(getxattr(Mnt("f").c_str(), "user.k", value, 1), -1);
  EXPECT_EQ(errno, ERANGE);
  char list[64];
  ssize_t n = listxattr(Mnt("f").c_str(), list, sizeof(list));
  EXPECT_EQ(std::string(list, n > 0 ? static_cast<size_t>(n) : 0), std::string("user.k\0", 7));
  ExpectSame([](auto& r) { return removexattr((r + "/f").c_str(), "user.k"); });
  ExpectSame([](auto& r) { return removexattr((r + "/f").c_str(), "user.k"); });  // ENODATA
}

// Reads `skip` entries of `path`, remembers the position, reads to the end,
// seeks back: the next entry is the one that followed the position.
void ExpectSeekdirReturnsTo(const std::string& path, int skip) {
  DIR* dir = opendir(path.c_str());
  ASSERT_NE(dir, nullptr);
  for (int i = 0; i < skip; ++i) ASSERT_NE(readdir(dir), nullptr);
  long pos = telldir(dir);
  std::string expected = readdir(dir)->d_name;
  while (readdir(dir) != nullptr) {
  }
  seekdir(dir, pos);
  struct dirent* again = readdir(dir);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(expected, again->d_name);
  closedir(dir);
}

TEST_P(PassthroughOpsTest, ReaddirListsAndSeeks) {
  for (int i = 0; i < 500; ++i) WriteFile(Src("file-with-a-long-name-" + std::to_string(i)), "");
  EXPECT_EQ(ListDir(Mnt()), ListDir(Src()));
  ExpectSeekdirReturnsTo(Mnt(), 200);
}

TEST_P(PassthroughOpsTest, TmpfileCanBeLinkedIn) {
  int fd = open(Mnt().c_str(), O_TMPFILE | O_RDWR, 0600);
  ASSERT_GE(fd, 0) << strerror(errno);
  ASSERT_EQ(write(fd, "tmp", 3), 3);
  std::string proc = "/proc/self/fd/" + std::to_string(fd);
  ASSERT_EQ(linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, Mnt("named").c_str(), AT_SYMLINK_FOLLOW), 0)
      << strerror(errno);
  close(fd);
  EXPECT_EQ(ReadFile(Src("named")), "tmp");
}

TEST_P(PassthroughOpsTest, FallocateAndSeekDataHole) {
  const std::string data(1 << 20, 'x');
  std::vector<Outcome> seen[2];
  for (const std::string& root : {Mnt(), Twin()}) {
    std::vector<Outcome>& out = seen[root == Mnt() ? 0 : 1];
    int fd = open((root + "/sparse").c_str(), O_CREAT | O_RDWR, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
    ASSERT_EQ(fsync(fd), 0);
    out.push_back(Call(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 512 * 1024)));
    out.push_back(Call(fallocate(fd, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20)));
    // (COLLAPSE/INSERT_RANGE never reach a FUSE server: the kernel's FUSE
    // client refuses them with EOPNOTSUPP.)
    out.push_back(Call(fallocate(fd, FALLOC_FL_ZERO_RANGE, 700 * 1024, 8192)));
    out.push_back(Call(lseek(fd, 0, SEEK_DATA)));
    out.push_back(Call(lseek(fd, 0, SEEK_HOLE)));
    out.push_back(Call(lseek(fd, 600 * 1024, SEEK_HOLE)));
    out.push_back(Call(lseek(fd, 4 << 20, SEEK_DATA)));  // ENXIO
    close(fd);
  }
  EXPECT_EQ(seen[0], seen[1]);
  EXPECT_EQ(Lstat(Src("sparse")).st_size, Lstat(Twin("sparse")).st_size);
  EXPECT_EQ(Lstat(Src("sparse")).st_blocks, Lstat(Mnt("sparse")).st_blocks);
}

TEST_P(PassthroughOpsTest, CopyFileRange) {
  WriteFile(Mnt("a"), std::string(100000, 'a'));
  int in = open(Mnt("a").c_str(), O_RDONLY);
  int out = open(Mnt("b").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(in, 0);
  ASSERT_GE(out, 0);
  loff_t off_in = 10, off_out = 0;
  EXPECT_EQ(copy_file_range(in, &off_in, out, &off_out, 50000, 0), 50000);
  close(in);
  close(out);
  EXPECT_EQ(ReadFile(Src("b")), std::string(50000, 'a'));
}

TEST_P(PassthroughOpsTest, FlockConflictsBetweenOpens) {
  WriteFile(Mnt("lock"), "");
  int a = open(Mnt("lock").c_str(), O_RDWR);
  int b = open(Mnt("lock").c_str(), O_RDWR);
  ASSERT_EQ(flock(a, LOCK_EX | LOCK_NB), 0);
  EXPECT_EQ(flock(b, LOCK_EX | LOCK_NB), -1);
  EXPECT_EQ(errno, EWOULDBLOCK);
  // The kernel keeps the lock for the mount (as kernel overlayfs does): a
  // waiter must never block a daemon worker (laminafs_flock_test.cc). Taken
  // on the source directly, the same file is not locked.
  int c = open(Src("lock").c_str(), O_RDWR);
  EXPECT_EQ(flock(c, LOCK_SH | LOCK_NB), 0);
  ASSERT_EQ(flock(c, LOCK_UN), 0);
  ASSERT_EQ(flock(a, LOCK_UN), 0);
  EXPECT_EQ(flock(b, LOCK_EX | LOCK_NB), 0);
  close(a);
  close(b);
  close(c);
}

struct flock LockRange(short type, off_t start, off_t len) {
  struct flock lock {};
  lock.l_type = type;
  lock.l_whence = SEEK_SET;
  lock.l_start = start;
  lock.l_len = len;
  return lock;
}

// POSIX record locks are kept by the kernel for the mount (FUSE_POSIX_LOCKS
// is not negotiated): they must still conflict between processes, be
// reported by F_GETLK, and follow OFD semantics between two opens.
TEST_P(PassthroughOpsTest, PosixRecordLocksConflictBetweenProcesses) {
  WriteFile(Mnt("records"), std::string(100, 'r'));
  int fd = open(Mnt("records").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  struct flock lock = LockRange(F_WRLCK, 0, 10);
  ASSERT_EQ(fcntl(fd, F_SETLK, &lock), 0) << strerror(errno);
  const std::string path = Mnt("records");
  const pid_t parent = getpid();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int code = 0;
    int own = open(path.c_str(), O_RDWR);
    struct flock want = LockRange(F_RDLCK, 5, 10);
    if (fcntl(own, F_SETLK, &want) == 0 || (errno != EAGAIN && errno != EACCES)) code |= 1;
    struct flock probe = want;
    if (fcntl(own, F_GETLK, &probe) != 0 || probe.l_type != F_WRLCK || probe.l_pid != parent ||
        probe.l_start != 0 || probe.l_len != 10) {
      code |= 2;
    }
    want.l_start = 10;  // just past the parent's range
    if (fcntl(own, F_SETLK, &want) != 0) code |= 4;
    _exit(code);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);

  // Open file description locks: two opens of one process conflict.
  int a = open(Mnt("records").c_str(), O_RDWR);
  int b = open(Mnt("records").c_str(), O_RDWR);
  struct flock ofd = LockRange(F_WRLCK, 50, 10);
  ASSERT_EQ(fcntl(a, F_OFD_SETLK, &ofd), 0) << strerror(errno);
  EXPECT_EQ(Call(fcntl(b, F_OFD_SETLK, &ofd)), (Outcome{-1, EAGAIN}));
  ofd.l_type = F_UNLCK;
  ASSERT_EQ(fcntl(a, F_OFD_SETLK, &ofd), 0);
  ofd.l_type = F_WRLCK;
  EXPECT_EQ(fcntl(b, F_OFD_SETLK, &ofd), 0);
  close(a);
  close(b);
  close(fd);
}

TEST_P(PassthroughOpsTest, InodeFlagsIoctl) {
  WriteFile(Mnt("f"), "x");
  int fd = open(Mnt("f").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  int flags = 0;
  ASSERT_EQ(ioctl(fd, FS_IOC_GETFLAGS, &flags), 0) << strerror(errno);
  int with_noatime = flags | FS_NOATIME_FL;
  ASSERT_EQ(ioctl(fd, FS_IOC_SETFLAGS, &with_noatime), 0) << strerror(errno);
  int plain = open(Src("f").c_str(), O_RDONLY);
  int seen = 0;
  ASSERT_EQ(ioctl(plain, FS_IOC_GETFLAGS, &seen), 0);
  EXPECT_NE(seen & FS_NOATIME_FL, 0);
  struct fsxattr attr {};
  EXPECT_EQ(ioctl(fd, FS_IOC_FSGETXATTR, &attr), 0) << strerror(errno);
  EXPECT_NE(attr.fsx_xflags & FS_XFLAG_NOATIME, 0U);
  // FSSETXATTR reaches the backing inode: clearing the flag that way is
  // seen by GETFLAGS on the plain file.
  attr.fsx_xflags &= ~FS_XFLAG_NOATIME;
  ASSERT_EQ(ioctl(fd, FS_IOC_FSSETXATTR, &attr), 0) << strerror(errno);
  ASSERT_EQ(ioctl(plain, FS_IOC_GETFLAGS, &seen), 0);
  EXPECT_EQ(seen & FS_NOATIME_FL, 0);
  struct fsxattr plain_attr {};
  ASSERT_EQ(ioctl(plain, FS_IOC_FSGETXATTR, &plain_attr), 0);
  EXPECT_EQ(plain_attr.fsx_xflags, attr.fsx_xflags);
  close(plain);
  close(fd);
}

TEST_P(PassthroughOpsTest, StatfsAndAccess) {
  struct statvfs mounted {
  }, plain{};
  ASSERT_EQ(statvfs(Mnt().c_str(), &mounted), 0);
  ASSERT_EQ(statvfs(Src().c_str(), &plain), 0);
  EXPECT_EQ(mounted.f_blocks, plain.f_blocks);
  EXPECT_EQ(mounted.f_bsize, plain.f_bsize);
  WriteFile(Mnt("noexec"), "");
  EXPECT_EQ(access(Mnt("noexec").c_str(), R_OK | W_OK), 0);
  EXPECT_EQ(access(Mnt("noexec").c_str(), X_OK), -1);
  EXPECT_EQ(errno, EACCES);
}

INSTANTIATE_TEST_SUITE_P(passthrough, PassthroughOpsTest, LAMINA_PASSTHROUGH_PARAMS, ParamName);

// With caching on, a failed lookup is remembered: a name created behind
// the mount's back stays invisible until the negative entry expires.
class PassthroughCachingTest : public PassthroughTest {
 protected:
  double Timeout() const override { return 3600; }
};

TEST_P(PassthroughCachingTest, NegativeLookupIsCached) {
  struct stat st;
  EXPECT_EQ(stat(Mnt("later").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  WriteFile(Src("later"), "");
  EXPECT_EQ(stat(Mnt("later").c_str(), &st), -1);
  // Creating through the mount replaces the negative entry.
  WriteFile(Mnt("now"), "");
  EXPECT_EQ(stat(Mnt("now").c_str(), &st), 0);
}

// With caching on, OPENDIR answers ENOSYS and the kernel keeps listings:
// reading a directory again costs no request, a change through the mount
// shows at once, and a listing read in pieces still seeks.
TEST_P(PassthroughCachingTest, ListingsAreCachedByTheKernel) {
  for (int i = 0; i < 500; ++i) WriteFile(Src("file-with-a-long-name-" + std::to_string(i)), "");
  const Stats& stats = mount_->server().session().stats();
  // The kernel resets a directory's cached listing when it sees a new
  // mtime; the files above were made behind its back, so let it list once
  // and refresh the directory's attributes (a listing marks its atime
  // stale, so stat() asks) before counting.
  ListDir(Mnt());
  struct stat st;
  ASSERT_EQ(stat(Mnt().c_str(), &st), 0);
  std::vector<std::string> first = ListDir(Mnt());
  ASSERT_EQ(stat(Mnt().c_str(), &st), 0);
  EXPECT_EQ(first, ListDir(Src()));
  const uint64_t reads = stats.Get(abi::kReaddir).count + stats.Get(abi::kReaddirplus).count;
  const uint64_t opens = stats.Get(abi::kOpendir).count;  // answered ENOSYS
  EXPECT_GT(reads, 0u);
  EXPECT_EQ(ListDir(Mnt()), first);
  EXPECT_EQ(stats.Get(abi::kReaddir).count + stats.Get(abi::kReaddirplus).count, reads);
  EXPECT_EQ(stats.Get(abi::kOpendir).count, opens);

  WriteFile(Mnt("made-through-the-mount"), "");
  ASSERT_EQ(unlink(Mnt("file-with-a-long-name-7").c_str()), 0);
  EXPECT_EQ(ListDir(Mnt()), ListDir(Src()));

  ExpectSeekdirReturnsTo(Mnt(), 200);

  // fsync of a directory opened without a handle reaches the source.
  int fd = open(Mnt().c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(fsync(fd), 0) << strerror(errno);
  close(fd);
}

INSTANTIATE_TEST_SUITE_P(passthrough, PassthroughCachingTest, LAMINA_PASSTHROUGH_PARAMS, ParamName);

}  // namespace
}  // namespace lamina::testing
