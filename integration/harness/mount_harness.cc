#include "integration/harness/mount_harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "core/fuse_mount.h"

namespace lamina::testing {
namespace {

void UnmountAllUnder(const std::string& root) {
  // Deepest first, so nested mounts go before their parents.
  std::vector<std::string> mounts;
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root_field, mountpoint;
    fields >> id >> parent >> dev >> root_field >> mountpoint;
    if (mountpoint.rfind(root + "/", 0) == 0 || mountpoint == root) mounts.push_back(mountpoint);
  }
  std::sort(mounts.rbegin(), mounts.rend());
  for (const std::string& m : mounts) umount2(m.c_str(), MNT_DETACH);
}

}  // namespace

TempDir::TempDir(const std::string& prefix) {
  std::string pattern = "/tmp/" + prefix + "-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  UnmountAllUnder(path_);
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::Subdir(const std::string& name) const {
  std::string dir = path_ + "/" + name;
  mkdir(dir.c_str(), 0755);
  return dir;
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  pid_ = fork();
  if (pid_ == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  out_fd_ = pipe_fds[0];
}

ChildProcess::~ChildProcess() {
  if (running()) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
}

void ChildProcess::Drain(int timeout_ms) {
  struct pollfd pfd = {out_fd_, POLLIN, 0};
  if (poll(&pfd, 1, timeout_ms) <= 0) return;
  char buffer[4096];
  ssize_t n = read(out_fd_, buffer, sizeof(buffer));
  if (n > 0) output_.append(buffer, static_cast<size_t>(n));
}

bool ChildProcess::WaitForOutput(const std::string& text, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (output_.find(text) != std::string::npos) return true;
    if (!running()) {
      Drain(0);
      return output_.find(text) != std::string::npos;
    }
    Drain(50);
  }
  return output_.find(text) != std::string::npos;
}

void ChildProcess::Signal(int sig) {
  if (running()) kill(pid_, sig);
}

bool ChildProcess::running() {
  if (status_.has_value()) return false;
  int status;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return r == 0;
}

std::optional<int> ChildProcess::Wait(std::chrono::milliseconds timeout) {
  WaitUntil([this] { return !running(); }, timeout);
  Drain(0);
  return status_;
}

LaminafsMount::LaminafsMount(const std::vector<std::string>& args, const std::string& mountpoint)
    : mountpoint_(mountpoint) {
  for (const std::string& lower : LowerdirsInArgs(args)) lowers_.Watch(lower);
  std::vector<std::string> argv = {BuiltBinary("cmd/laminafs")};
  auto rest = args.begin();
  if (rest != args.end() && *rest == "passthrough") argv.push_back(*rest++);
  argv.push_back("-f");
  argv.insert(argv.end(), rest, args.end());
  argv.push_back(mountpoint);
  daemon_ = std::make_unique<ChildProcess>(argv);
  mounted_ = WaitUntil([&] { return IsFuseMounted(mountpoint_) || !daemon_->running(); },
                       std::chrono::seconds(20)) &&
             IsFuseMounted(mountpoint_);
}

LaminafsMount::~LaminafsMount() {
  Unmount();
}

std::optional<int> LaminafsMount::Unmount() {
  if (IsFuseMounted(mountpoint_)) ForceUnmount(mountpoint_);
  mounted_ = false;
  std::optional<int> status = daemon_->Wait(std::chrono::seconds(15));
  if (!status) {
    daemon_->Signal(SIGKILL);
    daemon_->Wait(std::chrono::seconds(5));
  }
  lowers_.ExpectUntouched();
  return status;
}

namespace {

// `text` split at each `separator` no backslash escapes (a backslash makes
// the next character ordinary, as kernel overlayfs reads its options);
// escapes are kept for the next split.
std::vector<std::string> SplitUnescaped(const std::string& text, char separator) {
  std::vector<std::string> parts(1);
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      parts.back() += text.substr(i++, 2);
    } else if (text[i] == separator) {
      parts.emplace_back();
    } else {
      parts.back() += text[i];
    }
  }
  return parts;
}

std::string Unescaped(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) ++i;
    out += text[i];
  }
  return out;
}

}  // namespace

std::vector<std::string> LowerdirsInArgs(const std::vector<std::string>& args) {
  std::vector<std::string> lowers;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string options;
    if (args[i] == "-o" && i + 1 < args.size()) {
      options = args[++i];
    } else if (args[i].size() > 2 && args[i].rfind("-o", 0) == 0) {
      options = args[i].substr(2);
    } else {
      continue;
    }
    for (const std::string& option : SplitUnescaped(options, ',')) {
      if (option.rfind("lowerdir=", 0) != 0) continue;
      lowers.clear();  // the last lowerdir= counts
      for (const std::string& layer : SplitUnescaped(option.substr(9), ':')) {
        char resolved[PATH_MAX];
        struct stat st;
        if (!layer.empty() && realpath(Unescaped(layer).c_str(), resolved) != nullptr &&
            stat(resolved, &st) == 0 && S_ISDIR(st.st_mode)) {
          lowers.push_back(resolved);
        }
      }
    }
  }
  return lowers;
}

