// Every opcode's decode and encode, end to end through a Session: the fake
// kernel sends wire requests, RecordingFilesystem shows what the dispatcher
// decoded, and the reply bytes show what it encoded.

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/xattr.h>

#include "gtest/gtest.h"
#include "tests/core/fake_kernel.h"
#include "tests/core/recording_filesystem.h"

namespace lamina::testing {
namespace {

Entry MakeEntry(NodeId node, mode_t mode) {
  Entry entry;
  entry.node = node;
  entry.generation = 7;
  entry.attr.st_ino = node;
  entry.attr.st_mode = mode;
  entry.attr.st_size = 123;
  entry.attr.st_nlink = 1;
  entry.entry_timeout = 1.5;
  entry.attr_timeout = 2.25;
  return entry;
}

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs_.entry = MakeEntry(42, S_IFREG | 0644);
    fs_.attributes.attr = fs_.entry.attr;
    fs_.attributes.timeout = 3.0;
    ConfigureInit();
    harness_.StartAndInit();
  }
  // Lets a test change what the filesystem asks for before INIT.
  virtual void ConfigureInit() {}

  Reply Call(uint32_t opcode, const std::string& args, NodeId node = abi::kRootId) {
    RequestOptions options;
    options.nodeid = node;
    return harness_.kernel().Call(opcode, args, options);
  }
  // A request that must fail with EINVAL before reaching the filesystem.
  void ExpectMalformed(uint32_t opcode, const std::string& args) {
    int before = fs_.calls();
    EXPECT_EQ(Call(opcode, args).error(), EINVAL) << "opcode " << opcode;
    EXPECT_EQ(fs_.calls(), before) << "opcode " << opcode << " reached the filesystem";
  }
  // A reply that carries only a status.
  void ExpectStatusOnly(const Reply& reply, int error = 0) {
    EXPECT_EQ(reply.error(), error);
    EXPECT_EQ(reply.payload.size(), 0U);
  }
  void ExpectEntry(const Reply& reply, NodeId node, size_t offset = 0) {
    ASSERT_GE(reply.payload.size(), offset + sizeof(abi::EntryOut));
    auto out = reply.As<abi::EntryOut>(offset);
    EXPECT_EQ(out.nodeid, node);
    EXPECT_EQ(out.generation, 7U);
    EXPECT_EQ(out.entry_valid, 1U);
    EXPECT_EQ(out.entry_valid_nsec, 500000000U);
    EXPECT_EQ(out.attr_valid, 2U);
    EXPECT_EQ(out.attr_valid_nsec, 250000000U);
    EXPECT_EQ(out.attr.ino, node);
    EXPECT_EQ(out.attr.size, 123U);
  }

  RecordingFilesystem fs_;
  SessionHarness harness_{fs_};
};

TEST_F(DispatcherTest, Lookup) {
  RequestOptions options;
  options.uid = 11;
  options.gid = 22;
  options.pid = 33;
  Reply reply = harness_.kernel().Call(abi::kLookup, Name("foo"), options);
  EXPECT_EQ(reply.error(), 0);
  EXPECT_EQ(reply.payload.size(), sizeof(abi::EntryOut));
  ExpectEntry(reply, 42);
  Seen seen = fs_.seen();
  EXPECT_EQ(seen.op, "Lookup");
  EXPECT_EQ(seen.node, abi::kRootId);
  EXPECT_EQ(seen.name, "foo");
  EXPECT_EQ(seen.ctx.uid, 11U);
  EXPECT_EQ(seen.ctx.gid, 22U);
  EXPECT_EQ(seen.ctx.pid, 33);
  EXPECT_EQ(seen.ctx.unique, reply.header.unique);
  EXPECT_EQ(seen.ctx.opcode, abi::kLookup);
  EXPECT_EQ(seen.ctx.connection, &harness_.session().connection());
}

TEST_F(DispatcherTest, ErrorsAreNegatedWithoutPayload) {
  fs_.fail = ENOENT;
  ExpectStatusOnly(Call(abi::kLookup, Name("missing")), ENOENT);
  fs_.fail = 5000;  // out of the kernel's range: sent as EIO
  ExpectStatusOnly(Call(abi::kGetattr, Bytes(abi::GetattrIn{})), EIO);
}

TEST_F(DispatcherTest, GetattrWithAndWithoutFh) {
  abi::GetattrIn in{};
  in.fh = 99;
  Reply reply = Call(abi::kGetattr, Bytes(in), 42);
  ASSERT_EQ(reply.payload.size(), sizeof(abi::AttrOut));
  auto out = reply.As<abi::AttrOut>();
  EXPECT_EQ(out.attr_valid, 3U);
  EXPECT_EQ(out.attr.ino, 42U);
  EXPECT_EQ(out.attr.mode, S_IFREG | 0644U);
  EXPECT_EQ(fs_.seen().node, 42U);
  EXPECT_FALSE(fs_.seen().fh.has_value());

  in.getattr_flags = abi::kGetattrFh;
  EXPECT_EQ(Call(abi::kGetattr, Bytes(in), 42).error(), 0);
  EXPECT_EQ(fs_.seen().fh, std::optional<uint64_t>(99));
}

