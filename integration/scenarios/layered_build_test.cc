// An image built in steps, the way buildah and podman build do: each step
// mounts the previous steps' uppers as lowers under a fresh upper, makes its
// changes through `laminafs`, and unmounts. The final read-only stack must
// be exactly the tree the same operations give on a plain directory, and
// every step's upper must read the same under kernel overlayfs.

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"
#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

const std::vector<std::string> kBase = {
    "f etc/hostname base",
    "f etc/config v1",
    "f usr/lib/libfoo.so foo-1",
    "f usr/lib/libbar.so bar-1",
    "l usr/lib/libfoo.so.1 libfoo.so",
    "f usr/share/doc/pkg/README readme",
    "f usr/share/doc/pkg/COPYING copying",
    "f usr/share/doc/other/README other",
    "f var/cache/apt/pkgcache cache",
    "f opt/app/bin/tool tool-1",
    "f opt/app/data data-1",
    "f opt/app/lib/plugin.so plugin",
    "f srv/www/index.html index",
    "f srv/www/img/logo.png logo",
    "d home",
};

// Each step's operations, run once through the mount and once on a plain
// copy of the tree. A failing call fails the test, naming the step.
void Check(bool ok, const std::string& what) {
  EXPECT_TRUE(ok) << what << ": " << strerror(errno);
}
void Append(const std::string& path, const std::string& data) {
  int fd = open(path.c_str(), O_WRONLY | O_APPEND);
  Check(fd >= 0 && write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()),
        "append to " + path);
  if (fd >= 0) close(fd);
}
void Write(const std::string& path, const std::string& data) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  Check(fd >= 0 && write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()),
        "write " + path);
  if (fd >= 0) close(fd);
}
void RemoveTree(const std::string& path) {
  std::error_code error;
  std::filesystem::remove_all(path, error);
  Check(!error, "rm -rf " + path);
}
void Rename(const std::string& from, const std::string& to) {
  Check(rename(from.c_str(), to.c_str()) == 0, "rename " + from + " " + to);
}
void Link(const std::string& from, const std::string& to) {
  Check(link(from.c_str(), to.c_str()) == 0, "link " + from + " " + to);
}
void Mkdir(const std::string& path, mode_t mode = 0755) {
  Check(mkdir(path.c_str(), mode) == 0, "mkdir " + path);
}

void Step1(const std::string& r) {
  RemoveTree(r + "/usr/share/doc");  // a lower tree deleted
  Check(unlink((r + "/var/cache/apt/pkgcache").c_str()) == 0, "unlink pkgcache");
  Append(r + "/etc/config", "+v2");                                          // data copy-up
  Write(r + "/usr/lib/libbar.so", "bar-2");                                  // truncating copy-up
  Check(chmod((r + "/etc/hostname").c_str(), 0600) == 0, "chmod hostname");  // metadata only
  Link(r + "/usr/lib/libfoo.so", r + "/usr/lib/libfoo-compat.so");           // link to a lower file
  Mkdir(r + "/home/user");
  Write(r + "/home/user/notes", "notes");
  Link(r + "/home/user/notes", r + "/home/user/notes.bak");  // link to a new file
  Rename(r + "/opt/app", r + "/opt/app2");                   // a lower directory renamed
  Mkdir(r + "/build");
  Write(r + "/build/obj.o", "object");
  Rename(r + "/build", r + "/build-out");  // a new directory renamed
  Check(symlink("../opt/app2/bin/tool", (r + "/home/tool").c_str()) == 0, "symlink");
}

// Known gap, not exercised here: renaming again a directory that an
// earlier step renamed (its redirect must name the path in the layer right
// below, not the bottom one; see the reliability page).
void Step2(const std::string& r) {
  Mkdir(r + "/usr/share/doc");  // recreated over a whiteout: opaque
  Write(r + "/usr/share/doc/new", "fresh doc");
  Append(r + "/opt/app2/bin/tool", "+2");            // copy-up below a redirect
  Rename(r + "/srv/www", r + "/srv/web");            // a base directory renamed
  Rename(r + "/home/user", r + "/home/builder");     // step 1's directory renamed
  RemoveTree(r + "/build-out");                      // step 1's directory deleted
  Rename(r + "/etc/config", r + "/etc/config.old");  // a lower file renamed
  Write(r + "/etc/config", "v3");
  Link(r + "/etc/hostname", r + "/etc/hostname.link");  // link to a file copied up in step 1
  Write(r + "/home/builder/todo", "todo");
}

void Step3(const std::string& r) {
  Check(unlink((r + "/opt/app2/data").c_str()) == 0, "unlink data");
  Append(r + "/opt/app2/bin/tool", "+3");
  Rename(r + "/var/cache", r + "/var/cache2");  // merges steps 1 and 0
  Write(r + "/srv/web/img/logo.png", "logo-2");
  RemoveTree(r + "/usr/share/doc");  // an opaque directory deleted
  Mkdir(r + "/var/log", 0750);
  Write(r + "/var/log/build.log", "step 3\n");
  Check(chmod((r + "/usr/lib").c_str(), 0700) == 0, "chmod usr/lib");
  Rename(r + "/usr/lib/libfoo.so.1", r + "/usr/lib/libfoo.so.2");  // a lower symlink renamed
  // Directories step 1 renamed, renamed again: the records must name the
  // path in the layer right below (opt/app2), not the bottom one (opt/app).
  Rename(r + "/opt/app2/lib", r + "/opt/app2/lib64");
  Mkdir(r + "/srv/apps", 0755);
  Rename(r + "/opt/app2", r + "/srv/apps/app3");
}

