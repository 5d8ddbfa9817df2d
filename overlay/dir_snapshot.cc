#include "overlay/dir_snapshot.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include "overlay/listing_store.h"

namespace lamina::overlay {

struct DirSnapshot::Record {
  uint64_t ino;
  uint64_t cookie;
  uint64_t identity_dev;
  uint64_t identity_ino;
  uint32_t name_offset;  // into the names, after the records
  uint16_t name_size;    // without the NUL
  uint8_t type;
  uint8_t has_identity;
  int32_t layer;
  uint32_t unused;
};
bool DirStamp::StillDescribes(const DirStamp& now) const {
  if (ctimes.size() != now.ctimes.size()) return false;
  auto nanoseconds = [](const struct timespec& t) {
    return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
  };
  const int64_t settled = nanoseconds(taken) - kRacyNanoseconds;
  for (size_t i = 0; i < ctimes.size(); ++i) {
    if (ctimes[i].tv_sec != now.ctimes[i].tv_sec || ctimes[i].tv_nsec != now.ctimes[i].tv_nsec) {
      return false;
    }
    if (ctimes[i].tv_sec >= 0 && nanoseconds(ctimes[i]) >= settled) return false;
  }
  return true;
}

std::unique_ptr<DirSnapshot> DirSnapshot::Pack(const std::vector<DirItem>& items, DirStamp stamp,
                                               ListingStore* store) {
  static_assert(sizeof(Record) == 48);
  size_t names = 0;
  for (const DirItem& item : items) {
    if (item.name.size() > std::numeric_limits<uint16_t>::max()) return nullptr;
    names += item.name.size() + 1;
  }
  if (names > std::numeric_limits<uint32_t>::max()) return nullptr;
  const size_t records = items.size() * sizeof(Record);
  const size_t size = std::max<size_t>(records + names, 1);
  const bool mapped = size >= kMapFrom;
  char* block;
  if (mapped) {
    void* map = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return nullptr;
    block = static_cast<char*>(map);
  } else {
    block = static_cast<char*>(std::malloc(size));
    if (block == nullptr) return nullptr;
  }
  auto* record = reinterpret_cast<Record*>(block);
  char* name = block + records;
  for (const DirItem& item : items) {
    Record r{};
    r.ino = item.ino;
    r.cookie = item.cookie;
    if (item.identity) {
      r.identity_dev = item.identity->dev;
      r.identity_ino = item.identity->ino;
      r.has_identity = 1;
    }
    r.name_offset = static_cast<uint32_t>(name - (block + records));
    r.name_size = static_cast<uint16_t>(item.name.size());
    r.type = static_cast<uint8_t>(item.type);
    r.layer = item.layer;
    std::memcpy(record++, &r, sizeof(r));
    std::memcpy(name, item.name.data(), item.name.size());
    name[item.name.size()] = '\0';
    name += item.name.size() + 1;
  }
  return std::unique_ptr<DirSnapshot>(
      new DirSnapshot(block, size, mapped, items.size(), std::move(stamp), store));
}

DirSnapshot::~DirSnapshot() {
  if (store_ != nullptr) store_->Freed(this);
  if (mapped_) {
    munmap(block_, block_size_);
  } else {
    std::free(block_);
  }
}

const DirSnapshot::Record& DirSnapshot::record(size_t i) const {
  return reinterpret_cast<const Record*>(block_)[i];
}

DirSnapshot::Item DirSnapshot::operator[](size_t i) const {
  const Record& r = record(i);
  Item item;
  item.name = std::string_view(block_ + count_ * sizeof(Record) + r.name_offset, r.name_size);
  item.type = r.type;
  item.ino = r.ino;
  if (r.has_identity != 0) {
    item.identity = NodeKey{static_cast<dev_t>(r.identity_dev), static_cast<ino_t>(r.identity_ino)};
  }
  item.cookie = r.cookie;
  item.layer = r.layer;
  return item;
}

size_t DirSnapshot::FirstAfter(uint64_t cookie) const {
  if (count_ == 0) return 0;
  const Record* begin = &record(0);
  const Record* end = begin + count_;
  const Record* it = std::upper_bound(begin, end, cookie,
                                      [](uint64_t c, const Record& r) { return c < r.cookie; });
  return static_cast<size_t>(it - begin);
}

}  // namespace lamina::overlay
