#include "core/wire_encode.h"

#include <cmath>
#include <cstring>

namespace lamina {

void EncodeTimeout(double seconds, uint64_t* sec, uint32_t* nsec) {
  if (!(seconds > 0)) {
    *sec = 0;
    *nsec = 0;
    return;
  }
  constexpr double kMaxSeconds = 1e15;  // far beyond any useful cache lifetime
  if (seconds > kMaxSeconds) seconds = kMaxSeconds;
  double whole = std::floor(seconds);
  *sec = static_cast<uint64_t>(whole);
  auto frac = static_cast<uint32_t>((seconds - whole) * 1e9);
  *nsec = frac > 999999999U ? 999999999U : frac;
}

abi::Attr EncodeAttr(const struct stat& st) {
  abi::Attr a{};
  a.ino = st.st_ino;
  a.size = static_cast<uint64_t>(st.st_size);
  a.blocks = static_cast<uint64_t>(st.st_blocks);
  a.atime = static_cast<uint64_t>(st.st_atim.tv_sec);
  a.mtime = static_cast<uint64_t>(st.st_mtim.tv_sec);
  a.ctime = static_cast<uint64_t>(st.st_ctim.tv_sec);
  a.atimensec = static_cast<uint32_t>(st.st_atim.tv_nsec);
  a.mtimensec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
  a.ctimensec = static_cast<uint32_t>(st.st_ctim.tv_nsec);
  a.mode = st.st_mode;
  a.nlink = static_cast<uint32_t>(st.st_nlink);
  a.uid = st.st_uid;
  a.gid = st.st_gid;
  a.rdev = static_cast<uint32_t>(st.st_rdev);
  a.blksize = static_cast<uint32_t>(st.st_blksize);
  return a;
}

abi::EntryOut EncodeEntry(const Entry& entry) {
  abi::EntryOut out{};
  out.nodeid = entry.node;
  out.generation = entry.generation;
  EncodeTimeout(entry.entry_timeout, &out.entry_valid, &out.entry_valid_nsec);
  EncodeTimeout(entry.attr_timeout, &out.attr_valid, &out.attr_valid_nsec);
  out.attr = EncodeAttr(entry.attr);
  return out;
}

abi::AttrOut EncodeAttrOut(const Attributes& attributes) {
  abi::AttrOut out{};
  EncodeTimeout(attributes.timeout, &out.attr_valid, &out.attr_valid_nsec);
  out.attr = EncodeAttr(attributes.attr);
  return out;
}

namespace {
abi::SxTime EncodeSxTime(const struct statx_timestamp& t) {
  return abi::SxTime{t.tv_sec, t.tv_nsec, 0};
}
}  // namespace

abi::StatxOut EncodeStatxOut(const StatxAttributes& attributes) {
  abi::StatxOut out{};
  EncodeTimeout(attributes.timeout, &out.attr_valid, &out.attr_valid_nsec);
  const struct statx& s = attributes.attr;
  abi::Statx& x = out.stat;
  x.mask = s.stx_mask;
  x.blksize = s.stx_blksize;
  x.attributes = s.stx_attributes;
  x.nlink = s.stx_nlink;
  x.uid = s.stx_uid;
  x.gid = s.stx_gid;
  x.mode = s.stx_mode;
  x.ino = s.stx_ino;
  x.size = s.stx_size;
  x.blocks = s.stx_blocks;
  x.attributes_mask = s.stx_attributes_mask;
  x.atime = EncodeSxTime(s.stx_atime);
  x.btime = EncodeSxTime(s.stx_btime);
  x.ctime = EncodeSxTime(s.stx_ctime);
  x.mtime = EncodeSxTime(s.stx_mtime);
  x.rdev_major = s.stx_rdev_major;
  x.rdev_minor = s.stx_rdev_minor;
  x.dev_major = s.stx_dev_major;
  x.dev_minor = s.stx_dev_minor;
  return out;
}

abi::Kstatfs EncodeStatfs(const struct statvfs& st) {
  abi::Kstatfs k{};
  k.blocks = st.f_blocks;
  k.bfree = st.f_bfree;
  k.bavail = st.f_bavail;
  k.files = st.f_files;
  k.ffree = st.f_ffree;
  k.bsize = static_cast<uint32_t>(st.f_bsize);
  k.namelen = static_cast<uint32_t>(st.f_namemax);
  k.frsize = static_cast<uint32_t>(st.f_frsize);
  return k;
}

}  // namespace lamina