// kernel overlayfs, mounted read-only on the given layers.
class KernelMount {
 public:
  KernelMount(const std::string& options, const std::string& mountpoint) : mountpoint_(mountpoint) {
    ok_ = mount("overlay", mountpoint.c_str(), "overlay", MS_RDONLY, options.c_str()) == 0;
  }
  ~KernelMount() {
    if (ok_) umount2(mountpoint_.c_str(), MNT_DETACH);
  }
  bool ok() const { return ok_; }

 private:
  std::string mountpoint_;
  bool ok_;
};

TEST(LayeredBuildTest, ThreeStepsGiveTheExpectedTreeUnderLaminaAndKernel) {
  TempDir dir("lamina-layers");
  const std::string base = dir.path() + "/L0";
  BuildLayer(base, kBase);
  // The expected tree: the same operations on a plain copy.
  const std::string expected = dir.path() + "/expected";
  std::filesystem::copy(
      base, expected,
      std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks);
  const std::string mnt = dir.Subdir("mnt");
  const std::string kmnt = dir.Subdir("kmnt");

  std::vector<std::function<void(const std::string&)>> steps = {Step1, Step2, Step3};
  std::vector<std::string> lowers = {base};  // top first
  for (size_t i = 0; i < steps.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i + 1));
    std::string upper = dir.Subdir("U" + std::to_string(i + 1));
    std::string work = dir.Subdir("W" + std::to_string(i + 1));
    std::string view;
    {
      LaminafsMount lamina({"-o", OverlayOptionString(lowers, upper, work)}, mnt);
      ASSERT_TRUE(lamina.mounted()) << lamina.output();
      steps[i](mnt);
      steps[i](expected);
      view = DescribeTree(mnt);
      EXPECT_EQ(view, DescribeTree(expected));
      EXPECT_EQ(lamina.Unmount(), 0) << lamina.output();
    }
    EXPECT_TRUE(ListDir(work + "/work").empty()) << "work dir not clean after step";
    {
      // The kernel reads this upper over the same lowers as Lamina saw it.
      std::string kwork = dir.Subdir("KW" + std::to_string(i + 1));
      KernelMount kernel(OverlayOptionString(lowers, upper, kwork), kmnt);
      ASSERT_TRUE(kernel.ok()) << strerror(errno);
      EXPECT_EQ(DescribeTree(kmnt), view) << "kernel overlayfs sees step " << i + 1 << " otherwise";
    }
    lowers.insert(lowers.begin(), upper);
  }

  // The final image: every step read-only, no upper.
  std::string want = DescribeTree(expected);
  {
    LaminafsMount lamina({"-o", OverlayOptionString(lowers)}, mnt);
    ASSERT_TRUE(lamina.mounted()) << lamina.output();
    EXPECT_EQ(DescribeTree(mnt), want);
    // Spot checks, so a failure reads clearly.
    EXPECT_EQ(ReadFile(mnt + "/srv/apps/app3/bin/tool"), "tool-1+2+3");
    EXPECT_EQ(ReadFile(mnt + "/srv/apps/app3/lib64/plugin.so"), "plugin");
    EXPECT_EQ(ReadFile(mnt + "/srv/web/index.html"), "index");
    EXPECT_EQ(ReadFile(mnt + "/home/builder/notes.bak"), "notes");
    struct stat st;
    EXPECT_NE(stat((mnt + "/srv/apps/app3/data").c_str(), &st), 0);
    EXPECT_NE(stat((mnt + "/opt/app2").c_str(), &st), 0);
    EXPECT_NE(stat((mnt + "/opt/app").c_str(), &st), 0);
    EXPECT_NE(stat((mnt + "/usr/share/doc").c_str(), &st), 0);
    EXPECT_EQ(ReadFile(mnt + "/etc/config.old"), "v1+v2");
    ASSERT_EQ(stat((mnt + "/usr/lib/libfoo-compat.so").c_str(), &st), 0);
    EXPECT_EQ(st.st_nlink, 2u);
    EXPECT_EQ(mkdir((mnt + "/x").c_str(), 0755), -1);
    EXPECT_EQ(errno, EROFS);
    EXPECT_EQ(lamina.Unmount(), 0) << lamina.output();
  }
  KernelMount kernel(OverlayOptionString(lowers), kmnt);
  ASSERT_TRUE(kernel.ok()) << strerror(errno);
  EXPECT_EQ(DescribeTree(kmnt), want) << "kernel overlayfs sees the final stack otherwise";
}

}  // namespace
}  // namespace lamina::testing
