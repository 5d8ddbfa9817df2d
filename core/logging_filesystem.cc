#include "core/logging_filesystem.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"

namespace lamina {

void LoggingFilesystem::Init(InitConfig& config) {
  inner_.Init(config);
  spdlog::info("INIT kernel 7.{} offers {:#x}; wanting {:#x}", config.kernel_minor,
               config.kernel_flags, config.want);
}

void LoggingFilesystem::Forget(NodeId node, uint64_t nlookup) {
  spdlog::info("FORGET node={} nlookup={}", node, nlookup);
  inner_.Forget(node, nlookup);
}

Result<size_t> LoggingFilesystem::CopyFileRange(const Ctx& c, const CopyRangeRequest& r) {
  auto start = std::chrono::steady_clock::now();
  Result<size_t> result = inner_.CopyFileRange(c, r);
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::steady_clock::now() - start)
                    .count();
  Log(c, "COPY_FILE_RANGE",
      absl::StrFormat("in=%u@%u out=%u@%u len=%u", r.node_in, r.off_in, r.node_out, r.off_out,
                      r.len),
      DescribeResult(result), micros);
  return result;
}

void LoggingFilesystem::Log(const Ctx& ctx, const char* op, const std::string& args,
                            const std::string& result, int64_t micros) {
  spdlog::info("#{} {}({}) uid={} pid={} -> {} [{} us]", ctx.unique, op, args, ctx.uid, ctx.pid,
               result, micros);
}

std::string LoggingFilesystem::ErrnoText(int error) {
  return absl::StrCat("errno ", error, " (", strerrorname_np(error) ? strerrorname_np(error) : "?",
                      ")");
}

std::string LoggingFilesystem::Describe(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}
std::string LoggingFilesystem::Describe(const std::optional<uint64_t>& fh) {
  return fh ? absl::StrCat("fh=", *fh) : "fh=none";
}
std::string LoggingFilesystem::Describe(const SetAttrRequest& r) {
  return absl::StrFormat("valid=%#x mode=%o uid=%u gid=%u size=%u", r.valid, r.mode, r.uid, r.gid,
                         r.size);
}
std::string LoggingFilesystem::Describe(const OpenRequest& r) {
  return absl::StrFormat("flags=%#o%s", r.flags, r.kill_suidgid ? " kill_suidgid" : "");
}
std::string LoggingFilesystem::Describe(const WriteRequest& r) {
  return absl::StrFormat("fh=%u off=%u len=%u", r.fh, r.offset, r.data.size());
}
std::string LoggingFilesystem::Describe(const LockRequest& r) {
  return absl::StrFormat("fh=%u type=%d start=%d len=%d%s", r.fh, r.lock.l_type, r.lock.l_start,
                         r.lock.l_len, r.is_flock ? " flock" : "");
}
std::string LoggingFilesystem::Describe(const IoctlRequest& r) {
  return absl::StrFormat("cmd=%#x in=%u out=%u", r.cmd, r.in.size(), r.out_size);
}
std::string LoggingFilesystem::Describe(const DirentWriter& w) {
  return w.plus() ? "plus" : "plain";
}
std::string LoggingFilesystem::Describe(std::span<std::byte> s) {
  return absl::StrCat("<", s.size(), " bytes>");
}
std::string LoggingFilesystem::Describe(std::span<char> s) {
  return absl::StrCat("<", s.size(), " bytes>");
}
std::string LoggingFilesystem::Describe(std::span<const std::byte> s) {
  return absl::StrCat("<", s.size(), " bytes>");
}

std::string LoggingFilesystem::DescribeResult(const Result<void>& r) {
  return r.ok() ? "ok" : ErrnoText(r.error());
}
std::string LoggingFilesystem::DescribeResult(const Result<Entry>& r) {
  if (!r.ok()) return ErrnoText(r.error());
  return absl::StrFormat("node=%u ino=%u mode=%o", r->node, r->attr.st_ino, r->attr.st_mode);
}
std::string LoggingFilesystem::DescribeResult(const Result<Attributes>& r) {
  if (!r.ok()) return ErrnoText(r.error());
  return absl::StrFormat("ino=%u mode=%o size=%d", r->attr.st_ino, r->attr.st_mode,
                         r->attr.st_size);
}
std::string LoggingFilesystem::DescribeResult(const Result<StatxAttributes>& r) {
  if (!r.ok()) return ErrnoText(r.error());
  return absl::StrFormat("ino=%u mask=%#x", r->attr.stx_ino, r->attr.stx_mask);
}
std::string LoggingFilesystem::DescribeResult(const Result<OpenReply>& r) {
  if (!r.ok()) return ErrnoText(r.error());
  return absl::StrFormat("fh=%u flags=%#x backing=%d", r->fh, r->open_flags, r->backing_id);
}
std::string LoggingFilesystem::DescribeResult(const Result<CreateReply>& r) {
  if (!r.ok()) return ErrnoText(r.error());
  return absl::StrFormat("node=%u fh=%u backing=%d", r->entry.node, r->open.fh, r->open.backing_id);
}
std::string LoggingFilesystem::DescribeResult(const Result<std::string>& r) {
  return r.ok() ? Describe(std::string_view(*r)) : ErrnoText(r.error());
}
std::string LoggingFilesystem::DescribeResult(const Result<IoctlReply>& r) {
  return r.ok() ? absl::StrCat("result=", r->result) : ErrnoText(r.error());
}
std::string LoggingFilesystem::DescribeResult(const Result<struct flock>& r) {
  return r.ok() ? absl::StrCat("type=", r->l_type) : ErrnoText(r.error());
}
std::string LoggingFilesystem::DescribeResult(const Result<struct statvfs>& r) {
  return r.ok() ? absl::StrCat("blocks=", r->f_blocks) : ErrnoText(r.error());
}

}  // namespace lamina