TEST_F(DispatcherTest, SetattrTimesNowAndValues) {
  abi::SetattrIn in{};
  in.valid = abi::kFattrMode | abi::kFattrSize | abi::kFattrFh | abi::kFattrAtime |
             abi::kFattrAtimeNow | abi::kFattrMtime | abi::kFattrMtimeNow | abi::kFattrUid;
  in.mode = 0600;
  in.size = 4096;
  in.fh = 8;
  in.uid = 55;
  Reply reply = Call(abi::kSetattr, Bytes(in), 42);
  EXPECT_EQ(reply.payload.size(), sizeof(abi::AttrOut));
  SetAttrRequest req = fs_.seen().setattr;
  EXPECT_EQ(req.valid, in.valid);
  EXPECT_EQ(req.mode, 0600U);
  EXPECT_EQ(req.size, 4096U);
  EXPECT_EQ(req.uid, 55U);
  EXPECT_EQ(req.fh, std::optional<uint64_t>(8));
  EXPECT_EQ(req.atime.tv_nsec, UTIME_NOW);
  EXPECT_EQ(req.mtime.tv_nsec, UTIME_NOW);

  in.valid = abi::kFattrAtime | abi::kFattrMtime;
  in.atime = 100;
  in.atimensec = 5;
  in.mtime = 200;
  in.mtimensec = 6;
  EXPECT_EQ(Call(abi::kSetattr, Bytes(in), 42).error(), 0);
  req = fs_.seen().setattr;
  EXPECT_FALSE(req.fh.has_value());
  EXPECT_EQ(req.atime.tv_sec, 100);
  EXPECT_EQ(req.atime.tv_nsec, 5);
  EXPECT_EQ(req.mtime.tv_sec, 200);
  EXPECT_EQ(req.mtime.tv_nsec, 6);
}

TEST_F(DispatcherTest, ReadlinkAndSymlink) {
  fs_.data = "some/target";
  Reply reply = Call(abi::kReadlink, "", 42);
  EXPECT_EQ(reply.payload, "some/target");
  EXPECT_EQ(fs_.seen().op, "ReadLink");

  // The link's name comes first, then its target (which may contain '/').
  ExpectEntry(Call(abi::kSymlink, Args(Name("link"), Name("../a/b"))), 42);
  Seen seen = fs_.seen();
  EXPECT_EQ(seen.op, "Symlink");
  EXPECT_EQ(seen.name, "link");
  EXPECT_EQ(seen.name2, "../a/b");
}

TEST_F(DispatcherTest, MknodAndMkdirCarryUmask) {
  abi::MknodIn mknod{S_IFCHR | 0600, 0x1234, 022, 0};
  ExpectEntry(Call(abi::kMknod, Args(mknod, Name("dev"))), 42);
  Seen seen = fs_.seen();
  EXPECT_EQ(seen.op, "Mknod");
  EXPECT_EQ(seen.name, "dev");
  EXPECT_EQ(seen.mode, S_IFCHR | 0600U);
  EXPECT_EQ(seen.rdev, 0x1234U);
  EXPECT_EQ(seen.ctx.umask, 022U);

  abi::MkdirIn mkdir{0755, 027};
  ExpectEntry(Call(abi::kMkdir, Args(mkdir, Name("sub")), 3), 42);
  seen = fs_.seen();
  EXPECT_EQ(seen.op, "Mkdir");
  EXPECT_EQ(seen.node, 3U);
  EXPECT_EQ(seen.name, "sub");
  EXPECT_EQ(seen.mode, 0755U);
  EXPECT_EQ(seen.ctx.umask, 027U);
}

TEST_F(DispatcherTest, UnlinkAndRmdir) {
  ExpectStatusOnly(Call(abi::kUnlink, Name("gone"), 3));
  EXPECT_EQ(fs_.seen().op, "Unlink");
  EXPECT_EQ(fs_.seen().name, "gone");
  EXPECT_EQ(fs_.seen().node, 3U);
  ExpectStatusOnly(Call(abi::kRmdir, Name("dir")));
  EXPECT_EQ(fs_.seen().op, "Rmdir");
  EXPECT_EQ(fs_.seen().name, "dir");
}

