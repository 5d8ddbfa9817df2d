#include "integration/difffuzz/overlay_mounts.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "integration/difffuzz/fs_util.h"

namespace lamina::difffuzz {
namespace {

// The messages the kernel left in a filesystem context.
std::string ContextMessages(int fs_fd) {
  std::string out;
  char buffer[1024];
  for (ssize_t n; (n = read(fs_fd, buffer, sizeof(buffer))) > 0;) {
    out += " [" + std::string(buffer, static_cast<size_t>(n)) + "]";
  }
  return out;
}

// Overlayfs logs most of its reasons for refusing a mount to the kernel
// log, not to the filesystem context: the "overlayfs:" lines logged after
// `kmsg` was opened (at its end). Another overlay mounted at the same
// moment could add its own; they are marked as read from the log.
std::string OverlayLogLines(int kmsg) {
  std::string out;
  char record[2048];
  for (ssize_t n; kmsg >= 0 && (n = read(kmsg, record, sizeof(record) - 1)) > 0;) {
    std::string line(record, static_cast<size_t>(n));
    const size_t text = line.find(';');
    if (text == std::string::npos || line.find("overlayfs:", text) == std::string::npos) continue;
    // The reasons; not the advice, nor entries it cleaned up.
    if (line.find("try ", text) != std::string::npos ||
        line.find("orphan", text) != std::string::npos) {
      continue;
    }
    line = line.substr(text + 1);
    while (!line.empty() && line.back() == '\n') line.pop_back();
    out += " [log: " + line + "]";
  }
  return out;
}

}  // namespace

std::unique_ptr<KernelOverlay> KernelOverlay::Mount(const StackOptions& options,
                                                    const StackDirs& dirs,
                                                    const std::string& mountpoint,
                                                    std::string* error) {
  int fs = fsopen("overlay", FSOPEN_CLOEXEC);
  if (fs < 0) {
    *error = "fsopen: " + ErrnoName(errno);
    return nullptr;
  }
  std::string lowerdir;
  for (const std::string& lower : dirs.Lowers(options)) {
    lowerdir += (lowerdir.empty() ? "" : ":") + lower;
  }
  std::vector<std::pair<std::string, std::string>> settings = {{"lowerdir", lowerdir}};
  if (options.upper) {
    settings.push_back({"upperdir", dirs.Layer(kUpperLayer)});
    settings.push_back({"workdir", dirs.work()});
  }
  if (options.userxattr) {
    settings.push_back({"userxattr", ""});
  } else {
    settings.push_back({"redirect_dir", "on"});
    settings.push_back({"index", options.index ? "on" : "off"});
  }
  settings.push_back({"metacopy", "off"});
  std::string failed;
  for (const auto& [key, value] : settings) {
    int rc = value.empty() ? fsconfig(fs, FSCONFIG_SET_FLAG, key.c_str(), nullptr, 0)
                           : fsconfig(fs, FSCONFIG_SET_STRING, key.c_str(), value.c_str(), 0);
    if (rc != 0) {
      failed = key + ": " + ErrnoName(errno);
      break;
    }
  }
  int kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (kmsg >= 0) lseek(kmsg, 0, SEEK_END);
  if (failed.empty() && fsconfig(fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    const int error = errno;
    failed = "create: " + ErrnoName(error) + OverlayLogLines(kmsg);
  }
  if (kmsg >= 0) close(kmsg);
  int mnt = -1;
  if (failed.empty() && (mnt = fsmount(fs, FSMOUNT_CLOEXEC, 0)) < 0) {
    failed = "fsmount: " + ErrnoName(errno);
  }
  if (!failed.empty()) {
    *error = failed + ContextMessages(fs);
    close(fs);
    return nullptr;
  }
  close(fs);
  int rc = move_mount(mnt, "", AT_FDCWD, mountpoint.c_str(), MOVE_MOUNT_F_EMPTY_PATH);
  const int move_error = errno;
  close(mnt);
  if (rc != 0) {
    *error = "move_mount: " + ErrnoName(move_error);
    return nullptr;
  }
  return std::unique_ptr<KernelOverlay>(new KernelOverlay(mountpoint));
}

KernelOverlay::~KernelOverlay() {
  // A plain unmount, so that the superblock (and the upper's in-use mark,
  // which index=on checks at the next mount) is gone when this returns.
  if (umount2(mountpoint_.c_str(), 0) != 0) umount2(mountpoint_.c_str(), MNT_DETACH);
}

std::unique_ptr<LaminaOverlay> LaminaOverlay::Mount(const StackOptions& options,
                                                    const StackDirs& dirs,
                                                    const std::string& mountpoint,
                                                    std::string* error) {
  OverlayOptions o;
  o.layers.lowers = dirs.Lowers(options);
  if (options.upper) {
    o.layers.upper = dirs.Layer(kUpperLayer);
    o.layers.work = dirs.work();
  }
  // What laminafs makes of the kernel's options above (cmd/options.cc).
  o.layers.userxattr = options.userxattr;
  o.layers.index = options.index;
  o.redirect_dir = !options.userxattr;
  o.redirect_follow = !options.userxattr;
  auto fs = OverlayFs::Create(o);
  if (!fs.ok()) {
    *error = fs.status().ToString();
    return nullptr;
  }
  std::unique_ptr<LaminaOverlay> overlay(new LaminaOverlay());
  overlay->fs_ = std::move(*fs);
  ServerOptions server_options;
  server_options.mount_options = {"fsname=lamina-difffuzz", "allow_other", "suid", "dev",
                                  "default_permissions"};
  // As laminafs mounts an overlay without an upper: the VFS then answers
  // EROFS before any lookup, as for the kernel's read-only superblock.
  if (!options.upper) server_options.mount_options.push_back("ro");
  server_options.session.threads = 2;
  auto server = FuseServer::Start(*overlay->fs_, mountpoint, server_options);
  if (!server.ok()) {
    *error = server.status().ToString();
    return nullptr;
  }
  overlay->server_ = std::move(*server);
  return overlay;
}

LaminaOverlay::~LaminaOverlay() {
  server_.reset();
  fs_.reset();
}

}  // namespace lamina::difffuzz
