// The syntax of an -o option list, as kernel overlayfs reads the options
// of `mount -t overlay`:
//
//   - the list splits at commas; a backslash makes the next character
//     ordinary (`\,` is a comma inside an option) and stays in the option
//     for its value's own reading;
//   - lowerdir= splits at colons the same way (`\:` is a colon inside a
//     layer's path), then each layer, like every other value, drops each
//     escaping backslash (`\x` is x, `\\` a backslash).
//
// So `lowerdir=/a\,b:/c\:d\\e,upperdir=/u\,v` names the layers "/a,b" and
// "/c:d\e" and the upper "/u,v", as the kernel reads it.

#ifndef LAMINA_CMD_OPTION_LIST_H_
#define LAMINA_CMD_OPTION_LIST_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lamina::cmd {

// The options of `list`, split at unescaped commas, escapes kept; empty
// options are left out.
std::vector<std::string> SplitOptionList(const std::string& list);

// `value` without its escaping backslashes ("\x" is x; a trailing lone
// backslash is dropped, as the kernel drops it).
std::string UnescapeOptionValue(const std::string& value);

// The layers of a lowerdir= value, top first, split at unescaped colons
// and unescaped. Errors where the kernel refuses the list: a leading colon
// (appending to earlier layers), a trailing one, an empty layer, and "::",
// which marks data-only layers (not supported).
absl::StatusOr<std::vector<std::string>> SplitLowerdirs(const std::string& list);

}  // namespace lamina::cmd

#endif  // LAMINA_CMD_OPTION_LIST_H_
