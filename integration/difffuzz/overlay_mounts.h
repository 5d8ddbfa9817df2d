// The two overlays a case compares, mounted on one set of layers each with
// matching options: kernel overlayfs (redirect_dir=on, index=on|off,
// metacopy=off; or userxattr, which implies redirect_dir=nofollow and no
// index) and Lamina's OverlayFs served in this process (the same choices
// through OverlayOptions). Each unmounts on destruction.

#ifndef LAMINA_INTEGRATION_DIFFFUZZ_OVERLAY_MOUNTS_H_
#define LAMINA_INTEGRATION_DIFFFUZZ_OVERLAY_MOUNTS_H_

#include <memory>
#include <string>

#include "core/fuse_server.h"
#include "integration/difffuzz/case_spec.h"
#include "integration/difffuzz/stack_builder.h"
#include "overlay/overlay_fs.h"

namespace lamina::difffuzz {

class KernelOverlay {
 public:
  // Mounted through fsopen(2)/fsconfig(2), so that a refusal comes with
  // the kernel's own reason (the messages of the filesystem context, e.g.
  // "overlayfs: ... failed to verify index"), in `*error`. Null then.
  static std::unique_ptr<KernelOverlay> Mount(const StackOptions& options, const StackDirs& dirs,
                                              const std::string& mountpoint, std::string* error);
  ~KernelOverlay();
  KernelOverlay(const KernelOverlay&) = delete;
  KernelOverlay& operator=(const KernelOverlay&) = delete;

 private:
  explicit KernelOverlay(std::string mountpoint) : mountpoint_(std::move(mountpoint)) {}
  std::string mountpoint_;
};

class LaminaOverlay {
 public:
  // Null, with OverlayFs::Create's or the mount's status in `*error`, if
  // Lamina refuses the stack.
  static std::unique_ptr<LaminaOverlay> Mount(const StackOptions& options, const StackDirs& dirs,
                                              const std::string& mountpoint, std::string* error);
  // Unmounts and waits for the session to end.
  ~LaminaOverlay();
  LaminaOverlay(const LaminaOverlay&) = delete;
  LaminaOverlay& operator=(const LaminaOverlay&) = delete;

 private:
  LaminaOverlay() = default;
  std::unique_ptr<OverlayFs> fs_;
  std::unique_ptr<FuseServer> server_;
};

}  // namespace lamina::difffuzz

#endif  // LAMINA_INTEGRATION_DIFFFUZZ_OVERLAY_MOUNTS_H_
