// Lower layers with hostile content, served side by side with kernel
// overlayfs: symlinks out of the layers, absurd xattrs, NAME_MAX names, a
// 10,000-deep directory chain, whiteouts beside their own names, redirects
// and origins that point outside the layers. Every access must stay in the
// layers (a symlink is followed by the caller's VFS, as on the kernel), the
// daemon must keep answering, and errors must be the kernel's.

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <string>
#include <string_view>
#include <vector>

#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

class HostileLayersTest : public OverlayPair {
 protected:
  // Unmounts both, runs `change(set)` on each set of layers (a deliberate
  // change of the lowers, recorded afresh), remounts.
  void ChangeLayers(const std::function<void(const std::string& set)>& change) {
    UnmountLamina();
    UnmountKernel();
    ChangeLowers("hostile content added", [&] {
      for (const std::string& set : set_) change(set);
    });
    MountBoth();
  }
  // Puts both sets of layers on a tmpfs: ext4 keeps a file's xattrs in one
  // block, tmpfs takes values up to XATTR_SIZE_MAX.
  void LayersOnTmpfs() {
    for (const char* name : {"lamina", "kernel"}) {
      std::string dir = dir_.Subdir(name);
      ASSERT_EQ(mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=256m"), 0) << strerror(errno);
    }
  }
  // The daemon survived: the mount still answers lookups and listings
  // (the same as the kernel's, unless the layers use forms it ignores).
  void ExpectAlive(bool like_kernel = true) {
    struct stat st;
    EXPECT_EQ(stat(lamina_root().c_str(), &st), 0) << strerror(errno);
    EXPECT_FALSE(ListDir(lamina_root()).empty());
    if (like_kernel) {
      EXPECT_EQ(ListDir(lamina_root()), ListDir(kernel_root()));
    }
  }
};

// Size and a digest of a file's contents, so big files compare quickly.
std::string Digest(const std::string& path) {
  std::string data = ReadFile(path);
  return std::to_string(data.size()) + ":" + std::to_string(std::hash<std::string>()(data));
}

// Type, owner and size; with `times`, the modification time too (which
// differs between the two mounts' copies of a directory).
std::string StatLine(const std::string& path, int flags = AT_SYMLINK_NOFOLLOW, bool times = false) {
  struct stat st;
  if (fstatat(AT_FDCWD, path.c_str(), &st, flags) != 0) return Outcome(-1);
  std::string out = "mode=" + std::to_string(st.st_mode) + " uid=" + std::to_string(st.st_uid) +
                    " size=" + std::to_string(st.st_size);
  if (times) {
    out += " mtime=" + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
  }
  return out;
}

TEST_F(HostileLayersTest, SymlinksOutOfTheLayersResolveInTheCallersView) {
  // A file outside the layers that the daemon must never touch.
  const std::string victim = dir_.path() + "/victim";
  WriteFile(victim, "outside the layers");
  ASSERT_EQ(chmod(victim.c_str(), 0640), 0);
  const std::string victim_before = StatLine(victim, AT_SYMLINK_NOFOLLOW, true);
  const std::string passwd_before = StatLine("/etc/passwd", AT_SYMLINK_NOFOLLOW, true);
  Mount({{
            "l abs /etc/passwd",
            "l up ../../../../../../../../../etc/passwd",
            "l proc /proc/self/root",
            "l procfile /proc/self/root/etc/passwd",
            "l etc /etc",
            "l victim " + victim,
            "l self .",
            "l loop loop",
        }},
        {"l upper-victim " + victim});
  for (const char* name :
       {"abs", "up", "proc", "procfile", "etc", "victim", "self", "loop", "upper-victim"}) {
    std::string link = std::string("/") + name;
    ExpectSame(
        [&](const std::string& r) {
          char target[4096];
          ssize_t n = readlink((r + link).c_str(), target, sizeof(target));
          std::string out = Outcome(static_cast<int>(n));
          if (n >= 0) out += " " + std::string(target, static_cast<size_t>(n));
          return out + " follow:" + StatLine(r + link, 0) +
                 " nofollow-open:" + Outcome(open((r + link).c_str(), O_RDONLY | O_NOFOLLOW));
        },
        "readlink and stat of " + std::string(name));
  }
  ExpectSame([](const std::string& r) { return Digest(r + "/abs"); }, "read through /etc/passwd");
  ExpectSame([](const std::string& r) { return Digest(r + "/up"); }, "read through ../..");
  ExpectSame([](const std::string& r) { return Digest(r + "/proc/etc/passwd"); },
             "read through /proc/self/root");
  ExpectSame([](const std::string& r) { return Digest(r + "/procfile"); }, "read via procfile");
  ExpectSame([](const std::string& r) { return Digest(r + "/victim"); }, "read the victim");
  ExpectSame(
      [](const std::string& r) { return Outcome(access((r + "/self/self/abs").c_str(), R_OK)); },
      "a self-loop directory link");
  ExpectSame([](const std::string& r) { return std::to_string(ListDir(r + "/etc").size()); },
             "listing through a link to /etc");

  // Operations on the links themselves copy them up; none may reach the
  // target, whichever way the daemon resolves paths.
  ExpectSame(
      [](const std::string& r) {
        std::string out;
        for (const char* name : {"abs", "victim", "proc", "upper-victim"}) {
          std::string path = r + "/" + name;
          out += Outcome(lchown(path.c_str(), 123, 456));
          out += Outcome(lsetxattr(path.c_str(), "user.test", "v", 1, 0));
          out += Outcome(lsetxattr(path.c_str(), "trusted.test", "v", 1, 0));
          char value[8] = {};
          out += Outcome(static_cast<int>(
                     lgetxattr(path.c_str(), "trusted.test", value, sizeof(value)))) +
                 value;
          const struct timespec times[2] = {{1000000, 0}, {2000000, 0}};
          out += Outcome(utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW));
          struct stat st {};
          out += Outcome(lstat(path.c_str(), &st));
          out += " mtime=" + std::to_string(st.st_mtim.tv_sec);
          out += Outcome(link(path.c_str(), (path + ".hard").c_str()));
          out += Outcome(rename(path.c_str(), (path + ".moved").c_str()));
          out += " " + StatLine(path + ".moved") + "|";
        }
        out += Outcome(unlink((r + "/up").c_str()));
        return out;
      },
      "changing the links");
  ExpectSame(DescribeTree, "tree after changing the links");
  EXPECT_EQ(StatLine(victim, AT_SYMLINK_NOFOLLOW, true), victim_before)
      << "the daemon changed a symlink's target";
  EXPECT_EQ(ReadFile(victim), "outside the layers");
  EXPECT_EQ(StatLine("/etc/passwd", AT_SYMLINK_NOFOLLOW, true), passwd_before);
  ExpectAlive();
}

