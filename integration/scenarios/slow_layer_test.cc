// A slow layer must not stall the rest of the mount. The lower layer is
// itself a FUSE filesystem served in this process, and its READ of the
// "slow" files waits until the test opens a gate: appending to those files
// makes Lamina copy them up, and each copy-up then holds a daemon worker
// inside read(2) for as long as the test wants, as a copy-up of a large
// file or a lower on a slow disk would. With more such copy-ups than the
// workers the overlay started with, lookups, stats, reads, listings and
// creates elsewhere in the mount must still complete; then the gate opens
// and every copy-up must finish with the right data. Kernel overlayfs makes
// only the appending processes wait. Over /dev/fuse and FUSE-over-io_uring
// (every caller on one CPU, so that one queue takes all of it).
//
// And a mount aborted while the copy-ups are held ends, every worker
// joined, once the lower layer answers them.
//
// Every wait is bounded, and the gate opens whatever happened, so a daemon
// that stalls fails the test instead of hanging it.

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/examples/memory_filesystem.h"
#include "core/fuse_server.h"
#include "core/io_uring_transport.h"
#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"
#include "overlay/overlay_fs.h"

namespace lamina::testing {
namespace {

using std::chrono::seconds;

// Long enough for a loaded sanitizer build; the test only waits this long
// when something is stuck.
constexpr seconds kBound(30);

constexpr int kCopyUps = 3;            // more than the overlay's workers
constexpr size_t kSlowSize = 1 << 20;  // several READs, past the first

std::string SlowName(int i) {
  return "data/slow-" + std::to_string(i);
}

std::string SlowContent(int i) {
  std::string content(kSlowSize, '\0');
  for (size_t k = 0; k < content.size(); ++k)
    content[k] = static_cast<char>('a' + (k * 7 + i) % 26);
  return content;
}

std::string Appended(int i) {
  return "appended by writer " + std::to_string(i) + "\n";
}

// The lower layer: a memory filesystem whose READs of files named
// "slow-*" wait at a gate. It counts the files whose reads wait, so the
// test knows when every copy-up is inside the daemon.
class GatedLowerFilesystem : public examples::MemoryFilesystem {
 public:
  Result<Entry> Lookup(const Ctx& ctx, NodeId parent, std::string_view name) override {
    Result<Entry> entry = MemoryFilesystem::Lookup(ctx, parent, name);
    if (entry.ok() && name.substr(0, 5) == "slow-") {
      std::lock_guard lock(mu_);
      slow_nodes_.insert(entry->node);
    }
    return entry;
  }

  Result<size_t> Read(const Ctx& ctx, NodeId node, uint64_t fh, uint64_t offset,
                      std::span<std::byte> out) override {
    std::unique_lock lock(mu_);
    if (slow_nodes_.count(node) != 0 && !open_) {
      waiting_.insert(node);
      changed_.notify_all();
      // Bounded too: nothing here may outlive a test that forgot the gate.
      changed_.wait_for(lock, 2 * kBound, [this] { return open_; });
    }
    lock.unlock();
    return MemoryFilesystem::Read(ctx, node, fh, offset, out);
  }

  // Whether reads of `files` different slow files have come to the gate.
  bool WaitForWaitingFiles(size_t files) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, kBound, [&] { return waiting_.size() >= files; });
  }
  size_t waiting_files() {
    std::lock_guard lock(mu_);
    return waiting_.size();
  }

  void OpenGate() {
    std::lock_guard lock(mu_);
    open_ = true;
    changed_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::set<NodeId> slow_nodes_;
  std::set<NodeId> waiting_;
  bool open_ = false;
};

// Runs `work` on a thread of its own; Wait() says whether it finished
// within the bound. The thread is joined on destruction (after the test
// has opened the gate, so that it can finish).
class Background {
 public:
  explicit Background(std::function<void()> work)
      : thread_([this, work = std::move(work)] {
          work();
          std::lock_guard lock(mu_);
          done_ = true;
          changed_.notify_all();
        }) {}
  ~Background() { thread_.join(); }

