// `laminafs [-f] [-d] -o lowerdir=...,upperdir=...,workdir=... MOUNTPOINT`:
// mounts an overlay, with the option syntax of mount -t overlay and
// fuse-overlayfs.

#ifndef LAMINA_CMD_OVERLAY_COMMAND_H_
#define LAMINA_CMD_OVERLAY_COMMAND_H_

#include <string>
#include <vector>

namespace lamina::cmd {

// Returns the process exit code.
int RunOverlay(const std::vector<std::string>& args);

}  // namespace lamina::cmd

#endif  // LAMINA_CMD_OVERLAY_COMMAND_H_