TEST_F(DispatcherTest, RenameAndRename2) {
  ExpectStatusOnly(Call(abi::kRename, Args(abi::RenameIn{5}, Name("a"), Name("b")), 3));
  Seen seen = fs_.seen();
  EXPECT_EQ(seen.op, "Rename");
  EXPECT_EQ(seen.node, 3U);
  EXPECT_EQ(seen.name, "a");
  EXPECT_EQ(seen.node2, 5U);
  EXPECT_EQ(seen.name2, "b");
  EXPECT_EQ(seen.flags, 0);

  abi::Rename2In in{6, RENAME_EXCHANGE, 0};
  ExpectStatusOnly(Call(abi::kRename2, Args(in, Name("x"), Name("y"))));
  seen = fs_.seen();
  EXPECT_EQ(seen.node2, 6U);
  EXPECT_EQ(seen.name, "x");
  EXPECT_EQ(seen.name2, "y");
  EXPECT_EQ(seen.flags, RENAME_EXCHANGE);
}

TEST_F(DispatcherTest, Link) {
  ExpectEntry(Call(abi::kLink, Args(abi::LinkIn{9}, Name("hard")), 3), 42);
  Seen seen = fs_.seen();
  EXPECT_EQ(seen.op, "Link");
  EXPECT_EQ(seen.node, 9U) << "the existing node";
  EXPECT_EQ(seen.node2, 3U) << "the new parent";
  EXPECT_EQ(seen.name, "hard");
}

TEST_F(DispatcherTest, OpenWithAndWithoutBacking) {
  fs_.open = OpenReply{77, abi::kFopenKeepCache, 0};
  Reply reply = Call(abi::kOpen, Bytes(abi::OpenIn{O_RDWR, abi::kOpenKillSuidgid}), 42);
  ASSERT_EQ(reply.payload.size(), sizeof(abi::OpenOut));
  auto out = reply.As<abi::OpenOut>();
  EXPECT_EQ(out.fh, 77U);
  EXPECT_EQ(out.open_flags, abi::kFopenKeepCache);
  EXPECT_EQ(out.backing_id, 0);
  EXPECT_EQ(fs_.seen().flags, O_RDWR);
  EXPECT_TRUE(fs_.seen().flag);

  fs_.open.backing_id = 3;
  out = Call(abi::kOpen, Bytes(abi::OpenIn{O_RDONLY, 0}), 42).As<abi::OpenOut>();
  EXPECT_EQ(out.open_flags, abi::kFopenKeepCache | abi::kFopenPassthrough);
  EXPECT_EQ(out.backing_id, 3);
  EXPECT_FALSE(fs_.seen().flag);
}

TEST_F(DispatcherTest, ReadReturnsData) {
  fs_.data = "hello world";
  abi::ReadIn in{};
  in.fh = 4;
  in.offset = 10;
  in.size = 5;
  Reply reply = Call(abi::kRead, Bytes(in), 42);
  EXPECT_EQ(reply.payload, "hello");
  Seen seen = fs_.seen();
  EXPECT_EQ(seen.fh, std::optional<uint64_t>(4));
  EXPECT_EQ(seen.offset, 10U);
  EXPECT_EQ(seen.out_size, 5U);

  // Larger than max_read: the buffer is capped, not overrun.
  in.size = UINT32_MAX;
  EXPECT_EQ(Call(abi::kRead, Bytes(in), 42).payload, "hello world");
  EXPECT_EQ(fs_.seen().out_size, harness_.session().connection().max_read());
}

TEST_F(DispatcherTest, WriteDeliversPayload) {
  abi::WriteIn in{};
  in.fh = 4;
  in.offset = 8;
  in.size = 5;
  in.write_flags = abi::kWriteKillSuidgid;
  in.flags = O_APPEND;
  Reply reply = Call(abi::kWrite, Args(in, std::string("abcde")), 42);
  ASSERT_EQ(reply.payload.size(), sizeof(abi::WriteOut));
  EXPECT_EQ(reply.As<abi::WriteOut>().size, 5U);
  Seen seen = fs_.seen();
  EXPECT_EQ(seen.data, "abcde");
  EXPECT_EQ(seen.offset, 8U);
  EXPECT_EQ(seen.fh, std::optional<uint64_t>(4));
  EXPECT_TRUE(seen.flag);
  EXPECT_EQ(seen.flags, O_APPEND);

  // Extra trailing bytes beyond `size` are not part of the write.
  in.size = 3;
  EXPECT_EQ(Call(abi::kWrite, Args(in, std::string("xyzzy"))).As<abi::WriteOut>().size, 3U);
  EXPECT_EQ(fs_.seen().data, "xyz");

  in.size = 10;
  ExpectMalformed(abi::kWrite, Args(in, std::string("short")));
}

TEST_F(DispatcherTest, Statfs) {
  Reply reply = Call(abi::kStatfs, "");
  ASSERT_EQ(reply.payload.size(), sizeof(abi::StatfsOut));
  abi::Kstatfs st = reply.As<abi::StatfsOut>().st;
  EXPECT_EQ(st.blocks, 1000U);
  EXPECT_EQ(st.bfree, 600U);
  EXPECT_EQ(st.bavail, 500U);
  EXPECT_EQ(st.files, 70U);
  EXPECT_EQ(st.ffree, 30U);
  EXPECT_EQ(st.bsize, 4096U);
  EXPECT_EQ(st.frsize, 512U);
  EXPECT_EQ(st.namelen, 255U);
}

