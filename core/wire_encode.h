// Conversions from the Filesystem interface's value types to wire structs.

#ifndef LAMINA_CORE_WIRE_ENCODE_H_
#define LAMINA_CORE_WIRE_ENCODE_H_

#include <sys/stat.h>
#include <sys/statvfs.h>

#include "core/fs_types.h"
#include "core/fuse_abi.h"

namespace lamina {

abi::Attr EncodeAttr(const struct stat& st);
abi::EntryOut EncodeEntry(const Entry& entry);
abi::AttrOut EncodeAttrOut(const Attributes& attributes);
abi::StatxOut EncodeStatxOut(const StatxAttributes& attributes);
abi::Kstatfs EncodeStatfs(const struct statvfs& st);

// Splits a timeout in seconds into the kernel's (seconds, nanoseconds) pair.
// Negative and NaN timeouts become 0; huge ones saturate.
void EncodeTimeout(double seconds, uint64_t* sec, uint32_t* nsec);

}  // namespace lamina

#endif  // LAMINA_CORE_WIRE_ENCODE_H_
