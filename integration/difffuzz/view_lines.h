// Reading and rewriting the lines of a view (view_walker.h) and of a
// difference between two views, for the masks of known_differences.h.
// A line is "PATH TYPE field=value ..." or "PATH listed, lstat=ERRNO
// dtype=TYPE" or "probe PATH RESULT"; PATH is quoted when it holds odd
// bytes, and so is a field's value when it may hold spaces.

#ifndef LAMINA_INTEGRATION_DIFFFUZZ_VIEW_LINES_H_
#define LAMINA_INTEGRATION_DIFFFUZZ_VIEW_LINES_H_

#include <initializer_list>
#include <string>
#include <string_view>

namespace lamina::difffuzz {

// The value of " FIELD=" in a view line ("ino", "nlink", "data"), or "".
std::string Field(const std::string& line, std::string_view field);
// Replaces the value of " FIELD=" (if present) with `value`; whether the
// line changed.
bool SetField(std::string& line, std::string_view field, const std::string& value);
// Removes the first `text` from `line`; whether there was one.
bool Erase(std::string& line, std::string_view text);
bool Has(const std::string& line, std::string_view text);

// The object's type as a line gives it ("file", "dir", ...): the field
// after the path.
std::string TypeOf(const std::string& line);
// The errno of a "PATH listed, lstat=ERRNO ..." line, or "".
std::string ListedError(const std::string& line);
// The path a line's key names (ViewLineKey: maybe quoted, maybe after
// "probe "), as the layers spell it; "" for the root.
std::string RawPath(std::string key);

// Whether the kernel refuses a path with one of `errors`: listed with that
// lstat errno, or left out of its parent's listing (a directory whose
// readdir looks entries up) while Lamina shows an object there.
bool KernelRefuses(const std::string& kernel, const std::string& lamina,
                   std::initializer_list<std::string_view> errors);
// For the probe of a name the kernel left out of a listing (`path` is the
// probe's key): whether it found the name refused with one of `errors`
// while Lamina listed it.
bool KernelProbeRefuses(const std::string& path, const std::string& kernel,
                        const std::string& lamina, std::initializer_list<std::string_view> errors);

}  // namespace lamina::difffuzz

#endif  // LAMINA_INTEGRATION_DIFFFUZZ_VIEW_LINES_H_