TEST_F(DispatcherTest, ReleaseFlushFsync) {
  abi::ReleaseIn release{};
  release.fh = 12;
  release.flags = O_WRONLY;
  ExpectStatusOnly(Call(abi::kRelease, Bytes(release), 42));
  EXPECT_EQ(fs_.seen().op, "Release");
  EXPECT_EQ(fs_.seen().fh, std::optional<uint64_t>(12));
  EXPECT_EQ(fs_.seen().flags, O_WRONLY);

  abi::FlushIn flush{};
  flush.fh = 13;
  flush.lock_owner = 0xabcdef;
  ExpectStatusOnly(Call(abi::kFlush, Bytes(flush), 42));
  EXPECT_EQ(fs_.seen().op, "Flush");
  EXPECT_EQ(fs_.seen().fh, std::optional<uint64_t>(13));
  EXPECT_EQ(fs_.seen().offset, 0xabcdefU);

  ExpectStatusOnly(Call(abi::kFsync, Bytes(abi::FsyncIn{14, abi::kFsyncFdatasync, 0}), 42));
  EXPECT_EQ(fs_.seen().op, "Fsync");
  EXPECT_EQ(fs_.seen().fh, std::optional<uint64_t>(14));
  EXPECT_TRUE(fs_.seen().flag);
  ExpectStatusOnly(Call(abi::kFsync, Bytes(abi::FsyncIn{14, 0, 0}), 42));
  EXPECT_FALSE(fs_.seen().flag);
}

TEST_F(DispatcherTest, SetxattrWithExtStruct) {
  abi::SetxattrIn in{3, XATTR_CREATE, abi::kSetxattrAclKillSgid, 0};
  ExpectStatusOnly(Call(abi::kSetxattr, Args(in, Name("user.a"), std::string("xyz"))));
  Seen seen = fs_.seen();
  EXPECT_EQ(seen.op, "SetXattr");
  EXPECT_EQ(seen.name, "user.a");
  EXPECT_EQ(seen.data, "xyz");
  EXPECT_EQ(seen.flags, XATTR_CREATE);
  EXPECT_EQ(seen.flags2, abi::kSetxattrAclKillSgid);
  // A value shorter than its declared size.
  in.size = 10;
  ExpectMalformed(abi::kSetxattr, Args(in, Name("user.a"), std::string("xyz")));
  ExpectMalformed(abi::kSetxattr, Args(in, std::string("user.a")));
}

TEST_F(DispatcherTest, GetxattrProbeAndData) {
  fs_.data = "value";
  Reply probe = Call(abi::kGetxattr, Args(abi::GetxattrIn{0, 0}, Name("user.x")));
  ASSERT_EQ(probe.payload.size(), sizeof(abi::GetxattrOut));
  EXPECT_EQ(probe.As<abi::GetxattrOut>().size, 5U);
  EXPECT_EQ(fs_.seen().name, "user.x");
  EXPECT_EQ(fs_.seen().out_size, 0U);

  EXPECT_EQ(Call(abi::kGetxattr, Args(abi::GetxattrIn{64, 0}, Name("user.x"))).payload, "value");
  EXPECT_EQ(fs_.seen().out_size, 64U);
  ExpectStatusOnly(Call(abi::kGetxattr, Args(abi::GetxattrIn{2, 0}, Name("user.x"))), ERANGE);
}

TEST_F(DispatcherTest, ListxattrProbeAndData) {
  fs_.data = std::string("user.a\0user.b\0", 14);
  Reply probe = Call(abi::kListxattr, Bytes(abi::GetxattrIn{0, 0}));
  ASSERT_EQ(probe.payload.size(), sizeof(abi::GetxattrOut));
  EXPECT_EQ(probe.As<abi::GetxattrOut>().size, 14U);
  EXPECT_EQ(Call(abi::kListxattr, Bytes(abi::GetxattrIn{100, 0})).payload, fs_.data);
  EXPECT_EQ(fs_.seen().op, "ListXattr");
}

TEST_F(DispatcherTest, Removexattr) {
  ExpectStatusOnly(Call(abi::kRemovexattr, Name("user.gone"), 42));
  EXPECT_EQ(fs_.seen().op, "RemoveXattr");
  EXPECT_EQ(fs_.seen().name, "user.gone");
  ExpectMalformed(abi::kRemovexattr, "user.gone");  // no NUL
}

