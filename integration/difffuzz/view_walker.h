// What a user of a mounted overlay sees of it, as text to compare with
// another overlay: one line per object reached by listing directories from
// the root, one per probed path.
//
// Each line holds what both overlays must agree on: the path, the type,
// mode, owner, size and link count, whether st_ino and readdir's d_ino
// agree and which other names share the inode (as the first path walked
// that has it, since the two overlays' layers are different copies), whether
// st_dev is the root's, the contents of files, symlink targets and every
// extended attribute; and the errno where listing, lstat, reading or
// readlink fails. Times are left out: the two copies were made at
// different moments.
//
// The walker never follows a symlink, never opens anything but regular
// files and directories, and stays below the root (openat with O_NOFOLLOW
// from descriptors), so a hostile layer cannot send it elsewhere.

#ifndef LAMINA_INTEGRATION_DIFFFUZZ_VIEW_WALKER_H_
#define LAMINA_INTEGRATION_DIFFFUZZ_VIEW_WALKER_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace lamina::difffuzz {

struct View {
  // Sorted by path; the first field of each line is the path ("/" is the
  // root), quoted when it holds odd bytes.
  std::vector<std::string> lines;
};

// Walks the tree under `root` (at most `max_objects` objects and 80
// levels), then looks up each of `probes` (paths below the root, which
// may be missing) that the walk did not list: a name that resolves without
// being listed, or the reverse, is a difference too.
View DescribeView(const std::string& root, const std::vector<std::string>& probes,
                  size_t max_objects = 3000);

// The path a view line is about: its first field ("probe PATH" for a
// probe's line).
std::string ViewLineKey(const std::string& line);

// Both views' lines grouped by the path they are about: path -> (lines of
// `a`, lines of `b`), each group's lines joined with newlines.
std::map<std::string, std::pair<std::string, std::string>> PairViews(const View& a, const View& b);

// Empty when equal; else up to `max_paths` paths whose lines differ, each
// with both sides ("lamina: ...", "kernel: ..." with the given labels).
std::string DiffViews(const View& a, const View& b, const std::string& label_a,
                      const std::string& label_b, size_t max_paths = 6);

}  // namespace lamina::difffuzz

#endif  // LAMINA_INTEGRATION_DIFFFUZZ_VIEW_WALKER_H_
