// Descriptor counts stay flat under loops that made fuse-overlayfs leak:
// mkdir/rmdir, open+mmap+close of lower and upper files, create/unlink.
// Counted for an in-process OverlayFs (/proc/self/fd) and for a `laminafs`
// daemon (/proc/PID/fd).

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "integration/harness/mount_harness.h"
#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

using std::chrono::seconds;

const std::vector<std::string> kLower = {"d merged", "f merged/a lower",
                                         "f lowerfile " + std::string(8192, 'l')};
const std::vector<std::string> kUpper = {"f upperfile " + std::string(8192, 'u')};

// Descriptors a loop may leave behind: nodes the kernel has not forgotten
// yet, a cloned channel. A leak of one per iteration is thousands.
constexpr int kTolerance = 8;

struct Loop {
  const char* name;
  int iterations;
  std::function<bool(const std::string& root, int i)> body;  // false: failed
};

bool MapAndTouch(const std::string& path, int flags) {
  int fd = open(path.c_str(), flags);
  if (fd < 0) return false;
  int prot = (flags & O_ACCMODE) == O_RDWR ? PROT_READ | PROT_WRITE : PROT_READ;
  void* map = mmap(nullptr, 8192, prot, MAP_SHARED, fd, 0);
  bool ok = map != MAP_FAILED;
  if (ok) {
    volatile char* bytes = static_cast<char*>(map);
    ok = bytes[100] == 'l' || bytes[100] == 'u';
    if (prot & PROT_WRITE) bytes[200] = 'u';
    munmap(map, 8192);
  }
  close(fd);
  return ok;
}

const std::vector<Loop>& Loops() {
  static const std::vector<Loop> loops = {
      {"mkdir+rmdir in a merged directory", 10000,
       [](const std::string& r, int) {
         std::string dir = r + "/merged/x";
         return mkdir(dir.c_str(), 0755) == 0 && rmdir(dir.c_str()) == 0;
       }},
      {"mkdir+rmdir of fresh names", 2000,
       [](const std::string& r, int i) {
         std::string dir = r + "/d" + std::to_string(i);
         return mkdir(dir.c_str(), 0755) == 0 && rmdir(dir.c_str()) == 0;
       }},
      {"open+mmap+close of a lower file", 3000,
       [](const std::string& r, int) { return MapAndTouch(r + "/lowerfile", O_RDONLY); }},
      {"open+mmap(write)+close of an upper file", 3000,
       [](const std::string& r, int) { return MapAndTouch(r + "/upperfile", O_RDWR); }},
      {"create+write+unlink", 5000,
       [](const std::string& r, int i) {
         std::string path = r + "/merged/f" + std::to_string(i % 7);
         int fd = open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
         bool ok = fd >= 0 && write(fd, "x", 1) == 1;
         if (fd >= 0) close(fd);
         return ok && unlink(path.c_str()) == 0;
       }},
      {"create, unlink while open, write, close", 3000,
       [](const std::string& r, int) {
         std::string path = r + "/merged/tmp";
         int fd = open(path.c_str(), O_CREAT | O_EXCL | O_RDWR, 0644);
         bool ok = fd >= 0 && unlink(path.c_str()) == 0 && write(fd, "tmp", 3) == 3;
         if (fd >= 0) close(fd);
         return ok;
       }},
  };
  return loops;
}

// Runs every loop on `root`, counting `count()` before and after each.
void ExpectFlat(const std::string& what, const std::string& root,
                const std::function<int()>& count) {
  for (const Loop& loop : Loops()) loop.body(root, 0);  // warm up: first copy-ups
  for (const Loop& loop : Loops()) {
    int before = count();
    auto start = std::chrono::steady_clock::now();
    int failures = 0;
    for (int i = 0; i < loop.iterations; ++i) failures += loop.body(root, i) ? 0 : 1;
    double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // Forgotten nodes close their descriptors when FORGET arrives.
    WaitUntil([&] { return count() <= before + kTolerance; }, seconds(5));
    int after = count();
    EXPECT_EQ(failures, 0) << what << ": " << loop.name << ": " << strerror(errno);
    EXPECT_LE(after, before + kTolerance) << what << ": " << loop.name;
    fprintf(stderr, "%s: %s x%d: descriptors %d -> %d (%.2f s)\n", what.c_str(), loop.name,
            loop.iterations, before, after, elapsed);
  }
}

class ResourceFlatnessTest : public OverlayPair {};

TEST_F(ResourceFlatnessTest, InProcessOverlayDescriptorsStayFlat) {
  Mount({kLower}, kUpper);
  ExpectFlat("in-process", lamina_root(), [] { return CountFds(getpid()); });
}

TEST(ResourceFlatnessDaemonTest, LaminafsDescriptorsStayFlat) {
  TempDir dir("lamina-fds");
  BuildLayer(dir.path() + "/lower", kLower);
  BuildLayer(dir.path() + "/upper", kUpper);
  std::string mnt = dir.Subdir("mnt");
  LaminafsMount lamina({"-o", OverlayOptionString({dir.path() + "/lower"}, dir.path() + "/upper",
                                                  dir.Subdir("work"))},
                       mnt);
  ASSERT_TRUE(lamina.mounted()) << lamina.output();
  pid_t pid = lamina.pid();
  ExpectFlat("laminafs", mnt, [pid] { return CountFds(pid); });
  EXPECT_TRUE(lamina.running()) << lamina.output();
  EXPECT_EQ(lamina.Unmount(), 0) << lamina.output();
  EXPECT_TRUE(ListDir(dir.path() + "/work/work").empty());
}

}  // namespace
}  // namespace lamina::testing
