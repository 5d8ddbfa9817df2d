// ArgReader: bounds-checked reading of a request's argument bytes.
//
// Every read checks the remaining length first and copies fixed structs out
// (so alignment and aliasing never matter); a failed read leaves the reader
// unchanged and the caller answers EINVAL.

#ifndef LAMINA_CORE_ARG_READER_H_
#define LAMINA_CORE_ARG_READER_H_

#include <cstddef>
#include <cstring>
#include <span>
#include <string_view>
#include <type_traits>

namespace lamina {

class ArgReader {
 public:
  explicit ArgReader(std::span<const std::byte> bytes) : bytes_(bytes) {}

  size_t remaining() const { return bytes_.size(); }

  template <typename T>
  bool Read(T* out) {
    static_assert(std::is_trivially_copyable_v<T>);
    return ReadPrefix(out, sizeof(T));
  }

  // Reads the first `size` bytes of *out (a struct whose older protocol
  // versions were shorter) and zeroes the rest.
  template <typename T>
  bool ReadPrefix(T* out, size_t size) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (size > sizeof(T) || bytes_.size() < size) return false;
    std::memset(out, 0, sizeof(T));
    std::memcpy(out, bytes_.data(), size);
    bytes_ = bytes_.subspan(size);
    return true;
  }

  // A NUL-terminated string; the NUL must lie inside the request.
  bool ReadString(std::string_view* out) {
    const void* nul = std::memchr(bytes_.data(), 0, bytes_.size());
    if (nul == nullptr) return false;
    size_t length = static_cast<size_t>(static_cast<const std::byte*>(nul) - bytes_.data());
    *out = std::string_view(reinterpret_cast<const char*>(bytes_.data()), length);
    bytes_ = bytes_.subspan(length + 1);
    return true;
  }

  bool ReadBytes(size_t size, std::span<const std::byte>* out) {
    if (bytes_.size() < size) return false;
    *out = bytes_.first(size);
    bytes_ = bytes_.subspan(size);
    return true;
  }

  std::span<const std::byte> Rest() {
    std::span<const std::byte> rest = bytes_;
    bytes_ = {};
    return rest;
  }

 private:
  std::span<const std::byte> bytes_;
};

}  // namespace lamina

#endif  // LAMINA_CORE_ARG_READER_H_
