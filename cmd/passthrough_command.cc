// `laminafs passthrough`: mirrors SOURCE at MOUNTPOINT.

#include "cmd/passthrough_command.h"

#include <sys/stat.h>

#include <cstdio>

#include "cmd/daemon.h"
#include "cmd/options.h"
#include "passthrough/passthrough_fs.h"

namespace lamina::cmd {

int RunPassthrough(const std::vector<std::string>& args) {
  absl::StatusOr<MountCommand> command = ParseMountCommand(args);
  if (!command.ok()) {
    std::fprintf(stderr, "laminafs passthrough: %s\n",
                 std::string(command.status().message()).c_str());
    std::fprintf(stderr, "usage: laminafs passthrough [-f] [-d] [-o OPT,...] SOURCE MOUNTPOINT\n");
    return 2;
  }
  struct stat st;
  if (stat(command->source.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "laminafs passthrough: source '%s' is not a directory\n",
                 command->source.c_str());
    return 2;
  }

  PassthroughOptions fs_options;
  fs_options.source = command->source;
  fs_options.passthrough = command->passthrough;
  fs_options.max_nodes = command->max_nodes;
  fs_options.max_write = command->max_write.value_or(0);
  fs_options.noatime = command->noatime;
  fs_options.descriptor_limit = command->nofile;
  // The kernel checks every permission, with the source's ACLs
  // (docs/security.md): the daemon acts on the source as root for whoever
  // uses the mount.
  fs_options.posix_acl = true;
  if (command->timeout) {
    fs_options.entry_timeout = fs_options.attr_timeout = fs_options.negative_timeout =
        *command->timeout;
  }
  absl::StatusOr<std::unique_ptr<PassthroughFs>> fs = PassthroughFs::Create(fs_options);
  if (!fs.ok()) {
    std::fprintf(stderr, "laminafs passthrough: %s\n", fs.status().ToString().c_str());
    return 1;
  }
  FitWorkersToReserve(*command, (*fs)->budget().plan());
  std::vector<std::string> mount_options = command->mount_options;
  AddPermissionChecks(mount_options);
  mount_options.push_back("fsname=" +
                          (command->fsname.empty() ? command->source : command->fsname));
  return ServeCommand(*command, **fs, std::move(mount_options));
}

}  // namespace lamina::cmd
