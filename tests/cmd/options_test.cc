// ParseMountCommand: every option's accepted and malformed forms, the
// calling conventions of containers/storage and mount.fuse3, and where a
// mountpoint may not be. Parsing resolves paths, so they exist: a scratch
// directory with l1, l2, upper, work and mnt.

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cmd/options.h"
#include "gtest/gtest.h"

namespace lamina::cmd {
namespace {

class Scratch {
 public:
  Scratch() {
    char name[] = "/tmp/lamina-options-XXXXXX";
    root_ = mkdtemp(name);
    for (const char* dir : {"l1", "l2", "upper", "work", "mnt", "l1/inner"}) {
      std::filesystem::create_directory(root_ + "/" + dir);
    }
  }
  ~Scratch() { std::filesystem::remove_all(root_); }
  std::string operator()(const std::string& name) const { return root_ + "/" + name; }

 private:
  std::string root_;
};

// One scratch directory for the whole run, removed at exit.
const Scratch& Dir() {
  static const Scratch scratch;
  return scratch;
}

absl::StatusOr<MountCommand> ParseOverlay(const std::string& options) {
  return ParseMountCommand({"-o", "lowerdir=" + Dir()("l1") + "," + options, Dir()("mnt")},
                           MountKind::kOverlay);
}

// The error message for `options`, or "" if they parse.
std::string ErrorOf(const std::string& options) {
  absl::StatusOr<MountCommand> command = ParseOverlay(options);
  return command.ok() ? "" : std::string(command.status().message());
}

// Expects each {options, message} pair to fail with that message.
void ExpectErrors(const std::vector<std::pair<std::string, std::string>>& cases) {
  for (const auto& [options, message] : cases) EXPECT_EQ(ErrorOf(options), message) << options;
}

TEST(OptionsTest, ContainersStorageForm) {
  // Relative paths, as containers/storage runs the program in its home.
  ASSERT_EQ(chdir(Dir()("").c_str()), 0);
  absl::StatusOr<MountCommand> command = ParseMountCommand(
      {"-o", "lowerdir=l1:l2,upperdir=upper,workdir=work,,volatile", "mnt"}, MountKind::kOverlay);
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_EQ(command->lowerdirs, (std::vector<std::string>{Dir()("l1"), Dir()("l2")}));
  EXPECT_EQ(command->upperdir, Dir()("upper"));
  EXPECT_EQ(command->workdir, Dir()("work"));
  EXPECT_TRUE(command->volatile_mode);
  EXPECT_EQ(command->mountpoint, Dir()("mnt"));
  ASSERT_EQ(chdir("/"), 0);
}

TEST(OptionsTest, EscapedColonsInLowerdir) {
  EXPECT_EQ(*SplitLowerdirs("a\\:b:c:d"), (std::vector<std::string>{"a:b", "c", "d"}));
  // As the kernel reads it: a backslash makes any next character ordinary.
  EXPECT_EQ(*SplitLowerdirs("a\\\\:b\\,c:\\d\\"), (std::vector<std::string>{"a\\", "b,c", "d"}));
  EXPECT_TRUE(SplitLowerdirs("")->empty());
  // What the kernel refuses, and data-only layers ("::"), which Lamina lacks.
  EXPECT_EQ(SplitLowerdirs(":a").status().message(), "lowerdir may not start with ':'");
  EXPECT_EQ(SplitLowerdirs("a:").status().message(), "lowerdir may not end with ':'");
  EXPECT_EQ(SplitLowerdirs("a::b").status().message(),
            "data-only lower layers (lowerdir=...::DIR) are not supported by laminafs");
}

// The -o list in kernel overlayfs' syntax: `\,` keeps a comma inside a path
// (it once split the option, and the rest became options of their own),
// `\:` a colon inside a layer, `\\` a backslash.
TEST(OptionsTest, EscapedCommasAndBackslashesInPaths) {
  for (const char* name : {"l,1", "l:2", "l\\3", "u,p", "w\\o", "lo,g"}) {
    std::filesystem::create_directory(Dir()(name));
  }
  absl::StatusOr<MountCommand> command = ParseMountCommand(
      {"-o",
       "lowerdir=" + Dir()("l\\,1") + ":" + Dir()("l\\:2") + ":" + Dir()("l\\\\3") + ",upperdir=" +
           Dir()("u\\,p") + ",workdir=" + Dir()("w\\\\o") + ",log=" + Dir()("lo\\,g/log"),
       Dir()("mnt")},
      MountKind::kOverlay);
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_EQ(command->lowerdirs,
            (std::vector<std::string>{Dir()("l,1"), Dir()("l:2"), Dir()("l\\3")}));
  EXPECT_EQ(command->upperdir, Dir()("u,p"));
  EXPECT_EQ(command->workdir, Dir()("w\\o"));
  EXPECT_EQ(command->log_file, Dir()("lo,g/log"));
  EXPECT_TRUE(command->mount_options.empty());
  // Unescaped, the comma still ends the option.
  EXPECT_EQ(ErrorOf("upperdir=" + Dir()("u,p") + ",workdir=" + Dir()("work")),
            "upperdir '" + Dir()("u") + "': No such file or directory");
  EXPECT_EQ(ErrorOf("lowerdir=" + Dir()("l1") + "::" + Dir()("l2")),
            "data-only lower layers (lowerdir=...::DIR) are not supported by laminafs");
}

TEST(OptionsTest, MountHelperForm) {
  // mount.fuse3 runs `laminafs SOURCE MOUNTPOINT -o OPTS`, with the VFS
  // options mount(8) adds mixed into OPTS.
  absl::StatusOr<MountCommand> command =
      ParseMountCommand({"laminafs", Dir()("mnt"), "-o", "rw,nodev,nosuid,lowerdir=" + Dir()("l1")},
                        MountKind::kOverlay);
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_EQ(command->mountpoint, Dir()("mnt"));
  EXPECT_EQ(command->mount_options, (std::vector<std::string>{"rw", "nodev", "nosuid"}));
}

TEST(OptionsTest, ViewChangingFuseOverlayfsOptions) {
  absl::StatusOr<MountCommand> plain = ParseOverlay("ro");
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->static_nlink);
  EXPECT_FALSE(plain->ino32);
  EXPECT_TRUE(plain->xattrs);
  EXPECT_FALSE(plain->max_write.has_value());