std::string OverlayOptionString(const std::vector<std::string>& lowers, const std::string& upper,
                                const std::string& work) {
  std::string options = "lowerdir=";
  for (size_t i = 0; i < lowers.size(); ++i) options += (i ? ":" : "") + lowers[i];
  if (!upper.empty()) options += ",upperdir=" + upper + ",workdir=" + work;
  return options;
}

bool MountExt4Image(const std::string& dir, int mib, std::string* error) {
  const std::string image = dir + ".img";
  const std::string command = "truncate -s " + std::to_string(mib) + "M " + image +
                              " && mkfs.ext4 -q -F -m 0 " + image + " && mount -o loop " + image +
                              " " + dir;
  if (system(command.c_str()) == 0) return true;
  *error = "could not make an ext4 filesystem: " + command;
  return false;
}

bool IsFuseMounted(const std::string& path) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, mountpoint;
    fields >> id >> parent >> dev >> root >> mountpoint;
    if (mountpoint != path) continue;
    size_t dash = line.find(" - ");
    if (dash != std::string::npos && line.compare(dash + 3, 4, "fuse") == 0) return true;
  }
  return false;
}

bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

void ForceUnmount(const std::string& path) {
  umount2(path.c_str(), MNT_DETACH);
}

bool AbortConnection(const std::string& path) {
  int id = FindMountMinor(path);
  if (id < 0) return false;
  const char* kFusectl = "/sys/fs/fuse/connections";
  std::string abort_path = std::string(kFusectl) + "/" + std::to_string(id) + "/abort";
  if (access(abort_path.c_str(), W_OK) != 0) mount("fusectl", kFusectl, "fusectl", 0, nullptr);
  std::ofstream out(abort_path);
  out << "1";
  out.close();
  return !out.fail();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

std::vector<std::string> ListDir(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return names;
  while (struct dirent* e = readdir(dir)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

std::string ReadFileQuietly(const std::string& path) {
  std::string data;
  int fd = open(path.c_str(), O_RDONLY | O_NOATIME | O_CLOEXEC);
  if (fd < 0) return data;
  char buffer[65536];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) {
    data.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return data;
}

namespace {

// `fd` (a file or directory opened for reading): its protection flags off.
void ClearFlagsOf(int fd) {
  int flags = 0;
  if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) return;
  if ((flags & (FS_IMMUTABLE_FL | FS_APPEND_FL)) == 0) return;
  flags &= ~(FS_IMMUTABLE_FL | FS_APPEND_FL);
  (void)ioctl(fd, FS_IOC_SETFLAGS, &flags);
}

// Takes `dir_fd` (a directory opened O_RDONLY|O_DIRECTORY; closed here).
void ClearFlagsBelow(int dir_fd) {
  ClearFlagsOf(dir_fd);
  DIR* dir = fdopendir(dir_fd);
  if (dir == nullptr) {
    close(dir_fd);
    return;
  }
  while (struct dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (fstatat(dirfd(dir), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) continue;
    const int fd = openat(dirfd(dir), name.c_str(),
                          O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOATIME);
    if (fd < 0) continue;
    if (S_ISDIR(st.st_mode)) {
      ClearFlagsBelow(fd);
    } else {
      ClearFlagsOf(fd);
      close(fd);
    }
  }
  closedir(dir);
}

}  // namespace

void ClearProtectionFlags(const std::string& root) {
  const int fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) ClearFlagsBelow(fd);
}

std::vector<std::string> ListDirQuietly(const std::string& path) {
  std::vector<std::string> names;
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOATIME | O_CLOEXEC);
  DIR* dir = fd < 0 ? nullptr : fdopendir(fd);
  if (dir == nullptr) {
    if (fd >= 0) close(fd);
    return names;
  }
  while (struct dirent* e = readdir(dir)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

std::string BuiltBinary(const std::string& relative) {
  return std::string(LAMINA_BUILD_DIR) + "/" + relative;
}

bool HoldsDescriptorOf(const std::string& path) {
  for (const std::string& fd : ListDir("/proc/self/fd")) {
    char target[PATH_MAX];
    ssize_t n = readlink(("/proc/self/fd/" + fd).c_str(), target, sizeof(target));
    if (n > 0 && std::string(target, static_cast<size_t>(n)) == path) return true;
  }
  return false;
}

int CountFds(pid_t pid) {
  int count = 0;
  std::error_code error;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", error);
       !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    ++count;
  }
  return count;
}

namespace {

constexpr char kEnableUring[] = "/sys/module/fuse/parameters/enable_uring";

bool WriteParameter(const std::string& value) {
  std::ofstream out(kEnableUring);
  out << value << "\n";
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace

FuseUringSetting::FuseUringSetting(bool enable) {
  // io_uring_setup(0, NULL) fails with EINVAL or EFAULT where io_uring
  // exists and with ENOSYS where it does not.
  if (syscall(__NR_io_uring_setup, 0, nullptr) < 0 && errno == ENOSYS) {
    reason_ = "the kernel has no io_uring";
    return;
  }
  std::ifstream in(kEnableUring);
  if (!std::getline(in, previous_)) {
    reason_ =
        std::string("the kernel's fuse module has no FUSE-over-io_uring (no ") + kEnableUring + ")";
    return;
  }
  applied_ = WriteParameter(enable ? "1" : "0");
}

FuseUringSetting::~FuseUringSetting() {
  if (!previous_.empty()) WriteParameter(previous_);
}

}  // namespace lamina::testing
