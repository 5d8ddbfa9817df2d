#include "core/fuse_server.h"

#include <signal.h>

#include <fstream>
#include <thread>

#include "spdlog/spdlog.h"

namespace lamina {

absl::StatusOr<std::unique_ptr<FuseServer>> FuseServer::Start(Filesystem& fs,
                                                              const std::string& mountpoint,
                                                              ServerOptions options) {
  absl::StatusOr<std::unique_ptr<FuseMount>> mount =
      FuseMount::Create(mountpoint, options.mount_options);
  if (!mount.ok()) return mount.status();
  std::unique_ptr<FuseServer> server(new FuseServer());
  server->mount_ = std::move(*mount);
  if (options.io_uring) {
    auto transport = std::make_unique<IoUringTransport>(server->mount_->fd());
    server->io_uring_ = transport.get();
    server->transport_ = std::move(transport);
  } else {
    server->transport_ = std::make_unique<DevFuseTransport>(server->mount_->fd());
  }
  server->session_ = std::make_unique<Session>(fs, *server->transport_, options.session);
  server->stats_path_ = options.stats_path;
  server->fs_ = &fs;
  absl::Status status = server->session_->Handshake();
  if (!status.ok()) {
    server->mount_->Unmount();
    return status;
  }
  server->session_->Start();
  return server;
}

FuseServer::~FuseServer() {
  if (!waited_) {
    Stop();
    Wait();
  }
}

void FuseServer::Wait() {
  if (waited_) return;
  session_->Wait();
  waited_ = true;
  // The session may have ended from outside: make sure nothing stays mounted.
  mount_->Unmount();
  if (!stats_path_.empty()) DumpStats();
}

void FuseServer::Stop(absl::Duration grace) {
  if (stopping_.exchange(true)) return;
  mount_->Unmount();
  absl::Time deadline = absl::Now() + grace;
  while (session_->running() && absl::Now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (session_->running()) {
    spdlog::warn("{} is still in use after unmount; aborting the connection", mountpoint());
    if (!mount_->Abort()) spdlog::error("could not abort the FUSE connection");
  }
}

void FuseServer::BlockServerSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR1}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

void FuseServer::ServeUntilSignalled() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR1}) sigaddset(&set, sig);
  const struct timespec kPoll = {0, 200 * 1000 * 1000};
  while (session_->running()) {
    int sig = sigtimedwait(&set, nullptr, &kPoll);
    if (sig == SIGUSR1) {
      DumpStats();
    } else if (sig > 0) {
      spdlog::info("signal {}: unmounting {}", sig, mountpoint());
      Stop();
    }
  }
  Wait();
}

void FuseServer::DumpStats() {
  Gauges gauges = fs_->GetGauges();
  const WorkerPool::Counts workers = session_->workers();
  gauges.emplace_back("workers", static_cast<uint64_t>(workers.running));
  gauges.emplace_back("workers_peak", static_cast<uint64_t>(workers.peak));
  gauges.emplace_back("workers_started", workers.started);
  if (const BusyPoller* poller = session_->busy_poller(); poller != nullptr) {
    gauges.emplace_back("busy_poll_caught", poller->caught());
    gauges.emplace_back("busy_poll_window_ns", static_cast<uint64_t>(poller->window().count()));
  }
  spdlog::info("request statistics:\n{}", session_->stats().ToText(gauges));
  if (stats_path_.empty()) return;
  std::ofstream out(stats_path_, std::ios::trunc);
  out << session_->stats().ToJson(gauges) << "\n";
}

}  // namespace lamina
