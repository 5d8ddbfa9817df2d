// Running a mount as a daemon or in the foreground, shared by every
// laminafs mount subcommand.
//
// Background mode forks; the child mounts, and only once INIT has been
// answered (FuseServer::Start returned OK) does the parent exit 0, so a
// script that runs `laminafs ...` can use the mount on the next line. A
// failure in the child is printed by the parent, which exits 1.

#ifndef LAMINA_CMD_DAEMON_H_
#define LAMINA_CMD_DAEMON_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/descriptor_budget.h"
#include "core/fuse_server.h"

namespace lamina::cmd {

struct DaemonOptions {
  bool foreground = false;
  bool debug = false;
  std::string log_file;  // background only; syslog when empty
  std::string name;      // program name for messages and syslog
};

using StartFn = std::function<absl::StatusOr<std::unique_ptr<FuseServer>>()>;

// Starts the server with `start` (foreground or in a daemon child) and
// serves until unmounted or signalled. Returns the process exit code.
int RunMounted(const DaemonOptions& options, const StartFn& start);

struct MountCommand;

// What the daemon's descriptor reserve (core/descriptor_budget.h) must
// hold: a few of its own (log, signal handling, layer roots), and per
// worker its channel or ring plus what one request opens while it runs (a
// copy-up's source and staged copy, a directory being read).
inline constexpr size_t kDaemonDescriptors = 64;
inline constexpr size_t kDescriptorsPerWorker = 8;

// Lowers the command's max_threads (and threads) so that the workers' own
// descriptors fit in `plan`'s reserve, saying so on stderr and in the log.
void FitWorkersToReserve(MountCommand& command, const DescriptorPlan& plan);

// Adds default_permissions unless present. The kernel, which knows each
// caller's groups and capabilities, then checks every access before the
// daemon acts with its own credentials (docs/security.md); no option turns
// that off.
void AddPermissionChecks(std::vector<std::string>& mount_options);

// What the command's options turn off of the checks a user of the mount
// would meet on the layers or kernel overlayfs, one sentence each ("noacl:
// ..."); ServeCommand logs them as warnings, and prints them when detaching.
std::vector<std::string> WeakenedChecks(const MountCommand& command);

// Mounts `fs` at the command's mountpoint with `mount_options` (plus
// subtype=laminafs) and serves it as the command says: -f, -d (tracing every
// request), log=, threads=. Returns the process exit code.
int ServeCommand(const MountCommand& command, Filesystem& fs,
                 std::vector<std::string> mount_options);

}  // namespace lamina::cmd

#endif  // LAMINA_CMD_DAEMON_H_