TEST_F(DispatcherTest, DirectoryHandles) {
  fs_.open = OpenReply{5, abi::kFopenCacheDir, 0};
  Reply reply = Call(abi::kOpendir, Bytes(abi::OpenIn{O_DIRECTORY, 0}));
  auto out = reply.As<abi::OpenOut>();
  EXPECT_EQ(out.fh, 5U);
  EXPECT_EQ(out.open_flags, abi::kFopenCacheDir);
  EXPECT_EQ(fs_.seen().flags, O_DIRECTORY);

  ExpectStatusOnly(Call(abi::kFsyncdir, Bytes(abi::FsyncIn{5, abi::kFsyncFdatasync, 0})));
  EXPECT_EQ(fs_.seen().op, "FsyncDir");
  EXPECT_TRUE(fs_.seen().flag);
  abi::ReleaseIn release{};
  release.fh = 5;
  ExpectStatusOnly(Call(abi::kReleasedir, Bytes(release)));
  EXPECT_EQ(fs_.seen().op, "ReleaseDir");
  EXPECT_EQ(fs_.seen().fh, std::optional<uint64_t>(5));
}

TEST_F(DispatcherTest, Readdir) {
  abi::ReadIn in{};
  in.fh = 5;
  in.size = 4096;
  Reply reply = Call(abi::kReaddir, Bytes(in));
  // "." (24 + 1 -> 32 bytes) then "file" (24 + 4 -> 32 bytes).
  ASSERT_EQ(reply.payload.size(), 64U);
  auto dot = reply.As<abi::Dirent>(0);
  EXPECT_EQ(dot.namelen, 1U);
  EXPECT_EQ(dot.type, static_cast<uint32_t>(DT_DIR));
  EXPECT_EQ(reply.payload.substr(24, 1), ".");
  auto file = reply.As<abi::Dirent>(32);
  EXPECT_EQ(file.ino, 50U);
  EXPECT_EQ(file.off, 2U);
  EXPECT_EQ(file.namelen, 4U);
  EXPECT_EQ(file.type, static_cast<uint32_t>(DT_REG));
  EXPECT_EQ(reply.payload.substr(56, 4), "file");
  EXPECT_FALSE(fs_.seen().flag);

  // A buffer too small for even one record: an empty listing.
  in.size = 16;
  ExpectStatusOnly(Call(abi::kReaddir, Bytes(in)));
}

TEST_F(DispatcherTest, Readdirplus) {
  abi::ReadIn in{};
  in.size = 4096;
  in.offset = 0;
  Reply reply = Call(abi::kReaddirplus, Bytes(in));
  // "." (152 + 1 -> 160 bytes) then "file" (152 + 4 -> 160 bytes).
  ASSERT_EQ(reply.payload.size(), 320U);
  auto dot = reply.As<abi::Direntplus>(0);
  EXPECT_EQ(dot.entry_out.nodeid, 0U) << "'.' carries no lookup";
  EXPECT_EQ(dot.dirent.namelen, 1U);
  auto file = reply.As<abi::Direntplus>(160);
  EXPECT_EQ(file.entry_out.nodeid, 50U);
  EXPECT_EQ(file.entry_out.entry_valid, 1U);
  EXPECT_EQ(file.dirent.off, 2U);
  EXPECT_EQ(file.dirent.type, static_cast<uint32_t>(DT_REG));
  EXPECT_EQ(reply.payload.substr(160 + sizeof(abi::Direntplus), 4), "file");
  EXPECT_TRUE(fs_.seen().flag);
}

TEST_F(DispatcherTest, Locks) {
  abi::LkIn in{};
  in.fh = 3;
  in.owner = 0x55;
  in.lk = abi::FileLock{10, 19, F_WRLCK, 99};
  Reply reply = Call(abi::kGetlk, Bytes(in), 42);
  ASSERT_EQ(reply.payload.size(), sizeof(abi::LkOut));
  abi::FileLock conflict = reply.As<abi::LkOut>().lk;
  EXPECT_EQ(conflict.type, static_cast<uint32_t>(F_RDLCK));
  EXPECT_EQ(conflict.start, 100U);
  EXPECT_EQ(conflict.end, static_cast<uint64_t>(INT64_MAX)) << "l_len 0 means to EOF";
  EXPECT_EQ(conflict.pid, 77U);
  LockRequest req = fs_.seen().lock;
  EXPECT_EQ(req.fh, 3U);
  EXPECT_EQ(req.owner, 0x55U);
  EXPECT_EQ(req.lock.l_type, F_WRLCK);
  EXPECT_EQ(req.lock.l_start, 10);
  EXPECT_EQ(req.lock.l_len, 10) << "inclusive end 19";
  EXPECT_FALSE(req.is_flock);

  in.lk.end = INT64_MAX;
  in.lk_flags = abi::kLkFlock;
  ExpectStatusOnly(Call(abi::kSetlk, Bytes(in), 42));
  EXPECT_EQ(fs_.seen().op, "SetLock");
  EXPECT_FALSE(fs_.seen().flag);
  EXPECT_TRUE(fs_.seen().lock.is_flock);
  EXPECT_EQ(fs_.seen().lock.lock.l_len, 0);
  ExpectStatusOnly(Call(abi::kSetlkw, Bytes(in), 42));
  EXPECT_TRUE(fs_.seen().flag) << "SETLKW waits";
}

