// Data integrity under a random mix of operations, and descriptor bounds.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "integration/passthrough/passthrough_fixture.h"

namespace lamina::testing {
namespace {

class PassthroughStressTest : public PassthroughTest {};

constexpr size_t kMaxSize = 1 << 20;

// Applies random operations to one file through the mount and to an
// in-memory reference, checking contents as it goes.
class Exerciser {
 public:
  Exerciser(int fd, uint32_t seed) : fd_(fd), rng_(seed) {}

  void Step() {
    switch (Pick(0, 6)) {
      case 0:
        return Pwrite();
      case 1:
        return Truncate();
      case 2:
        return Fallocate();
      case 3:
        return CopyRange();
      case 4:
        return Mmap();
      default:
        return Verify(Pick(0, reference_.size()), Pick(0, 65536));
    }
  }

  void VerifyAll() { Verify(0, reference_.size() + 1); }

 private:
  size_t Pick(size_t lo, size_t hi) { return std::uniform_int_distribution<size_t>(lo, hi)(rng_); }

  void Pwrite() {
    size_t off = Pick(0, kMaxSize - 1), len = Pick(1, std::min<size_t>(65536, kMaxSize - off));
    std::string data(len, '\0');
    for (char& c : data) c = static_cast<char>(rng_());
    ASSERT_EQ(pwrite(fd_, data.data(), len, static_cast<off_t>(off)), static_cast<ssize_t>(len));
    if (reference_.size() < off + len) reference_.resize(off + len, '\0');
    reference_.replace(off, len, data);
  }

  void Truncate() {
    size_t size = Pick(0, kMaxSize);
    ASSERT_EQ(ftruncate(fd_, static_cast<off_t>(size)), 0);
    reference_.resize(size, '\0');
  }

  void Fallocate() {
    size_t off = Pick(0, kMaxSize - 1), len = Pick(1, std::min<size_t>(200000, kMaxSize - off));
    int modes[] = {0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                   FALLOC_FL_ZERO_RANGE};
    int mode = modes[Pick(0, 3)];
    ASSERT_EQ(fallocate(fd_, mode, static_cast<off_t>(off), static_cast<off_t>(len)), 0)
        << "mode " << mode << ": " << strerror(errno);
    bool keep = (mode & FALLOC_FL_KEEP_SIZE) != 0;
    if (!keep && reference_.size() < off + len) reference_.resize(off + len, '\0');
    if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
      size_t end = std::min(reference_.size(), off + len);
      if (off < end) std::fill(reference_.begin() + off, reference_.begin() + end, '\0');
    }
  }

  void CopyRange() {
    if (reference_.size() < 2) return;
    // Same-file copies must not overlap: copy from the first half to the second.
    size_t half = reference_.size() / 2;
    size_t len = Pick(1, half);
    size_t src = Pick(0, half - len), dst = Pick(half, kMaxSize - len);
    loff_t in = static_cast<loff_t>(src), out = static_cast<loff_t>(dst);
    size_t done = 0;
    while (done < len) {
      ssize_t n = copy_file_range(fd_, &in, fd_, &out, len - done, 0);
      ASSERT_GT(n, 0) << strerror(errno);
      done += static_cast<size_t>(n);
    }
    std::string chunk = reference_.substr(src, len);
    if (reference_.size() < dst + len) reference_.resize(dst + len, '\0');
    reference_.replace(dst, len, chunk);
  }

  void Mmap() {
    if (reference_.empty()) return;
    size_t size = reference_.size();
    void* map = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    ASSERT_NE(map, MAP_FAILED) << strerror(errno);
    char* bytes = static_cast<char*>(map);
    size_t off = Pick(0, size - 1), len = Pick(1, std::min<size_t>(8192, size - off));
    ASSERT_EQ(std::memcmp(bytes + off, reference_.data() + off, len), 0) << "mmap read at " << off;
    for (size_t i = 0; i < len; ++i) bytes[off + i] = static_cast<char>(rng_());
    reference_.replace(off, len, bytes + off, len);
    ASSERT_EQ(msync(map, size, MS_SYNC), 0);
    munmap(map, size);
  }

  void Verify(size_t off, size_t len) {
    std::string got(len, '\0');
    ssize_t n = pread(fd_, got.data(), len, static_cast<off_t>(off));
    ASSERT_GE(n, 0) << strerror(errno);
    size_t expected = off >= reference_.size() ? 0 : std::min(len, reference_.size() - off);
    ASSERT_EQ(static_cast<size_t>(n), expected) << "short read at " << off;
    ASSERT_TRUE(got.compare(0, expected, reference_, off, expected) == 0)
        << "contents differ in [" << off << ", " << off + expected << ")";
  }

  int fd_;
  std::mt19937 rng_;
  std::string reference_;
};

TEST_P(PassthroughStressTest, RandomOperationsKeepDataIntact) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  int fd = open(Mnt("data").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  Exerciser exerciser(fd, seed);
  for (int i = 0; i < 3000 && !HasFatalFailure(); ++i) {
    exerciser.Step();
    if (i % 500 == 0 && !HasFatalFailure()) exerciser.VerifyAll();
  }
  if (!HasFatalFailure()) exerciser.VerifyAll();
  ASSERT_EQ(fsync(fd), 0);
  close(fd);
  // And the backing file agrees with what the mount showed.
  EXPECT_EQ(ReadFile(Src("data")), ReadFile(Mnt("data")));
}

TEST_P(PassthroughStressTest, DescriptorCountStaysFlat) {
  // The daemon runs in this process: its descriptors are ours.
  auto settle = [&](int baseline) {
    return WaitUntil([&] { return CountFds(getpid()) <= baseline + 2; }, std::chrono::seconds(10));
  };
  WriteFile(Mnt("file"), "x");
  const int baseline = CountFds(getpid());
  for (int i = 0; i < 300; ++i) {
    std::string dir = Mnt("dir" + std::to_string(i % 7));
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    ASSERT_EQ(rmdir(dir.c_str()), 0);
    int fd = open(Mnt("file").c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    close(fd);
    WriteFile(Mnt("tmp"), "y");
    ASSERT_EQ(unlink(Mnt("tmp").c_str()), 0);
  }
  EXPECT_TRUE(settle(baseline)) << "descriptors: " << baseline << " -> " << CountFds(getpid());
}

INSTANTIATE_TEST_SUITE_P(passthrough, PassthroughStressTest, LAMINA_PASSTHROUGH_PARAMS, ParamName);

}  // namespace
}  // namespace lamina::testing
