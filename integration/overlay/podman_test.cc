// podman with laminafs as its overlay mount program (containers/storage's
// overlay.mount_program): an image imported from a local tar of
// busybox-static runs as root and as an unprivileged --user, on a rootfs
// that is a laminafs mount. Private --root/--runroot and storage.conf under
// the test's directory; no registry. Skipped when podman, runc or a static
// /bin/busybox is missing (scripts/install-deps --test installs them).

#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "integration/overlay/laminafs_cli_fixture.h"

namespace lamina::testing {
namespace {

using std::chrono::seconds;

class PodmanTest : public LaminafsCliTest {
 protected:
  void SetUp() override {
    for (const char* tool : {"/usr/bin/podman", "/usr/sbin/runc", "/bin/busybox"}) {
      if (access(tool, X_OK) != 0) GTEST_SKIP() << tool << " is not installed";
    }
    // A minimal image: static busybox, a few applets, a passwd file.
    for (const char* dir : {"rootfs", "rootfs/bin", "rootfs/etc", "rootfs/tmp"}) dir_.Subdir(dir);
    ASSERT_EQ(chmod(Path("rootfs/tmp").c_str(), 01777), 0);
    ASSERT_EQ(system(("cp /bin/busybox " + Path("rootfs/bin/busybox")).c_str()), 0);
    for (const char* applet : {"sh", "id", "cat", "grep", "touch"}) {
      ASSERT_EQ(symlink("busybox", Path(std::string("rootfs/bin/") + applet).c_str()), 0);
    }
    WriteFile(Path("rootfs/etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    WriteFile(Path("storage.conf"), "[storage]\ndriver = \"overlay\"\ngraphroot = \"" +
                                        Path("storage") + "\"\nrunroot = \"" + Path("run") +
                                        "\"\n[storage.options.overlay]\nmount_program = \"" +
                                        BuiltBinary("cmd/laminafs") + "\"\n");
    ASSERT_EQ(system(("tar -C " + Path("rootfs") + " -cf " + Path("rootfs.tar") + " .").c_str()),
              0);
    std::string output;
    ASSERT_EQ(Podman({"import", Path("rootfs.tar"), "localhost/lamina-test"}, &output), 0)
        << output;
  }

  // Runs podman with this test's storage; returns its exit status.
  int Podman(const std::vector<std::string>& args, std::string* output) {
    // Root on this kind of machine: runc, cgroupfs, no journald, and
    // explicit ulimits (raising the defaults is refused here).
    std::vector<std::string> argv = {"/usr/bin/env",
                                     "CONTAINERS_STORAGE_CONF=" + Path("storage.conf"),
                                     "/usr/bin/podman",
                                     "--runtime",
                                     "runc",
                                     "--cgroup-manager=cgroupfs",
                                     "--events-backend=none"};
    argv.insert(argv.end(), args.begin(), args.end());
    ChildProcess child(argv);
    std::optional<int> status = child.Wait(seconds(60));
    *output = child.output();
    return status.value_or(-1);
  }

  int Run(const std::vector<std::string>& options, const std::string& script, std::string* output) {
    std::vector<std::string> args = {"run",      "--rm",           "--network",
                                     "none",     "--ulimit",       "nofile=1024:1024",
                                     "--ulimit", "nproc=1024:1024"};
    args.insert(args.end(), options.begin(), options.end());
    args.insert(args.end(), {"localhost/lamina-test", "sh", "-c", script});
    return Podman(args, output);
  }
};

TEST_F(PodmanTest, RunsOnALaminafsRootAsRootAndAsAnotherUser) {
  std::string output;
  ASSERT_EQ(
      Run({}, "grep ' / ' /proc/self/mountinfo; id -u; echo root > /made; cat /made", &output), 0)
      << output;
  EXPECT_NE(output.find(" - fuse.laminafs "), std::string::npos) << output;
  EXPECT_NE(output.find("0\nroot\n"), std::string::npos) << output;

  ASSERT_EQ(Run({"--user", "1000"},
                "id -u; echo user > /tmp/x; cat /tmp/x; touch /denied || echo refused", &output),
            0)
      << output;
  EXPECT_NE(output.find("1000\nuser\n"), std::string::npos) << output;
  EXPECT_NE(output.find("Permission denied"), std::string::npos) << output;
  EXPECT_NE(output.find("refused"), std::string::npos) << output;

  // --rm unmounted the rootfs and its daemon ended.
  EXPECT_TRUE(WaitUntil([&] { return DaemonsNaming(dir_.path()).empty(); }, seconds(10)));
}

}  // namespace
}  // namespace lamina::testing
