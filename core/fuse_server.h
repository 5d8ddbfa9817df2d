// FuseServer: a Filesystem mounted and served, from mount to unmount.
//
// Ties FuseMount, DevFuseTransport (or IoUringTransport) and Session
// together and owns the stop rules: Stop() detaches the mount and the
// session ends when the kernel lets go of the connection; a connection still held by busy files
// after the grace period is aborted. An unmount from outside (umount, fusermount3 -u) or a kernel
// abort ends the session the same way.

#ifndef LAMINA_CORE_FUSE_SERVER_H_
#define LAMINA_CORE_FUSE_SERVER_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/dev_fuse_transport.h"
#include "core/filesystem.h"
#include "core/fuse_mount.h"
#include "core/io_uring_transport.h"
#include "core/session.h"

namespace lamina {

struct ServerOptions {
  // Passed to the mount: "allow_other", "default_permissions", "fsname=...".
  std::vector<std::string> mount_options;
  SessionOptions session;
  // Serve through FUSE-over-io_uring (one queue per CPU, each served by a
  // worker pinned to it) when the kernel offers it, else through /dev/fuse
  // with a log line. The kernel offers it only with
  // /sys/module/fuse/parameters/enable_uring = 1 (set by root).
  bool io_uring = false;
  // Where SIGUSR1 and the end of the session write stats as JSON (optional).
  std::string stats_path;
};

class FuseServer {
 public:
  // Mounts `fs` and answers INIT: when this returns, the mount serves.
  static absl::StatusOr<std::unique_ptr<FuseServer>> Start(Filesystem& fs,
                                                           const std::string& mountpoint,
                                                           ServerOptions options);
  // Stops (if still running) and waits for the session to end.
  ~FuseServer();

  FuseServer(const FuseServer&) = delete;
  FuseServer& operator=(const FuseServer&) = delete;

  // Blocks until the session has ended.
  void Wait();
  // Detaches the mount; aborts the connection if it is still alive after
  // `grace`. Thread-safe and idempotent.
  void Stop(absl::Duration grace = absl::Seconds(5));

  // Runs on the calling thread until the session ends, handling SIGINT,
  // SIGTERM and SIGHUP (Stop) and SIGUSR1 (log stats, write stats_path).
  // The signals must have been blocked with BlockServerSignals() before any
  // thread was started, so that only this loop receives them.
  void ServeUntilSignalled();
  static void BlockServerSignals();

  void DumpStats();

  Session& session() { return *session_; }
  FuseMount& mount() { return *mount_; }
  // The io_uring transport when ServerOptions::io_uring asked for it (see
  // its active() for whether the kernel uses it), else null.
  const IoUringTransport* io_uring() const { return io_uring_; }
  const std::string& mountpoint() const { return mount_->mountpoint(); }

 private:
  FuseServer() = default;

  std::unique_ptr<FuseMount> mount_;
  std::unique_ptr<DevFuseTransport> transport_;
  IoUringTransport* io_uring_ = nullptr;  // transport_, when it is one
  std::unique_ptr<Session> session_;
  Filesystem* fs_ = nullptr;  // outlives the server (Start's contract)
  std::string stats_path_;
  std::atomic<bool> stopping_{false};
  bool waited_ = false;
};

}  // namespace lamina

#endif  // LAMINA_CORE_FUSE_SERVER_H_