TEST_F(DispatcherTest, Access) {
  ExpectStatusOnly(Call(abi::kAccess, Bytes(abi::AccessIn{R_OK | X_OK, 0}), 42));
  EXPECT_EQ(fs_.seen().op, "Access");
  EXPECT_EQ(fs_.seen().flags, R_OK | X_OK);
}

TEST_F(DispatcherTest, CreateRepliesEntryAndOpen) {
  fs_.open = OpenReply{21, abi::kFopenDirectIo, 4};
  abi::CreateIn in{O_CREAT | O_WRONLY, S_IFREG | 0644, 022, abi::kOpenKillSuidgid};
  Reply reply = Call(abi::kCreate, Args(in, Name("new")), 3);
  ASSERT_EQ(reply.payload.size(), sizeof(abi::EntryOut) + sizeof(abi::OpenOut));
  ExpectEntry(reply, 42);
  auto open = reply.As<abi::OpenOut>(sizeof(abi::EntryOut));
  EXPECT_EQ(open.fh, 21U);
  EXPECT_EQ(open.open_flags, abi::kFopenDirectIo | abi::kFopenPassthrough);
  EXPECT_EQ(open.backing_id, 4);
  Seen seen = fs_.seen();
  EXPECT_EQ(seen.op, "Create");
  EXPECT_EQ(seen.node, 3U);
  EXPECT_EQ(seen.name, "new");
  EXPECT_EQ(seen.mode, S_IFREG | 0644U);
  EXPECT_EQ(seen.flags, O_CREAT | O_WRONLY);
  EXPECT_EQ(seen.ctx.umask, 022U);
  EXPECT_TRUE(seen.flag);
}

TEST_F(DispatcherTest, TmpfileAcceptsSlashName) {
  abi::CreateIn in{O_TMPFILE | O_RDWR, S_IFREG | 0600, 077, 0};
  Reply reply = Call(abi::kTmpfile, Args(in, Name("/")), 3);
  EXPECT_EQ(reply.payload.size(), sizeof(abi::EntryOut) + sizeof(abi::OpenOut));
  Seen seen = fs_.seen();
  EXPECT_EQ(seen.op, "Tmpfile");
  EXPECT_EQ(seen.mode, S_IFREG | 0600U);
  EXPECT_EQ(seen.ctx.umask, 077U);
}

TEST_F(DispatcherTest, InterruptIsNotAnswered) {
  harness_.kernel().Send(abi::kInterrupt, Bytes(abi::InterruptIn{12345}));
  harness_.kernel().ExpectNextReplyIsFor(abi::kGetattr, Bytes(abi::GetattrIn{}));
}

TEST_F(DispatcherTest, Bmap) {
  fs_.number = 777;
  Reply reply = Call(abi::kBmap, Bytes(abi::BmapIn{5, 4096, 0}), 42);
  ASSERT_EQ(reply.payload.size(), sizeof(abi::BmapOut));
  EXPECT_EQ(reply.As<abi::BmapOut>().block, 777U);
  EXPECT_EQ(fs_.seen().offset, 5U);
  EXPECT_EQ(fs_.seen().length, 4096U);
}

TEST_F(DispatcherTest, IoctlRestrictedOnly) {
  fs_.data = "outdata!";
  fs_.number = 3;
  abi::IoctlIn in{};
  in.fh = 6;
  in.cmd = 0x1234;
  in.in_size = 4;
  in.out_size = 8;
  Reply reply = Call(abi::kIoctl, Args(in, std::string("inpt")), 42);
  ASSERT_EQ(reply.payload.size(), sizeof(abi::IoctlOut) + 8);
  EXPECT_EQ(reply.As<abi::IoctlOut>().result, 3);
  EXPECT_EQ(reply.payload.substr(sizeof(abi::IoctlOut)), "outdata!");
  Seen seen = fs_.seen();
  EXPECT_EQ(seen.data, "inpt");
  EXPECT_EQ(seen.flags, 0x1234);
  EXPECT_EQ(seen.out_size, 8U);

  in.in_size = 100;
  ExpectMalformed(abi::kIoctl, Args(in, std::string("inpt")));
  in.in_size = 0;
  in.flags = abi::kIoctlUnrestricted;
  int before = fs_.calls();
  ExpectStatusOnly(Call(abi::kIoctl, Bytes(in)), ENOSYS);
  EXPECT_EQ(fs_.calls(), before);
}