  bool Wait(std::chrono::milliseconds bound) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, bound, [this] { return done_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  bool done_ = false;
  std::thread thread_;
};

bool PinToCpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0;
}

// Whether pinning makes sense: the CPU every caller runs on (the first
// possible one that accepts a pinned thread).
int CallerCpu() {
  for (int cpu : PossibleCpus()) {
    std::optional<bool> pinned;
    std::thread([&] { pinned = PinToCpu(cpu); }).join();
    if (*pinned) return cpu;
  }
  return -1;
}

enum class Via { kDevFuse, kIoUring };

std::string ViaName(const ::testing::TestParamInfo<Via>& info) {
  return info.param == Via::kDevFuse ? "DevFuse" : "IoUring";
}

class SlowLayerTest : public ::testing::TestWithParam<Via> {
 protected:
  void SetUp() override {
    if (GetParam() == Via::kIoUring) {
      uring_.emplace(/*enable=*/true);
      if (!uring_->supported()) {
        GTEST_SKIP() << "FUSE-over-io_uring unsupported: " << uring_->unsupported_reason();
      }
      ASSERT_TRUE(uring_->applied()) << "cannot set enable_uring";
    }
    cpu_ = CallerCpu();
    ASSERT_GE(cpu_, 0) << "no CPU accepts a pinned thread";

    for (int i = 0; i < kCopyUps; ++i) lower_fs_.AddFile(SlowName(i), SlowContent(i));
    lower_fs_.AddFile("etc/hostname", "lamina\n");
    lower_fs_.AddFile("etc/motd", "welcome\n");
    lower_fs_.AddFile("docs/readme", std::string(100000, 'r'));
    lower_mnt_ = dir_.Subdir("lower");
    ServerOptions lower_options;
    lower_options.mount_options = {"fsname=lamina-slow-lower"};
    // Plenty of workers of its own even where the pool cannot grow, so that
    // the lower layer is never what stalls.
    lower_options.session.threads = 16;
    auto lower = FuseServer::Start(lower_fs_, lower_mnt_, lower_options);
    ASSERT_TRUE(lower.ok()) << lower.status().ToString();
    lower_ = std::move(*lower);

    OverlayOptions options;
    options.layers.lowers = {lower_mnt_};
    options.layers.upper = dir_.Subdir("upper");
    options.layers.work = dir_.Subdir("work");
    auto fs = OverlayFs::Create(options);
    ASSERT_TRUE(fs.ok()) << fs.status().ToString();
    overlay_fs_ = std::move(*fs);
    mnt_ = dir_.Subdir("mnt");
    ServerOptions server_options;
    server_options.mount_options = {"fsname=lamina-test", "default_permissions", "allow_other"};
    server_options.session.threads = 2;  // fewer than the copy-ups
    server_options.io_uring = GetParam() == Via::kIoUring;
    auto server = FuseServer::Start(*overlay_fs_, mnt_, server_options);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    if (GetParam() == Via::kIoUring) {
      ASSERT_TRUE(server_->io_uring()->active()) << "the kernel did not take the rings";
    }
  }

  void TearDown() override {
    lower_fs_.OpenGate();  // whatever happened, let everything finish
    appenders_.clear();
    server_.reset();
    overlay_fs_.reset();
    lower_.reset();
    EXPECT_FALSE(IsFuseMounted(mnt_));
    EXPECT_FALSE(IsFuseMounted(lower_mnt_));
  }

  std::string Path(const std::string& name) const { return mnt_ + "/" + name; }

  // Over io_uring, waits until the queue of the callers' CPU has a worker
  // waiting besides those held by the copy-ups. The kernel hands a request
  // only to a ring entry that waits when it arrives, or to the next one
  // that commits a reply on the same queue, so in the moment after a burst,
  // while the pool starts a worker with a ring of its own, a request can
  // still wait for a slow one (docs/architecture.md, "The io_uring
  // transport"). Over /dev/fuse any worker that starts reading takes it.
  bool QueueHasAFreeWorker() {
    if (GetParam() != Via::kIoUring) return true;
    std::vector<int> cpus = PossibleCpus();
    size_t qid = 0;
    while (qid < cpus.size() && cpus[qid] != cpu_) ++qid;
    std::vector<const WorkerPool*> pools = server_->session().pools();
    // The primary channel's pool first, then one per queue.
    if (qid + 1 >= pools.size()) return false;
    const WorkerPool* queue = pools[qid + 1];
    return WaitUntil([&] { return queue->counts().free >= 1; },
                     std::chrono::duration_cast<std::chrono::milliseconds>(kBound));
  }

  // Known names first, so that each append is one OPEN that copies up;
  // then the appenders, on the callers' CPU.
  void StartCopyUps() {
    struct stat st;
    for (int i = 0; i < kCopyUps; ++i) {
      ASSERT_EQ(stat(Path(SlowName(i)).c_str(), &st), 0) << SlowName(i);
      ASSERT_EQ(static_cast<size_t>(st.st_size), kSlowSize);
    }
    append_errors_.assign(kCopyUps, -1);
    for (int i = 0; i < kCopyUps; ++i) {
      appenders_.push_back(std::make_unique<Background>([this, i] {
        PinToCpu(cpu_);
        int fd = open(Path(SlowName(i)).c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd < 0) {
          append_errors_[i] = errno;
          return;
        }
        const std::string text = Appended(i);
        ssize_t n = write(fd, text.data(), text.size());
        append_errors_[i] = n == static_cast<ssize_t>(text.size()) ? 0 : (n < 0 ? errno : EIO);
        if (close(fd) != 0 && append_errors_[i] == 0) append_errors_[i] = errno;
      }));
    }
  }

