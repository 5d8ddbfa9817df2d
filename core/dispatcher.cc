#include "core/dispatcher.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <array>
#include <chrono>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <vector>

#include "core/arg_reader.h"
#include "core/fuse_abi.h"
#include "core/wire_encode.h"
#include "spdlog/spdlog.h"

namespace lamina {

// ---------------------------------------------------------------------------
// Per-request state and reply encoding.

// A validated path component: non-empty, no '/'.
struct Name {
  std::string_view value;
};
// Any NUL-terminated string (symlink targets, xattr names, TMPFILE's "/").
struct String {
  std::string_view value;
};
// Everything after the fixed arguments.
struct Payload {
  std::span<const std::byte> bytes;
};

class Call {
 public:
  Call(const abi::InHeader& header, Filesystem& fs, Connection& connection, Channel& channel,
       std::span<std::byte> scratch)
      : header(header), fs(fs), connection(connection), channel_(channel), scratch(scratch) {
    ctx.unique = header.unique;
    ctx.opcode = header.opcode;
    ctx.uid = header.uid;
    ctx.gid = header.gid;
    ctx.pid = static_cast<pid_t>(header.pid);
    ctx.connection = &connection;
  }

  NodeId node() const { return header.nodeid; }
  bool replied() const { return replied_; }
  int error() const { return error_; }

  // Sends header + `payload` (at most 3 pieces; dropped for errors).
  // Returns whether the kernel took the reply; failures are logged here.
  bool Send(int error, std::initializer_list<struct iovec> payload) {
    abi::OutHeader out{};
    out.unique = header.unique;
    if (error != 0) {
      // The kernel rejects errors outside (-1000, 0].
      out.error = (error > 0 && error < 1000) ? -error : -EIO;
    }
    struct iovec iov[4];
    iov[0] = {&out, sizeof(out)};
    size_t count = 1;
    size_t length = sizeof(out);
    for (const struct iovec& piece : payload) {
      if (error != 0 || piece.iov_len == 0 || count == 4) continue;
      iov[count++] = piece;
      length += piece.iov_len;
    }
    out.len = static_cast<uint32_t>(length);
    replied_ = true;
    error_ = error;
    Result<void> sent = channel_.Send(std::span<const struct iovec>(iov, count));
    if (!sent.ok() && sent.error() != ENOENT) {
      spdlog::warn("reply to {} #{} failed: errno {}", OpcodeName(header.opcode), header.unique,
                   sent.error());
    }
    return sent.ok();
  }

  void Error(int error) { Send(error, {}); }

  template <typename T>
  bool SendStruct(const T& value, size_t size = sizeof(T)) {
    return Send(0, {{const_cast<T*>(&value), size}});
  }

  bool SendBytes(const void* data, size_t size) {
    return Send(0, {{const_cast<void*>(data), size}});
  }

  void Malformed(std::string_view why) {
    spdlog::warn("malformed {} request #{} (len {}): {}", OpcodeName(header.opcode), header.unique,
                 header.len, why);
    // FORGET, INTERRUPT and the like must never be answered, even in error.
    if (may_reply) Error(EINVAL);
  }

  const abi::InHeader& header;
  Filesystem& fs;
  Connection& connection;
  RequestContext ctx;
  bool may_reply = true;         // false for opcodes the kernel expects no reply to
  std::vector<uint32_t> groups;  // backs ctx.kernel_groups

 private:
  Channel& channel_;
  bool replied_ = false;
  int error_ = 0;