TEST_F(HostileLayersTest, AbsurdXattrValuesAndCounts) {
  LayersOnTmpfs();
  Mount({{"f big data", "f many data", "d dir", "f dir/file x"}}, {});
  const std::string huge(65536, 'h');  // XATTR_SIZE_MAX
  ChangeLayers([&](const std::string& set) {
    std::string lower = set + "/lower0";
    ASSERT_EQ(setxattr((lower + "/big").c_str(), "user.huge", huge.data(), huge.size(), 0), 0)
        << strerror(errno);
    ASSERT_EQ(setxattr((lower + "/dir").c_str(), "user.huge", huge.data(), huge.size(), 0), 0);
    // More names than one listxattr can return (XATTR_LIST_MAX is 64 KiB).
    for (int i = 0; i < 4000; ++i) {
      std::string name = "user.attribute-with-a-long-name-" + std::to_string(i);
      ASSERT_EQ(setxattr((lower + "/many").c_str(), name.c_str(), "v", 1, 0), 0) << i;
    }
  });
  auto xattrs = [&](const std::string& path) {
    std::string out;
    ssize_t size = getxattr(path.c_str(), "user.huge", nullptr, 0);
    out += "size:" + Outcome(static_cast<int>(size)) + std::to_string(size);
    std::string value(70000, '\0');
    ssize_t n = getxattr(path.c_str(), "user.huge", value.data(), value.size());
    out += " get:" + Outcome(static_cast<int>(n));
    if (n >= 0) out += value.substr(0, static_cast<size_t>(n)) == huge ? "=huge" : "!=huge";
    char small[16];
    out += " small:" + Outcome(static_cast<int>(getxattr(path.c_str(), "user.huge", small, 16)));
    std::string names(1 << 17, '\0');
    ssize_t list = listxattr(path.c_str(), names.data(), 65536);
    out += " list:" + Outcome(static_cast<int>(list));
    // Past XATTR_LIST_MAX the kernel answers a size query with the size
    // (the list itself is E2BIG), Lamina with E2BIG at once.
    if (list >= 0) {
      out += " listsize:" + Outcome(static_cast<int>(listxattr(path.c_str(), nullptr, 0)));
    }
    out += " one:" + Outcome(static_cast<int>(getxattr(
                         path.c_str(), "user.attribute-with-a-long-name-3999", small, 16)));
    return out;
  };
  for (const char* name : {"/big", "/dir", "/many"}) {
    ExpectSame([&](const std::string& r) { return xattrs(r + name); },
               std::string("xattrs of lower ") + name);
  }
  ssize_t size_query = listxattr((lamina_root() + "/many").c_str(), nullptr, 0);
  EXPECT_TRUE(size_query > 65536 || (size_query < 0 && errno == E2BIG)) << size_query;
  // Copy-up carries them along; a 64 KiB value can also be written.
  ExpectSame(
      [&](const std::string& r) {
        std::string out;
        for (const char* name : {"/big", "/dir", "/many"}) {
          out += Outcome(chmod((r + name).c_str(), 0700)) + xattrs(r + name) + "|";
        }
        std::string other(65536, 'o');
        out += Outcome(
            setxattr((r + "/dir/file").c_str(), "user.other", other.data(), other.size(), 0));
        out += Outcome(
            setxattr((r + "/dir/file").c_str(), "user.over", other.data(), other.size() + 1, 0));
        std::string back(65536, '\0');
        ssize_t n = getxattr((r + "/dir/file").c_str(), "user.other", back.data(), back.size());
        out += Outcome(static_cast<int>(n)) + (back == other ? "=other" : "!=other");
        return out;
      },
      "xattrs after copy-up");
  ExpectSame(DescribeTree, "tree after copy-up");
  ExpectAlive();
}

