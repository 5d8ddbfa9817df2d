// Bounded descriptors: walking a tree much larger than max_nodes through
// the mount keeps the daemon's descriptors near max_nodes (least recently
// used nodes are parked, keeping a file handle, or else offered to the
// kernel to forget), and every file stays reachable and correct while
// nodes come and go.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "integration/passthrough/passthrough_fixture.h"

namespace lamina::testing {
namespace {

using Clock = std::chrono::steady_clock;

// The tree: kTop directories of kSub directories of `files_per_dir` files.
constexpr int kTop = 10;
constexpr int kSub = 10;

std::string FileName(int i) {
  return "file" + std::to_string(i);
}

void MakeTree(const std::string& root, int files_per_dir) {
  for (int t = 0; t < kTop; ++t) {
    std::string top = root + "/d" + std::to_string(t);
    ASSERT_EQ(mkdir(top.c_str(), 0755), 0);
    for (int s = 0; s < kSub; ++s) {
      std::string sub = top + "/s" + std::to_string(s);
      ASSERT_EQ(mkdir(sub.c_str(), 0755), 0);
      for (int f = 0; f < files_per_dir; ++f) {
        std::string path = sub + "/" + FileName(f);
        int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        ASSERT_GE(fd, 0) << path;
        // Contents name the file, so a node mixed up with another shows.
        ASSERT_EQ(write(fd, path.data(), path.size()), static_cast<ssize_t>(path.size()));
        close(fd);
      }
    }
  }
}

struct WalkResult {
  int checked = 0;     // entries whose attributes matched the source's
  int mismatched = 0;  // failed lstat, or attributes or contents differing
  int peak_fds = 0;    // most descriptors this process had open meanwhile
  size_t peak_nodes = 0;
  double seconds = 0;
};

// Like `find -exec stat`: lists every directory under `mnt` and lstats
// every entry, comparing inode number, size and type with the same path
// under `source`, and reads one file in 50. Two threads share the top
// directories, so lookups, prunes and forgets run concurrently.
class Walker {
 public:
  Walker(std::string mnt, std::string source, const PassthroughFs& fs)
      : mnt_(std::move(mnt)), source_(std::move(source)), fs_(fs) {}

