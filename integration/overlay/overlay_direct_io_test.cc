// O_DIRECT reads and writes through the overlay, side by side with kernel
// overlayfs (found by fstests' generic/355). Where the daemon serves a
// file's I/O (passthrough off, or a writable open of a set-ID file), it
// opened its own descriptor with the caller's O_DIRECT and wrote from its
// request buffer, where the data follows the headers: never aligned as
// direct I/O requires, so every such write failed with EINVAL.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

constexpr size_t kBlock = 4096;

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// Writes a block at offset `kBlock` of `path` (made `mode` first) with
// O_DIRECT, reads it back with O_DIRECT; what each step answered.
std::string DirectWriteAndRead(const std::string& path, mode_t mode) {
  void* raw = nullptr;
  if (posix_memalign(&raw, kBlock, 2 * kBlock) != 0) return "no memory";
  std::unique_ptr<char, FreeDeleter> buffer(static_cast<char*>(raw));
  char* out = buffer.get();
  char* in = buffer.get() + kBlock;
  for (size_t i = 0; i < kBlock; ++i) out[i] = static_cast<char>('a' + i % 26);
  std::string result = "chmod:" + Outcome(chmod(path.c_str(), mode));
  int fd = open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
  result += " open:" + Outcome(fd);
  if (fd >= 0) {
    ssize_t n = pwrite(fd, out, kBlock, kBlock);
    result += " write:" + (n >= 0 ? std::to_string(n) : Outcome(-1));
    close(fd);
  }
  fd = open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = pread(fd, in, kBlock, kBlock);
    result += " read:" + (n >= 0 ? std::to_string(n) : Outcome(-1));
    result += std::memcmp(in, out, kBlock) == 0 ? " same" : " different";
    close(fd);
  }
  struct stat st {};
  stat(path.c_str(), &st);
  result += " size:" + std::to_string(st.st_size);
  return result;
}

std::string BothFiles(const std::string& root) {
  int fd = open((root + "/new").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd >= 0) close(fd);
  return "lower: " + DirectWriteAndRead(root + "/lower", 0644) +
         "; new: " + DirectWriteAndRead(root + "/new", 0644) +
         "; set-id lower: " + DirectWriteAndRead(root + "/setid", 06755);
}

const std::vector<std::string> kLower = {"f lower lower-data", "f setid set-id-data"};

class OverlayDirectIoTest : public OverlayPair {};

TEST_F(OverlayDirectIoTest, KernelPassthroughOrSetIdFiles) {
  Mount({kLower});
  ExpectSame(BothFiles, "O_DIRECT through the overlay");
}

TEST_F(OverlayDirectIoTest, DaemonServedIo) {
  lamina_options_.passthrough = PassthroughMode::kOff;
  Mount({kLower});
  ExpectSame(BothFiles, "O_DIRECT through the overlay, passthrough off");
}

}  // namespace
}  // namespace lamina::testing