  absl::StatusOr<MountCommand> command =
      ParseOverlay("static_nlink,ino32_t,noxattrs=1,max_write=65536");
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_TRUE(command->static_nlink);
  EXPECT_TRUE(command->ino32);
  EXPECT_FALSE(command->xattrs);
  EXPECT_EQ(command->max_write, 65536u);
  EXPECT_TRUE(ParseOverlay("noxattrs=0")->xattrs);
}

TEST(OptionsTest, LogAndStatsPathsAreMadeAbsolute) {
  absl::StatusOr<MountCommand> command = ParseOverlay("ro,log=rel.log,stats=/abs/stats.json");
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_EQ(command->log_file.front(), '/');
  EXPECT_EQ(command->log_file.substr(command->log_file.size() - 8), "/rel.log");
  EXPECT_EQ(command->stats_file, "/abs/stats.json");
}

TEST(OptionsTest, IoUringIsOptIn) {
  EXPECT_FALSE(ParseOverlay("ro")->io_uring);
  EXPECT_TRUE(ParseOverlay("ro,io_uring")->io_uring);
  EXPECT_TRUE(ParseOverlay("ro,io_uring=on")->io_uring);
  EXPECT_FALSE(ParseOverlay("ro,io_uring=off")->io_uring);
  EXPECT_FALSE(ParseOverlay("ro,io_uring=maybe").ok());
}

TEST(OptionsTest, NoaclTurnsAclEnforcementOff) {
  EXPECT_TRUE(ParseOverlay("ro")->posix_acl);
  EXPECT_FALSE(ParseOverlay("ro,noacl")->posix_acl);
}

TEST(OptionsTest, TuningOptionsAreAcceptedWithoutEffect) {
  absl::StatusOr<MountCommand> plain = ParseOverlay("ro");
  for (const char* option : {"fast_ino=0", "fast_ino=1", "threaded=0", "threaded=1", "writeback=0",
                             "writeback=1", "xattr_permissions=0"}) {
    absl::StatusOr<MountCommand> command = ParseOverlay(std::string("ro,") + option);
    ASSERT_TRUE(command.ok()) << option << ": " << command.status();
    EXPECT_EQ(command->mount_options, plain->mount_options) << option;
    EXPECT_EQ(command->xattrs, plain->xattrs) << option;
    EXPECT_EQ(command->static_nlink, plain->static_nlink) << option;
    EXPECT_EQ(command->posix_acl, plain->posix_acl) << option;
  }
}

TEST(OptionsTest, MalformedFuseOverlayfsOptionsNameTheProblem) {
  ExpectErrors({
      {"fast_ino=yes", "fast_ino must be 0 or 1, not 'yes'"},
      {"threaded=2", "threaded must be 0 or 1, not '2'"},
      {"writeback=", "writeback must be 0 or 1, not ''"},
      {"noxattrs=on", "noxattrs must be 0 or 1, not 'on'"},
      {"xattr_permissions=2",
       "xattr_permissions=2 (owners kept in xattrs) is not supported by laminafs yet"},
      {"xattr_permissions=7", "xattr_permissions must be 0, 1 or 2, not '7'"},
      {"static_nlink=1", "unknown option 'static_nlink=1'"},
      {"noacl=1", "unknown option 'noacl=1'"},
      {"max_write=100", "max_write must be 4096 to 1048576 bytes, not '100'"},
      {"max_write=2097152", "max_write must be 4096 to 1048576 bytes, not '2097152'"},
      {"max_write=lots", "max_write must be 4096 to 1048576 bytes, not 'lots'"},
      {"fast_ino_check=1", "unknown option 'fast_ino_check=1'"},
      {"busy_poll=-1", "busy_poll must be 0 to 10000 microseconds, not '-1'"},
      {"busy_poll=1s", "busy_poll must be 0 to 10000 microseconds, not '1s'"},
      {"max_threads=0", "max_threads must be 1 to 1024, not '0'"},
      {"max_threads=many", "max_threads must be 1 to 1024, not 'many'"},
  });
}

TEST(OptionsTest, OwnerOptions) {
  absl::StatusOr<MountCommand> command =
      ParseOverlay("uidmapping=0:100000:65536,gidmapping=0:200000:10:10:300000:5");
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_EQ(command->ids.uids, (std::vector<overlay::IdRange>{{0, 100000, 65536}}));
  EXPECT_EQ(command->ids.gids, (std::vector<overlay::IdRange>{{0, 200000, 10}, {10, 300000, 5}}));
  EXPECT_FALSE(command->ids.squash_uid.has_value());

  command = ParseOverlay("squash_to_root");
  EXPECT_EQ(command->ids.squash_uid, 0u);
  EXPECT_EQ(command->ids.squash_gid, 0u);
  // squash_to_uid= and squash_to_gid= beat squash_to_root, in any order.
  command = ParseOverlay("squash_to_uid=7,squash_to_root");
  EXPECT_EQ(command->ids.squash_uid, 7u);
  EXPECT_EQ(command->ids.squash_gid, 0u);
  command = ParseOverlay("squash_to_gid=9");
  EXPECT_FALSE(command->ids.squash_uid.has_value());
  EXPECT_EQ(command->ids.squash_gid, 9u);

  ExpectErrors({
      {"uidmapping=0:100000", "uidmapping: '0:100000' is not FROM:TO:COUNT[:FROM:TO:COUNT...]"},
      {"gidmapping=0:a:1", "gidmapping: bad id 'a' in '0:a:1'"},
      {"squash_to_uid=-1", "bad squash_to_uid '-1'"},
      {"squash_to_gid=", "bad squash_to_gid ''"},
      {"squash_to_root=1", "unknown option 'squash_to_root=1'"},
  });
}

TEST(OptionsTest, MountpointInsideItsOwnLayersIsRefused) {
  auto error = [](const std::string& lowers, const std::string& mountpoint) {
    absl::StatusOr<MountCommand> command = ParseMountCommand(
        {"-o", "lowerdir=" + lowers + ",upperdir=" + Dir()("upper") + ",workdir=" + Dir()("work"),
         mountpoint},
        MountKind::kOverlay);
    return command.ok() ? "" : std::string(command.status().message());
  };
  EXPECT_EQ(error(Dir()("l1"), Dir()("upper")),
            "mountpoint " + Dir()("upper") + " is inside upperdir " + Dir()("upper"));
  EXPECT_EQ(error(Dir()("l2"), Dir()("work")),
            "mountpoint " + Dir()("work") + " is inside workdir " + Dir()("work"));
  EXPECT_EQ(error(Dir()("l2") + ":" + Dir()("l1"), Dir()("l1/inner")),
            "mountpoint " + Dir()("l1/inner") + " is inside lowerdir " + Dir()("l1") +
                ": the overlay would contain itself");
  // Over a lower itself is allowed, as with the kernel.
  EXPECT_EQ(error(Dir()("l1"), Dir()("l1")), "");
  // A layer below the mountpoint is hidden from others but not from the
  // daemon, which opened it before mounting.
  EXPECT_EQ(error(Dir()("l1/inner"), Dir()("l1")), "");
}

TEST(OptionsTest, KernelOptions) {
  EXPECT_EQ(ErrorOf("metacopy=on"), "metacopy=on is not supported by laminafs yet");
  EXPECT_EQ(ErrorOf("redirect_dir=off"), "");
  EXPECT_FALSE(ParseOverlay("redirect_dir=off")->redirect_dir);
  EXPECT_TRUE(ParseOverlay("redirect_dir=off")->redirect_follow);
  EXPECT_FALSE(ParseOverlay("redirect_dir=follow")->redirect_dir);
  EXPECT_TRUE(ParseOverlay("redirect_dir=follow")->redirect_follow);
  EXPECT_FALSE(ParseOverlay("redirect_dir=nofollow")->redirect_follow);
  EXPECT_TRUE(ParseOverlay("redirect_dir=on")->redirect_dir);
  // userxattr means nofollow, as on the kernel; another explicit value conflicts.
  EXPECT_FALSE(ParseOverlay("userxattr")->redirect_dir);
  EXPECT_FALSE(ParseOverlay("userxattr")->redirect_follow);
  EXPECT_EQ(ErrorOf("userxattr,redirect_dir=nofollow"), "");
  EXPECT_EQ(ErrorOf("userxattr,redirect_dir=on"), "conflicting options: userxattr,redirect_dir=on");
  EXPECT_TRUE(ParseOverlay("fsync=volatile")->volatile_mode);
  EXPECT_TRUE(ParseOverlay("uuid=auto")->record_uuid);
  EXPECT_FALSE(ParseOverlay("uuid=null")->record_uuid);
  EXPECT_FALSE(ParseOverlay("uuid=off")->record_uuid);
  EXPECT_TRUE(ParseOverlay("userxattr")->userxattr);
  EXPECT_EQ(ParseOverlay("index=on")->index, true);
  EXPECT_EQ(ParseOverlay("index=off")->index, false);
  EXPECT_FALSE(ParseOverlay("userxattr")->index.has_value());
  EXPECT_EQ(ErrorOf("userxattr,index=on"), "index=on conflicts with userxattr");
  EXPECT_EQ(ErrorOf("index=nfs"), "index=nfs is not supported by laminafs yet");
  EXPECT_EQ(ErrorOf("frobnicate"), "unknown option 'frobnicate'");
}

TEST(OptionsTest, PassthroughTakesMaxWriteButNotOverlayOptions) {
  absl::StatusOr<MountCommand> command = ParseMountCommand(
      {"-o", "max_write=8192", Dir()("l1"), Dir()("mnt")}, MountKind::kPassthrough);
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_EQ(command->max_write, 8192u);
  EXPECT_FALSE(command->busy_poll_us.has_value());
  absl::StatusOr<MountCommand> no_polling =
      ParseMountCommand({"-o", "busy_poll=0", Dir()("l1"), Dir()("mnt")}, MountKind::kPassthrough);
  ASSERT_TRUE(no_polling.ok()) << no_polling.status();
  EXPECT_EQ(no_polling->busy_poll_us, 0);
  EXPECT_EQ(command->max_threads, 0);  // the session's default
  absl::StatusOr<MountCommand> capped = ParseMountCommand(
      {"-o", "threads=2,max_threads=16", Dir()("l1"), Dir()("mnt")}, MountKind::kPassthrough);
  ASSERT_TRUE(capped.ok()) << capped.status();
  EXPECT_EQ(capped->threads, 2);
  EXPECT_EQ(capped->max_threads, 16);
  EXPECT_FALSE(ParseMountCommand({"-o", "static_nlink", Dir()("l1"), Dir()("mnt")}).ok());
}

TEST(OptionsTest, SubtypeAndFsnameNameTheMount) {
  absl::StatusOr<MountCommand> defaults = ParseOverlay("ro");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->subtype, "laminafs");
  EXPECT_EQ(defaults->fsname, "");
  // fstests' FSTYP=fuse: plain type fuse, a source that is not a path.
  absl::StatusOr<MountCommand> plain = ParseOverlay(R"(ro,subtype=,fsname=laminafs\:/a\,b)");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->subtype, "");
  EXPECT_EQ(plain->fsname, "laminafs:/a,b");
  EXPECT_EQ(ParseOverlay("ro,subtype=my_fs-2")->subtype, "my_fs-2");
  ExpectErrors(
      {{"ro,subtype=a.b", "subtype must be at most 64 letters, digits, '_' or '-', not 'a.b'"},
       {"ro,subtype=a b", "subtype must be at most 64 letters, digits, '_' or '-', not 'a b'"}});
  EXPECT_FALSE(ParseOverlay("ro,subtype=" + std::string(65, 'a')).ok());
  absl::StatusOr<MountCommand> passthrough = ParseMountCommand(
      {"-o", "subtype=,fsname=tag", Dir()("l1"), Dir()("mnt")}, MountKind::kPassthrough);
  ASSERT_TRUE(passthrough.ok()) << passthrough.status();
  EXPECT_EQ(passthrough->fsname, "tag");
  EXPECT_EQ(passthrough->source, Dir()("l1"));
}

}  // namespace
}  // namespace lamina::cmd
