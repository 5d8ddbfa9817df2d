#include "core/dirent_writer.h"

#include <dirent.h>

#include <array>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace lamina {
namespace {

template <typename T>
T RecordAt(std::span<const std::byte> data, size_t offset) {
  T value{};
  std::memcpy(&value, data.data() + offset, sizeof(T));
  return value;
}

TEST(DirentWriterTest, PlainRecordsAreAlignedToEightBytes) {
  std::vector<std::byte> buffer(4096, std::byte{0xff});
  DirentWriter writer(buffer, /*plus=*/false);
  EXPECT_TRUE(writer.empty());
  ASSERT_TRUE(writer.Add("a", 10, DT_REG, 1));
  EXPECT_EQ(writer.size(), 32U);  // 24 + 1, padded
  ASSERT_TRUE(writer.Add("abcdefgh", 11, DT_DIR, 2));
  EXPECT_EQ(writer.size(), 64U);  // 24 + 8 needs no padding
  ASSERT_TRUE(writer.Add("abcdefghi", 12, DT_LNK, 3));
  EXPECT_EQ(writer.size(), 104U);  // 24 + 9 -> 40

  auto first = RecordAt<abi::Dirent>(writer.data(), 0);
  EXPECT_EQ(first.ino, 10U);
  EXPECT_EQ(first.off, 1U);
  EXPECT_EQ(first.namelen, 1U);
  EXPECT_EQ(first.type, static_cast<uint32_t>(DT_REG));
  // The name, then zero padding (not the buffer's old 0xff bytes).
  EXPECT_EQ(static_cast<char>(writer.data()[24]), 'a');
  for (size_t i = 25; i < 32; ++i) EXPECT_EQ(writer.data()[i], std::byte{0}) << i;
  auto third = RecordAt<abi::Dirent>(writer.data(), 64);
  EXPECT_EQ(third.namelen, 9U);
  EXPECT_EQ(third.type, static_cast<uint32_t>(DT_LNK));
}

TEST(DirentWriterTest, RefusesWhatDoesNotFit) {
  std::array<std::byte, 70> buffer{};
  DirentWriter writer(buffer, /*plus=*/false);
  EXPECT_TRUE(writer.Add("one", 1, DT_REG, 1));
  EXPECT_TRUE(writer.Add("two", 2, DT_REG, 2));
  EXPECT_FALSE(writer.Fits("three"));
  EXPECT_FALSE(writer.Add("three", 3, DT_REG, 3));
  EXPECT_EQ(writer.size(), 64U) << "a refused record leaves nothing behind";
  EXPECT_FALSE(writer.Add("", 4, DT_REG, 4)) << "empty names are never written";
  EXPECT_FALSE(writer.AddPlus("x", Entry{}, 5)) << "AddPlus needs plus mode";
}

TEST(DirentWriterTest, PlusRecordsCarryEntries) {
  std::vector<std::byte> buffer(1024);
  DirentWriter writer(buffer, /*plus=*/true);
  EXPECT_TRUE(writer.plus());
  ASSERT_TRUE(writer.Add(".", 1, DT_DIR, 1));
  EXPECT_EQ(writer.size(), 160U);  // 152 + 1, padded
  Entry entry;
  entry.node = 9;
  entry.generation = 3;
  entry.attr.st_ino = 900;
  entry.attr.st_mode = S_IFLNK | 0777;
  entry.entry_timeout = 0.5;
  ASSERT_TRUE(writer.AddPlus("link", entry, 2));
  EXPECT_EQ(writer.size(), 320U);  // 152 + 4, padded

  auto dot = RecordAt<abi::Direntplus>(writer.data(), 0);
  EXPECT_EQ(dot.entry_out.nodeid, 0U) << "'.' must not count as a lookup";
  EXPECT_EQ(dot.dirent.ino, 1U);
  EXPECT_EQ(dot.dirent.type, static_cast<uint32_t>(DT_DIR));
  EXPECT_EQ(dot.entry_out.attr.mode & S_IFMT, static_cast<uint32_t>(S_IFDIR));
  auto link = RecordAt<abi::Direntplus>(writer.data(), 160);
  EXPECT_EQ(link.entry_out.nodeid, 9U);
  EXPECT_EQ(link.entry_out.generation, 3U);
  EXPECT_EQ(link.entry_out.entry_valid_nsec, 500000000U);
  EXPECT_EQ(link.dirent.ino, 900U);
  EXPECT_EQ(link.dirent.off, 2U);
  EXPECT_EQ(link.dirent.type, static_cast<uint32_t>(DT_LNK));
  EXPECT_EQ(std::memcmp(writer.data().data() + 160 + sizeof(abi::Direntplus), "link", 4), 0);

  // 320 + 160 fits in 480 bytes, then nothing more.
  DirentWriter small(std::span<std::byte>(buffer).first(480), /*plus=*/true);
  EXPECT_TRUE(small.Add("a", 1, DT_REG, 1));
  EXPECT_TRUE(small.Add("b", 1, DT_REG, 2));
  EXPECT_TRUE(small.Add("c", 1, DT_REG, 3));
  EXPECT_FALSE(small.Fits("d"));
  EXPECT_FALSE(small.AddPlus("d", entry, 4));
}

}  // namespace
}  // namespace lamina
