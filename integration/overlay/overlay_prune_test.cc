// Bounded descriptors in the overlay: every node pins a descriptor per layer
// object (a merged directory one per layer), so walking a tree much larger
// than the descriptor limit must make OverlayFs park files (close their
// descriptors, the kernel keeping them cached) and ask the kernel to forget
// nodes it cannot park, keep the daemon's descriptors near the limit, and
// still answer every name correctly as nodes come and go.

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

#include "core/fuse_server.h"
#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"
#include "integration/harness/untouched_layers.h"
#include "overlay/overlay_fs.h"

namespace lamina::testing {
namespace {

constexpr int kTop = 10;
constexpr int kSub = 10;

// The tree, in three layers so that every directory merges: the bottom
// lower has `files` files per leaf directory, the top lower one more
// ("top"), the upper a copied-up file in d0/s*.
class OverlayPruneTest : public ::testing::Test {
 protected:
  void Build(int files) {
    const std::string bottom = dir_.Subdir("lower1"), top = dir_.Subdir("lower0");
    if (upper_.empty()) {
      upper_ = dir_.path() + "/upper";
      work_ = dir_.path() + "/work";
    }
    ASSERT_EQ(mkdir(upper_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(work_.c_str(), 0755), 0);
    mnt_ = dir_.Subdir("mnt");
    for (int t = 0; t < kTop; ++t) {
      for (const std::string& layer : {bottom, top}) {
        ASSERT_EQ(mkdir((layer + Top(t)).c_str(), 0755), 0);
      }
      if (t == 0) {
        ASSERT_EQ(mkdir((upper_ + Top(t)).c_str(), 0755), 0);
      }
      for (int s = 0; s < kSub; ++s) {
        const std::string sub = Top(t) + "/s" + std::to_string(s);
        for (const std::string& layer : {bottom, top}) {
          ASSERT_EQ(mkdir((layer + sub).c_str(), 0755), 0);
        }
        for (int f = 0; f < files; ++f) {
          const std::string rel = sub + "/f" + std::to_string(f);
          WriteFile(bottom + rel, rel);  // contents name the file
        }
        WriteFile(top + sub + "/top", sub + "/top");
        if (t == 0) {
          ASSERT_EQ(mkdir((upper_ + sub).c_str(), 0755), 0);
          WriteFile(upper_ + sub + "/f0", "upper" + sub);
        }
      }
    }
    expected_entries_ = kTop + kTop * kSub * (files + 2);
  }

  // Upper and work directory on a loop-mounted ext4 (see MountExt4Image);
  // called before Build().
  void PutUpperOnExt4() {
    const std::string fs = dir_.Subdir("ext4");
    std::string error;
    ASSERT_TRUE(MountExt4Image(fs, 64, &error)) << error;
    upper_ = fs + "/upper";
    work_ = fs + "/work";
  }

  void Mount(size_t max_descriptors) {
    OverlayOptions options;
    options.layers.lowers = {dir_.path() + "/lower0", dir_.path() + "/lower1"};
    options.layers.upper = upper_;
    options.layers.work = work_;
    options.max_descriptors = max_descriptors;
    for (const std::string& lower : options.layers.lowers) lowers_.Watch(lower);
    auto fs = OverlayFs::Create(options);
    ASSERT_TRUE(fs.ok()) << fs.status().ToString();
    fs_ = std::move(*fs);
    ServerOptions server_options;
    server_options.mount_options = {"fsname=lamina-test"};
    server_options.session.threads = 2;
    auto server = FuseServer::Start(*fs_, mnt_, server_options);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    baseline_fds_ = CountFds(getpid());
  }

  // Unmounts, then checks that the walks left the lowers untouched.
  void TearDown() override {
    server_.reset();
    fs_.reset();
    lowers_.ExpectUntouched();
  }

  static std::string Top(int t) { return "/d" + std::to_string(t); }

  // What a regular file in the merged view must contain.
  static std::string Expected(const std::string& rel) {
    if (rel.rfind("/d0/", 0) == 0 && rel.size() > 3 && rel.substr(rel.size() - 3) == "/f0") {
      return "upper" + rel.substr(0, rel.size() - 3);
    }
    return rel;
  }

  // Lists every directory and stats every entry from two threads, reading
  // one file in seven; counts entries whose contents are right.
  struct Walk {
    int checked = 0, wrong = 0, peak_fds = 0;
    size_t peak_held = 0;
  };
  Walk RunWalk() {
    std::atomic<int> checked{0}, wrong{0};
    std::atomic<bool> done{false};
    Walk walk;
    std::thread sampler([&] {
      while (!done) {
        walk.peak_fds = std::max(walk.peak_fds, CountFds(getpid()));
        walk.peak_held = std::max(walk.peak_held, fs_->held_descriptors());
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
    std::function<void(const std::string&)> visit = [&](const std::string& rel) {
      DIR* dir = opendir((mnt_ + rel).c_str());
      if (dir == nullptr) {
        ++wrong;
        return;
      }
      std::vector<std::string> subdirs;
      int n = 0;
      while (struct dirent* d = readdir(dir)) {
        const std::string name = d->d_name;
        if (name == "." || name == "..") continue;
        const std::string child = rel + "/" + name;
        struct stat st;
        if (lstat((mnt_ + child).c_str(), &st) != 0) {
          ++wrong;
        } else if (S_ISDIR(st.st_mode)) {
          subdirs.push_back(child);
          ++checked;
        } else if (++n % 7 == 0 && ReadFile(mnt_ + child) != Expected(child)) {
          ++wrong;
        } else {
          ++checked;
        }
      }
      closedir(dir);
      for (const std::string& sub : subdirs) visit(sub);
    };
    std::vector<std::thread> threads;
    for (int w = 0; w < 2; ++w) {
      threads.emplace_back([&, w] {
        for (int t = w; t < kTop; t += 2) {
          ++checked;  // the top directory itself, listed by the root
          visit(Top(t));
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    done = true;
    sampler.join();
    walk.checked = checked;
    walk.wrong = wrong;
    std::printf(
        "limit %zu: %d entries, peak %d descriptors above the %d before, peak %zu held by "
        "nodes, %zu nodes now holding %zu, %llu offered to the kernel\n",
        fs_->max_descriptors(), walk.checked, walk.peak_fds - baseline_fds_, baseline_fds_,
        walk.peak_held, fs_->node_count(), fs_->held_descriptors(),
        static_cast<unsigned long long>(fs_->nodes_offered()));
    return walk;
  }

  TempDir dir_;
  std::string upper_, work_, mnt_;
  std::unique_ptr<OverlayFs> fs_;
  std::unique_ptr<FuseServer> server_;
  int expected_entries_ = 0;
  int baseline_fds_ = 0;
  UntouchedLayers lowers_;
};

TEST_F(OverlayPruneTest, WalkOfManyFilesStaysNearTheDescriptorLimit) {
  constexpr size_t kLimit = 2000;
  ASSERT_NO_FATAL_FAILURE(Build(300));  // 30,000 lower files, 100 merged dirs
  ASSERT_NO_FATAL_FAILURE(Mount(kLimit));
  const Stats& stats = server_->session().stats();
  uint64_t lookups_before = 0;
  for (int pass = 0; pass < 2; ++pass) {
    Walk walk = RunWalk();
    const uint64_t lookups = stats.Get(abi::kLookup).count - lookups_before;
    lookups_before += lookups;
    std::printf("pass %d: %llu lookups\n", pass, static_cast<unsigned long long>(lookups));
    // The second pass finds what the first left in the kernel's cache:
    // parked files stay there (their reads reopen them by name).
    if (pass == 1) {
      EXPECT_LT(lookups, static_cast<uint64_t>(expected_entries_ / 10));
    }
    EXPECT_EQ(walk.wrong, 0) << "pass " << pass;
    EXPECT_EQ(walk.checked, expected_entries_) << "pass " << pass;
    // Slack: FORGETs trail the offers (by more on a loaded machine, where
    // the thread reading them waits for a CPU), and the walkers hold
    // directories and files open. Unbounded, the walk would pin one
    // descriptor per entry.
    EXPECT_LT(walk.peak_fds - baseline_fds_, static_cast<int>(kLimit + kLimit / 4)) << pass;
  }
  EXPECT_GT(fs_->nodes_parked(), 0U);
  EXPECT_LE(fs_->held_descriptors(), kLimit);
}

// Every kind of request on parked files: they reopen their objects by name
// and behave as if they had never been parked.
TEST_F(OverlayPruneTest, ParkedFilesWorkAsBefore) {
  ASSERT_NO_FATAL_FAILURE(Build(100));
  ASSERT_NO_FATAL_FAILURE(Mount(600));
  const std::string upper = upper_;
  // Made first, so least recently used; outside the walked directories.
  ASSERT_EQ(mkdir((mnt_ + "/extra").c_str(), 0755), 0);
  WriteFile(mnt_ + "/extra/new", "new");  // an upper-only file
  ASSERT_EQ(symlink("/d2/s2/f2", (mnt_ + "/extra/link").c_str()), 0);
  ASSERT_EQ(RunWalk().wrong, 0);
  ASSERT_EQ(RunWalk().wrong, 0);
  ASSERT_GT(fs_->nodes_parked(), 0U);
  // Reads, writes (copy-up), attribute changes, renames, links, unlinks.
  EXPECT_EQ(ReadFile(mnt_ + "/extra/new"), "new");
  EXPECT_EQ(ReadFile(mnt_ + "/d3/s3/f3"), "/d3/s3/f3");
  char target[64] = {};
  EXPECT_EQ(readlink((mnt_ + "/extra/link").c_str(), target, sizeof(target) - 1), 9);
  EXPECT_STREQ(target, "/d2/s2/f2");
  EXPECT_EQ(chmod((mnt_ + "/d4/s4/f4").c_str(), 0600), 0) << strerror(errno);
  struct stat st;
  ASSERT_EQ(stat((upper + "/d4/s4/f4").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(rename((mnt_ + "/d5/s5/f5").c_str(), (mnt_ + "/d5/s5/moved").c_str()), 0);
  EXPECT_EQ(ReadFile(mnt_ + "/d5/s5/moved"), "/d5/s5/f5");
  ASSERT_EQ(link((mnt_ + "/d6/s6/f6").c_str(), (mnt_ + "/d6/s6/linked").c_str()), 0);
  EXPECT_EQ(ReadFile(mnt_ + "/d6/s6/linked"), "/d6/s6/f6");
  ASSERT_EQ(unlink((mnt_ + "/d7/s7/f7").c_str()), 0);
  EXPECT_NE(access((mnt_ + "/d7/s7/f7").c_str(), F_OK), 0);
  int fd = open((mnt_ + "/d8/s8/f8").c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0) << strerror(errno);
  ASSERT_EQ(write(fd, "+", 1), 1);
  close(fd);
  EXPECT_EQ(ReadFile(mnt_ + "/d8/s8/f8"), "/d8/s8/f8+");
  ASSERT_EQ(setxattr((mnt_ + "/d9/s9/f9").c_str(), "user.k", "v", 1, 0), 0) << strerror(errno);
  char value[4] = {};
  EXPECT_EQ(getxattr((mnt_ + "/d9/s9/f9").c_str(), "user.k", value, sizeof(value)), 1);
  EXPECT_EQ(ReadFile(mnt_ + "/d9/s9/f9"), "/d9/s9/f9");
  EXPECT_EQ(ReadFile(mnt_ + "/d0/s3/f0"), "upper/d0/s3");
}

TEST_F(OverlayPruneTest, CopyUpAndOpenFilesSurviveOffers) {
  ASSERT_NO_FATAL_FAILURE(Build(100));
  ASSERT_NO_FATAL_FAILURE(Mount(300));
  // A file kept open across the walk, and one copied up in the middle.
  const std::string kept = mnt_ + "/d9/s9/f1";
  int fd = open(kept.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);  // copies up
  ASSERT_GE(fd, 0);
  Walk walk = RunWalk();
  EXPECT_EQ(walk.wrong, 0);
  EXPECT_EQ(walk.checked, expected_entries_);
  ASSERT_EQ(write(fd, "+", 1), 1);
  close(fd);
  WriteFile(mnt_ + "/d5/s5/f5", "rewritten");
  walk = RunWalk();
  EXPECT_EQ(ReadFile(kept), "/d9/s9/f1+");
  EXPECT_EQ(ReadFile(mnt_ + "/d5/s5/f5"), "rewritten");
  EXPECT_EQ(ReadFile(dir_.path() + "/upper/d9/s9/f1"), "/d9/s9/f1+");
  EXPECT_EQ(ReadFileQuietly(dir_.path() + "/lower1/d9/s9/f1"), "/d9/s9/f1");
  EXPECT_GT(fs_->nodes_offered(), 0U);
}

// A listing gives the kernel each entry's attributes (READDIRPLUS); a plain
// file only a lower layer has is listed from a stat of its name, and its
// node opens the file on first use, so a walk that only stats opens no file.
TEST_F(OverlayPruneTest, ListedLowerFilesHoldNoDescriptorsUntilUsed) {
  ASSERT_NO_FATAL_FAILURE(Build(10));  // 11 lower files per leaf: one READDIRPLUS
  ASSERT_NO_FATAL_FAILURE(Mount(100000));
  const size_t before = fs_->held_descriptors();
  const std::string leaf = "/d1/s1";
  std::vector<std::string> names = ListDir(mnt_ + leaf);
  ASSERT_EQ(names.size(), 11u);
  for (const std::string& name : names) {
    struct stat st;
    ASSERT_EQ(lstat((mnt_ + leaf + "/" + name).c_str(), &st), 0) << name;
    EXPECT_TRUE(S_ISREG(st.st_mode)) << name;
  }
  // d1 and d1/s1 merge both lowers: two descriptors each; no file's.
  EXPECT_EQ(fs_->held_descriptors() - before, 4u);
  EXPECT_EQ(ReadFile(mnt_ + leaf + "/f3"), Expected(leaf + "/f3"));
  EXPECT_EQ(ReadFile(mnt_ + leaf + "/top"), leaf + "/top");
  EXPECT_EQ(fs_->held_descriptors() - before, 6u);
}

// Directories cannot be parked (they hold how their entries are found),
// and the kernel keeps a directory while it keeps any entry of it, parked
// ones included. Making more directories than the limit (an untar of a
// large tree) must still let go of the old ones, not pin a descriptor per
// directory until the process runs out (EMFILE).
TEST_F(OverlayPruneTest, DirectoriesBeyondTheLimitAreLetGo) {
  constexpr size_t kLimit = 200;
  constexpr int kDirs = 600;
  ASSERT_NO_FATAL_FAILURE(Build(1));
  ASSERT_NO_FATAL_FAILURE(Mount(kLimit));
  const std::string many = mnt_ + "/many";
  ASSERT_EQ(mkdir(many.c_str(), 0755), 0);
  for (int i = 0; i < kDirs; ++i) {
    const std::string dir = many + "/d" + std::to_string(i);
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << dir << ": " << strerror(errno);
    WriteFile(dir + "/a", "a" + std::to_string(i));
    WriteFile(dir + "/b", "b" + std::to_string(i));
  }
  // FORGETs follow the offers asynchronously.
  EXPECT_TRUE(WaitUntil([&] { return fs_->held_descriptors() <= kLimit + kLimit / 4; },
                        std::chrono::seconds(10)))
      << fs_->held_descriptors() << " descriptors held by " << fs_->node_count() << " nodes";
  for (int i = 0; i < kDirs; i += 7) {
    const std::string dir = many + "/d" + std::to_string(i);
    EXPECT_EQ(ReadFile(dir + "/a"), "a" + std::to_string(i));
    EXPECT_EQ(ReadFile(dir + "/b"), "b" + std::to_string(i));
  }
}

// Offering a directory's parked entries costs the kernel's cache (their
// next use is a lookup): it happens only when parking files cannot free
// enough. Files made in many directories past the limit are parked, and
// stay cached.
TEST_F(OverlayPruneTest, ParkingFilesKeepsTheKernelCacheWhenItFreesEnough) {
  constexpr size_t kLimit = 500;
  ASSERT_NO_FATAL_FAILURE(Build(1));
  ASSERT_NO_FATAL_FAILURE(Mount(kLimit));
  const std::string made = mnt_ + "/made";
  ASSERT_EQ(mkdir(made.c_str(), 0755), 0);
  std::vector<std::string> files;
  for (int d = 0; d < 40; ++d) {
    const std::string dir = made + "/d" + std::to_string(d);
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    for (int f = 0; f < 50; ++f) {
      files.push_back(dir + "/f" + std::to_string(f));
      WriteFile(files.back(), "x");
    }
  }
  ASSERT_GT(fs_->nodes_parked(), 0U);
  const Stats& stats = server_->session().stats();
  const uint64_t lookups = stats.Get(abi::kLookup).count;
  for (const std::string& file : files) {
    struct stat st;
    ASSERT_EQ(lstat(file.c_str(), &st), 0) << file;
  }
  EXPECT_EQ(stats.Get(abi::kLookup).count - lookups, 0U);
}

// A parked node holds no descriptor. Were its file deleted so, the upper
// filesystem could give the file's inode number to the next new object
// while the kernel still knows the node (here held by an O_PATH descriptor;
// in practice FORGET is on its way), and the new object would be taken for
// the old node: GNU tar replaces a placeholder file with a symlink exactly
// so. Deleting reopens the node first: the deleted file keeps its number,
// fstat of the held descriptor works, and new objects get nodes of their own.
TEST_F(OverlayPruneTest, DeletedParkedFilesKeepTheirNodes) {
  ASSERT_NO_FATAL_FAILURE(PutUpperOnExt4());  // reuses a freed number at once
  ASSERT_NO_FATAL_FAILURE(Build(30));
  ASSERT_NO_FATAL_FAILURE(Mount(200));
  ASSERT_EQ(mkdir((mnt_ + "/extra").c_str(), 0755), 0);
  // Upper-only files, made first so that the walks park them.
  const std::string placeholder = "/extra/placeholder", replaced = "/extra/replaced";
  WriteFile(mnt_ + placeholder, "placeholder");
  WriteFile(mnt_ + replaced, "old");
  int held_placeholder = open((mnt_ + placeholder).c_str(), O_PATH | O_CLOEXEC);
  int held_replaced = open((mnt_ + replaced).c_str(), O_PATH | O_CLOEXEC);
  ASSERT_GE(held_placeholder, 0);
  ASSERT_GE(held_replaced, 0);
  struct stat placeholder_st, replaced_st, st;
  ASSERT_EQ(stat((upper_ + placeholder).c_str(), &placeholder_st), 0);
  ASSERT_EQ(stat((upper_ + replaced).c_str(), &replaced_st), 0);
  ASSERT_EQ(RunWalk().wrong, 0);
  ASSERT_EQ(RunWalk().wrong, 0);
  ASSERT_FALSE(HoldsDescriptorOf(upper_ + placeholder)) << "the walks did not park it";
  ASSERT_FALSE(HoldsDescriptorOf(upper_ + replaced)) << "the walks did not park it";

  // A symlink in the placeholder's place.
  ASSERT_EQ(unlink((mnt_ + placeholder).c_str()), 0) << strerror(errno);
  ASSERT_EQ(symlink("target", (mnt_ + "/extra/link").c_str()), 0) << strerror(errno);
  ASSERT_EQ(lstat((upper_ + "/extra/link").c_str(), &st), 0);
  EXPECT_NE(st.st_ino, placeholder_st.st_ino) << "the deleted file's number was given away";
  char target[16] = {};
  EXPECT_EQ(readlink((mnt_ + "/extra/link").c_str(), target, sizeof(target) - 1), 6);
  EXPECT_STREQ(target, "target");
  ASSERT_EQ(lstat((mnt_ + "/extra/link").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  ASSERT_EQ(fstat(held_placeholder, &st), 0) << strerror(errno);
  EXPECT_EQ(st.st_nlink, 0u);

  // A file of the same type under the same name.
  ASSERT_EQ(unlink((mnt_ + replaced).c_str()), 0) << strerror(errno);
  WriteFile(mnt_ + replaced, "new");
  EXPECT_EQ(ReadFile(mnt_ + replaced), "new");
  ASSERT_EQ(stat((mnt_ + replaced).c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 1u);
  ASSERT_EQ(fstat(held_replaced, &st), 0) << strerror(errno);
  EXPECT_EQ(st.st_nlink, 0u);
  close(held_placeholder);
  close(held_replaced);
}

}  // namespace
}  // namespace lamina::testing
