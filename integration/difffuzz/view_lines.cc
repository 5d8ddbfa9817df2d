#include "integration/difffuzz/view_lines.h"

#include <algorithm>
#include <utility>

#include "integration/difffuzz/case_spec.h"
#include "integration/difffuzz/view_walker.h"

namespace lamina::difffuzz {
namespace {

// Where the value of " FIELD=" starts in a view line and where it ends (a
// quoted value ends at its closing quote), or npos.
std::pair<size_t, size_t> FieldSpan(const std::string& line, std::string_view field) {
  const std::string key = std::string(" ").append(field) + "=";
  size_t at = line.find(key, ViewLineKey(line).size());
  if (at == std::string::npos) return {at, at};
  at += key.size();
  size_t end = at;
  if (end < line.size() && line[end] == '"') {
    for (++end; end < line.size() && line[end] != '"'; ++end) {
      if (line[end] == '\\') ++end;
    }
    ++end;
  }
  end = std::min(line.find_first_of(" \n", end), line.size());
  return {at, end};
}

}  // namespace

// The value of " FIELD=" in a view line, or "" when absent.
std::string Field(const std::string& line, std::string_view field) {
  const auto [at, end] = FieldSpan(line, field);
  return at == std::string::npos ? "" : line.substr(at, end - at);
}

// Replaces the value of " FIELD=" (if present) with `value`.
bool SetField(std::string& line, std::string_view field, const std::string& value) {
  const auto [at, end] = FieldSpan(line, field);
  if (at == std::string::npos || line.compare(at, end - at, value) == 0) return false;
  line.replace(at, end - at, value);
  return true;
}

bool Erase(std::string& line, std::string_view text) {
  const size_t at = line.find(text);
  if (at == std::string::npos) return false;
  line.erase(at, text.size());
  return true;
}

// The object's type as a view line gives it (the field after the path).
std::string TypeOf(const std::string& line) {
  const size_t start = ViewLineKey(line).size();
  if (start >= line.size()) return "";
  return line.substr(start + 1, line.find(' ', start + 1) - start - 1);
}

bool Has(const std::string& line, std::string_view text) {
  return line.find(text) != std::string::npos;
}

// The errno of a "PATH listed, lstat=ERRNO dtype=TYPE" line, or "".
std::string ListedError(const std::string& line) {
  const size_t at = line.find(" listed, lstat=");
  if (at == std::string::npos) return "";
  return line.substr(at + 15, line.find(' ', at + 15) - at - 15);
}

// The path a view prints (Printable, maybe after "probe "), as it is.
std::string RawPath(std::string key) {
  if (key.compare(0, 6, "probe ") == 0) key = key.substr(6);
  if (!key.empty() && key[0] == '"') return Unquote(key, 1);
  return key == "/" ? "" : key;
}

}  // namespace lamina::difffuzz
