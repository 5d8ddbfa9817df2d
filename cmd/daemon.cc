#include "cmd/daemon.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "cmd/options.h"
#include "core/descriptor_budget.h"
#include "core/logging_filesystem.h"
#include "spdlog/sinks/basic_file_sink.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/sinks/syslog_sink.h"
#include "spdlog/spdlog.h"

namespace lamina::cmd {
namespace {

void SetLevel(bool debug) {
  spdlog::set_level(debug ? spdlog::level::debug : spdlog::level::info);
}

// Serves the started server until unmount or a signal.
int Serve(FuseServer& server) {
  server.ServeUntilSignalled();
  return 0;
}

void WriteAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

int RunForeground(const DaemonOptions& options, const StartFn& start) {
  spdlog::set_default_logger(spdlog::stderr_logger_mt(options.name));
  SetLevel(options.debug);
  FuseServer::BlockServerSignals();
  absl::StatusOr<std::unique_ptr<FuseServer>> server = start();
  if (!server.ok()) {
    std::fprintf(stderr, "%s: %s\n", options.name.c_str(), server.status().ToString().c_str());
    return 1;
  }
  return Serve(**server);
}

// The daemon child: reports the outcome of mounting through `report`
// ("OK" or the error text), then detaches from the terminal and serves.
[[noreturn]] void RunChild(const DaemonOptions& options, const StartFn& start, int report) {
  setsid();
  if (!options.log_file.empty()) {
    spdlog::set_default_logger(spdlog::basic_logger_mt(options.name, options.log_file));
    spdlog::flush_on(spdlog::level::info);
  } else {
    spdlog::set_default_logger(spdlog::syslog_logger_mt(options.name, options.name, LOG_PID));
  }
  SetLevel(options.debug);
  FuseServer::BlockServerSignals();
  absl::StatusOr<std::unique_ptr<FuseServer>> server = start();
  if (!server.ok()) {
    WriteAll(report, server.status().ToString());
    _exit(1);
  }
  WriteAll(report, "OK");
  close(report);
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) dup2(null, fd);
    if (null > STDERR_FILENO) close(null);
  }
  if (chdir("/") != 0) spdlog::warn("chdir(/) failed");
  int code = Serve(**server);
  server->reset();
  spdlog::shutdown();
  _exit(code);
}

}  // namespace

int RunMounted(const DaemonOptions& options, const StartFn& start) {
  if (options.foreground) return RunForeground(options, start);
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    std::perror("pipe");
    return 1;
  }
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    return 1;
  }
  if (pid == 0) {
    close(pipe_fds[0]);
    RunChild(options, start, pipe_fds[1]);
  }
  close(pipe_fds[1]);
  std::string message;
  char buffer[512];
  ssize_t n;
  while ((n = read(pipe_fds[0], buffer, sizeof(buffer))) > 0) {
    message.append(buffer, static_cast<size_t>(n));
    if (message == "OK") break;
  }
  close(pipe_fds[0]);
  if (message == "OK") return 0;
  int status = 0;
  waitpid(pid, &status, 0);
  if (message.empty()) message = "the daemon exited before mounting";
  std::fprintf(stderr, "%s: %s\n", options.name.c_str(), message.c_str());
  return 1;
}

void AddPermissionChecks(std::vector<std::string>& mount_options) {
  if (std::find(mount_options.begin(), mount_options.end(), "default_permissions") ==
      mount_options.end()) {
    mount_options.push_back("default_permissions");
  }
}

std::vector<std::string> WeakenedChecks(const MountCommand& command) {
  std::vector<std::string> weakened;
  if (!command.posix_acl) {
    weakened.push_back(
        "noacl: POSIX ACLs are not enforced; a user an ACL entry denies gets what the mode "
        "bits allow");
  }
  return weakened;
}

void FitWorkersToReserve(MountCommand& command, const DescriptorPlan& plan) {
  const int asked =
      command.max_threads > 0 ? command.max_threads : SessionOptions::kDefaultMaxThreads;
  const size_t room = plan.reserve > kDaemonDescriptors
                          ? (plan.reserve - kDaemonDescriptors) / kDescriptorsPerWorker
                          : 0;
  if (static_cast<size_t>(asked) <= room) return;
  const int fitted = std::max(1, static_cast<int>(room));
  const std::string warning =
      absl::StrCat("max_threads lowered from ", asked, " to ", fitted, ": the daemon's reserve of ",
                   plan.reserve, " descriptors (of ", plan.limit, ") holds no more workers");
  std::fprintf(stderr, "laminafs: %s\n", warning.c_str());
  spdlog::warn("{}", warning);
  command.max_threads = fitted;
  if (command.threads > fitted) command.threads = fitted;
}

int ServeCommand(const MountCommand& command, Filesystem& fs,
                 std::vector<std::string> mount_options) {
  LoggingFilesystem traced(fs);
  Filesystem& served = command.debug ? static_cast<Filesystem&>(traced) : fs;
  ServerOptions server_options;
  server_options.mount_options = std::move(mount_options);
  if (!command.subtype.empty()) {
    server_options.mount_options.push_back("subtype=" + command.subtype);
  }
  server_options.session.threads = command.threads;
  server_options.session.max_threads = command.max_threads;
  if (command.busy_poll_us.has_value()) {
    server_options.session.busy_poll = std::chrono::microseconds(*command.busy_poll_us);
  }
  server_options.io_uring = command.io_uring;
  server_options.stats_path = command.stats_file;

  DaemonOptions daemon;
  daemon.foreground = command.foreground;
  daemon.debug = command.debug;
  daemon.log_file = command.log_file;
  daemon.name = "laminafs";
  const std::string mountpoint = command.mountpoint;
  const std::vector<std::string> weakened = WeakenedChecks(command);
  if (!command.foreground) {
    for (const std::string& warning : weakened) {
      std::fprintf(stderr, "laminafs: WARNING: %s\n", warning.c_str());
    }
  }
  return RunMounted(daemon, [&] {
    for (const std::string& warning : weakened) spdlog::warn("WARNING: {}", warning);
    return FuseServer::Start(served, mountpoint, server_options);
  });
}

}  // namespace lamina::cmd
