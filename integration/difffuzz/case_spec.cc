#include "integration/difffuzz/case_spec.h"

#include <cstdio>

namespace lamina::difffuzz {

std::string Quote(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c >= 0x7f) {
      char hex[8];
      snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string Unquote(const std::string& quoted, size_t start, size_t* end) {
  std::string out;
  size_t i = start;
  for (; i < quoted.size() && quoted[i] != '"'; ++i) {
    if (quoted[i] != '\\' || i + 1 >= quoted.size()) {
      out += quoted[i];
      continue;
    }
    const char c = quoted[++i];
    if (c == 'n') {
      out += '\n';
    } else if (c == 'x' && i + 2 < quoted.size()) {
      out += static_cast<char>(std::stoi(quoted.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += c;
    }
  }
  if (end != nullptr) *end = i + 1;
  return out;
}

std::string Short(const std::string& text) {
  // A long run of one byte (long contents, long redirects) as "RUNxN".
  size_t run = 1;
  while (run < text.size() && text[run] == text[0]) ++run;
  if (run < 40) return Quote(text);
  return Quote(text.substr(0, 8)) + "x" + std::to_string(run) +
         (run < text.size() ? std::string("+") + Quote(text.substr(run)) : "");
}

std::string Printable(const std::string& text) {
  if (text.empty()) return Quote(text);
  for (unsigned char c : text) {
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') return Quote(text);
  }
  return text;
}

std::string LayerName(int layer) {
  return layer == kUpperLayer ? "U" : std::string("L") + std::to_string(layer);
}

std::string ToText(const StackOptions& options) {
  return "stack lowers=" + std::to_string(options.lowers) +
         " upper=" + (options.upper ? "1" : "0") + " index=" + (options.index ? "on" : "off") +
         " xattrs=" + (options.userxattr ? "user" : "trusted");
}

namespace {

std::string Octal(mode_t mode) {
  char text[16];
  snprintf(text, sizeof(text), "%04o", mode);
  return text;
}

const char* OriginName(OriginForm form) {
  switch (form) {
    case OriginForm::kValid:
      return "valid";
    case OriginForm::kForeignUuid:
      return "foreign-uuid";
    case OriginForm::kWrongType:
      return "wrong-type";
    case OriginForm::kTruncated:
      return "truncated";
    case OriginForm::kGarbage:
      return "garbage";
    case OriginForm::kEmpty:
      return "empty";
    case OriginForm::kOutside:
      return "outside";
  }
  return "?";
}

const char* IndexName(Entry::IndexForm form) {
  switch (form) {
    case Entry::IndexForm::kLinkUp:
      return "link-up";
    case Entry::IndexForm::kBadName:
      return "bad-name";
    case Entry::IndexForm::kSymlink:
      return "symlink";
    case Entry::IndexForm::kDirectory:
      return "directory";
    case Entry::IndexForm::kWhiteout:
      return "whiteout";
    case Entry::IndexForm::kOrphan:
      return "orphan";
  }
  return "?";
}

}  // namespace

std::string ToText(const Entry& e) {
  const std::string where = LayerName(e.layer) + " ";
  const std::string path = Printable(e.path);
  switch (e.kind) {
    case Entry::Kind::kDir:
      return where + "d " + path + " " + Octal(e.mode);
    case Entry::Kind::kFile:
      return where + "f " + path + " " + Octal(e.mode) + " " + Short(e.data);
    case Entry::Kind::kSymlink:
      return where + "l " + path + " -> " + Printable(e.data);
    case Entry::Kind::kHardlink:
      return where + "h " + path + " = " + Printable(e.data);
    case Entry::Kind::kWhiteout:
      return where + "w " + path;
    case Entry::Kind::kXattr:
      return where + "x " + path + " " + Printable(e.name) + " " + Short(e.data);
    case Entry::Kind::kOwner:
      return where + "own " + path + " " + std::to_string(e.uid) + ":" + std::to_string(e.gid);
    case Entry::Kind::kOrigin:
      return where + "origin " + path + " " + OriginName(e.origin) + " " + LayerName(e.ref_layer) +
             " " + Printable(e.ref_path);
    case Entry::Kind::kIndexEntry:
      return std::string("W index ") + IndexName(e.index) + " " + LayerName(e.ref_layer) + " " +
             Printable(e.ref_path) + (e.path.empty() ? "" : " upper " + path);
    case Entry::Kind::kWorkLink:
      return "W link work/" + path + " -> " + Printable(e.data);
  }
  return "?";
}

std::string OpName(Op::Kind kind) {
  switch (kind) {
    case Op::Kind::kRename:
      return "rename";
    case Op::Kind::kRenameNoReplace:
      return "rename-noreplace";
    case Op::Kind::kExchange:
      return "exchange";
    case Op::Kind::kChmod:
      return "chmod";
    case Op::Kind::kChown:
      return "chown";
    case Op::Kind::kAppend:
      return "append";
    case Op::Kind::kTruncate:
      return "truncate";
    case Op::Kind::kUnlink:
      return "unlink";
    case Op::Kind::kRmdir:
      return "rmdir";
    case Op::Kind::kMkdir:
      return "mkdir";
    case Op::Kind::kCreate:
      return "create";
    case Op::Kind::kLink:
      return "link";
    case Op::Kind::kSymlink:
      return "symlink";
    case Op::Kind::kSetXattr:
      return "setxattr";
    case Op::Kind::kRemoveXattr:
      return "removexattr";
    case Op::Kind::kMknodWhiteout:
      return "mknod-whiteout";
  }
  return "?";
}

std::string ToText(const Op& op) {
  std::string out = "op " + OpName(op.kind) + " " + Printable(op.path);
  switch (op.kind) {
    case Op::Kind::kRename:
    case Op::Kind::kRenameNoReplace:
    case Op::Kind::kExchange:
    case Op::Kind::kLink:
      return out + " " + Printable(op.path2);
    case Op::Kind::kSymlink:
      return out + " -> " + Printable(op.data);
    case Op::Kind::kChmod:
    case Op::Kind::kMkdir:
      return out + " " + Octal(op.mode);
    case Op::Kind::kChown:
      return out + " " + std::to_string(op.uid) + ":" + std::to_string(op.gid);
    case Op::Kind::kCreate:
      return out + " " + Octal(op.mode) + " " + Quote(op.data);
    case Op::Kind::kAppend:
      return out + " " + Quote(op.data);
    case Op::Kind::kTruncate:
      return out + " " + std::to_string(op.data.size());
    case Op::Kind::kSetXattr:
      return out + " " + Printable(op.name) + " " + Quote(op.data);
    case Op::Kind::kRemoveXattr:
      return out + " " + Printable(op.name);
    case Op::Kind::kUnlink:
    case Op::Kind::kRmdir:
    case Op::Kind::kMknodWhiteout:
      return out;
  }
  return out;
}

std::string ToText(const CaseSpec& spec) {
  std::string out = "# seed " + std::to_string(spec.seed) + " case " + std::to_string(spec.number) +
                    "\n" + ToText(spec.options) + "\n";
  for (const Entry& e : spec.entries) out += ToText(e) + "\n";
  for (const Op& op : spec.ops) out += ToText(op) + "\n";
  return out;
}

}  // namespace lamina::difffuzz
