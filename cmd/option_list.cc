#include "cmd/option_list.h"

namespace lamina::cmd {
namespace {

// Splits `text` at each `separator` not escaped by a backslash, keeping the
// escapes.
std::vector<std::string> SplitUnescaped(const std::string& text, char separator) {
  std::vector<std::string> parts(1);
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      parts.back().push_back(text[i]);
      parts.back().push_back(text[++i]);
    } else if (text[i] == separator) {
      parts.emplace_back();
    } else {
      parts.back().push_back(text[i]);
    }
  }
  return parts;
}

}  // namespace

std::vector<std::string> SplitOptionList(const std::string& list) {
  std::vector<std::string> options = SplitUnescaped(list, ',');
  std::erase_if(options, [](const std::string& option) { return option.empty(); });
  return options;
}

std::string UnescapeOptionValue(const std::string& value) {
  std::string out;
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '\\') ++i;
    if (i < value.size()) out.push_back(value[i]);
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> SplitLowerdirs(const std::string& list) {
  if (list.empty()) return std::vector<std::string>{};
  std::vector<std::string> layers = SplitUnescaped(list, ':');
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!layers[i].empty()) {
      layers[i] = UnescapeOptionValue(layers[i]);
      continue;
    }
    if (i == 0) return absl::InvalidArgumentError("lowerdir may not start with ':'");
    if (i + 1 == layers.size()) return absl::InvalidArgumentError("lowerdir may not end with ':'");
    return absl::InvalidArgumentError(
        "data-only lower layers (lowerdir=...::DIR) are not supported by laminafs");
  }
  return layers;
}

}  // namespace lamina::cmd
