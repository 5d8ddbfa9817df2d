// The core served through a real mount: MemoryFilesystem mounted in-process
// with FuseServer, exercised with ordinary syscalls. Every test runs over
// /dev/fuse, over FUSE-over-io_uring, and with io_uring asked for but
// disabled in the kernel (the fallback).

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "integration/core/memfs_fixture.h"

namespace lamina::testing {
namespace {

INSTANTIATE_TEST_SUITE_P(Transports, MemfsMountTest,
                         ::testing::Values(Via::kDevFuse, Via::kIoUring, Via::kIoUringDisabled),
                         ViaName);

TEST_P(MemfsMountTest, ListsAndReadsSeededFiles) {
  EXPECT_TRUE(IsFuseMounted(mnt_));
  EXPECT_EQ(ListDir(mnt_), (std::vector<std::string>{"docs", "hello.txt"}));
  EXPECT_EQ(ReadFile(Path("hello.txt")), "hello\n");
  EXPECT_EQ(ReadFile(Path("docs/readme.md")), "# readme\n");
  struct stat st;
  ASSERT_EQ(stat(Path("hello.txt").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_size, 6);
  ASSERT_EQ(stat(Path("docs").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
}

TEST_P(MemfsMountTest, MissingNamesAreEnoent) {
  struct stat st;
  EXPECT_EQ(stat(Path("nope").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(open(Path("docs/nope").c_str(), O_RDONLY), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST_P(MemfsMountTest, CreateWriteReadTruncate) {
  int fd = open(Path("new.txt").c_str(), O_CREAT | O_RDWR | O_EXCL, 0640);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "abcdef", 6), 6);
  char buf[16] = {};
  ASSERT_EQ(pread(fd, buf, sizeof(buf), 2), 4);
  EXPECT_EQ(std::string(buf, 4), "cdef");
  ASSERT_EQ(ftruncate(fd, 3), 0);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 3);
  EXPECT_EQ(st.st_mode & 0777, 0640 & ~0022 & 0777);
  close(fd);
  EXPECT_EQ(ReadFile(Path("new.txt")), "abc");
  EXPECT_EQ(open(Path("new.txt").c_str(), O_CREAT | O_EXCL | O_RDWR, 0600), -1);
  EXPECT_EQ(errno, EEXIST);
}

TEST_P(MemfsMountTest, LargeWritesSpanSeveralRequests) {
  std::string data(3 * 1024 * 1024 + 123, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + (i * 7) % 26);
  WriteFile(Path("big"), data);
  EXPECT_EQ(ReadFile(Path("big")), data);
}

TEST_P(MemfsMountTest, MkdirRenameUnlinkRmdir) {
  ASSERT_EQ(mkdir(Path("d").c_str(), 0755), 0);
  WriteFile(Path("d/f"), "x");
  ASSERT_EQ(rename(Path("d/f").c_str(), Path("moved").c_str()), 0);
  EXPECT_EQ(ListDir(Path("d")), std::vector<std::string>{});
  EXPECT_EQ(ReadFile(Path("moved")), "x");
  EXPECT_EQ(rmdir(Path("docs").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  ASSERT_EQ(unlink(Path("moved").c_str()), 0);
  ASSERT_EQ(rmdir(Path("d").c_str()), 0);
  EXPECT_EQ(ListDir(mnt_), (std::vector<std::string>{"docs", "hello.txt"}));
}

TEST_P(MemfsMountTest, RenameFlags) {
  WriteFile(Path("a"), "A");
  WriteFile(Path("b"), "B");
  EXPECT_EQ(renameat2(AT_FDCWD, Path("a").c_str(), AT_FDCWD, Path("b").c_str(), RENAME_NOREPLACE),
            -1);
  EXPECT_EQ(errno, EEXIST);
  ASSERT_EQ(renameat2(AT_FDCWD, Path("a").c_str(), AT_FDCWD, Path("b").c_str(), RENAME_EXCHANGE),
            0);
  EXPECT_EQ(ReadFile(Path("a")), "B");
  EXPECT_EQ(ReadFile(Path("b")), "A");
}

TEST_P(MemfsMountTest, SymlinksAndHardLinks) {
  ASSERT_EQ(symlink("hello.txt", Path("link").c_str()), 0);
  char target[64] = {};
  ASSERT_EQ(readlink(Path("link").c_str(), target, sizeof(target)), 9);
  EXPECT_STREQ(target, "hello.txt");
  EXPECT_EQ(ReadFile(Path("link")), "hello\n");
  ASSERT_EQ(link(Path("hello.txt").c_str(), Path("hard").c_str()), 0);
  struct stat a, b;
  ASSERT_EQ(stat(Path("hello.txt").c_str(), &a), 0);
  ASSERT_EQ(stat(Path("hard").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(b.st_nlink, 2u);
}

TEST_P(MemfsMountTest, UnlinkedFileStaysReadableWhileOpen) {
  WriteFile(Path("tmp"), "still here");
  int fd = open(Path("tmp").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(unlink(Path("tmp").c_str()), 0);
  char buf[32] = {};
  EXPECT_EQ(pread(fd, buf, sizeof(buf), 0), 10);
  EXPECT_STREQ(buf, "still here");
  close(fd);
}

TEST_P(MemfsMountTest, ChmodAndUtimens) {
  ASSERT_EQ(chmod(Path("hello.txt").c_str(), 0600), 0);
  struct timespec times[2] = {{1000, 5}, {2000, 7}};
  ASSERT_EQ(utimensat(AT_FDCWD, Path("hello.txt").c_str(), times, 0), 0);
  struct stat st;
  ASSERT_EQ(stat(Path("hello.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_mtim.tv_sec, 2000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 7);
  EXPECT_EQ(st.st_atim.tv_sec, 1000);
}

TEST_P(MemfsMountTest, LargeDirectoryListsEveryEntryOnce) {
  // Enough entries to need several READDIRPLUS replies.
  ASSERT_EQ(mkdir(Path("many").c_str(), 0755), 0);
  std::vector<std::string> expected;
  for (int i = 0; i < 600; ++i) {
    std::string name = "entry-with-a-longish-name-" + std::to_string(1000 + i);
    WriteFile(Path("many/" + name), "");
    expected.push_back(name);
  }
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(ListDir(Path("many")), expected);
  // Stat everything: attributes came with READDIRPLUS, each name works.
  for (const std::string& name : expected) {
    struct stat st;
    ASSERT_EQ(stat(Path("many/" + name).c_str(), &st), 0) << name;
  }
}

TEST_P(MemfsMountTest, StatfsAnswers) {
  struct statvfs st;
  ASSERT_EQ(statvfs(mnt_.c_str(), &st), 0);
  EXPECT_EQ(st.f_bsize, 4096u);
  EXPECT_EQ(st.f_namemax, 255u);
}

TEST_P(MemfsMountTest, ConcurrentWritersInSeparateFiles) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      std::string name = Path("t" + std::to_string(t));
      for (int i = 0; i < 50; ++i)
        WriteFile(name, std::string(100 + i, static_cast<char>('a' + t)));
    });
  }
  for (auto& t : threads) t.join();
  for (int t = 0; t < 4; ++t) {
    EXPECT_EQ(ReadFile(Path("t" + std::to_string(t))),
              std::string(149, static_cast<char>('a' + t)));
  }
}

TEST_P(MemfsMountTest, StatsCountRequests) {
  EXPECT_EQ(ReadFile(Path("hello.txt")), "hello\n");
  // A request is counted just after its reply is sent, so allow a moment.
  EXPECT_TRUE(WaitUntil([&] { return server_->session().stats().Get(abi::kLookup).count > 0; },
                        std::chrono::seconds(5)));
  EXPECT_GT(server_->session().stats().Get(abi::kInit).count, 0u);
  EXPECT_NE(server_->session().stats().ToJson().find("\"LOOKUP\""), std::string::npos);
}

}  // namespace
}  // namespace lamina::testing