  std::optional<FuseUringSetting> uring_;  // restored after the servers are gone
  TempDir dir_{"lamina-slow-layer"};
  int cpu_ = -1;
  GatedLowerFilesystem lower_fs_;
  std::string lower_mnt_;
  std::unique_ptr<FuseServer> lower_;
  std::unique_ptr<OverlayFs> overlay_fs_;
  std::string mnt_;
  std::unique_ptr<FuseServer> server_;
  std::vector<int> append_errors_;  // errno of each append, 0: done
  // Joined before the servers go (TearDown opens the gate first).
  std::vector<std::unique_ptr<Background>> appenders_;
};

INSTANTIATE_TEST_SUITE_P(Transports, SlowLayerTest, ::testing::Values(Via::kDevFuse, Via::kIoUring),
                         ViaName);

TEST_P(SlowLayerTest, CopyUpsFromASlowLayerDoNotStallTheRestOfTheMount) {
  StartCopyUps();
  // Every copy-up is inside the daemon, holding a worker in read(2).
  EXPECT_TRUE(lower_fs_.WaitForWaitingFiles(kCopyUps))
      << "only " << lower_fs_.waiting_files() << " of " << kCopyUps
      << " copy-ups reached the lower layer: the others wait for a worker";
  EXPECT_TRUE(QueueHasAFreeWorker()) << "the io_uring queue got no worker besides the copy-ups";

  // Meanwhile, elsewhere in the mount: lookups, stats, a read, a listing, a
  // create with data, a mkdir, a rename. None of it may wait for the gate.
  std::string hostname, readme, created;
  std::vector<std::string> listing;
  int stat_rc = -1, mkdir_rc = -1, rename_rc = -1, missing_errno = 0;
  Background probes([&] {
    PinToCpu(cpu_);
    struct stat probe;
    stat_rc = stat(Path("etc/motd").c_str(), &probe);
    missing_errno = stat(Path("etc/absent").c_str(), &probe) == 0 ? 0 : errno;
    hostname = ReadFile(Path("etc/hostname"));
    readme = ReadFile(Path("docs/readme"));
    listing = ListDir(Path("etc"));
    mkdir_rc = mkdir(Path("new").c_str(), 0755);
    WriteFile(Path("new/file"), "created meanwhile\n");
    rename_rc = rename(Path("new/file").c_str(), Path("new/renamed").c_str());
    created = ReadFile(Path("new/renamed"));
  });
  const bool probes_done = probes.Wait(kBound);
  EXPECT_TRUE(probes_done) << "requests on other files waited for the copy-ups";
  // The copy-ups are all still held: what completed did so without them.
  EXPECT_EQ(lower_fs_.waiting_files(), static_cast<size_t>(kCopyUps));

  lower_fs_.OpenGate();
  for (auto& appender : appenders_) {
    EXPECT_TRUE(appender->Wait(kBound)) << "a copy-up did not finish once the layer answered";
  }
  EXPECT_TRUE(probes.Wait(kBound));
  if (!probes_done) return;  // the rest would only repeat the failure

  EXPECT_EQ(stat_rc, 0);
  EXPECT_EQ(missing_errno, ENOENT);
  EXPECT_EQ(hostname, "lamina\n");
  EXPECT_EQ(readme, std::string(100000, 'r'));
  EXPECT_EQ(listing, (std::vector<std::string>{"hostname", "motd"}));
  EXPECT_EQ(mkdir_rc, 0);
  EXPECT_EQ(rename_rc, 0);
  EXPECT_EQ(created, "created meanwhile\n");

  for (int i = 0; i < kCopyUps; ++i) {
    EXPECT_EQ(append_errors_[i], 0) << SlowName(i) << ": " << strerror(append_errors_[i]);
    const std::string expected = SlowContent(i) + Appended(i);
    EXPECT_TRUE(ReadFile(Path(SlowName(i))) == expected) << SlowName(i) << " through the mount";
    EXPECT_TRUE(ReadFile(dir_.path() + "/upper/" + SlowName(i)) == expected)
        << SlowName(i) << " in the upper layer";
    // The lower layer is never written.
    EXPECT_TRUE(ReadFile(lower_mnt_ + "/" + SlowName(i)) == SlowContent(i)) << SlowName(i);
  }
}

TEST_P(SlowLayerTest, AnAbortedMountEndsOnceTheCopyUpsReturn) {
  StartCopyUps();
  ASSERT_TRUE(lower_fs_.WaitForWaitingFiles(kCopyUps));
  // The pool has grown past the workers held by the copy-ups (io_uring
  // queues always have spares): this one serves.
  int stat_rc = -1;
  Background probe([&] {
    struct stat st;
    stat_rc = stat(Path("etc/motd").c_str(), &st);
  });
  EXPECT_TRUE(probe.Wait(kBound));
  EXPECT_EQ(stat_rc, 0);
  ASSERT_TRUE(AbortConnection(mnt_));
  // The callers see the connection gone at once; the workers still wait in
  // the lower layer, and end once it answers.
  for (auto& appender : appenders_) EXPECT_TRUE(appender->Wait(kBound));
  for (int i = 0; i < kCopyUps; ++i) EXPECT_NE(append_errors_[i], 0) << SlowName(i);
  lower_fs_.OpenGate();
  Background wait([this] { server_->Wait(); });
  EXPECT_TRUE(wait.Wait(kBound)) << "the session did not end after the abort";
  EXPECT_FALSE(server_->session().running());
  EXPECT_EQ(server_->session().workers().running, 0);
  EXPECT_FALSE(IsFuseMounted(mnt_));
}

}  // namespace
}  // namespace lamina::testing
