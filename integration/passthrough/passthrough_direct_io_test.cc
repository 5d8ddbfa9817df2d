// O_DIRECT reads and writes through the mount against the plain directory
// (found by fstests' generic/355). Where the daemon serves a file's I/O
// (passthrough off, or a writable open of a set-ID file), it opened its own
// descriptor with the caller's O_DIRECT and wrote from its request buffer,
// where the data follows the headers: never aligned as direct I/O
// requires, so every such write failed with EINVAL.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "integration/passthrough/passthrough_fixture.h"

namespace lamina::testing {
namespace {

constexpr size_t kBlock = 4096;

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// Writes a block at offset `kBlock` of `path` (created with `mode`) with
// O_DIRECT, reads it back with O_DIRECT; what each step answered.
std::string DirectWriteAndRead(const std::string& path, mode_t mode) {
  void* raw = nullptr;
  if (posix_memalign(&raw, kBlock, 2 * kBlock) != 0) return "no memory";
  std::unique_ptr<char, FreeDeleter> buffer(static_cast<char*>(raw));
  char* out = buffer.get();
  char* in = buffer.get() + kBlock;
  for (size_t i = 0; i < kBlock; ++i) out[i] = static_cast<char>('a' + i % 26);
  int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return "create failed";
  close(fd);
  if (chmod(path.c_str(), mode) != 0) return "chmod failed";
  std::string result;
  fd = open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
  result += "open:" + std::string(fd >= 0 ? "ok" : strerror(errno));
  if (fd >= 0) {
    ssize_t n = pwrite(fd, out, kBlock, kBlock);
    result += " write:" + (n >= 0 ? std::to_string(n) : std::string(strerror(errno)));
    close(fd);
  }
  fd = open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = pread(fd, in, kBlock, kBlock);
    result += " read:" + (n >= 0 ? std::to_string(n) : std::string(strerror(errno)));
    result += std::memcmp(in, out, kBlock) == 0 ? " same" : " different";
    close(fd);
  }
  struct stat st {};
  stat(path.c_str(), &st);
  result += " size:" + std::to_string(st.st_size);
  return result;
}

class PassthroughDirectIoTest : public PassthroughTest {};

TEST_P(PassthroughDirectIoTest, PlainFile) {
  EXPECT_EQ(DirectWriteAndRead(Mnt("f"), 0644), DirectWriteAndRead(Twin("f"), 0644));
  EXPECT_EQ(DirectWriteAndRead(Twin("g"), 0644), "open:ok write:4096 read:4096 same size:8192");
}

// Writable opens of set-ID files are the daemon's in either mode.
TEST_P(PassthroughDirectIoTest, SetIdFile) {
  EXPECT_EQ(DirectWriteAndRead(Mnt("f"), 06755), DirectWriteAndRead(Twin("f"), 06755));
}

INSTANTIATE_TEST_SUITE_P(Modes, PassthroughDirectIoTest, LAMINA_PASSTHROUGH_PARAMS, ParamName);

}  // namespace
}  // namespace lamina::testing
