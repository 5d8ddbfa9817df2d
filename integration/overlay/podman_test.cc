// podman with laminafs as its overlay mount program (containers/storage's
// overlay.mount_program): an image imported from a local tar of
// busybox-static runs as root and as an unprivileged --user, on a rootfs
// that is a laminafs mount, and `podman build` of a multi-step
// Containerfile (every RUN a laminafs mount over the earlier steps' layers)
// produces the expected image. Private --root/--runroot and storage.conf
// under the test's directory; no registry. Skipped when podman, runc or a
// static /bin/busybox is missing (scripts/install-deps --test installs them).

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
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
    for (const char* applet :
         {"sh", "id", "cat", "grep", "touch", "mkdir", "rm", "mv", "ln", "find", "sort", "stat"}) {
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
    ASSERT_NO_FATAL_FAILURE(WatchLayersOf("localhost/lamina-test"));
  }

  // Watches the layers of `image` in this test's storage (each a lower of
  // the containers run from it) until the end of the test.
  void WatchLayersOf(const std::string& image) {
    std::string output;
    ASSERT_EQ(Podman({"image", "inspect", "--format",
                      "{{.GraphDriver.Data.UpperDir}}:{{.GraphDriver.Data.LowerDir}}", image},
                     &output),
              0)
        << output;
    int watched = 0;
    for (const auto& layer : absl::StrSplit(output, absl::ByAnyChar(":\n"))) {
      if (layer.rfind(Path("storage/overlay/"), 0) != 0) continue;  // "<no value>", warnings
      WatchLower(std::string(layer));
      ++watched;
    }
    ASSERT_GT(watched, 0) << "no layer directory in: " << output;
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
    std::optional<int> status = child.Wait(seconds(120));
    *output = child.output();
    return status.value_or(-1);
  }

  int Run(const std::vector<std::string>& options, const std::string& script, std::string* output,
          const std::string& image = "localhost/lamina-test") {
    std::vector<std::string> args = {"run",
                                     "--rm",
                                     "--pull=never",
                                     "--network",
                                     "none",
                                     "--ulimit",
                                     "nofile=1024:1024",
                                     "--ulimit",
                                     "nproc=1024:1024"};
    args.insert(args.end(), options.begin(), options.end());
    args.insert(args.end(), {image, "sh", "-c", script});
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

// Three RUN steps, each a container on laminafs whose upper becomes the next
// layer: files written, a tree and files of an earlier layer deleted, a
// directory of an earlier layer renamed, hard links within a step and to a
// file of an earlier step, a file of an earlier layer modified. Each step
// checks its own view (the build fails otherwise); the built image's
// content is then listed by a container and compared exactly.
TEST_F(PodmanTest, BuildsAMultiStepContainerfile) {
  dir_.Subdir("context");
  // `set -e` plus `test`s: a step whose view is wrong, or whose root is not
  // a laminafs mount, fails the build.
  WriteFile(Path("context/Containerfile"), R"CF(FROM localhost/lamina-test
RUN set -e; grep ' / / ' /proc/self/mountinfo | grep -q ' - fuse.laminafs '; \
    mkdir -p /data/keep /data/gone/deep /data/olddir/sub; \
    echo base > /data/keep/base; echo gone > /data/gone/deep/file; \
    echo x > /data/olddir/a; echo y > /data/olddir/sub/b; echo modify > /data/mod; \
    echo drop > /data/drop; echo h > /data/h1; echo w > /data/w1; ln /data/w1 /data/w2; \
    test "$(stat -c '%i %h' /data/w1)" = "$(stat -c '%i %h' /data/w2)"
RUN set -e; rm -r /data/gone; rm /data/drop; mv /data/olddir /data/newdir; \
    echo more >> /data/mod; echo new > /data/newdir/c; ln /data/h1 /data/h2; \
    test "$(stat -c %h /data/h1)" = 2; \
    test "$(stat -c %i /data/h1)" = "$(stat -c %i /data/h2)"; \
    test ! -e /data/olddir; test ! -e /data/gone; test "$(cat /data/newdir/sub/b)" = y
RUN set -e; grep ' / / ' /proc/self/mountinfo | grep -q ' - fuse.laminafs '; \
    ln /data/newdir/c /data/c-link; mv /data/keep/base /data/keep/renamed; \
    echo late > /data/late; mkdir /data/gone; echo again > /data/gone/new; \
    echo p > /data/p1; ln /data/p1 /data/p2; rm /data/w2; \
    test "$(stat -c '%i %h' /data/newdir/c)" = "$(stat -c '%i %h' /data/c-link)"; \
    test ! -e /data/gone/deep; test ! -e /data/w2
)CF");
  std::string output;
  ASSERT_EQ(Podman({"build", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit",
                    "nproc=1024:1024", "--layers", "-t", "localhost/lamina-built", "-f",
                    Path("context/Containerfile"), Path("context")},
                   &output),
            0)
      << output;
  // The built image's layers, the lowers of the container that lists it.
  ASSERT_NO_FATAL_FAILURE(WatchLayersOf("localhost/lamina-built"));

  // One line per name below /data: path, type, link count, inode; then a
  // regular file's content.
  ASSERT_EQ(Run({},
                "cd /data; for f in $(find . | sort); do stat -c '%n %F %h %i' $f; "
                "test -f $f && cat $f; done; echo END",
                &output, "localhost/lamina-built"),
            0)
      << output;
  ASSERT_NE(output.find("END\n"), std::string::npos) << output;
  // A hard link made across steps (h1-h2, newdir/c-c-link) survives in the
  // image only if the later layer's diff holds both names; containers/storage
  // diffs naively with a mount program and leaves out the unchanged earlier
  // name, so for those only the content is compared. w1 keeps the link count
  // of its layer after w2's whiteout, as on the kernel with index=off.
  const std::vector<std::string> across_steps = {"./h1", "./h2", "./c-link", "./newdir/c"};
  std::map<std::string, std::string> first_name;  // inode -> first name listed
  std::istringstream lines(output.substr(0, output.find("END\n")));
  std::string listing;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::string name, type, links, inode;
    if (!(fields >> name >> type) || (name != "." && name.rfind("./", 0) != 0)) {
      listing += " " + line;  // a file's content
      continue;
    }
    if (!listing.empty()) listing += "\n";
    if (type == "directory") {
      listing += name + " dir";  // (merged directories' link counts vary by design)
      continue;
    }
    std::string word;
    fields >> word >> links >> inode;  // "regular file N INODE"
    listing += name + " " + type;
    if (std::find(across_steps.begin(), across_steps.end(), name) != across_steps.end()) continue;
    const std::string& first = first_name.emplace(inode, name).first->second;
    listing += " " + links + (first != name ? " same-inode-as-" + first : "");
  }
  EXPECT_EQ(listing,
            ". dir\n"
            "./c-link regular new\n"
            "./gone dir\n"
            "./gone/new regular 1 again\n"
            "./h1 regular h\n"
            "./h2 regular h\n"
            "./keep dir\n"
            "./keep/renamed regular 1 base\n"
            "./late regular 1 late\n"
            "./mod regular 1 modify more\n"
            "./newdir dir\n"
            "./newdir/a regular 1 x\n"
            "./newdir/c regular new\n"
            "./newdir/sub dir\n"
            "./newdir/sub/b regular 1 y\n"
            "./p1 regular 2 p\n"
            "./p2 regular 2 same-inode-as-./p1 p\n"
            "./w1 regular 2 w")
      << output;

  // Every build step's and run's mount is gone, and so are their daemons.
  EXPECT_TRUE(WaitUntil([&] { return DaemonsNaming(dir_.path()).empty(); }, seconds(10)));
  std::ifstream mounts("/proc/mounts");
  std::string all((std::istreambuf_iterator<char>(mounts)), {});
  EXPECT_EQ(all.find(Path("storage")), std::string::npos) << all;
}

}  // namespace
}  // namespace lamina::testing