 public:
  std::span<std::byte> scratch;
};

namespace {

// ---- Result encoders: one overload per reply shape. ----

void Finish(Call& c, const Result<void>& r) {
  c.Error(r.error());
}

void Finish(Call& c, const Result<Entry>& r) {
  if (!r.ok()) return c.Error(r.error());
  abi::EntryOut out = EncodeEntry(*r);
  // If the kernel never saw this reply it never took the reference.
  if (!c.SendStruct(out) && r->node != 0) c.fs.Forget(r->node, 1);
}

void Finish(Call& c, const Result<Attributes>& r) {
  if (!r.ok()) return c.Error(r.error());
  c.SendStruct(EncodeAttrOut(*r));
}

abi::OpenOut EncodeOpen(const OpenReply& open) {
  abi::OpenOut out{};
  out.fh = open.fh;
  out.open_flags = open.open_flags;
  if (open.backing_id > 0) {
    out.open_flags |= abi::kFopenPassthrough;
    out.backing_id = open.backing_id;
  }
  return out;
}

// An open whose reply the kernel never saw is never released by it: the
// filesystem releases it here, or its descriptor and its charge to the
// caller (core/descriptor_budget.h) would stay for good.
void Finish(Call& c, const Result<OpenReply>& r, bool dir) {
  if (!r.ok()) return c.Error(r.error());
  if (c.SendStruct(EncodeOpen(*r))) return;
  (void)(dir ? c.fs.ReleaseDir(c.ctx, c.node(), r->fh) : c.fs.Release(c.ctx, c.node(), r->fh, 0));
}

void Finish(Call& c, const Result<CreateReply>& r) {
  if (!r.ok()) return c.Error(r.error());
  abi::EntryOut entry = EncodeEntry(r->entry);
  abi::OpenOut open = EncodeOpen(r->open);
  if (c.Send(0, {{&entry, sizeof(entry)}, {&open, sizeof(open)}})) return;
  (void)c.fs.Release(c.ctx, r->entry.node, r->open.fh, 0);
  if (r->entry.node != 0) c.fs.Forget(r->entry.node, 1);
}

// Replies to GETXATTR/LISTXATTR: a size probe or the data itself.
void FinishSized(Call& c, const Result<size_t>& r, bool probe) {
  if (!r.ok()) return c.Error(r.error());
  if (probe) {
    abi::GetxattrOut out{};
    out.size = static_cast<uint32_t>(*r);
    c.SendStruct(out);
    return;
  }
  if (*r > c.scratch.size()) return c.Error(ERANGE);
  c.SendBytes(c.scratch.data(), *r);
}

// ---- Argument decoding. ----

template <typename T>
bool ReadArg(ArgReader& r, T* out) {
  static_assert(std::is_trivially_copyable_v<T>, "wire structs only");
  return r.Read(out);
}
bool ReadArg(ArgReader& r, Name* out) {
  if (!r.ReadString(&out->value)) return false;
  return !out->value.empty() && out->value.find('/') == std::string_view::npos;
}
bool ReadArg(ArgReader& r, String* out) {
  return r.ReadString(&out->value);
}
bool ReadArg(ArgReader& r, Payload* out) {
  out->bytes = r.Rest();
  return true;
}

// Reads a handler's parameters from the request in declaration order, then
// calls it; any short or inconsistent field answers EINVAL.
template <typename... Args>
void DecodeAndCall(Call& c, ArgReader& r, void (*handler)(Call&, Args...)) {
  std::tuple<std::decay_t<Args>...> args;
  bool ok = std::apply([&r](auto&... arg) { return (ReadArg(r, &arg) && ...); }, args);
  if (!ok) return c.Malformed("arguments do not fit the request");
  std::apply([&](auto&... arg) { handler(c, arg...); }, args);
}

template <auto Handler>
void Decode(Call& c, ArgReader& r) {
  DecodeAndCall(c, r, Handler);
}

std::optional<uint64_t> OptionalFh(bool present, uint64_t fh) {
  return present ? std::optional<uint64_t>(fh) : std::nullopt;
}

struct flock ToFlock(const abi::FileLock& lk) {
  struct flock fl {};
  fl.l_type = static_cast<short>(lk.type);
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(lk.start);
  // The wire uses an inclusive end with OFFSET_MAX meaning "to EOF".
  fl.l_len = lk.end == INT64_MAX ? 0 : static_cast<off_t>(lk.end - lk.start + 1);
  fl.l_pid = static_cast<pid_t>(lk.pid);
  return fl;
}

abi::FileLock FromFlock(const struct flock& fl) {
  abi::FileLock lk{};
  lk.type = static_cast<uint32_t>(fl.l_type);
  lk.start = static_cast<uint64_t>(fl.l_start);
  lk.end = fl.l_len == 0 ? INT64_MAX : static_cast<uint64_t>(fl.l_start + fl.l_len - 1);
  lk.pid = static_cast<uint32_t>(fl.l_pid);
  return lk;
}

LockRequest MakeLock(const abi::LkIn& in) {
  LockRequest req;
  req.fh = in.fh;
  req.owner = in.owner;
  req.lock = ToFlock(in.lk);
  req.is_flock = (in.lk_flags & abi::kLkFlock) != 0;
  return req;
}

struct timespec ToTimespec(uint64_t sec, uint32_t nsec) {
  return {static_cast<time_t>(sec), static_cast<long>(nsec)};
}

// ---- Handlers, one per opcode. Parameters after Call& are the wire format. ----

void DoLookup(Call& c, Name name) {
  Finish(c, c.fs.Lookup(c.ctx, c.node(), name.value));
}

void DoForget(Call& c, abi::ForgetIn in) {
  c.fs.Forget(c.node(), in.nlookup);
}

void DoBatchForget(Call& c, abi::BatchForgetIn in, Payload rest) {
  size_t complete = rest.bytes.size() / sizeof(abi::ForgetOne);
  if (complete < in.count) {
    spdlog::warn("BATCH_FORGET #{} claims {} entries but carries {}", c.header.unique, in.count,
                 complete);
  }
  for (size_t i = 0; i < std::min<size_t>(complete, in.count); ++i) {
    abi::ForgetOne one;
    std::memcpy(&one, rest.bytes.data() + i * sizeof(one), sizeof(one));
    c.fs.Forget(one.nodeid, one.nlookup);
  }
}

void DoGetattr(Call& c, abi::GetattrIn in) {
  bool has_fh = (in.getattr_flags & abi::kGetattrFh) != 0;
  Finish(c, c.fs.GetAttr(c.ctx, c.node(), OptionalFh(has_fh, in.fh)));
}

void DoStatx(Call& c, abi::StatxIn in) {
  bool has_fh = (in.getattr_flags & abi::kGetattrFh) != 0;
  auto r = c.fs.Statx(c.ctx, c.node(), OptionalFh(has_fh, in.fh), in.sx_flags, in.sx_mask);
  if (!r.ok()) return c.Error(r.error());
  c.SendStruct(EncodeStatxOut(*r));
}

void DoSetattr(Call& c, abi::SetattrIn in) {
  SetAttrRequest req;
  req.valid = in.valid;
  req.fh = OptionalFh((in.valid & abi::kFattrFh) != 0, in.fh);
  req.mode = in.mode;
  req.uid = in.uid;
  req.gid = in.gid;
  req.size = in.size;
  req.atime = ToTimespec(in.atime, in.atimensec);
  req.mtime = ToTimespec(in.mtime, in.mtimensec);
  req.ctime = ToTimespec(in.ctime, in.ctimensec);
  if ((in.valid & abi::kFattrAtimeNow) != 0) req.atime.tv_nsec = UTIME_NOW;
  if ((in.valid & abi::kFattrMtimeNow) != 0) req.mtime.tv_nsec = UTIME_NOW;
  Finish(c, c.fs.SetAttr(c.ctx, c.node(), req));
}

void DoReadlink(Call& c) {
  auto r = c.fs.ReadLink(c.ctx, c.node());
  if (!r.ok()) return c.Error(r.error());
  c.SendBytes(r->data(), r->size());
}

void DoSymlink(Call& c, Name name, String target) {
  Finish(c, c.fs.Symlink(c.ctx, c.node(), name.value, target.value));
}

void DoMknod(Call& c, abi::MknodIn in, Name name) {
  c.ctx.umask = in.umask;
  Finish(c, c.fs.Mknod(c.ctx, c.node(), name.value, in.mode, in.rdev));
}

void DoMkdir(Call& c, abi::MkdirIn in, Name name) {
  c.ctx.umask = in.umask;
  Finish(c, c.fs.Mkdir(c.ctx, c.node(), name.value, in.mode));
}

void DoUnlink(Call& c, Name name) {
  Finish(c, c.fs.Unlink(c.ctx, c.node(), name.value));
}

void DoRmdir(Call& c, Name name) {
  Finish(c, c.fs.Rmdir(c.ctx, c.node(), name.value));
}

void DoRename(Call& c, abi::RenameIn in, Name from, Name to) {
  Finish(c, c.fs.Rename(c.ctx, c.node(), from.value, in.newdir, to.value, 0));
}

void DoRename2(Call& c, abi::Rename2In in, Name from, Name to) {
  Finish(c, c.fs.Rename(c.ctx, c.node(), from.value, in.newdir, to.value, in.flags));
}

void DoLink(Call& c, abi::LinkIn in, Name name) {
  Finish(c, c.fs.Link(c.ctx, in.oldnodeid, c.node(), name.value));
}

OpenRequest MakeOpen(uint32_t flags, uint32_t open_flags) {
  OpenRequest req;
  req.flags = static_cast<int>(flags);
  req.kill_suidgid = (open_flags & abi::kOpenKillSuidgid) != 0;
  return req;
}

void DoOpen(Call& c, abi::OpenIn in) {
  Finish(c, c.fs.Open(c.ctx, c.node(), MakeOpen(in.flags, in.open_flags)), /*dir=*/false);
}

void DoCreate(Call& c, abi::CreateIn in, Name name) {
  c.ctx.umask = in.umask;
  Finish(c, c.fs.Create(c.ctx, c.node(), name.value, in.mode, MakeOpen(in.flags, in.open_flags)));
}

// The kernel names the unnamed file "/", so the name is read and ignored.
void DoTmpfile(Call& c, abi::CreateIn in, String /*name*/) {
  c.ctx.umask = in.umask;
  Finish(c, c.fs.Tmpfile(c.ctx, c.node(), in.mode, MakeOpen(in.flags, in.open_flags)));
}

void DoRead(Call& c, abi::ReadIn in) {
  std::span<std::byte> out = c.scratch.first(std::min<size_t>(in.size, c.scratch.size()));
  auto r = c.fs.Read(c.ctx, c.node(), in.fh, in.offset, out);
  if (!r.ok()) return c.Error(r.error());
  c.SendBytes(out.data(), std::min(*r, out.size()));
}

void DoWrite(Call& c, abi::WriteIn in, Payload data) {
  if (data.bytes.size() < in.size) return c.Malformed("write payload shorter than its size");
  WriteRequest req;
  req.fh = in.fh;
  req.offset = in.offset;
  req.data = data.bytes.first(in.size);
  req.kill_suidgid = (in.write_flags & abi::kWriteKillSuidgid) != 0;
  req.flags = static_cast<int>(in.flags);
  auto r = c.fs.Write(c.ctx, c.node(), req);
  if (!r.ok()) return c.Error(r.error());
  abi::WriteOut out{};
  out.size = static_cast<uint32_t>(*r);
  c.SendStruct(out);
}

void DoStatfs(Call& c) {
  auto r = c.fs.StatFs(c.ctx, c.node());
  if (!r.ok()) return c.Error(r.error());
  abi::StatfsOut out{EncodeStatfs(*r)};
  c.SendStruct(out);
}

void DoRelease(Call& c, abi::ReleaseIn in) {
  Finish(c, c.fs.Release(c.ctx, c.node(), in.fh, static_cast<int>(in.flags)));
}

void DoReleasedir(Call& c, abi::ReleaseIn in) {
  Finish(c, c.fs.ReleaseDir(c.ctx, c.node(), in.fh));
}

void DoFsync(Call& c, abi::FsyncIn in) {
  Finish(c, c.fs.Fsync(c.ctx, c.node(), in.fh, (in.fsync_flags & abi::kFsyncFdatasync) != 0));
}

void DoFsyncdir(Call& c, abi::FsyncIn in) {
  Finish(c, c.fs.FsyncDir(c.ctx, c.node(), in.fh, (in.fsync_flags & abi::kFsyncFdatasync) != 0));
}

void DoSetxattr(Call& c, Payload payload) {
  // The struct is 16 bytes only when SETXATTR_EXT was negotiated.
  ArgReader r(payload.bytes);
  abi::SetxattrIn in;
  size_t size = c.connection.Has(abi::kSetxattrExt) ? sizeof(in) : abi::kCompatSetxattrInSize;
  std::string_view name;
  std::span<const std::byte> value;
  if (!r.ReadPrefix(&in, size) || !r.ReadString(&name) || !r.ReadBytes(in.size, &value)) {
    return c.Malformed("setxattr arguments do not fit the request");
  }
  Finish(c, c.fs.SetXattr(c.ctx, c.node(), name, value, static_cast<int>(in.flags),
                          in.setxattr_flags));
}

void DoGetxattr(Call& c, abi::GetxattrIn in, String name) {
  std::span<char> out(reinterpret_cast<char*>(c.scratch.data()),
                      std::min<size_t>(in.size, c.scratch.size()));
  FinishSized(c, c.fs.GetXattr(c.ctx, c.node(), name.value, out), in.size == 0);
}

void DoListxattr(Call& c, abi::GetxattrIn in) {
  std::span<char> out(reinterpret_cast<char*>(c.scratch.data()),
                      std::min<size_t>(in.size, c.scratch.size()));
  FinishSized(c, c.fs.ListXattr(c.ctx, c.node(), out), in.size == 0);
}

void DoRemovexattr(Call& c, String name) {
  Finish(c, c.fs.RemoveXattr(c.ctx, c.node(), name.value));
}

void DoFlush(Call& c, abi::FlushIn in) {
  Finish(c, c.fs.Flush(c.ctx, c.node(), in.fh, in.lock_owner));
}

void DoOpendir(Call& c, abi::OpenIn in) {
  Finish(c, c.fs.OpenDir(c.ctx, c.node(), static_cast<int>(in.flags)), /*dir=*/true);
}

// If the kernel never received a READDIRPLUS reply, it never took the
// references its records carry: give them back.
void ForgetPlusRecords(Call& c, std::span<const std::byte> records) {
  size_t offset = 0;
  while (offset + sizeof(abi::Direntplus) <= records.size()) {
    abi::Direntplus plus;
    std::memcpy(&plus, records.data() + offset, sizeof(plus));
    if (plus.entry_out.nodeid != 0) c.fs.Forget(plus.entry_out.nodeid, 1);
    offset += abi::DirentAlign(sizeof(plus) + plus.dirent.namelen);
  }
}

void ReadDirectory(Call& c, const abi::ReadIn& in, bool plus) {
  DirentWriter writer(c.scratch.first(std::min<size_t>(in.size, c.scratch.size())), plus);
  auto r = c.fs.ReadDir(c.ctx, c.node(), in.fh, in.offset, writer);
  if (!r.ok()) {
    if (plus) ForgetPlusRecords(c, writer.data());
    return c.Error(r.error());
  }
  if (!c.SendBytes(writer.data().data(), writer.size()) && plus) {
    ForgetPlusRecords(c, writer.data());
  }
}

void DoReaddir(Call& c, abi::ReadIn in) {
  ReadDirectory(c, in, /*plus=*/false);
}
void DoReaddirplus(Call& c, abi::ReadIn in) {
  ReadDirectory(c, in, /*plus=*/true);
}

void DoGetlk(Call& c, abi::LkIn in) {
  auto r = c.fs.GetLock(c.ctx, c.node(), MakeLock(in));
  if (!r.ok()) return c.Error(r.error());
  abi::LkOut out{FromFlock(*r)};
  c.SendStruct(out);
}

void DoSetlk(Call& c, abi::LkIn in) {
  Finish(c, c.fs.SetLock(c.ctx, c.node(), MakeLock(in), /*wait=*/false));
}

void DoSetlkw(Call& c, abi::LkIn in) {
  Finish(c, c.fs.SetLock(c.ctx, c.node(), MakeLock(in), /*wait=*/true));
}

void DoAccess(Call& c, abi::AccessIn in) {
  Finish(c, c.fs.Access(c.ctx, c.node(), static_cast<int>(in.mask)));
}

// Interrupts are not acted on: our requests are short and local, and an
// ENOSYS reply would make the kernel's later waits uninterruptible.
void DoInterrupt(Call&, abi::InterruptIn) {}
void DoNotifyReply(Call&, Payload) {}

void DoBmap(Call& c, abi::BmapIn in) {
  auto r = c.fs.Bmap(c.ctx, c.node(), in.blocksize, in.block);
  if (!r.ok()) return c.Error(r.error());
  abi::BmapOut out{*r};
  c.SendStruct(out);
}

void DoDestroy(Call& c) {
  c.Error(0);
}

void DoIoctl(Call& c, abi::IoctlIn in, Payload payload) {
  // Only restricted ioctls: the kernel has already fetched in_size bytes
  // and will copy back at most out_size bytes.
  if ((in.flags & abi::kIoctlUnrestricted) != 0) return c.Error(ENOSYS);
  if (payload.bytes.size() < in.in_size) return c.Malformed("ioctl input shorter than in_size");
  IoctlRequest req;
  req.fh = in.fh;
  req.cmd = in.cmd;
  req.flags = in.flags;
  req.in = payload.bytes.first(in.in_size);
  req.out_size = in.out_size;
  std::span<std::byte> out = c.scratch.first(std::min<size_t>(in.out_size, c.scratch.size()));
  auto r = c.fs.Ioctl(c.ctx, c.node(), req, out);
  if (!r.ok()) return c.Error(r.error());
  abi::IoctlOut header{};
  header.result = r->result;
  c.Send(0, {{&header, sizeof(header)}, {out.data(), std::min(r->out_size, out.size())}});
}

void DoPoll(Call& c, abi::PollIn) {
  c.Error(ENOSYS);
}

void DoFallocate(Call& c, abi::FallocateIn in) {
  Finish(c,
         c.fs.Fallocate(c.ctx, c.node(), in.fh, static_cast<int>(in.mode), in.offset, in.length));
}

void DoLseek(Call& c, abi::LseekIn in) {
  auto r = c.fs.Lseek(c.ctx, c.node(), in.fh, in.offset, static_cast<int>(in.whence));
  if (!r.ok()) return c.Error(r.error());
  abi::LseekOut out{*r};
  c.SendStruct(out);
}

CopyRangeRequest MakeCopy(Call& c, const abi::CopyFileRangeIn& in) {
  return CopyRangeRequest{c.node(),  in.fh_in,   in.off_in, in.nodeid_out,
                          in.fh_out, in.off_out, in.len,    in.flags};
}

void DoCopyFileRange(Call& c, abi::CopyFileRangeIn in) {
  // The 32-bit reply cannot say more than 4 GiB - 1.
  in.len = std::min<uint64_t>(in.len, UINT32_MAX & ~uint64_t{4095});
  auto r = c.fs.CopyFileRange(c.ctx, MakeCopy(c, in));
  if (!r.ok()) return c.Error(r.error());
  abi::WriteOut out{};
  out.size = static_cast<uint32_t>(*r);
  c.SendStruct(out);
}

void DoCopyFileRange64(Call& c, abi::CopyFileRangeIn in) {
  auto r = c.fs.CopyFileRange(c.ctx, MakeCopy(c, in));
  if (!r.ok()) return c.Error(r.error());
  abi::CopyFileRangeOut out{*r};
  c.SendStruct(out);
}

void DoSyncfs(Call& c, abi::SyncfsIn) {
  Finish(c, c.fs.SyncFs(c.ctx, c.node()));
}

void DoUnsupported(Call& c, Payload) {
  c.Error(ENOSYS);
}

// INIT is decoded by hand: its struct is 16 bytes before 7.36.
void DoInit(Call& c, Payload payload);

// ---- The table. ----

using HandlerFn = void (*)(Call&, ArgReader&);

struct OpInfo {
  std::string_view name;
  HandlerFn handler = nullptr;
  bool replies = true;  // FORGET, BATCH_FORGET, INTERRUPT, NOTIFY_REPLY do not
};

constexpr std::array<OpInfo, abi::kOpcodeLimit> kOps = [] {
  std::array<OpInfo, abi::kOpcodeLimit> t{};
  t[abi::kLookup] = {"LOOKUP", &Decode<DoLookup>};
  t[abi::kForget] = {"FORGET", &Decode<DoForget>, false};
  t[abi::kGetattr] = {"GETATTR", &Decode<DoGetattr>};
  t[abi::kSetattr] = {"SETATTR", &Decode<DoSetattr>};
  t[abi::kReadlink] = {"READLINK", &Decode<DoReadlink>};
  t[abi::kSymlink] = {"SYMLINK", &Decode<DoSymlink>};
  t[abi::kMknod] = {"MKNOD", &Decode<DoMknod>};
  t[abi::kMkdir] = {"MKDIR", &Decode<DoMkdir>};
  t[abi::kUnlink] = {"UNLINK", &Decode<DoUnlink>};
  t[abi::kRmdir] = {"RMDIR", &Decode<DoRmdir>};
  t[abi::kRename] = {"RENAME", &Decode<DoRename>};
  t[abi::kLink] = {"LINK", &Decode<DoLink>};
  t[abi::kOpen] = {"OPEN", &Decode<DoOpen>};
  t[abi::kRead] = {"READ", &Decode<DoRead>};
  t[abi::kWrite] = {"WRITE", &Decode<DoWrite>};
  t[abi::kStatfs] = {"STATFS", &Decode<DoStatfs>};
  t[abi::kRelease] = {"RELEASE", &Decode<DoRelease>};
  t[abi::kFsync] = {"FSYNC", &Decode<DoFsync>};
  t[abi::kSetxattr] = {"SETXATTR", &Decode<DoSetxattr>};
  t[abi::kGetxattr] = {"GETXATTR", &Decode<DoGetxattr>};
  t[abi::kListxattr] = {"LISTXATTR", &Decode<DoListxattr>};
  t[abi::kRemovexattr] = {"REMOVEXATTR", &Decode<DoRemovexattr>};
  t[abi::kFlush] = {"FLUSH", &Decode<DoFlush>};
  t[abi::kInit] = {"INIT", &Decode<DoInit>};
  t[abi::kOpendir] = {"OPENDIR", &Decode<DoOpendir>};
  t[abi::kReaddir] = {"READDIR", &Decode<DoReaddir>};
  t[abi::kReleasedir] = {"RELEASEDIR", &Decode<DoReleasedir>};
  t[abi::kFsyncdir] = {"FSYNCDIR", &Decode<DoFsyncdir>};
  t[abi::kGetlk] = {"GETLK", &Decode<DoGetlk>};
  t[abi::kSetlk] = {"SETLK", &Decode<DoSetlk>};
  t[abi::kSetlkw] = {"SETLKW", &Decode<DoSetlkw>};
  t[abi::kAccess] = {"ACCESS", &Decode<DoAccess>};
  t[abi::kCreate] = {"CREATE", &Decode<DoCreate>};
  t[abi::kInterrupt] = {"INTERRUPT", &Decode<DoInterrupt>, false};
  t[abi::kBmap] = {"BMAP", &Decode<DoBmap>};
  t[abi::kDestroy] = {"DESTROY", &Decode<DoDestroy>};
  t[abi::kIoctl] = {"IOCTL", &Decode<DoIoctl>};
  t[abi::kPoll] = {"POLL", &Decode<DoPoll>};
  t[abi::kNotifyReply] = {"NOTIFY_REPLY", &Decode<DoNotifyReply>, false};
  t[abi::kBatchForget] = {"BATCH_FORGET", &Decode<DoBatchForget>, false};
  t[abi::kFallocate] = {"FALLOCATE", &Decode<DoFallocate>};
  t[abi::kReaddirplus] = {"READDIRPLUS", &Decode<DoReaddirplus>};
  t[abi::kRename2] = {"RENAME2", &Decode<DoRename2>};
  t[abi::kLseek] = {"LSEEK", &Decode<DoLseek>};
  t[abi::kCopyFileRange] = {"COPY_FILE_RANGE", &Decode<DoCopyFileRange>};
  t[abi::kSetupMapping] = {"SETUPMAPPING", &Decode<DoUnsupported>};
  t[abi::kRemoveMapping] = {"REMOVEMAPPING", &Decode<DoUnsupported>};
  t[abi::kSyncfs] = {"SYNCFS", &Decode<DoSyncfs>};
  t[abi::kTmpfile] = {"TMPFILE", &Decode<DoTmpfile>};
  t[abi::kStatx] = {"STATX", &Decode<DoStatx>};
  t[abi::kCopyFileRange64] = {"COPY_FILE_RANGE_64", &Decode<DoCopyFileRange64>};
  return t;
}();

// Walks the request extensions (7.38) and picks up supplementary groups.
// The groups are copied into `groups`: extensions follow the arguments
// unpadded, so after an odd-length name they are not 4-byte aligned.
bool ParseExtensions(std::span<const std::byte> ext, RequestContext* ctx,
                     std::vector<uint32_t>* groups_storage) {
  while (!ext.empty()) {
    abi::ExtHeader header;
    if (ext.size() < sizeof(header)) return false;
    std::memcpy(&header, ext.data(), sizeof(header));
    if (header.size < sizeof(header) || header.size % 8 != 0 || header.size > ext.size()) {
      return false;
    }
    std::span<const std::byte> body = ext.subspan(sizeof(header), header.size - sizeof(header));
    if (header.type == abi::kExtGroups) {
      abi::SuppGroups groups;
      if (body.size() < sizeof(groups)) return false;
      std::memcpy(&groups, body.data(), sizeof(groups));
      size_t bytes = size_t{groups.nr_groups} * sizeof(uint32_t);
      if (bytes > body.size() - sizeof(groups)) return false;
      groups_storage->resize(groups.nr_groups);
      if (bytes != 0) std::memcpy(groups_storage->data(), body.data() + sizeof(groups), bytes);
      ctx->kernel_groups = *groups_storage;
    }
    ext = ext.subspan(header.size);
  }
  return true;
}

}  // namespace

namespace {

void DoInit(Call& c, Payload payload) {
  ArgReader r(payload.bytes);
  abi::InitIn in;
  size_t size = std::min(payload.bytes.size(), sizeof(in));
  if (size < abi::kCompatInitInSize || !r.ReadPrefix(&in, size)) {
    return c.Malformed("INIT shorter than 16 bytes");
  }
  if (c.connection.initialized()) return c.Error(EPROTO);
  InitConfig config = MakeInitConfig(in, size);
  c.fs.Init(config);
  absl::StatusOr<InitReply> reply = NegotiateInit(in, config);
  if (!reply.ok()) {
    spdlog::error("INIT failed: {}", reply.status().ToString());
    c.Error(EPROTO);
    return;
  }
  if (reply->final) c.connection.BeforeInitReply(config, *reply);
  // The largest READ/READDIR payload the kernel may ask for.
  uint32_t max_read =
      (reply->flags & abi::kMaxPages) != 0 ? reply->out.max_pages * 4096U : 32U * 4096U;
  if (reply->final) c.connection.SetNegotiated(*reply, std::max(max_read, reply->out.max_write));
  c.SendStruct(reply->out, reply->size);
  if (reply->final) {
    spdlog::debug("FUSE 7.{} negotiated, flags {:#x}, max_write {}", reply->minor, reply->flags,
                  reply->out.max_write);
    c.fs.Connected(c.connection);
  }
}

}  // namespace

std::string_view OpcodeName(uint32_t opcode) {
  if (opcode < kOps.size() && !kOps[opcode].name.empty()) return kOps[opcode].name;
  return "UNKNOWN";
}

absl::Status Dispatcher::init_error() const {
  return init_error_;
}

void Dispatcher::Handle(std::span<const std::byte> request, Channel& channel,
                        std::span<std::byte> scratch) {
  abi::InHeader header;
  if (request.size() < sizeof(header)) {
    // Without a complete header there is no unique id to answer.
    spdlog::warn("dropped a {}-byte request: shorter than the FUSE header", request.size());
    return;
  }
  std::memcpy(&header, request.data(), sizeof(header));
  auto start = std::chrono::steady_clock::now();
  Call call(header, fs_, connection_, channel, scratch);

  const OpInfo* op = header.opcode < kOps.size() && kOps[header.opcode].handler != nullptr
                         ? &kOps[header.opcode]
                         : nullptr;
  size_t ext_bytes = size_t{header.total_extlen} * 8;
  if (header.len != request.size()) {
    if (op == nullptr || op->replies) call.Malformed("header length differs from bytes read");
  } else if (ext_bytes > request.size() - sizeof(header)) {
    if (op == nullptr || op->replies) call.Malformed("extensions longer than the request");
  } else if (op == nullptr) {
    call.Error(ENOSYS);
  } else if (!connection_.initialized() && header.opcode != abi::kInit) {
    call.Error(EIO);  // nothing but INIT is valid before INIT
  } else {
    std::span<const std::byte> args =
        request.subspan(sizeof(header), request.size() - sizeof(header) - ext_bytes);
    if (!ParseExtensions(request.last(ext_bytes), &call.ctx, &call.groups)) {
      if (op->replies) call.Malformed("malformed request extension");
    } else {
      ArgReader reader(args);
      call.may_reply = op->replies;
      op->handler(call, reader);
      if (header.opcode == abi::kInit && !connection_.initialized() && call.error() != 0) {
        init_error_ =
            absl::FailedPreconditionError("the kernel's FUSE INIT could not be negotiated");
      }
      if (op->replies && !call.replied()) {
        spdlog::error("BUG: {} #{} produced no reply", op->name, header.unique);
        call.Error(EIO);
      }
    }
  }
  if (stats_ != nullptr) {
    auto elapsed = std::chrono::steady_clock::now() - start;
    stats_->Record(header.opcode, call.error(),
                   std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count());
  }
}

}  // namespace lamina
