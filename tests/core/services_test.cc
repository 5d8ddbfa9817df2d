// The per-connection services: passthrough backing ids and notifications.

#include <sys/socket.h>
#include <unistd.h>

#include "core/backing_registry.h"
#include "core/notifier.h"
#include "gtest/gtest.h"
#include "tests/core/fake_kernel.h"
#include "tests/core/recording_filesystem.h"

namespace lamina::testing {
namespace {

class BackingRegistryTest : public ::testing::Test {
 protected:
  FakeKernel kernel_;
  SocketTransport transport_{kernel_.TakeServerFd()};
  BackingRegistry registry_{transport_};
};

TEST_F(BackingRegistryTest, SharesOneIdPerKeyAndClosesWithTheLast) {
  transport_.set_backing_supported(true);
  Result<int> first = registry_.Acquire(100, STDIN_FILENO);
  ASSERT_TRUE(first.ok());
  EXPECT_GT(*first, 0);
  Result<int> shared = registry_.Acquire(100, STDIN_FILENO);
  ASSERT_TRUE(shared.ok());
  EXPECT_EQ(*shared, *first);
  EXPECT_EQ(transport_.open_backing_count(), 1) << "one registration for both opens";

  Result<int> other = registry_.Acquire(200, STDIN_FILENO);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(*other, *first);
  EXPECT_EQ(registry_.size(), 2U);
  EXPECT_EQ(registry_.Find(100), *first);

  registry_.Release(100);
  EXPECT_EQ(transport_.open_backing_count(), 2);
  registry_.Release(100);
  EXPECT_EQ(transport_.open_backing_count(), 1);
  EXPECT_EQ(registry_.Find(100), 0);
  registry_.Release(100);  // unbalanced: ignored
  registry_.Release(200);
  EXPECT_EQ(transport_.open_backing_count(), 0);
  EXPECT_EQ(registry_.size(), 0U);
  EXPECT_TRUE(registry_.available());
}

TEST_F(BackingRegistryTest, RefusalMakesItUnavailable) {
  Result<int> refused = registry_.Acquire(1, STDIN_FILENO);
  EXPECT_EQ(refused.error(), EPERM);
  EXPECT_FALSE(registry_.available());
  // From now on the filesystem is told up front, without asking the kernel.
  transport_.set_backing_supported(true);
  EXPECT_EQ(registry_.Acquire(2, STDIN_FILENO).error(), EOPNOTSUPP);
  EXPECT_EQ(transport_.open_backing_count(), 0);
}

TEST_F(BackingRegistryTest, BadDescriptorDoesNotDisable) {
  transport_.set_backing_supported(true);
  EXPECT_EQ(registry_.Acquire(1, -1).error(), EBADF);
  EXPECT_TRUE(registry_.available());
  EXPECT_TRUE(registry_.Acquire(1, STDIN_FILENO).ok());
  registry_.Release(1);
}

class NotifierTest : public ::testing::Test {
 protected:
  Notifier& notifier() { return harness_.session().notifier(); }

  // The next message must be a notification with `code` and this payload.
  void ExpectNotification(int32_t code, const std::string& payload) {
    std::optional<Reply> message = harness_.kernel().Receive();
    ASSERT_TRUE(message.has_value()) << "no notification " << code;
    EXPECT_EQ(message->header.unique, 0U);
    EXPECT_EQ(message->header.error, code);
    EXPECT_EQ(message->payload, payload);
  }

  RecordingFilesystem fs_;
  SessionHarness harness_{fs_};
};

TEST_F(NotifierTest, NotificationsReachTheKernel) {
  // EXPIRE_ONLY is opt-in: only a filesystem that asks for it gets it.
  fs_.on_init = [](InitConfig& config) { config.want |= abi::kHasExpireOnly; };
  harness_.StartAndInit(45, kAllKernelFlags);
  notifier().InvalidateInode(5, 0, -1);
  ExpectNotification(abi::kNotifyInvalInode, Bytes(abi::NotifyInvalInodeOut{5, 0, -1}));

  notifier().InvalidateEntry(1, "name", /*expire_only=*/true);
  ExpectNotification(abi::kNotifyInvalEntry,
                     Args(abi::NotifyInvalEntryOut{1, 4, abi::kExpireOnly}, Name("name")));

  notifier().Delete(1, 9, "gone");
  ExpectNotification(abi::kNotifyDelete, Args(abi::NotifyDeleteOut{1, 9, 4, 0}, Name("gone")));

  std::vector<NodeId> nodes = {7, 8};
  notifier().Prune(nodes);
  ExpectNotification(abi::kNotifyPrune,
                     Args(abi::NotifyPruneOut{2, 0, 0}, uint64_t{7}, uint64_t{8}));

  notifier().IncrementEpoch();
  ExpectNotification(abi::kNotifyIncEpoch, "");
  notifier().Drain();
  EXPECT_EQ(notifier().sent(), 5U);
  EXPECT_EQ(notifier().failed(), 0U);
}

TEST_F(NotifierTest, NewerNotificationsSkippedOnOlderKernels) {
  // 7.40 knows neither PRUNE (7.45) nor INC_EPOCH (7.44), nor EXPIRE_ONLY.
  fs_.on_init = [](InitConfig& config) { config.want |= abi::kHasExpireOnly; };
  harness_.StartAndInit(40, kAllKernelFlags & ~abi::kHasExpireOnly);
  std::vector<NodeId> nodes = {7};
  notifier().Prune(nodes);
  notifier().IncrementEpoch();
  notifier().InvalidateEntry(1, "n", /*expire_only=*/true);
  ExpectNotification(abi::kNotifyInvalEntry, Args(abi::NotifyInvalEntryOut{1, 1, 0}, Name("n")));
  notifier().Drain();
  EXPECT_EQ(notifier().sent(), 1U);
}

TEST_F(NotifierTest, InvalidateInodeDefaultsToAllData) {
  harness_.StartAndInit();
  notifier().InvalidateInode(3);
  ExpectNotification(abi::kNotifyInvalInode, Bytes(abi::NotifyInvalInodeOut{3, 0, 0}));
  // Notifications are not replies: the next reply still belongs to its request.
  harness_.kernel().ExpectNextReplyIsFor(abi::kGetattr, Bytes(abi::GetattrIn{}));
}

}  // namespace
}  // namespace lamina::testing