TEST_F(HostileLayersTest, NamesAtNameMax) {
  const std::string a(255, 'a'), b(255, 'b'), c(255, 'c'), d(255, 'd'), e(255, 'e');
  kernel_options_ = "redirect_dir=on";  // Lamina's default: lower directories rename
  Mount({{"f " + a + " lower-a", "d " + b, "f " + b + "/" + c + " lower-c", "f " + e + " e"},
         {"f " + a + " bottom-a", "f " + d + " bottom-d"}},
        {});
  ExpectSame(DescribeTree, "tree with 255-byte names");
  ExpectSame(
      [&](const std::string& r) {
        std::string out = ReadFile(r + "/" + b + "/" + c);
        int fd = open((r + "/" + a).c_str(), O_WRONLY | O_APPEND);  // copy-up
        out += Outcome(fd);
        if (fd >= 0) close(fd);
        out += Outcome(rename((r + "/" + b + "/" + c).c_str(), (r + "/" + b + "/" + e).c_str()));
        out += Outcome(rename((r + "/" + b).c_str(), (r + "/" + c).c_str()));  // a lower dir
        out += Outcome(unlink((r + "/" + d).c_str()));                         // whiteout
        out += Outcome(unlink((r + "/" + e).c_str()));
        int created = open((r + "/" + e).c_str(), O_CREAT | O_WRONLY, 0644);  // over it
        out += Outcome(created);
        if (created >= 0) close(created);
        out += Outcome(mkdir((r + "/" + d).c_str(), 0755));
        out += Outcome(symlink(a.c_str(), (r + "/" + d + "/" + a).c_str()));
        out += Outcome(link((r + "/" + a).c_str(), (r + "/" + d + "/" + b).c_str()));
        return out;
      },
      "operations on 255-byte names");
  ExpectSame(DescribeTree, "tree after the operations");
  // 256 bytes: ENAMETOOLONG, to a lookup as to a create.
  for (const std::string& root : {lamina_root(), kernel_root()}) {
    EXPECT_EQ(access((root + "/" + a + "x").c_str(), F_OK), -1);
    EXPECT_EQ(errno, ENAMETOOLONG) << root;
    int fd = open((root + "/" + a + "x").c_str(), O_CREAT | O_WRONLY, 0644);
    EXPECT_EQ(fd, -1);
    EXPECT_EQ(errno, ENAMETOOLONG) << root;
  }
  ExpectAlive();
}

