// What the daemon's credentials allow on the layers, decided the way the
// kernel decides it for an overlay mounted with the same credentials:
// trusted.* xattrs and decoding file handles both need capabilities in the
// initial user namespace, which a non-root user and the root of a user
// namespace (`unshare -Ur`, rootless containers) lack.

#ifndef LAMINA_OVERLAY_PRIVILEGE_H_
#define LAMINA_OVERLAY_PRIVILEGE_H_

namespace lamina::overlay {

// Whether this process lives in the initial user namespace (its uid_map is
// the identity over the whole id space).
bool InInitialUserNamespace();

// Whether the effective capability set holds `cap` (a CAP_* number) and it
// counts for the host: the process is in the initial user namespace.
bool HasHostCapability(int cap);

// trusted.overlay.* needs CAP_SYS_ADMIN on the host; otherwise the private
// namespace is user.overlay.*, the kernel's `userxattr`.
bool MayUseTrustedXattrs();

// open_by_handle_at needs CAP_DAC_READ_SEARCH on the host. Without it the
// kernel records an empty origin at copy-up (it could never decode one).
bool MayDecodeFileHandles();

}  // namespace lamina::overlay

#endif  // LAMINA_OVERLAY_PRIVILEGE_H_
