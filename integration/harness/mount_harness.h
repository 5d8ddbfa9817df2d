// Helpers for mounted integration tests: temporary directories, child
// daemons and mount checks. Everything here cleans up in its destructor,
// so a failing test still unmounts what it mounted and leaves no process.

#ifndef LAMINA_INTEGRATION_HARNESS_MOUNT_HARNESS_H_
#define LAMINA_INTEGRATION_HARNESS_MOUNT_HARNESS_H_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "integration/harness/untouched_layers.h"

namespace lamina::testing {

// A fresh directory under /tmp, removed recursively (after detaching any
// mount inside it) on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "lamina-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name, created as a directory.
  std::string Subdir(const std::string& name) const;

 private:
  std::string path_;
};

// A child process whose stdout+stderr are captured. Killed with SIGKILL
// and reaped on destruction if still running.
class ChildProcess {
 public:
  explicit ChildProcess(const std::vector<std::string>& argv);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Reads output until a line containing `text` appears; false on timeout
  // or if the child exits first.
  bool WaitForOutput(const std::string& text, std::chrono::milliseconds timeout);
  void Signal(int sig);
  // The exit status (WEXITSTATUS, or 128+signal), or nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  bool running();
  // All output read so far.
  const std::string& output() const { return output_; }

 private:
  void Drain(int timeout_ms);

  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string output_;
  std::optional<int> status_;
};

// A `laminafs` daemon kept in the foreground (-f) as a child process, serving
// `mountpoint`. The constructor waits until the mount appears; the
// destructor unmounts it and ends the daemon, whatever happened. The lower
// layers named in `args` are digested before the daemon starts and checked
// once it has ended (UntouchedLayers): a change to one fails the test.
class LaminafsMount {
 public:
  // `args` go between the program and the mountpoint, e.g. {"-o", options},
  // or {"passthrough", "-o", options, source}.
  LaminafsMount(const std::vector<std::string>& args, const std::string& mountpoint);
  ~LaminafsMount();
  LaminafsMount(const LaminafsMount&) = delete;
  LaminafsMount& operator=(const LaminafsMount&) = delete;

  bool mounted() const { return mounted_; }
  pid_t pid() const { return daemon_->pid(); }
  bool running() { return daemon_->running(); }
  const std::string& output() const { return daemon_->output(); }
  // Unmounts and waits for the daemon to end: its exit status, or nullopt
  // if it had to be killed. Then checks the lower layers.
  std::optional<int> Unmount();

 private:
  std::string mountpoint_;
  UntouchedLayers lowers_;
  std::unique_ptr<ChildProcess> daemon_;
  bool mounted_ = false;
};

// The existing directories the last lowerdir= option in laminafs arguments
// ("-o OPTS" or "-oOPTS") names, resolved as the command resolves them
// (realpath, relative to the working directory); a backslash makes the
// next character ordinary ("\:" a colon, "\," a comma), as in kernel
// overlayfs' options.
std::vector<std::string> LowerdirsInArgs(const std::vector<std::string>& args);

// The -o string of an overlay mount: lowers top first; no upper if empty.
std::string OverlayOptionString(const std::vector<std::string>& lowers,
                                const std::string& upper = "", const std::string& work = "");

// Loop-mounts a new journalled ext4 of `mib` MiB, in the image file
// `dir`.img, at `dir` (TempDir detaches it again). Unlike the tmpfs and the
// journal-less root filesystem of the test machines, it gives a freed inode
// number to the next new file at once, as a busy upper filesystem does.
// False, with the command in `*error`, if that failed.
bool MountExt4Image(const std::string& dir, int mib, std::string* error);

// Whether `path` is a mount point of a FUSE filesystem (per mountinfo).
bool IsFuseMounted(const std::string& path);
// Polls `condition` every 10 ms until true or the timeout.
bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout);
// Detaches whatever is mounted at `path`, ignoring errors.
void ForceUnmount(const std::string& path);
// Aborts the FUSE connection mounted at `path` through fusectl.
bool AbortConnection(const std::string& path);

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& data);
// Sorted names in a directory, without "." and "..".
std::vector<std::string> ListDir(const std::string& path);
// ReadFile and ListDir for a test's own look into a lower layer whose
// digest is watched (UntouchedLayers): with O_NOATIME, so that the look
// leaves the atimes as they were. Not for paths in a mount (the flag would
// reach the daemon and change what is tested).
std::string ReadFileQuietly(const std::string& path);
std::vector<std::string> ListDirQuietly(const std::string& path);
// Clears the immutable and append-only flags of every file and directory
// below `root` (and of `root`), so that a test's tree can be deleted. Walks
// with *at() calls and O_NOFOLLOW: symlinks and special files are left
// alone, nothing outside `root` is touched.
void ClearProtectionFlags(const std::string& root);
// Absolute path of a built binary (the build tree's layout).
std::string BuiltBinary(const std::string& relative);
// Number of open descriptors of a process.
int CountFds(pid_t pid);
// Whether this process holds a descriptor of the file at `path` (as
// /proc/self/fd shows it).
bool HoldsDescriptorOf(const std::string& path);

// Sets the fuse module's enable_uring parameter (FUSE-over-io_uring) for its
// lifetime and puts the previous value back on destruction, also when the
// test fails or is skipped. The parameter is global: it decides what new
// mounts are offered; a mounted connection keeps what it negotiated.
class FuseUringSetting {
 public:
  explicit FuseUringSetting(bool enable);
  ~FuseUringSetting();
  FuseUringSetting(const FuseUringSetting&) = delete;
  FuseUringSetting& operator=(const FuseUringSetting&) = delete;

  // False when this kernel has no FUSE-over-io_uring at all (no io_uring,
  // or a fuse module without the parameter); `unsupported_reason()` says which.
  bool supported() const { return reason_.empty(); }
  const std::string& unsupported_reason() const { return reason_; }
  // Whether the requested value was written.
  bool applied() const { return applied_; }

 private:
  std::string previous_;
  std::string reason_;
  bool applied_ = false;
};

}  // namespace lamina::testing

#endif  // LAMINA_INTEGRATION_HARNESS_MOUNT_HARNESS_H_
