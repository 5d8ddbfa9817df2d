// Notifier: cache invalidations sent from the server to the kernel.
//
// Notifications are queued and written by one background thread. That makes
// them safe to post from anywhere, including from inside a request handler:
// the kernel may hold the very inode lock an invalidation needs until our
// reply to the current request arrives, so sending inline could deadlock.

#ifndef LAMINA_CORE_NOTIFIER_H_
#define LAMINA_CORE_NOTIFIER_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/fs_types.h"

namespace lamina {

class Connection;
class Transport;

class Notifier {
 public:
  Notifier(Transport& transport, const Connection& connection);
  ~Notifier();

  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // Drops the kernel's cached dentry `name` in `parent` (and its negative
  // entry). With `expire_only`, marks it stale instead of removing it.
  void InvalidateEntry(NodeId parent, std::string_view name, bool expire_only = false);
  // Drops cached attributes, and page-cache data in [offset, offset+len)
  // (len 0 means to the end; offset -1 means attributes only).
  void InvalidateInode(NodeId node, int64_t offset = 0, int64_t length = 0);
  // Drops the cached attributes of `node` before it returns, for a request
  // whose caller must see them changed once it is answered (an inode-flags
  // ioctl moves the ctime, and the kernel keeps what it cached). Unlike the
  // calls above it is safe inline: dropping attributes only takes no inode
  // lock in the kernel (fuse_reverse_inval_inode with a negative offset).
  void InvalidateAttributesNow(NodeId node);
  // Like InvalidateEntry, and also tells the kernel `child` is gone
  // (unhashes it even if in use, as a local unlink would).
  void Delete(NodeId parent, NodeId child, std::string_view name);
  // Asks the kernel to forget unused inodes (7.45+; ignored before). Used to
  // shed descriptors under pressure.
  void Prune(std::span<const NodeId> nodes);
  // Invalidates every cached dentry at once (7.44+; ignored before).
  void IncrementEpoch();

  // Blocks until everything posted so far has been written.
  void Drain();
  // Counters, for tests and stats.
  uint64_t sent() const;
  uint64_t failed() const;

 private:
  struct Message {
    int32_t code;
    std::string payload;  // the notification's struct(s) and trailing name
  };

  void Post(int32_t code, std::string payload);
  void Run();

  Transport& transport_;
  const Connection& connection_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<Message> queue_;  // guarded by mu_
  bool stopping_ = false;      // guarded by mu_
  bool busy_ = false;          // guarded by mu_
  uint64_t sent_ = 0;          // guarded by mu_
  uint64_t failed_ = 0;        // guarded by mu_
  std::thread thread_;
};

}  // namespace lamina

#endif  // LAMINA_CORE_NOTIFIER_H_