  WalkResult Run() {
    WalkResult result;
    std::atomic<bool> done{false};
    std::thread sampler([&] {
      while (!done.load()) {
        result.peak_fds = std::max(result.peak_fds, CountFds(getpid()));
        result.peak_nodes = std::max(result.peak_nodes, fs_.node_count());
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
    const Clock::time_point start = Clock::now();
    std::vector<std::thread> threads;
    for (int w = 0; w < 2; ++w) {
      threads.emplace_back([this, w] {
        for (int t = w; t < kTop; t += 2) Visit("d" + std::to_string(t));
      });
    }
    for (std::thread& thread : threads) thread.join();
    result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    done = true;
    sampler.join();
    result.checked = checked_.load();
    result.mismatched = mismatched_.load();
    return result;
  }

 private:
  void Visit(const std::string& rel) {
    Check(rel);
    const std::string dir_path = mnt_ + "/" + rel;
    DIR* dir = opendir(dir_path.c_str());
    if (dir == nullptr) {
      ++mismatched_;
      return;
    }
    std::vector<std::string> subdirs;
    while (struct dirent* d = readdir(dir)) {
      std::string name = d->d_name;
      if (name == "." || name == "..") continue;
      if (d->d_type == DT_DIR) {
        subdirs.push_back(rel + "/" + name);
      } else {
        Check(rel + "/" + name);
      }
    }
    closedir(dir);
    for (const std::string& sub : subdirs) Visit(sub);
  }

  void Check(const std::string& rel) {
    struct stat mounted, plain;
    if (lstat((mnt_ + "/" + rel).c_str(), &mounted) != 0 ||
        lstat((source_ + "/" + rel).c_str(), &plain) != 0 || mounted.st_ino != plain.st_ino ||
        mounted.st_size != plain.st_size || mounted.st_mode != plain.st_mode) {
      ++mismatched_;
      return;
    }
    if (S_ISREG(mounted.st_mode) && mounted.st_ino % 50 == 0 &&
        ReadFile(mnt_ + "/" + rel) != source_ + "/" + rel) {
      ++mismatched_;
      return;
    }
    ++checked_;
  }

  const std::string mnt_, source_;
  const PassthroughFs& fs_;
  std::atomic<int> checked_{0}, mismatched_{0};
};

class PassthroughPruneTest : public ::testing::Test {
 protected:
  // Mounts a fresh tree of `files_per_dir` * 100 files.
  void Mount(int files_per_dir, size_t max_nodes,
             std::optional<size_t> max_cached_nodes = std::nullopt, bool ext4 = false) {
    MountSetup setup;
    setup.timeout = 86400;
    setup.max_nodes = max_nodes;
    setup.max_cached_nodes = max_cached_nodes;
    setup.tmpfs_source = !ext4;
    setup.ext4_source = ext4;
    mount_ = std::make_unique<MountedPassthrough>(PassthroughMode::kAuto, std::move(setup));
    const Clock::time_point start = Clock::now();
    MakeTree(mount_->source(), files_per_dir);
    std::printf("tree made in %.2f s\n",
                std::chrono::duration<double>(Clock::now() - start).count());
    expected_ = kTop + kTop * kSub + kTop * kSub * files_per_dir;
    baseline_fds_ = CountFds(getpid());
  }

  WalkResult Walk(const char* what) {
    WalkResult result = Walker(mount_->mnt(), mount_->source(), mount_->fs()).Run();
    std::printf(
        "%s: max_nodes=%zu, %d entries in %.2f s, peak %d descriptors above the %d before, "
        "peak %zu nodes, %zu nodes now, %llu offered to the kernel, %llu lookups waited\n",
        what, mount_->fs().max_nodes(), result.checked, result.seconds,
        result.peak_fds - baseline_fds_, baseline_fds_, result.peak_nodes,
        mount_->fs().node_count(), static_cast<unsigned long long>(mount_->fs().nodes_offered()),
        static_cast<unsigned long long>(mount_->fs().limit_waits()));
    return result;
  }

  std::unique_ptr<MountedPassthrough> mount_;
  int expected_ = 0;
  int baseline_fds_ = 0;
};

TEST_F(PassthroughPruneTest, WalkOfManyFilesStaysNearMaxNodes) {
  constexpr size_t kMaxNodes = 2000;
  ASSERT_NO_FATAL_FAILURE(Mount(500, kMaxNodes));  // 50,000 files
  for (const char* pass : {"first walk", "second walk"}) {
    WalkResult walk = Walk(pass);
    EXPECT_EQ(walk.mismatched, 0) << pass;
    EXPECT_EQ(walk.checked, expected_) << pass;
    // Slack: FORGETs trail the offers (by more on a loaded machine, where
    // the thread reading them waits for a CPU), a round of parking runs
    // while the other walker adds nodes, and the walkers hold directories
    // and files open. Unbounded, the walk would pin one descriptor per
    // entry (50,000 here).
    EXPECT_LT(walk.peak_fds - baseline_fds_, static_cast<int>(kMaxNodes + kMaxNodes / 2)) << pass;
  }
  EXPECT_GT(mount_->fs().nodes_offered() + mount_->fs().nodes_parked(), 0U);
  EXPECT_LE(mount_->fs().node_descriptors(), kMaxNodes);
}

// As root, parked inodes stay known to the kernel: a second walk costs no
// lookups, and every request on a parked inode reopens it by handle.
TEST_F(PassthroughPruneTest, ParkedInodesStayCachedAndWork) {
  ASSERT_NO_FATAL_FAILURE(Mount(100, 500));  // 10,000 files
  Walk("first walk");
  ASSERT_GT(mount_->fs().nodes_parked(), 0U);
  const Stats& stats = mount_->server().session().stats();
  const uint64_t lookups = stats.Get(abi::kLookup).count;
  WalkResult again = Walk("second walk");
  EXPECT_EQ(again.mismatched, 0);
  // Only nodes that could not be parked (in use when their turn came) were
  // offered to the kernel; nothing else needs looking up again.
  EXPECT_LE(stats.Get(abi::kLookup).count - lookups, mount_->fs().nodes_offered());
  EXPECT_LE(mount_->fs().node_descriptors(), 500u);

  const std::string mnt = mount_->mnt(), src = mount_->source();
  const std::string file = "/d3/s3/" + FileName(3);
  EXPECT_EQ(chmod((mnt + file).c_str(), 0600), 0) << strerror(errno);
  struct stat st;
  ASSERT_EQ(stat((src + file).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(rename((mnt + "/d4/s4/" + FileName(4)).c_str(), (mnt + "/d4/s4/moved").c_str()), 0);
  EXPECT_EQ(access((src + "/d4/s4/moved").c_str(), F_OK), 0);
  ASSERT_EQ(link((mnt + "/d5/s5/" + FileName(5)).c_str(), (mnt + "/d5/s5/linked").c_str()), 0);
  ASSERT_EQ(stat((src + "/d5/s5/linked").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
  ASSERT_EQ(unlink((mnt + "/d6/s6/" + FileName(6)).c_str()), 0);
  EXPECT_NE(access((src + "/d6/s6/" + FileName(6)).c_str(), F_OK), 0);
  ASSERT_EQ(setxattr((mnt + "/d7/s7/" + FileName(7)).c_str(), "user.k", "v", 1, 0), 0)
      << strerror(errno);
  char value[4] = {};
  EXPECT_EQ(getxattr((src + "/d7/s7/" + FileName(7)).c_str(), "user.k", value, sizeof(value)), 1);
  // A directory parked too: creating in it reopens it.
  WriteFile(mnt + "/d8/s8/new", "new");
  EXPECT_EQ(ReadFile(src + "/d8/s8/new"), "new");
}

// Parked nodes cost memory: past max_cached_nodes the least recently used
// are offered to the kernel to forget, parked or not.
TEST_F(PassthroughPruneTest, CachedNodesStayNearTheirLimit) {
  ASSERT_NO_FATAL_FAILURE(Mount(100, 500, 3000));  // 10,000 files
  WalkResult walk = Walk("node cap");
  EXPECT_EQ(walk.mismatched, 0);
  EXPECT_EQ(walk.checked, expected_);
  EXPECT_GT(mount_->fs().nodes_offered(), 0U);
  // FORGETs trail the offers; the count settles at the low mark (3/4).
  for (int i = 0; i < 100 && mount_->fs().node_count() > 3000; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_LE(mount_->fs().node_count(), 3000u);
}

TEST_F(PassthroughPruneTest, WithoutALimitNothingIsOffered) {
  // Left alone, the kernel forgets inodes only under memory pressure (or
  // drop_caches, which benchmarks on the same machine may run), so this
  // walk usually ends with one node and one descriptor per file. Only the
  // absence of offers is certain; the printed peak is for comparison.
  ASSERT_NO_FATAL_FAILURE(Mount(100, 0));  // 10,000 files
  WalkResult walk = Walk("unlimited");
  EXPECT_EQ(walk.mismatched, 0);
  EXPECT_EQ(walk.checked, expected_);
  EXPECT_EQ(mount_->fs().nodes_offered(), 0U);
}

TEST_F(PassthroughPruneTest, SameTreeWithALimit) {
  // The test above with a limit, for the cost of pruning.
  ASSERT_NO_FATAL_FAILURE(Mount(100, 2000));
  WalkResult walk = Walk("limited");
  EXPECT_EQ(walk.mismatched, 0);
  EXPECT_EQ(walk.checked, expected_);
  EXPECT_LT(walk.peak_fds - baseline_fds_, 2000 + 2000 / 4);
}

TEST_F(PassthroughPruneTest, FilesInUseSurviveOffers) {
  // Open files cannot be forgotten by the kernel; their nodes must keep
  // working however often they are offered.
  ASSERT_NO_FATAL_FAILURE(Mount(100, 200));
  std::vector<int> open_files;
  for (int s = 0; s < kSub; ++s) {
    std::string path = mount_->mnt() + "/d0/s" + std::to_string(s) + "/" + FileName(0);
    open_files.push_back(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_GE(open_files.back(), 0) << path;
  }
  WalkResult walk = Walk("with open files");
  EXPECT_EQ(walk.mismatched, 0);
  EXPECT_EQ(walk.checked, expected_);
  for (int s = 0; s < kSub; ++s) {
    std::string rel = "/d0/s" + std::to_string(s) + "/" + FileName(0);
    char buf[256];
    ssize_t n = pread(open_files[static_cast<size_t>(s)], buf, sizeof(buf), 0);
    EXPECT_EQ(std::string(buf, static_cast<size_t>(std::max<ssize_t>(n, 0))),
              mount_->source() + rel);
    struct stat st;
    EXPECT_EQ(fstat(open_files[static_cast<size_t>(s)], &st), 0);
    close(open_files[static_cast<size_t>(s)]);
  }
}

// A parked inode holds no descriptor. Deleting its file through the mount
// reopens it first, so the kernel's node keeps the file (fstat of a held
// descriptor still works) and its inode number; a file deleted behind the
// mount's back may give its number to a new file, which a lookup tells
// apart by its handle and gives a node of its own.
TEST_F(PassthroughPruneTest, DeletedParkedFilesKeepTheirNodesApart) {
  ASSERT_NO_FATAL_FAILURE(Mount(30, 200, std::nullopt, /*ext4=*/true));  // 3,000 files
  const std::string mnt = mount_->mnt(), src = mount_->source();
  const std::string via_mount = "/d0/s0/" + FileName(1), outside = "/d0/s0/" + FileName(2);
  int held_via_mount = open((mnt + via_mount).c_str(), O_PATH | O_CLOEXEC);
  int held_outside = open((mnt + outside).c_str(), O_PATH | O_CLOEXEC);
  ASSERT_GE(held_via_mount, 0);
  ASSERT_GE(held_outside, 0);
  struct stat via_mount_st, outside_st, st;
  ASSERT_EQ(stat((src + via_mount).c_str(), &via_mount_st), 0);
  ASSERT_EQ(stat((src + outside).c_str(), &outside_st), 0);
  Walk("walk");  // d0 first, so its files are the least recently used
  Walk("walk again");
  ASSERT_FALSE(HoldsDescriptorOf(src + via_mount)) << "the walks did not park it";
  ASSERT_FALSE(HoldsDescriptorOf(src + outside)) << "the walks did not park it";

  ASSERT_EQ(unlink((mnt + via_mount).c_str()), 0) << strerror(errno);
  ASSERT_EQ(symlink("target", (mnt + "/d0/s0/link").c_str()), 0) << strerror(errno);
  ASSERT_EQ(lstat((src + "/d0/s0/link").c_str(), &st), 0);
  EXPECT_NE(st.st_ino, via_mount_st.st_ino) << "the deleted file's number was given away";
  ASSERT_EQ(fstat(held_via_mount, &st), 0) << strerror(errno);
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(st.st_ino, via_mount_st.st_ino);

  // The same type under another name: only the handle tells them apart.
  ASSERT_EQ(unlink((src + outside).c_str()), 0);
  WriteFile(src + "/d0/s0/other", "other");
  ASSERT_EQ(lstat((src + "/d0/s0/other").c_str(), &st), 0);
  ASSERT_EQ(st.st_ino, outside_st.st_ino) << "ext4 did not reuse the number";
  EXPECT_EQ(ReadFile(mnt + "/d0/s0/other"), "other");
  ASSERT_EQ(stat((mnt + "/d0/s0/other").c_str(), &st), 0) << strerror(errno);
  EXPECT_EQ(st.st_nlink, 1u);
  // The deleted file's node did not become the new one: the kernel still
  // has the deleted file's attributes for it (cached: it changed behind
  // the mount's back), not the new file's.
  ASSERT_EQ(fstat(held_outside, &st), 0) << strerror(errno);
  EXPECT_EQ(st.st_size, outside_st.st_size);
  close(held_via_mount);
  close(held_outside);
}

}  // namespace
}  // namespace lamina::testing
