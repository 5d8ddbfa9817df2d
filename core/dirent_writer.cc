#include "core/dirent_writer.h"

#include <sys/stat.h>

#include <cstring>

#include "core/fuse_abi.h"
#include "core/wire_encode.h"

namespace lamina {

size_t DirentWriter::RecordSize(std::string_view name) const {
  size_t header = plus_ ? sizeof(abi::Direntplus) : sizeof(abi::Dirent);
  return abi::DirentAlign(header + name.size());
}

bool DirentWriter::Fits(std::string_view name) const {
  return !name.empty() && used_ + RecordSize(name) <= buffer_.size();
}

bool DirentWriter::Add(std::string_view name, uint64_t ino, uint32_t type, uint64_t next_offset) {
  if (plus_) {
    Entry entry;
    entry.attr.st_ino = ino;
    entry.attr.st_mode = static_cast<mode_t>(type << 12);
    return AddPlus(name, entry, next_offset);
  }
  if (!Fits(name)) return false;
  std::byte* record = buffer_.data() + used_;
  size_t size = RecordSize(name);
  abi::Dirent dirent{ino, next_offset, static_cast<uint32_t>(name.size()), type};
  std::memcpy(record, &dirent, sizeof(dirent));
  std::memcpy(record + sizeof(dirent), name.data(), name.size());
  std::memset(record + sizeof(dirent) + name.size(), 0, size - sizeof(dirent) - name.size());
  used_ += size;
  return true;
}

bool DirentWriter::AddPlus(std::string_view name, const Entry& entry, uint64_t next_offset) {
  if (!plus_ || !Fits(name)) return false;
  std::byte* record = buffer_.data() + used_;
  size_t size = RecordSize(name);
  abi::Direntplus plus{};
  plus.entry_out = EncodeEntry(entry);
  plus.dirent.ino = entry.attr.st_ino;
  plus.dirent.off = next_offset;
  plus.dirent.namelen = static_cast<uint32_t>(name.size());
  plus.dirent.type = (entry.attr.st_mode & S_IFMT) >> 12;
  std::memcpy(record, &plus, sizeof(plus));
  std::memcpy(record + sizeof(plus), name.data(), name.size());
  std::memset(record + sizeof(plus) + name.size(), 0, size - sizeof(plus) - name.size());
  used_ += size;
  return true;
}

}  // namespace lamina