constexpr int kDepth = 10000;
// Copy-up holds two descriptors per merged directory (lower and upper) while
// the kernel keeps the chain cached: 2,500 levels (a 5,000-byte path) stay
// well inside a 20,000-descriptor limit next to the 10,000-level walk.
constexpr int kCopyUpDepth = 2500;

// Makes `depth` nested directories "d" under `root` with a file at the
// bottom, one openat at a time (the path is far beyond PATH_MAX).
void MakeChain(const std::string& root, int depth) {
  int fd = open(root.c_str(), O_DIRECTORY | O_RDONLY);
  ASSERT_GE(fd, 0);
  for (int i = 0; i < depth; ++i) {
    ASSERT_EQ(mkdirat(fd, "d", 0755), 0) << i;
    int next = openat(fd, "d", O_DIRECTORY | O_RDONLY);
    close(fd);
    ASSERT_GE(next, 0) << i;
    fd = next;
  }
  int file = openat(fd, "leaf", O_CREAT | O_WRONLY, 0644);
  ASSERT_EQ(write(file, "bottom", 6), 6);
  close(file);
  close(fd);
}

// Removes such a chain from the bottom up (std::filesystem fails on paths
// this long, TempDir would leave it behind). Ignores a missing chain.
void RemoveChain(const std::string& root) {
  int fd = open(root.c_str(), O_DIRECTORY | O_RDONLY);
  int depth = 0;
  for (int next; fd >= 0 && (next = openat(fd, "d", O_DIRECTORY | O_RDONLY)) >= 0; ++depth) {
    close(fd);
    fd = next;
  }
  if (fd < 0) return;
  unlinkat(fd, "leaf", 0);
  for (; depth > 0; --depth) {
    int parent = openat(fd, "..", O_DIRECTORY | O_RDONLY);
    close(fd);
    fd = parent;
    if (fd < 0 || unlinkat(fd, "d", AT_REMOVEDIR) != 0) break;
  }
  if (fd >= 0) close(fd);
}

// Walks the chain component by component (O_PATH: lookups only); the
// outcome of the walk and of reading (with `append`: appending to) the leaf.
std::string WalkChain(const std::string& root, int depth, bool append) {
  int fd = open(root.c_str(), O_DIRECTORY | O_PATH);
  for (int i = 0; i < depth && fd >= 0; ++i) {
    int next = openat(fd, "d", O_DIRECTORY | O_PATH);
    if (next < 0) {
      std::string out = "depth " + std::to_string(i) + ": " + Outcome(-1);
      close(fd);
      return out;
    }
    close(fd);
    fd = next;
  }
  int leaf = openat(fd, "leaf", append ? O_WRONLY | O_APPEND : O_RDONLY);
  std::string out = Outcome(leaf);
  if (leaf >= 0) {
    if (append) {
      out += Outcome(static_cast<int>(write(leaf, "+", 1)));
    } else {
      char buffer[32] = {};
      out += Outcome(static_cast<int>(read(leaf, buffer, sizeof(buffer) - 1))) + buffer;
    }
    close(leaf);
  }
  close(fd);
  return out;
}

