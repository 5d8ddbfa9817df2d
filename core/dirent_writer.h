// DirentWriter packs READDIR and READDIRPLUS replies.
//
// One helper for both forms so alignment and size checks live in one place.
// Each record is padded to 8 bytes; a record that does not fit is refused
// whole, and the filesystem resumes from that entry's offset next time.

#ifndef LAMINA_CORE_DIRENT_WRITER_H_
#define LAMINA_CORE_DIRENT_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "core/fs_types.h"

namespace lamina {

class DirentWriter {
 public:
  // Writes into `buffer` (at most the size the kernel asked for).
  // `plus` selects READDIRPLUS records.
  DirentWriter(std::span<std::byte> buffer, bool plus) : buffer_(buffer), plus_(plus) {}

  DirentWriter(const DirentWriter&) = delete;
  DirentWriter& operator=(const DirentWriter&) = delete;

  bool plus() const { return plus_; }

  // True if a record for `name` still fits. In READDIRPLUS mode, check this
  // before taking a lookup reference for the entry, so a refused record never
  // leaves a reference the kernel does not know about.
  bool Fits(std::string_view name) const;

  // Adds a plain record: `type` is a DT_* value, `next_offset` is the offset
  // from which a later READDIR continues after this entry. In READDIRPLUS
  // mode this writes a record without an entry (nodeid 0), which the kernel
  // does not count as a lookup: use it for "." and "..".
  bool Add(std::string_view name, uint64_t ino, uint32_t type, uint64_t next_offset);

  // READDIRPLUS only: adds a record carrying `entry`. When it returns true
  // and entry.node != 0, the kernel has gained one lookup on entry.node.
  bool AddPlus(std::string_view name, const Entry& entry, uint64_t next_offset);

  size_t size() const { return used_; }
  bool empty() const { return used_ == 0; }
  std::span<const std::byte> data() const { return buffer_.first(used_); }

 private:
  size_t RecordSize(std::string_view name) const;

  std::span<std::byte> buffer_;
  size_t used_ = 0;
  bool plus_;
};

}  // namespace lamina

#endif  // LAMINA_CORE_DIRENT_WRITER_H_
