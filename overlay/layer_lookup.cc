#include "overlay/layer_lookup.h"

#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include "overlay/layer_warnings.h"

namespace lamina::overlay {

void LayerObjects::Release() {
  if (upper_fd >= 0) close(upper_fd);
  for (const LowerRef& lower : lowers) {
    if (lower.fd >= 0) close(lower.fd);
  }
  upper_fd = -1;
  lowers.clear();
}

// The state of one lookup as it goes down the layers (the kernel's
// ovl_lookup_data).
struct LayerLookup::Walk {
  // The name looked up in the parent's lower directories or, once a
  // redirect says so, a path from the layer roots ("/a/b").
  std::string name;
  bool is_dir = false;         // a directory was found: only directories merge below it
  bool stop = false;           // the layers below this one are not looked at
  bool whiteout = false;       // the walk stopped at a whiteout object
  bool redirect_read = false;  // the current layer's object recorded a redirect
  std::string redirect;        // that record, as read
  bool oci = true;             // OCI whiteouts are looked for

  bool absolute() const { return !name.empty() && name[0] == '/'; }
};

Result<int> LayerLookup::LookupOne(Walk& walk, const Layer& layer, int base_fd,
                                   std::string_view component, size_t prefix, std::string_view rest,
                                   bool last_layer, DirMarks* marks) const {
  const bool last_element = rest.empty();
  // What the kernel's one-name lookup refuses; only a redirect brings it.
  if (component.empty() || component == "." || component == "..") {
    WarnAboutLayer("redirect to \"%s\" leads to \"%s\": refused", Printable(walk.name),
                   Printable(component));
    return Errno{EACCES};
  }
  if (component.size() > NAME_MAX) return -1;  // no layer holds it
  const std::string name(component);
  struct stat st;
  if (fstatat(base_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) return LastErrno();
    // OCI: ".wh.NAME" alone hides NAME in the layers below.
    if (walk.oci && HasOciWhiteout(base_fd, name)) walk.stop = true;
    return -1;
  }
  if (IsWhiteout(layers_, base_fd, name, st)) {
    walk.stop = walk.whiteout = true;
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) {
    // Below a directory, or on the way to a path: it hides what follows.
    if (walk.is_dir || !last_element) {
      walk.stop = true;
      return -1;
    }
    if (S_ISREG(st.st_mode)) {
      Result<void> data = CheckNotMetacopy(layers_, base_fd, name);
      if (!data.ok()) return Errno{data.error()};
    }
    walk.stop = true;
    return OpenPathAt(base_fd, name);
  }
  Result<int> fd = OpenPathAt(base_fd, name);
  if (!fd.ok()) return fd;
  if (last_element) walk.is_dir = true;
  // The upper's marks also say how to list it (its xattr whiteouts); a
  // lower directory's matter only if something lies below it.
  if (last_layer && !layer.upper) return fd;
  DirMarks found = ReadDirMarks(layers_, *fd, layer.upper);
  // OCI: ".wh.NAME" beside NAME hides the layers below, not NAME.
  if (!found.opaque && walk.oci && HasOciWhiteout(base_fd, name)) found.opaque = true;
  if (marks != nullptr) *marks = found;
  if (last_layer) {
    if (marks != nullptr) marks->opaque = marks->redirected = false;
    return fd;
  }
  if (found.opaque) {
    // On the way to a path, only the layers below stop: the walk goes on in
    // this one, where an absolute redirect may resume it.
    walk.stop = true;
    return fd;
  }
  if (!found.redirected) return fd;
  Result<std::optional<std::string>> redirect = ReadRedirect(layers_, *fd);
  if (!redirect.ok()) {
    close(*fd);
    return Errno{redirect.error()};
  }
  if (!redirect->has_value()) return fd;
  const std::string& to = **redirect;
  walk.redirect_read = true;
  walk.redirect = to;
  if (!to.empty() && to[0] == '/') {
    walk.stop = false;
    walk.name = to + std::string(rest);
  } else {
    walk.name = walk.name.substr(0, prefix) + to + std::string(rest);
  }
  return fd;
}

Result<int> LayerLookup::LookupInLayer(Walk& walk, const Layer& layer, int dir_fd, bool last_layer,
                                       DirMarks* marks) const {
  if (!walk.absolute()) return LookupOne(walk, layer, dir_fd, walk.name, 0, "", last_layer, marks);
  // From the layer's root, one component at a time. A redirect on the way
  // rewrites the name before the rest, so the rest is counted from the end.
  int base = layer.fd;
  bool owned = false;
  size_t rest_size = walk.name.size() - 1;  // after the leading '/'
  for (;;) {
    const size_t start = walk.name.size() - rest_size;
    const size_t end = std::min(walk.name.find('/', start), walk.name.size());
    const std::string component = walk.name.substr(start, end - start);
    const std::string rest = walk.name.substr(end);
    Result<int> found = LookupOne(walk, layer, base, component, start, rest, last_layer,
                                  rest.empty() ? marks : nullptr);
    if (owned) close(base);
    if (!found.ok() || *found < 0 || rest.empty()) return found;
    base = *found;
    owned = true;
    rest_size = rest.size() - 1;
  }
}

Result<LayerObjects> LayerLookup::Find(const ParentDir& parent, std::string_view name,
                                       bool* upper_whiteout, int first_layer) const {
  const bool has_lowers = parent.lowers != nullptr && !parent.lowers->empty();
  LayerObjects r;
  Walk walk;
  walk.name = std::string(name);
  auto refuse_redirect = [&] {
    WarnAboutLayer("refusing to follow redirect for \"%s\" (redirect_dir=nofollow)",
                   Printable(name));
    r.Release();
    return Errno{EPERM};
  };
  if (parent.upper_fd >= 0 && first_layer == 0) {
    // (Without merged lowers an OCI marker hides nothing: a new
    // directory's lookups of new names cost one stat.)
    walk.oci = has_lowers;
    const bool last = follow_ ? false : !has_lowers;
    DirMarks marks;
    Result<int> fd = LookupOne(walk, layers_.upper(), parent.upper_fd, name, 0, "", last, &marks);
    walk.oci = true;
    if (!fd.ok()) return Errno{fd.error()};
    if (*fd >= 0) {
      r.upper_fd = *fd;
      if (fstat(r.upper_fd, &r.top) != 0) {
        Result<LayerObjects> error = LastErrno();
        r.Release();
        return error;
      }
      r.type = r.top.st_mode & S_IFMT;
      if (S_ISDIR(r.type)) {
        r.upper_marks = marks;
        if (walk.redirect_read) r.upper_redirect = walk.redirect;
      }
      if (walk.redirect_read && !follow_) return refuse_redirect();
    } else if (walk.stop) {
      if (upper_whiteout != nullptr) *upper_whiteout = walk.whiteout;
      return Errno{ENOENT};
    }
  }

  // The lower layers: the parent's lower directories, or once the name is
  // a path from the roots, every lower layer below the last one looked at.
  const int bottom = static_cast<int>(layers_.layers().size()) - 1;
  int visited = layers_.has_upper() ? 0 : -1;
  size_t next = 0;  // in parent.lowers
  bool from_roots = walk.absolute();
  while (!walk.stop) {
    const Layer* layer;
    int dir_fd;
    bool last;
    if (!from_roots) {
      if (!has_lowers || next >= parent.lowers->size()) break;
      const LowerRef& ref = (*parent.lowers)[next++];
      if (ref.layer < first_layer) continue;
      layer = &layers_.layer(ref.layer);
      dir_fd = ref.fd;
      last = follow_ ? ref.layer == bottom : next == parent.lowers->size();
    } else {
      if (visited >= bottom) break;
      layer = &layers_.layer(visited + 1);
      dir_fd = layer->fd;
      last = layer->index == bottom;
    }
    visited = layer->index;
    walk.redirect_read = false;
    DirMarks marks;
    Result<int> fd = LookupInLayer(walk, *layer, dir_fd, last, &marks);
    if (!fd.ok()) {
      r.Release();
      return Errno{fd.error()};
    }
    if (*fd < 0) continue;
    if (r.upper_fd < 0 && r.lowers.empty()) {
      if (fstat(*fd, &r.top) != 0) {
        Result<LayerObjects> error = LastErrno();
        close(*fd);
        r.Release();
        return error;
      }
      r.type = r.top.st_mode & S_IFMT;
    }
    r.lowers.push_back(LowerRef{layer->index, *fd, S_ISDIR(r.type) ? marks : DirMarks{}});
    if (walk.redirect_read && !follow_) return refuse_redirect();
    if (walk.absolute()) from_roots = true;
  }
  if (r.upper_fd < 0 && r.lowers.empty()) return Errno{ENOENT};
  return r;
}

bool LayerLookup::ExistsBelow(const ParentDir& parent, std::string_view name) const {
  if (parent.lowers == nullptr) return false;
  const std::string file(name);
  for (const LowerRef& lower : *parent.lowers) {
    struct stat st;
    if (fstatat(lower.fd, file.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      // Something may be there that the daemon cannot see: assume it is.
      if (errno != ENOENT && errno != ENAMETOOLONG) return true;
      if (HasOciWhiteout(lower.fd, file)) return false;
      continue;
    }
    return !IsWhiteout(layers_, lower.fd, file, st);
  }
  return false;
}

}  // namespace lamina::overlay