TEST_F(HostileLayersTest, RelativeRedirectsCannotClimbOutOfTheLayers) {
  BuildLayer(dir_.path() + "/outside", {"f secret outside"});
  Mount({{"d up", "d dotdot", "d rootdotdot"}, {"f own below"}}, {});
  ChangeLayers([](const std::string& set) {
    auto redirect = [&](const char* dir, const std::string& to) {
      ASSERT_EQ(setxattr((set + "/lower0/" + dir).c_str(), "trusted.overlay.redirect", to.data(),
                         to.size(), 0),
                0);
    };
    redirect("up", "../../outside");  // from lower1's root: dir_/outside
    redirect("dotdot", "..");         // the directory holding the layers
    redirect("rootdotdot", "/..");
  });
  for (const char* name : {"/up", "/dotdot", "/rootdotdot"}) {
    ExpectSame([&](const std::string& r) { return Outcome(access((r + name).c_str(), F_OK)); },
               std::string("lookup of ") + name);
    for (const std::string& entry : ListDir(lamina_root() + name)) {
      EXPECT_NE(entry, "secret") << name << " reached outside the layers";
      EXPECT_NE(entry, "lower0") << name << " reached outside the layers";
    }
  }
  // Both list the refused directories in the root, and refuse their lookup.
  ExpectAlive();
}

TEST_F(HostileLayersTest, TenThousandDeepDirectoryChain) {
  LayersOnTmpfs();  // ext4 here takes ~3 ms per rmdir at this depth; tmpfs 12 us
  Mount({{"d top", "d mid"}}, {});
  ChangeLayers([&](const std::string& set) {
    MakeChain(set + "/lower0/top", kDepth);
    MakeChain(set + "/lower0/mid", kCopyUpDepth);
  });
  // A copy-up at the bottom copies every parent.
  ExpectSame([](const std::string& r) { return WalkChain(r + "/mid", kCopyUpDepth, true); },
             "copy-up 2,500 levels deep");
  ExpectSame([](const std::string& r) { return WalkChain(r + "/mid", kCopyUpDepth, false); },
             "reading back after the copy-up");
  ExpectSame([](const std::string& r) { return WalkChain(r + "/top", kDepth, false); },
             "walking 10,000 levels");
  // A path through the mount is limited by PATH_MAX, as everywhere.
  std::string path = lamina_root() + "/top";
  for (int i = 0; i < 2100; ++i) path += "/d";
  ExpectSame(
      [&](const std::string& r) {
        std::string p = r + path.substr(lamina_root().size());
        return Outcome(access(p.c_str(), F_OK));
      },
      "a path longer than PATH_MAX");
  ExpectAlive();
  UnmountLamina();
  UnmountKernel();
  ChangeLowers("the chains removed, which TempDir cannot", [&] {
    for (const std::string& set : set_) {
      for (const char* chain : {"/lower0/top", "/lower0/mid", "/upper/mid"}) {
        RemoveChain(set + chain);
      }
    }
  });
}