TEST_F(DispatcherTest, PollIsEnosys) {
  ExpectStatusOnly(Call(abi::kPoll, Bytes(abi::PollIn{})), ENOSYS);
}

TEST_F(DispatcherTest, BatchForgetForgetsEveryEntryWithoutReply) {
  std::string args = Bytes(abi::BatchForgetIn{3, 0});
  for (uint64_t node : {10, 11, 12}) args += Bytes(abi::ForgetOne{node, node - 9});
  harness_.kernel().Send(abi::kBatchForget, args);
  // A count larger than the entries carried: only complete entries count.
  harness_.kernel().Send(abi::kBatchForget, Args(abi::BatchForgetIn{5, 0}, abi::ForgetOne{13, 4}));
  harness_.kernel().ExpectNextReplyIsFor(abi::kGetattr, Bytes(abi::GetattrIn{}));
  using Forget = std::pair<NodeId, uint64_t>;
  EXPECT_EQ(fs_.forgets(), (std::vector<Forget>{{10, 1}, {11, 2}, {12, 3}, {13, 4}}));
}

TEST_F(DispatcherTest, Fallocate) {
  abi::FallocateIn in{7, 100, 200, FALLOC_FL_KEEP_SIZE, 0};
  ExpectStatusOnly(Call(abi::kFallocate, Bytes(in), 42));
  Seen seen = fs_.seen();
  EXPECT_EQ(seen.fh, std::optional<uint64_t>(7));
  EXPECT_EQ(seen.offset, 100U);
  EXPECT_EQ(seen.length, 200U);
  EXPECT_EQ(seen.mode, static_cast<uint32_t>(FALLOC_FL_KEEP_SIZE));
}

TEST_F(DispatcherTest, Lseek) {
  fs_.number = 8192;
  Reply reply = Call(abi::kLseek, Bytes(abi::LseekIn{7, 4096, SEEK_DATA, 0}), 42);
  ASSERT_EQ(reply.payload.size(), sizeof(abi::LseekOut));
  EXPECT_EQ(reply.As<abi::LseekOut>().offset, 8192U);
  EXPECT_EQ(fs_.seen().offset, 4096U);
  EXPECT_EQ(fs_.seen().flags, SEEK_DATA);
}

TEST_F(DispatcherTest, CopyFileRangeBothForms) {
  abi::CopyFileRangeIn in{1, 2, 43, 4, 5, uint64_t{1} << 40, 0};
  fs_.number = 1000;
  Reply reply = Call(abi::kCopyFileRange, Bytes(in), 42);
  ASSERT_EQ(reply.payload.size(), sizeof(abi::WriteOut));
  EXPECT_EQ(reply.As<abi::WriteOut>().size, 1000U);
  CopyRangeRequest req = fs_.seen().copy;
  EXPECT_EQ(req.node_in, 42U);
  EXPECT_EQ(req.fh_in, 1U);
  EXPECT_EQ(req.off_in, 2U);
  EXPECT_EQ(req.node_out, 43U);
  EXPECT_EQ(req.fh_out, 4U);
  EXPECT_EQ(req.off_out, 5U);
  // The 32-bit reply form caps the length below 4 GiB, page aligned.
  EXPECT_EQ(req.len, uint64_t{UINT32_MAX} & ~uint64_t{4095});

  fs_.number = uint64_t{1} << 33;
  reply = Call(abi::kCopyFileRange64, Bytes(in), 42);
  ASSERT_EQ(reply.payload.size(), sizeof(abi::CopyFileRangeOut));
  EXPECT_EQ(reply.As<abi::CopyFileRangeOut>().bytes_copied, uint64_t{1} << 33);
  EXPECT_EQ(fs_.seen().copy.len, uint64_t{1} << 40);
}

TEST_F(DispatcherTest, Syncfs) {
  ExpectStatusOnly(Call(abi::kSyncfs, Bytes(abi::SyncfsIn{})));
  EXPECT_EQ(fs_.seen().op, "SyncFs");
}

TEST_F(DispatcherTest, Statx) {
  abi::StatxIn in{abi::kGetattrFh, 0, 9, AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS | STATX_BTIME};
  Reply reply = Call(abi::kStatx, Bytes(in), 42);
  ASSERT_EQ(reply.payload.size(), sizeof(abi::StatxOut));
  auto out = reply.As<abi::StatxOut>();
  EXPECT_EQ(out.attr_valid, 3U);
  EXPECT_EQ(out.stat.mask, STATX_BASIC_STATS | STATX_BTIME);
  EXPECT_EQ(out.stat.ino, 42U);
  EXPECT_EQ(out.stat.size, 123U);
  EXPECT_EQ(out.stat.btime.tv_sec, 1234);
  EXPECT_EQ(fs_.seen().fh, std::optional<uint64_t>(9));
  EXPECT_EQ(fs_.seen().flags, AT_STATX_SYNC_AS_STAT);
}

