// Whiteouts, opaque marks, metacopy records and origins in layers anyone may
// have built, and the ones a user of the mount might try to forge, beside
// kernel overlayfs: each form is honoured where the kernel honours it, in
// the namespace of the mount's mode, and ignored or refused (with the
// kernel's errno) elsewhere. OCI whiteouts, which the kernel never reads,
// are checked against the kernel serving the layers converted to its own
// forms, as container engines convert them.

#include <fcntl.h>
#include <grp.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "integration/scenarios/layer_contents.h"

namespace lamina::testing {
namespace {

constexpr uid_t kNobody = 65534;

// Runs `op` as uid/gid 65534 in a child; its errno-style outcome.
std::string AsNobody(const std::function<int()>& op) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return "pipe";
  pid_t pid = fork();
  if (pid == 0) {
    close(pipe_fds[0]);
    if (setgroups(0, nullptr) != 0 || setresgid(kNobody, kNobody, kNobody) != 0 ||
        setresuid(kNobody, kNobody, kNobody) != 0) {
      _exit(1);
    }
    const std::string out = Outcome(op());
    _exit(write(pipe_fds[1], out.data(), out.size()) == static_cast<ssize_t>(out.size()) ? 0 : 1);
  }
  close(pipe_fds[1]);
  std::string result;
  char buf[64];
  ssize_t n;
  while ((n = read(pipe_fds[0], buf, sizeof(buf))) > 0) result.append(buf, static_cast<size_t>(n));
  close(pipe_fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? result : "child failed";
}

class LayerMarkersTest : public OverlayPair {
 protected:
  // Other users reach the mounts.
  void SetUp() override { ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0); }
  void Remount() {
    UnmountLamina();
    UnmountKernel();
    MountBoth();
  }
};

// OCI: ".wh.NAME" hides NAME in the layers below its own, never the NAME
// beside it, which then merges nothing from below (the image spec: "Whiteout
// files MUST only apply to resources in lower/parent layers"). The kernel's
// equivalent: NAME opaque, or a whiteout where NAME is absent.
TEST_F(LayerMarkersTest, OciWhiteoutBesideItsOwnDirectory) {
  BuildLayers({{"f .wh.app", "f app/config c", "f .wh.f", "f f top-f", "f .wh.gone", "d keep",
                "f keep/mine m"},
               {"f app/secret.key k", "d app/sub", "f app/sub/deep d", "f f bottom-f", "f gone g",
                "f keep/theirs t"}});
  // The kernel's set, as an engine unpacks the same layer for overlayfs.
  const std::string kernel_top = set_[1] + "/lower0";
  ASSERT_EQ(unlink((kernel_top + "/.wh.app").c_str()), 0);
  ASSERT_EQ(setxattr((kernel_top + "/app").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
  ASSERT_EQ(unlink((kernel_top + "/.wh.f").c_str()), 0);
  ASSERT_EQ(unlink((kernel_top + "/.wh.gone").c_str()), 0);
  ASSERT_EQ(mknod((kernel_top + "/gone").c_str(), S_IFCHR, 0), 0);
  MountBoth();
  const std::vector<std::string> paths = {"",        "app", "app/config", "app/secret.key",
                                          "app/sub", "f",   "gone",       "keep"};
  ExpectSame([&](const std::string& r) { return ShowAll(r, paths); }, "OCI whiteouts");
  // Through the upper too: a change in app copies up only what app shows.
  ExpectSame(
      [](const std::string& r) {
        WriteFile(r + "/app/new", "n");
        return Outcome(unlink((r + "/app/config").c_str())) +
               Outcome(mkdir((r + "/app/sub").c_str(), 0755));
      },
      "changes in the directory");
  Remount();
  ExpectSame([&](const std::string& r) { return ShowAll(r, paths); }, "after a remount");
}

// In the trusted namespace (root's mount), user.overlay.* and
// user.fuseoverlayfs.* are a user's own attributes: any owner may set them
// through the mount, and the kernel never reads them. Its private names are
// refused: a caller's trusted.overlay.X is stored as
// trusted.overlay.overlay.X.
TEST_F(LayerMarkersTest, MarkersSetThroughTheMountAreNotHonoured) {
  BuildLayers({{"d shared", "f shared/rootdir/file f", "d shared2", "f shared2/rootdir/file f",
                "d shared3", "f shared3/rootdir/file f", "d mine"},
               {"f shared/below b", "f mine/below b"}});
  for (const std::string& set : set_) {
    for (const char* dir : {"shared", "shared2", "shared3", "mine"}) {
      ASSERT_EQ(chown((set + "/lower0/" + dir).c_str(), kNobody, kNobody), 0);
    }
  }
  MountBoth();
  ExpectSame(
      [](const std::string& r) {
        std::string out;
        out += AsNobody(
            [&] { return setxattr((r + "/shared").c_str(), "user.overlay.opaque", "y", 1, 0); });
        out += AsNobody([&] {
          return setxattr((r + "/shared2").c_str(), "user.fuseoverlayfs.opaque", "y", 1, 0);
        });
        out += AsNobody([&] {
          int fd = open((r + "/mine/fake").c_str(), O_CREAT | O_WRONLY, 0644);
          if (fd >= 0) close(fd);
          return fd < 0 ? fd
                        : setxattr((r + "/mine/fake").c_str(), "user.overlay.whiteout", "", 0, 0);
        });
        out += AsNobody(
            [&] { return setxattr((r + "/mine").c_str(), "user.overlay.opaque", "x", 1, 0); });
        out += AsNobody([&] {
          return setxattr((r + "/mine").c_str(), "user.overlay.redirect", "/shared", 7, 0);
        });
        // Root's own trusted.overlay.* is escaped, never a marker.
        out += Outcome(setxattr((r + "/shared3").c_str(), "trusted.overlay.opaque", "y", 1, 0));
        char value[8] = {};
        out += Outcome(static_cast<int>(
            getxattr((r + "/shared3").c_str(), "trusted.overlay.opaque", value, sizeof(value))));
        return out + value;
      },
      "markers set through the mount");
  // Each call reached the layers (as the owner could).
  EXPECT_EQ(LayerXattr(lamina_upper() + "/shared", "user.overlay.opaque"), "y");
  EXPECT_EQ(LayerXattr(lamina_upper() + "/shared2", "user.fuseoverlayfs.opaque"), "y");
  EXPECT_EQ(LayerXattr(lamina_upper() + "/mine", "user.overlay.opaque"), "x");
  EXPECT_EQ(LayerXattr(lamina_upper() + "/shared3", "trusted.overlay.overlay.opaque"), "y");
  EXPECT_EQ(LayerXattr(kernel_upper() + "/shared3", "trusted.overlay.overlay.opaque"), "y");
  const std::vector<std::string> paths = {
      "shared",          "shared/rootdir", "shared2",    "shared2/rootdir", "shared3",
      "shared3/rootdir", "mine",           "mine/below", "mine/fake"};
  ExpectSame([&](const std::string& r) { return ShowAll(r, paths); }, "while mounted");
  Remount();
  ExpectSame([&](const std::string& r) { return ShowAll(r, paths); }, "after a remount");
}

// The same with user xattrs (userxattr): user.overlay.* set through the
// mount is escaped; user.fuseoverlayfs.opaque in the upper and trusted.*
// are no markers of this mode.
TEST_F(LayerMarkersTest, MarkersSetThroughAUserxattrMountAreNotHonoured) {
  lamina_options_.layers.userxattr = true;
  lamina_options_.redirect_dir = false;
  lamina_options_.redirect_follow = false;
  kernel_options_ = "userxattr";
  BuildLayers({{"d shared", "f shared/rootdir/file f", "d shared2", "f shared2/rootdir/file f",
                "d shared3", "f shared3/rootdir/file f"},
               {"f shared/below b"}});
  for (const std::string& set : set_) {
    for (const char* dir : {"shared", "shared2"}) {
      ASSERT_EQ(chown((set + "/lower0/" + dir).c_str(), kNobody, kNobody), 0);
    }
  }
  MountBoth();
  ExpectSame(
      [](const std::string& r) {
        std::string out;
        out += AsNobody(
            [&] { return setxattr((r + "/shared").c_str(), "user.overlay.opaque", "y", 1, 0); });
        out += AsNobody([&] {
          return setxattr((r + "/shared2").c_str(), "user.fuseoverlayfs.opaque", "y", 1, 0);
        });
        out += Outcome(setxattr((r + "/shared3").c_str(), "trusted.overlay.opaque", "y", 1, 0));
        return out;
      },
      "markers set through the mount");
  EXPECT_EQ(LayerXattr(lamina_upper() + "/shared", "user.overlay.overlay.opaque"), "y");
  EXPECT_EQ(LayerXattr(kernel_upper() + "/shared", "user.overlay.overlay.opaque"), "y");
  const std::vector<std::string> paths = {"shared",          "shared/rootdir", "shared2",
                                          "shared2/rootdir", "shared3",        "shared3/rootdir"};
  ExpectSame([&](const std::string& r) { return ShowAll(r, paths); }, "while mounted");
  Remount();
  ExpectSame([&](const std::string& r) { return ShowAll(r, paths); }, "after a remount");
}

// A lower layer's root is never looked up: the kernel reads no opaque mark
// or redirect there.
TEST_F(LayerMarkersTest, LowerRootMarksAreIgnored) {
  Mount({{"x . trusted.overlay.opaque y", "x . trusted.overlay.redirect /d", "d d", "f d/top t"},
         {"f below b", "f d/x x"}});
  ExpectSame(
      [](const std::string& r) {
        return ShowAll(r, {"", "below", "d"});
      },
      "a root marked opaque");
}

// Xattr whiteouts (an empty file with overlay.whiteout): a lookup takes any
// of them for a whiteout, in a lower layer or the upper; a listing leaves
// them out only in a lower directory marked opaque "x" (or a lower root so
// marked), and lists the name elsewhere, as the kernel does.
TEST_F(LayerMarkersTest, XattrWhiteoutsAsTheKernelReadsThem) {
  Mount({{"d plain", "f plain/fake", "x plain/fake trusted.overlay.whiteout", "f solo",
          "x solo trusted.overlay.whiteout", "d marked", "x marked trusted.overlay.opaque x",
          "f marked/gone", "x marked/gone trusted.overlay.whiteout", "f full data",
          "x full trusted.overlay.whiteout", "f uw", "x uw user.overlay.whiteout"},
         {"f plain/fake below", "f solo below", "f marked/gone below", "f full below", "f uw below",
          "f up/w below"}},
        {"d up", "f up/w", "x up/w trusted.overlay.whiteout"});
  const std::vector<std::string> paths = {
      "", "plain", "plain/fake", "solo", "marked", "marked/gone", "full", "uw", "up", "up/w"};
  ExpectSame([&](const std::string& r) { return ShowAll(r, paths); }, "xattr whiteouts");
  ExpectSame([](const std::string& r) { return ShowAll(r, {"plain", ""}); }, "listed again");
}

// Metacopy files (overlay.metacopy: metadata copied up, data left below)
// need metacopy=on, which neither overlay has: the kernel refuses to follow
// one (EPERM), or any with a malformed record (EIO), in any layer.
TEST_F(LayerMarkersTest, MetacopyFilesAreRefused) {
  Mount({{"f f lower-data", "f h x", "f lm", "x lm trusted.overlay.metacopy", "f lo stub",
          "x lo trusted.overlay.metacopy", "d dd"},
         {"f lm bottom"}},
        {"f f stub", "x f trusted.overlay.metacopy", "f g upper-only",
         "x g trusted.overlay.metacopy", "f h stub", "x h trusted.overlay.metacopy ab", "f dd",
         "x dd trusted.overlay.metacopy", "f plain p", "x plain user.overlay.metacopy"});
  ExpectSame(
      [](const std::string& r) {
        std::string out;
        for (const char* name : {"f", "g", "h", "lm", "lo", "dd", "plain"}) {
          out += Show(r, name) + " open:";
          int fd = open((r + "/" + name).c_str(), O_RDONLY);
          out += Outcome(fd) + "\n";
          if (fd >= 0) close(fd);
        }
        return out;
      },
      "metacopy files");
}

// An origin record names the lower object an upper file was copied up
// from; the kernel uses what it decodes only for its inode number, and
// only if it is of the upper file's type.
TEST_F(LayerMarkersTest, OriginsNameOnlyObjectsOfTheirType) {
  Mount({{"d dir", "f dir/file in-dir", "f lowerfile l", "d seed"}},
        {"f wrongtype w", "f outside-file o", "f outside-dir d", "f samefile s"});
  for (const std::string& root : {lamina_root(), kernel_root()}) {
    ASSERT_EQ(chmod((root + "/seed").c_str(), 0700), 0);  // a copy-up: an origin to copy from
  }
  UnmountLamina();
  UnmountKernel();
  for (const std::string& set : set_) {
    char origin[256];
    ssize_t n =
        getxattr((set + "/upper/seed").c_str(), "trusted.overlay.origin", origin, sizeof(origin));
    ASSERT_GT(n, 21) << strerror(errno);
    auto point = [&](const std::string& at, const std::string& to) {
      alignas(struct file_handle) unsigned char storage[sizeof(struct file_handle) + MAX_HANDLE_SZ];
      auto* handle = reinterpret_cast<struct file_handle*>(storage);
      handle->handle_bytes = MAX_HANDLE_SZ;
      int mount_id;
      ASSERT_EQ(name_to_handle_at(AT_FDCWD, to.c_str(), handle, &mount_id, 0), 0);
      std::string value(origin, 21);
      value[2] = static_cast<char>(21 + handle->handle_bytes);
      value[4] = static_cast<char>(handle->handle_type);
      value.append(reinterpret_cast<const char*>(handle->f_handle), handle->handle_bytes);
      ASSERT_EQ(setxattr((set + "/upper/" + at).c_str(), "trusted.overlay.origin", value.data(),
                         value.size(), 0),
                0);
    };
    WriteFile(set + "/outside", "outside");
    mkdir((set + "/outside.d").c_str(), 0755);
    point("wrongtype", set + "/lower0/dir");
    point("outside-file", set + "/outside");
    point("outside-dir", set + "/outside.d");
    point("samefile", set + "/lower0/lowerfile");
  }
  MountBoth();
  // Which object each name's inode number comes from.
  auto source = [](const std::string& r, const std::string& set, const std::string& name) {
    struct stat view, upper, object;
    if (lstat((r + "/" + name).c_str(), &view) != 0) return name + ":" + Outcome(-1);
    if (lstat((set + "/upper/" + name).c_str(), &upper) == 0 && upper.st_ino == view.st_ino) {
      return name + ":own";
    }
    for (const char* other : {"/lower0/dir", "/outside", "/outside.d", "/lower0/lowerfile"}) {
      if (lstat((set + other).c_str(), &object) == 0 && object.st_ino == view.st_ino) {
        return name + ":" + other;
      }
    }
    return name + ":other";
  };
  for (int pass = 0; pass < 2; ++pass) {
    std::string lamina, kernel;
    for (const char* name : {"dir", "wrongtype", "outside-file", "outside-dir", "samefile"}) {
      lamina += source(lamina_root(), set_[0], name) + " ";
      kernel += source(kernel_root(), set_[1], name) + " ";
    }
    EXPECT_EQ(lamina, kernel) << "inode numbers, pass " << pass;
  }
  // The directory whose handle a file's origin carries is still itself.
  ExpectSame(
      [](const std::string& r) {
        return ShowAll(r, {"dir", "dir/file", "wrongtype"});
      },
      "the directory named by a file's origin");
}

// A lower file may carry a nested overlay's records, escaped
// (trusted.overlay.overlay.X, shown as trusted.overlay.X): the caller's
// own attributes, which copy-up keeps, as the kernel does.
TEST_F(LayerMarkersTest, EscapedPrivateXattrsAreCopiedUp) {
  Mount({{"f f data", "x f trusted.overlay.overlay.opaque y", "x f trusted.overlay.overlay.foo bar",
          "d d", "x d trusted.overlay.overlay.redirect /x"}});
  auto show = [](const std::string& r) {
    std::string out;
    for (const char* name : {"/f", "/d"}) {
      for (const char* attr :
           {"trusted.overlay.opaque", "trusted.overlay.foo", "trusted.overlay.redirect"}) {
        char value[16] = {};
        out +=
            Outcome(static_cast<int>(getxattr((r + name).c_str(), attr, value, 15))) + value + " ";
      }
    }
    return out;
  };
  ExpectSame(show, "escaped attributes below");
  ExpectSame(
      [](const std::string& r) {
        return Outcome(chmod((r + "/f").c_str(), 0600)) + Outcome(chmod((r + "/d").c_str(), 0700));
      },
      "copy-ups");
  ExpectSame(show, "escaped attributes after the copy-ups");
  for (const std::string& upper : {lamina_upper(), kernel_upper()}) {
    EXPECT_EQ(LayerXattr(upper + "/f", "trusted.overlay.overlay.foo"), "bar") << upper;
    EXPECT_EQ(LayerXattr(upper + "/d", "trusted.overlay.overlay.redirect"), "/x") << upper;
  }
}

// An index entry (work/index/<origin in hex>) is the upper copy of a lower
// hard link only if it records that origin itself: the kernel checks every
// entry at mount and refuses the mount otherwise; Lamina ignores such an
// entry and shows the lower file.
TEST_F(LayerMarkersTest, IndexEntriesMustRecordTheirOrigin) {
  kernel_options_ = "index=on";
  Mount({{"f f lower", "h g f"}});
  ExpectSame(
      [](const std::string& r) {
        int fd = open((r + "/f").c_str(), O_WRONLY | O_APPEND);
        int written = fd >= 0 ? static_cast<int>(write(fd, "+up", 3)) : -1;
        if (fd >= 0) close(fd);
        return Outcome(written) + ReadFile(r + "/g");
      },
      "a write through one name of a hard link");
  UnmountLamina();
  UnmountKernel();
  for (const std::string& set : set_) {
    std::vector<std::string> entries = ListDir(set + "/work/index");
    ASSERT_EQ(entries.size(), 1u) << set;
    ASSERT_EQ(removexattr((set + "/work/index/" + entries[0]).c_str(), "trusted.overlay.origin"),
              0);
    ASSERT_EQ(unlink((set + "/upper/f").c_str()), 0);
  }
  MountLamina();
  EXPECT_EQ(ReadFile(lamina_root() + "/f"), "lower");
  EXPECT_EQ(ReadFile(lamina_root() + "/g"), "lower");
  const std::string data = "lowerdir=" + set_[1] + "/lower0,upperdir=" + set_[1] +
                           "/upper,workdir=" + set_[1] + "/work,index=on";
  EXPECT_NE(mount("overlay", kernel_root().c_str(), "overlay", 0, data.c_str()), 0)
      << "the kernel took an index entry without its origin";
  umount2(kernel_root().c_str(), MNT_DETACH);
}

// The kernel never asks for "." or "..", and the daemon must not depend on
// that: they name no entry of a layer.
TEST_F(LayerMarkersTest, DotNamesAreRefused) {
  Mount({{"d dir", "f dir/file f"}});
  RequestContext ctx;
  for (const char* name : {".", ".."}) {
    Result<Entry> entry = fs_->Lookup(ctx, kRootNodeId, name);
    EXPECT_FALSE(entry.ok()) << name;
    if (!entry.ok()) {
      EXPECT_EQ(entry.error(), EINVAL) << name;
    }
    Result<void> removed = fs_->Rmdir(ctx, kRootNodeId, name);
    EXPECT_EQ(removed.ok() ? 0 : removed.error(), EINVAL) << name;
    removed = fs_->Unlink(ctx, kRootNodeId, name);
    EXPECT_EQ(removed.ok() ? 0 : removed.error(), EINVAL) << name;
  }
  ExpectSame([](const std::string& r) { return ShowAll(r, {"", "dir"}); }, "the tree afterwards");
}

}  // namespace
}  // namespace lamina::testing