TEST_F(HostileLayersTest, WhiteoutsBesideTheirOwnNames) {
  // OCI layers: ".wh.NAME" hides NAME in the layers below only, never the
  // NAME beside it; ".wh..wh..opq" hides only lower entries. The kernel
  // does not read these forms, so this checks Lamina against the OCI rule.
  Mount({{"f x top-x", "f .wh.x", "f .wh.z", "d dir", "f dir/.wh..wh..opq", "f dir/mine m"},
         {"f x bottom-x", "f y bottom-y", "f z bottom-z", "f dir/theirs t"}},
        {}, /*with_upper=*/false);
  EXPECT_EQ(ListDir(lamina_root()), (std::vector<std::string>{"dir", "x", "y"}));
  EXPECT_EQ(ReadFile(lamina_root() + "/x"), "top-x");
  EXPECT_EQ(ListDir(lamina_root() + "/dir"), (std::vector<std::string>{"mine"}));
  EXPECT_EQ(access((lamina_root() + "/z").c_str(), F_OK), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(access((lamina_root() + "/.wh.x").c_str(), F_OK), -1);
  ExpectAlive(/*like_kernel=*/false);
}

TEST_F(HostileLayersTest, WhiteoutFormsTheKernelAlsoReads) {
  // A char-device whiteout with nothing below it and an xattr whiteout in
  // a directory marked opaque "x", over a file of the layer below.
  Mount({{"w lonely", "d marked", "f marked/gone", "f plain/fake"},
         {"f marked/gone below", "f plain/fake below"}},
        {}, /*with_upper=*/true);
  ChangeLayers([](const std::string& set) {
    std::string lower = set + "/lower0";
    ASSERT_EQ(setxattr((lower + "/marked").c_str(), "trusted.overlay.opaque", "x", 1, 0), 0);
    ASSERT_EQ(setxattr((lower + "/marked/gone").c_str(), "trusted.overlay.whiteout", "", 0, 0), 0);
    ASSERT_EQ(setxattr((lower + "/plain/fake").c_str(), "trusted.overlay.whiteout", "", 0, 0), 0);
  });
  ExpectSame([](const std::string& r) { return std::to_string(ListDir(r + "/marked").size()); },
             "xattr whiteout in a marked directory");
  ExpectSame([](const std::string& r) { return Outcome(access((r + "/lonely").c_str(), F_OK)); },
             "a whiteout with nothing below");
  ExpectSame(
      [](const std::string& r) { return Outcome(access((r + "/marked/gone").c_str(), F_OK)); },
      "the whited-out name");
  // An xattr whiteout in a directory NOT marked "x": the kernel lists the
  // name but its lookup fails (ENOENT), and so does Lamina's; the lower
  // file stays hidden.
  ExpectSame(
      [](const std::string& r) { return Outcome(access((r + "/plain/fake").c_str(), F_OK)); },
      "an xattr whiteout in an unmarked directory");
  EXPECT_EQ(ListDir(lamina_root() + "/plain"), ListDir(kernel_root() + "/plain"));
  ExpectAlive();
}

TEST_F(HostileLayersTest, RedirectsOutOfTheLayersFindNothingOutside) {
  // A directory outside the layers that a redirect might reach.
  BuildLayer(dir_.path() + "/outside", {"f secret outside"});
  Mount({{"d abs", "d missing", "d dotdot", "f abs/own mine"},
         {"f own below", "d etc", "f etc/layer-file in-layer"}},
        {});
  ChangeLayers([](const std::string& set) {
    std::string lower = set + "/lower0";
    auto redirect = [&](const char* dir, const std::string& to) {
      ASSERT_EQ(setxattr((lower + "/" + dir).c_str(), "trusted.overlay.redirect", to.data(),
                         to.size(), 0),
                0);
    };
    redirect("abs", "/../../../../outside");
    redirect("missing", "/no/such/dir/in/any/layer");
    redirect("dotdot", "/../../outside");
  });
  for (const char* name : {"/abs", "/missing", "/dotdot"}) {
    std::string dir = name;
    std::string listing = "";
    for (const std::string& n : ListDir(lamina_root() + dir)) listing += n + " ";
    EXPECT_EQ(listing.find("secret"), std::string::npos) << dir << " reached outside: " << listing;
    EXPECT_EQ(access((lamina_root() + dir + "/secret").c_str(), F_OK), -1) << dir;
  }
  EXPECT_EQ(ListDir(lamina_root() + "/missing"), ListDir(kernel_root() + "/missing"));
  // A redirect with ".." is refused as the kernel refuses it.
  for (const char* name : {"/abs", "/dotdot"}) {
    ExpectSame([&](const std::string& r) { return Outcome(access((r + name).c_str(), F_OK)); },
               std::string("lookup of ") + name);
  }
  // Writing below a directory whose redirect leads nowhere stays in the upper.
  WriteFile(lamina_root() + "/missing/new", "new");
  EXPECT_EQ(ReadFile(lamina_upper() + "/missing/new"), "new");
  EXPECT_EQ(ListDir(dir_.path() + "/outside"), (std::vector<std::string>{"secret"}));
  // Both list the refused directories in the root, and refuse their lookup.
  ExpectAlive();
}

TEST_F(HostileLayersTest, CorruptOriginsAreIgnoredOrRefusedLikeTheKernel) {
  Mount({{"f victim lower-victim", "f garbage lower-g", "f short lower-s", "d dir"}},
        {"f victim upper-victim", "f garbage upper-g", "f short upper-s", "f wrongtype upper-w"});
  // The origin of a real copy-up gives the header (the uuid of the layers'
  // filesystem); corrupt copies of it go on the upper files.
  ASSERT_EQ(chmod((kernel_root() + "/dir").c_str(), 0700), 0);
  ASSERT_EQ(chmod((lamina_root() + "/dir").c_str(), 0700), 0);
  ChangeLayers([&](const std::string& set) {
    char origin[256];
    ssize_t n =
        getxattr((set + "/upper/dir").c_str(), "trusted.overlay.origin", origin, sizeof(origin));
    ASSERT_GT(n, 21) << strerror(errno);
    std::string header(origin, 21);
    auto set_origin = [&](const char* name, const std::string& value) {
      ASSERT_EQ(setxattr((set + "/upper/" + name).c_str(), "trusted.overlay.origin", value.data(),
                         value.size(), 0),
                0);
    };
    // A well-formed handle of a file outside the layers (same filesystem).
    std::string outside = set + "/outside";
    WriteFile(outside, "outside");
    alignas(struct file_handle) unsigned char storage[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    auto* handle = reinterpret_cast<struct file_handle*>(storage);
    handle->handle_bytes = MAX_HANDLE_SZ;
    int mount_id;
    ASSERT_EQ(name_to_handle_at(AT_FDCWD, outside.c_str(), handle, &mount_id, 0), 0);
    // The copy-up's header with this handle's length, type and bytes.
    std::string value = header;
    value[2] = static_cast<char>(21 + handle->handle_bytes);
    value[4] = static_cast<char>(handle->handle_type);
    value.append(reinterpret_cast<const char*>(handle->f_handle), handle->handle_bytes);
    set_origin("victim", value);
    set_origin("garbage", std::string(64, '\xfb'));
    set_origin("short", header.substr(0, 7));
    // The handle of a directory on a regular file.
    std::string dir_origin(origin, static_cast<size_t>(n));
    set_origin("wrongtype", dir_origin);
  });
  for (const char* name : {"/victim", "/garbage", "/short", "/wrongtype"}) {
    std::string path = name;
    ExpectSame(
        [&](const std::string& r) {
          struct stat st {};
          std::string out = Outcome(lstat((r + path).c_str(), &st));
          return out + " mode=" + std::to_string(st.st_mode) + " " + ReadFile(r + path);
        },
        "reading " + path);
  }
  ExpectSame(
      [](const std::string& r) {
        std::string out;
        for (const char* name : {"/victim", "/garbage", "/short", "/wrongtype"}) {
          out += Outcome(truncate((r + name).c_str(), 2));
          out += Outcome(unlink((r + name).c_str()));
        }
        return out;
      },
      "changing files with corrupt origins");
  ExpectSame(DescribeTree, "tree afterwards");
  EXPECT_EQ(ReadFile(dir_.path() + "/lamina/outside"), "outside");
  ExpectAlive();
}

}  // namespace
}  // namespace lamina::testing
