// Opening an object without moving its access time.
//
// A mount made noatime promises that reads through it never move access
// times; so does an overlay for its lower layers, always (the kernel mounts
// its lowers noatime and opens every real file O_NOATIME). Reads through a
// descriptor opened with O_NOATIME leave the file's atime alone, and with
// FUSE passthrough the kernel reopens the backing file with that
// descriptor's flags, so the promise holds on both paths.

#ifndef LAMINA_PASSTHROUGH_ACCESS_TIMES_H_
#define LAMINA_PASSTHROUGH_ACCESS_TIMES_H_

namespace lamina::passthrough {

// openat(dir_fd, path, flags | O_NOATIME), retried without O_NOATIME where
// the kernel refuses it (EPERM: the daemon neither owns the file nor holds
// CAP_FOWNER; its reads then move the atime as anyone's would).
int OpenatWithoutAtime(int dir_fd, const char* path, int flags);

}  // namespace lamina::passthrough

#endif  // LAMINA_PASSTHROUGH_ACCESS_TIMES_H_
