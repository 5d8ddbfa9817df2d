// Reading and rewriting the lines of a view (view_walker.h) and of a
// difference between two views, for the masks of known_differences.h.
// A line is "PATH TYPE field=value ..." or "PATH listed, lstat=ERRNO
// dtype=TYPE" or "probe PATH RESULT"; PATH is quoted when it holds odd
// bytes, and so is a field's value when it may hold spaces.

#ifndef LAMINA_INTEGRATION_DIFFFUZZ_VIEW_LINES_H_
#define LAMINA_INTEGRATION_DIFFFUZZ_VIEW_LINES_H_

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

}  // namespace lamina::difffuzz

#endif  // LAMINA_INTEGRATION_DIFFFUZZ_VIEW_LINES_H_
