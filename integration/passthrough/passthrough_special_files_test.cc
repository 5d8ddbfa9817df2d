// FIFOs, sockets and device nodes through the passthrough: the daemon never
// opens an object it serves that is not a regular file or a directory (a
// FIFO without a writer would block the worker for good, a device would be
// opened as root), so chown, chgrp, chmod, truncate, utimes, xattrs and
// open of each return at once with the plain twin's result. Each list of
// operations runs in a child process that the test waits for with a bound:
// a hang fails the test instead of hanging the run.

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "core/request_context.h"
#include "integration/passthrough/passthrough_fixture.h"

namespace lamina::testing {
namespace {

using std::chrono::seconds;

std::string Outcome(long rc) {
  if (rc >= 0) return "ok";
  const char* name = strerrorname_np(errno);
  return name != nullptr ? name : std::to_string(errno);
}

// The special files, made in `root` as root.
void MakeSpecialFiles(const std::string& root) {
  ASSERT_EQ(mkfifo((root + "/fifo").c_str(), 0666), 0);
  ASSERT_EQ(mknod((root + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  // A loop device number no driver is likely to back: open says ENXIO.
  ASSERT_EQ(mknod((root + "/blk").c_str(), S_IFBLK | 0660, makedev(7, 250)), 0);
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(sock, 0);
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  const std::string path = root + "/sock";
  ASSERT_LT(path.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(bind(sock, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr), 0);
  close(sock);  // the socket file stays, with no listener
}

// Every operation on every special file under `root`, one line each.
std::string OperateOn(const std::string& root) {
  std::string out;
  const struct timespec times[2] = {{1000000, 0}, {2000000, 0}};
  for (const char* name : {"fifo", "sock", "null", "blk"}) {
    const std::string path = root + "/" + name;
    auto line = [&](const char* op, long rc) {
      out += std::string(name) + " " + op + ": " + Outcome(rc) + "\n";
    };
    line("chown", chown(path.c_str(), 1000, 1000));
    line("chgrp", chown(path.c_str(), -1, 2000));
    line("chmod", chmod(path.c_str(), 0640));
    line("truncate", truncate(path.c_str(), 0));
    line("utimes-now", utimensat(AT_FDCWD, path.c_str(), nullptr, 0));
    line("utimes-set", utimensat(AT_FDCWD, path.c_str(), times, 0));
    line("setxattr-user", setxattr(path.c_str(), "user.x", "1", 1, 0));
    line("setxattr-trusted", setxattr(path.c_str(), "trusted.x", "1", 1, 0));
    line("getxattr-trusted", getxattr(path.c_str(), "trusted.x", nullptr, 0));
    line("removexattr-trusted", removexattr(path.c_str(), "trusted.x"));
    for (int flags : {O_RDONLY | O_NONBLOCK, O_WRONLY | O_NONBLOCK, O_RDWR | O_NONBLOCK}) {
      int fd = open(path.c_str(), flags | O_CLOEXEC);
      line(flags == (O_RDONLY | O_NONBLOCK)   ? "open-read"
           : flags == (O_WRONLY | O_NONBLOCK) ? "open-write"
                                              : "open-readwrite",
           fd);
      if (fd >= 0) close(fd);
    }
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0) {
      out += std::string(name) + " state: mode=" + std::to_string(st.st_mode) +
             " owner=" + std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid) +
             " mtime=" + std::to_string(st.st_mtim.tv_sec) + "\n";
    }
  }
  return out;
}

// Runs OperateOn(root) in a child process and returns its report, or
// "HUNG" if it has not finished in `bound` (the child is then killed).
// `unblock` runs before the kill, to free a daemon worker stuck on a FIFO.
std::string RunBounded(const std::string& root, seconds bound,
                       const std::function<void()>& unblock) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return "pipe failed";
  pid_t pid = fork();
  if (pid == 0) {
    close(pipe_fds[0]);
    const std::string report = OperateOn(root);
    for (size_t done = 0; done < report.size();) {
      ssize_t n = write(pipe_fds[1], report.data() + done, report.size() - done);
      if (n <= 0) _exit(1);
      done += static_cast<size_t>(n);
    }
    _exit(0);
  }
  close(pipe_fds[1]);
  int status = 0;
  const bool finished = WaitUntil([&] { return waitpid(pid, &status, WNOHANG) == pid; }, bound);
  std::string report;
  if (!finished) {
    unblock();
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    report = "HUNG";
  } else {
    char buffer[4096];
    ssize_t n;
    while ((n = read(pipe_fds[0], buffer, sizeof buffer)) > 0) report.append(buffer, size_t(n));
  }
  close(pipe_fds[0]);
  return report;
}

struct SpecialFilesParam {
  const char* name;
  std::vector<std::string> mount_options;
  bool posix_acl;  // false with no default_permissions: no kernel checks
};

class PassthroughSpecialFilesTest : public ::testing::TestWithParam<SpecialFilesParam> {};

TEST_P(PassthroughSpecialFilesTest, AnswerAtOnceAsThePlainDirectory) {
  ASSERT_EQ(geteuid(), 0U) << "needs root";
  MountSetup setup;
  setup.mount_options = GetParam().mount_options;
  setup.posix_acl = GetParam().posix_acl;
  MountedPassthrough mount(PassthroughMode::kAuto, setup);
  MakeSpecialFiles(mount.source());
  MakeSpecialFiles(mount.twin());
  // A daemon worker blocked in open() of the FIFO is freed by a writer.
  auto unblock = [&] {
    int fd = open((mount.source() + "/fifo").c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (fd >= 0) close(fd);
  };
  const std::string mounted = RunBounded(mount.mnt(), seconds(30), unblock);
  const std::string plain = RunBounded(mount.twin(), seconds(30), [] {});
  EXPECT_NE(mounted, "HUNG");
  EXPECT_EQ(mounted, plain) << "through the mount (left), on the plain twin";
}

// Straight at the Filesystem interface, as a buggy or hostile kernel could
// ask: OPEN of a FIFO (no writer), a socket and a device node is refused
// without opening them, on a worker that stays free.
TEST_P(PassthroughSpecialFilesTest, DaemonNeverOpensThem) {
  ASSERT_EQ(geteuid(), 0U) << "needs root";
  MountSetup setup;
  setup.mount_options = GetParam().mount_options;
  setup.posix_acl = GetParam().posix_acl;
  MountedPassthrough mount(PassthroughMode::kAuto, setup);
  MakeSpecialFiles(mount.source());
  PassthroughFs& fs = mount.fs();
  RequestContext ctx;
  for (const char* name : {"fifo", "sock", "null", "blk"}) {
    Result<Entry> entry = fs.Lookup(ctx, kRootNodeId, name);
    ASSERT_TRUE(entry.ok()) << name;
    std::promise<int> opened;
    std::future<int> result = opened.get_future();
    std::thread worker([&, node = entry->node] {
      Result<OpenReply> reply = fs.Open(ctx, node, OpenRequest{O_RDONLY});
      if (reply.ok()) (void)fs.Release(ctx, node, reply->fh, O_RDONLY);
      opened.set_value(reply.ok() ? 0 : reply.error());
    });
    const bool answered = result.wait_for(seconds(30)) == std::future_status::ready;
    if (!answered) {  // blocked on the FIFO: a writer frees it
      int fd = open((mount.source() + "/" + name).c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
      worker.join();
      if (fd >= 0) close(fd);
    } else {
      worker.join();
    }
    EXPECT_TRUE(answered) << name << ": OPEN blocked the worker";
    EXPECT_EQ(result.get(), ENXIO) << name;
    fs.Forget(entry->node, 1);
  }
}

INSTANTIATE_TEST_SUITE_P(
    passthrough, PassthroughSpecialFilesTest,
    ::testing::Values(
        SpecialFilesParam{"KernelChecks", {"default_permissions", "allow_other", "dev"}, true},
        SpecialFilesParam{"NoKernelChecks", {"allow_other", "dev"}, false}),
    [](const ::testing::TestParamInfo<SpecialFilesParam>& info) { return info.param.name; });

}  // namespace
}  // namespace lamina::testing
