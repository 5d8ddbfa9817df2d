// MemoryFilesystem: a small in-memory filesystem served by Lamina's core.
//
// The example for library users and the fixture for the core's mounted
// tests: regular files, directories, symlinks, rename, hard links and
// attributes, all under one lock. It is deliberately simple, not fast.

#ifndef LAMINA_CORE_EXAMPLES_MEMORY_FILESYSTEM_H_
#define LAMINA_CORE_EXAMPLES_MEMORY_FILESYSTEM_H_

#include <map>
#include <memory>
#include <string>

#include <mutex>
#include <shared_mutex>
#include "core/filesystem.h"
#include "core/inode_table.h"

namespace lamina::examples {

class MemoryFilesystem : public Filesystem {
 public:
  MemoryFilesystem();

  // Adds a file (and missing parent directories) before mounting.
  void AddFile(const std::string& path, const std::string& contents);

  Result<Entry> Lookup(const Ctx&, NodeId parent, std::string_view name) override;
  void Forget(NodeId node, uint64_t nlookup) override;
  Result<Attributes> GetAttr(const Ctx&, NodeId node, std::optional<uint64_t> fh) override;
  Result<Attributes> SetAttr(const Ctx&, NodeId node, const SetAttrRequest& req) override;
  Result<std::string> ReadLink(const Ctx&, NodeId node) override;
  Result<struct statvfs> StatFs(const Ctx&, NodeId node) override;
  Result<Entry> Mknod(const Ctx&, NodeId parent, std::string_view name, mode_t mode,
                      dev_t rdev) override;
  Result<Entry> Mkdir(const Ctx&, NodeId parent, std::string_view name, mode_t mode) override;
  Result<Entry> Symlink(const Ctx&, NodeId parent, std::string_view name,
                        std::string_view target) override;
  Result<Entry> Link(const Ctx&, NodeId node, NodeId new_parent,
                     std::string_view new_name) override;
  Result<void> Unlink(const Ctx&, NodeId parent, std::string_view name) override;
  Result<void> Rmdir(const Ctx&, NodeId parent, std::string_view name) override;
  Result<void> Rename(const Ctx&, NodeId parent, std::string_view name, NodeId new_parent,
                      std::string_view new_name, uint32_t flags) override;
  Result<CreateReply> Create(const Ctx&, NodeId parent, std::string_view name, mode_t mode,
                             const OpenRequest& req) override;
  Result<OpenReply> Open(const Ctx&, NodeId node, const OpenRequest& req) override;
  Result<size_t> Read(const Ctx&, NodeId node, uint64_t fh, uint64_t offset,
                      std::span<std::byte> out) override;
  Result<size_t> Write(const Ctx&, NodeId node, const WriteRequest& req) override;
  Result<void> Flush(const Ctx&, NodeId, uint64_t, uint64_t) override { return Ok(); }
  Result<void> Fsync(const Ctx&, NodeId, uint64_t, bool) override { return Ok(); }
  Result<OpenReply> OpenDir(const Ctx&, NodeId node, int flags) override;
  Result<void> ReadDir(const Ctx&, NodeId node, uint64_t fh, uint64_t offset,
                       DirentWriter& out) override;

  // Nodes the kernel currently holds references on (for tests).
  size_t referenced_nodes() const { return table_.size(); }

 private:
  struct Node {
    struct stat attr {};
    std::string data;  // file contents or symlink target
    std::map<std::string, std::shared_ptr<Node>, std::less<>> children;
  };

  std::shared_ptr<Node> NewNode(const Ctx& ctx, mode_t mode) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<Node> Dir(NodeId id) const;
  Entry EntryFor(NodeId id, const Node& node) const;
  Result<Entry> Insert(const Ctx& ctx, NodeId parent, std::string_view name,
                       std::shared_ptr<Node> node) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Result<void> Remove(NodeId parent, std::string_view name, bool directory);

  mutable std::mutex mu_;
  ino_t next_ino_ ABSL_GUARDED_BY(mu_) = 2;
  InodeTable<ino_t, Node> table_;
};

}  // namespace lamina::examples

#endif  // LAMINA_CORE_EXAMPLES_MEMORY_FILESYSTEM_H_