TEST_F(DispatcherTest, DestroyAndUnsupportedOpcodes) {
  ExpectStatusOnly(Call(abi::kDestroy, ""));
  ExpectStatusOnly(Call(abi::kSetupMapping, std::string(40, '\0')), ENOSYS);
  for (uint32_t opcode : {0U, 7U, 19U, 54U, 60U, 4096U, UINT32_MAX}) {
    ExpectStatusOnly(Call(opcode, std::string(16, 'x')), ENOSYS);
  }
}

TEST_F(DispatcherTest, SupplementaryGroupsExtension) {
  // One extension record: ext header, nr_groups, the gids, padded to 8.
  std::string ext = Args(abi::ExtHeader{24, abi::kExtGroups}, abi::SuppGroups{3});
  for (uint32_t gid : {100U, 200U, 300U}) ext += Bytes(gid);
  ASSERT_EQ(ext.size(), 24U);
  RequestOptions options;
  options.extensions = ext;
  // An odd-length name puts the extension at an unaligned offset, as the
  // kernel does: the groups must still arrive intact.
  abi::CreateIn in{O_CREAT | O_RDWR, S_IFREG | 0644, 0, 0};
  Reply reply = harness_.kernel().Call(abi::kCreate, Args(in, Name("od")), options);
  EXPECT_EQ(reply.error(), 0);
  EXPECT_EQ(fs_.seen().groups, (std::vector<uint32_t>{100, 200, 300}));
  EXPECT_EQ(fs_.seen().name, "od");

  // Unknown extension types (security contexts) are skipped.
  options.extensions = Args(abi::ExtHeader{16, 1}, uint64_t{0}) + ext;
  EXPECT_EQ(
      harness_.kernel().Call(abi::kMkdir, Args(abi::MkdirIn{0755, 0}, Name("d")), options).error(),
      0);
  EXPECT_EQ(fs_.seen().groups, (std::vector<uint32_t>{100, 200, 300}));

  // More groups than the record holds.
  options.extensions = Args(abi::ExtHeader{16, abi::kExtGroups}, abi::SuppGroups{9}, uint32_t{1});
  EXPECT_EQ(harness_.kernel().Call(abi::kLookup, Name("x"), options).error(), EINVAL);
  // A record claiming more bytes than remain.
  options.extensions = Args(abi::ExtHeader{64, abi::kExtGroups}, uint64_t{0});
  EXPECT_EQ(harness_.kernel().Call(abi::kLookup, Name("x"), options).error(), EINVAL);
}

TEST_F(DispatcherTest, BadNamesAreEinval) {
  for (const std::string& bad : {Name(""), Name("a/b"), Name("/"), std::string("noterm")}) {
    ExpectMalformed(abi::kLookup, bad);
    ExpectMalformed(abi::kUnlink, bad);
    ExpectMalformed(abi::kRmdir, bad);
    ExpectMalformed(abi::kMkdir, Args(abi::MkdirIn{0755, 0}, bad));
    ExpectMalformed(abi::kMknod, Args(abi::MknodIn{S_IFREG, 0, 0, 0}, bad));
    ExpectMalformed(abi::kCreate, Args(abi::CreateIn{}, bad));
    ExpectMalformed(abi::kLink, Args(abi::LinkIn{9}, bad));
    ExpectMalformed(abi::kSymlink, Args(bad, Name("target")));
    ExpectMalformed(abi::kRename, Args(abi::RenameIn{1}, Name("ok"), bad));
    ExpectMalformed(abi::kRename2, Args(abi::Rename2In{1, 0, 0}, bad, Name("ok")));
  }
  ExpectMalformed(abi::kSymlink, Args(Name("link"), std::string("unterminated")));
}

// Without SETXATTR_EXT the kernel sends the 8-byte struct.
class CompatSetxattrTest : public DispatcherTest {
 protected:
  void ConfigureInit() override {
    fs_.on_init = [](InitConfig& config) { config.want &= ~abi::kSetxattrExt; };
  }
};

TEST_F(CompatSetxattrTest, EightByteStruct) {
  ASSERT_FALSE(harness_.session().connection().Has(abi::kSetxattrExt));
  abi::SetxattrIn in{4, XATTR_REPLACE, 0, 0};
  std::string args = Bytes(in).substr(0, abi::kCompatSetxattrInSize);
  ExpectStatusOnly(Call(abi::kSetxattr, Args(args, Name("user.b"), std::string("data"))));
  Seen seen = fs_.seen();
  EXPECT_EQ(seen.name, "user.b");
  EXPECT_EQ(seen.data, "data");
  EXPECT_EQ(seen.flags, XATTR_REPLACE);
  EXPECT_EQ(seen.flags2, 0U);
}

}  // namespace
}  // namespace lamina::testing
