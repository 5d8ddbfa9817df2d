// A project outside Lamina serving its own (trivial) filesystem through
// the installed package: find_package(lamina), mount, unmount.
#include "core/filesystem.h"
#include "core/fuse_server.h"
// A filesystem with only a root directory.
class RootOnly : public lamina::Filesystem {
 public:
  lamina::Result<lamina::Attributes> GetAttr(const Ctx&, lamina::NodeId,
                                             std::optional<uint64_t>) override {
    lamina::Attributes a;
    a.attr.st_ino = 1;
    a.attr.st_mode = S_IFDIR | 0755;
    a.attr.st_nlink = 2;
    return a;
  }
};
int main(int argc, char** argv) {
  if (argc != 2) return 2;
  RootOnly fs;
  auto server = lamina::FuseServer::Start(fs, argv[1], {});
  if (!server.ok()) return 1;
  (*server)->Stop();
  (*server)->Wait();
  return 0;
}
