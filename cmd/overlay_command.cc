#include "cmd/overlay_command.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "cmd/daemon.h"
#include "cmd/options.h"
#include "overlay/overlay_fs.h"

namespace lamina::cmd {
namespace {

bool Has(const std::vector<std::string>& options, const std::string& option) {
  return std::find(options.begin(), options.end(), option) != options.end();
}

// Run as root, the mount serves every user of a container rootfs and keeps
// setuid binaries and device nodes working, unless the caller said
// otherwise. (The kernel's permission checks are always on.)
void AddContainerDefaults(std::vector<std::string>& options) {
  if (geteuid() != 0) return;
  if (!Has(options, "allow_other")) options.push_back("allow_other");
  if (!Has(options, "nosuid") && !Has(options, "suid")) options.push_back("suid");
  if (!Has(options, "nodev") && !Has(options, "dev")) options.push_back("dev");
}

}  // namespace

int RunOverlay(const std::vector<std::string>& args) {
  absl::StatusOr<MountCommand> command = ParseMountCommand(args, MountKind::kOverlay);
  if (!command.ok()) {
    std::fprintf(stderr, "laminafs: %s\n", std::string(command.status().message()).c_str());
    std::fprintf(stderr,
                 "usage: laminafs [-f] [-d] -o lowerdir=DIR[:DIR...][,upperdir=DIR,workdir=DIR]"
                 "[,OPT...] MOUNTPOINT\n");
    return 2;
  }
  OverlayOptions fs_options;
  fs_options.layers.lowers = command->lowerdirs;
  fs_options.layers.upper = command->upperdir;
  fs_options.layers.work = command->workdir;
  fs_options.layers.userxattr = command->userxattr;
  fs_options.layers.index = command->index.value_or(true);
  fs_options.layers.volatile_mode = command->volatile_mode;
  fs_options.layers.record_uuid = command->record_uuid;
  fs_options.volatile_mode = command->volatile_mode;
  fs_options.redirect_dir = command->redirect_dir;
  fs_options.redirect_follow = command->redirect_follow;
  fs_options.passthrough = command->passthrough;
  fs_options.layers.ino32 = command->ino32;
  fs_options.layers.noatime = command->noatime;
  fs_options.static_nlink = command->static_nlink;
  fs_options.posix_acl = command->posix_acl;
  fs_options.xattrs = command->xattrs;
  fs_options.max_write = command->max_write.value_or(0);
  fs_options.descriptor_limit = command->nofile;
  if (command->listing_memory) fs_options.listing_memory = *command->listing_memory;
  overlay::IdMapConfig ids = command->ids;
  ids.overflow_uid = overlay::KernelOverflowUid();
  ids.overflow_gid = overlay::KernelOverflowGid();
  fs_options.ids = overlay::IdMap(std::move(ids));
  if (command->timeout) {
    fs_options.entry_timeout = fs_options.attr_timeout = fs_options.negative_timeout =
        *command->timeout;
  }
  absl::StatusOr<std::unique_ptr<OverlayFs>> fs = OverlayFs::Create(fs_options);
  if (!fs.ok()) {
    std::fprintf(stderr, "laminafs: %s\n", std::string(fs.status().message()).c_str());
    return 1;
  }
  FitWorkersToReserve(*command, (*fs)->budget().plan());
  std::vector<std::string> mount_options = command->mount_options;
  if (command->upperdir.empty() && !Has(mount_options, "ro")) mount_options.push_back("ro");
  AddPermissionChecks(mount_options);
  AddContainerDefaults(mount_options);
  mount_options.push_back("fsname=" + (command->fsname.empty() ? "laminafs" : command->fsname));
  return ServeCommand(*command, **fs, std::move(mount_options));
}

}  // namespace lamina::cmd
