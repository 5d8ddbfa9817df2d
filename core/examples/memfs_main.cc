// lamina-memfs: mounts the example in-memory filesystem in the foreground.
//
//   lamina-memfs [-d] [--threads=N] [--max-threads=N] [--io-uring] [--stats=FILE] MOUNTPOINT
//
// Seeded with a few files; SIGINT/SIGTERM unmount, SIGUSR1 dumps stats.
// --io-uring serves through FUSE-over-io_uring when the kernel offers it
// (/sys/module/fuse/parameters/enable_uring = 1) and says which transport
// serves in its "serving" line.

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "core/examples/memory_filesystem.h"
#include "core/fuse_server.h"
#include "core/logging_filesystem.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: lamina-memfs [-d] [--threads=N] [--max-threads=N] [--io-uring] "
               "[--stats=FILE] MOUNTPOINT\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  bool debug = false;
  lamina::ServerOptions options;
  std::string mountpoint;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-d") {
      debug = true;
    } else if (arg.rfind("--threads=", 0) == 0) {
      options.session.threads = std::atoi(arg.c_str() + 10);
    } else if (arg.rfind("--max-threads=", 0) == 0) {
      options.session.max_threads = std::atoi(arg.c_str() + 14);
    } else if (arg == "--io-uring") {
      options.io_uring = true;
    } else if (arg.rfind("--stats=", 0) == 0) {
      options.stats_path = arg.substr(8);
    } else if (!arg.empty() && arg[0] != '-' && mountpoint.empty()) {
      mountpoint = arg;
    } else {
      return Usage();
    }
  }
  if (mountpoint.empty()) return Usage();
  spdlog::set_default_logger(spdlog::stderr_logger_mt("lamina"));
  spdlog::set_level(debug ? spdlog::level::debug : spdlog::level::warn);

  lamina::examples::MemoryFilesystem memfs;
  memfs.AddFile("hello.txt", "Hello from Lamina's FUSE core!\n");
  memfs.AddFile("docs/readme.md", "# Lamina\nA union filesystem on its own FUSE core.\n");
  lamina::LoggingFilesystem traced(memfs);
  lamina::Filesystem& fs = debug ? static_cast<lamina::Filesystem&>(traced) : memfs;

  options.mount_options = {"fsname=lamina-memfs", "subtype=lamina-memfs", "default_permissions"};
  if (getuid() == 0) options.mount_options.push_back("allow_other");
  lamina::FuseServer::BlockServerSignals();
  auto server = lamina::FuseServer::Start(fs, mountpoint, options);
  if (!server.ok()) {
    std::fprintf(stderr, "lamina-memfs: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  const lamina::IoUringTransport* io_uring = (*server)->io_uring();
  std::printf("lamina-memfs: serving %s through %s\n", (*server)->mountpoint().c_str(),
              io_uring != nullptr && io_uring->active() ? "io_uring" : "/dev/fuse");
  std::fflush(stdout);
  (*server)->ServeUntilSignalled();
  return 0;
}
