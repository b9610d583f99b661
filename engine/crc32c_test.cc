#include "engine/crc32c.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace tally {
namespace {

std::string random_bytes(std::mt19937_64& random, size_t n) {
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(random());
  return out;
}

// RFC 3720 (iSCSI), appendix B.4, and the customary "123456789".
TEST(Crc32c, GivesTheStandardCheckValues) {
  std::string up(32, '\0'), down(32, '\0');
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<char>(i);
    down[i] = static_cast<char>(31 - i);
  }
  const std::vector<std::pair<std::string, uint32_t>> cases = {
      {std::string(32, '\0'), 0x8a9136aa}, {std::string(32, '\xff'), 0x62a8ab43}, {up, 0x46dd794e},
      {down, 0x113fdb5c},                  {"123456789", 0xe3069283},             {"", 0},
  };
  for (const auto& [bytes, expected] : cases) {
    EXPECT_EQ(crc32c_extend(0, bytes.data(), bytes.size()), expected) << bytes.size() << " bytes";
    EXPECT_EQ(crc32c_extend_table(0, bytes.data(), bytes.size()), expected) << bytes.size() << " bytes";
    EXPECT_EQ(rocksdb::crc32c::Extend(0, bytes.data(), bytes.size()), expected) << bytes.size() << " bytes";
  }
  EXPECT_TRUE(crc32c_self_check());
}

// Every length up to 80 from every alignment (the instruction's path handles the bytes
// before an 8-byte boundary and after the last word on its own), and a large buffer;
// and the same bytes given in two pieces.
TEST(Crc32c, TheInstructionAndTheTableAgree) {
  std::mt19937_64 random(20261206);
  const std::string bytes = random_bytes(random, (1 << 20) + 16);
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t n = 0; n <= 80; ++n) {
      const char* data = bytes.data() + offset;
      const uint32_t expected = crc32c_extend_table(0, data, n);
      ASSERT_EQ(crc32c_extend(0, data, n), expected) << "offset " << offset << " length " << n;
      for (size_t cut = 0; cut <= n; cut += 7) {
        ASSERT_EQ(crc32c_extend(crc32c_extend(0, data, cut), data + cut, n - cut), expected)
            << "offset " << offset << " length " << n << " cut " << cut;
      }
    }
  }
  EXPECT_EQ(crc32c_extend(0, bytes.data() + 3, 1 << 20), crc32c_extend_table(0, bytes.data() + 3, 1 << 20));
  EXPECT_NE(crc32c_extend(0, bytes.data(), 1 << 20), crc32c_extend(0, bytes.data() + 1, 1 << 20));
}

// Any one bit flipped in a record changes its CRC32C (the property that lets RocksDB
// find a damaged WAL record).
TEST(Crc32c, EverySingleBitFlipChangesTheValue) {
  std::mt19937_64 random(7);
  std::string bytes = random_bytes(random, 300);
  const uint32_t whole = crc32c_extend(0, bytes.data(), bytes.size());
  for (size_t byte = 0; byte < bytes.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      bytes[byte] = static_cast<char>(bytes[byte] ^ (1 << bit));
      ASSERT_NE(crc32c_extend(0, bytes.data(), bytes.size()), whole) << "byte " << byte << " bit " << bit;
      bytes[byte] = static_cast<char>(bytes[byte] ^ (1 << bit));
    }
  }
}

TEST(Crc32c, CombineGivesTheValueOfBothRuns) {
  std::mt19937_64 random(42);
  const std::string bytes = random_bytes(random, 70000);
  const std::vector<std::pair<size_t, size_t>> splits = {{0, 0}, {0, 9}, {9, 0}, {1, 1}, {5, 64}, {64, 5},
                                                         {1000, 3}, {3, 69997}, {35000, 35000}, {65536, 4464}};
  for (const auto& [first, second] : splits) {
    const uint32_t a = crc32c_extend(0, bytes.data(), first);
    const uint32_t b = crc32c_extend(0, bytes.data() + first, second);
    const uint32_t both = crc32c_extend(0, bytes.data(), first + second);
    EXPECT_EQ(crc32c_combine(a, b, second), both) << first << " + " << second;
    EXPECT_EQ(rocksdb::crc32c::Crc32cCombine(a, b, second), both) << first << " + " << second;
  }
}

// The linker took engine/crc32c.cc's functions for RocksDB's own (see crc32c.h): if
// RocksDB's object were linked instead, its description would not name tally.
TEST(Crc32c, RocksDbUsesThisOne) {
#if defined(__x86_64__)
  EXPECT_NE(rocksdb::crc32c::IsFastCrc32Supported().find("tally"), std::string::npos)
      << rocksdb::crc32c::IsFastCrc32Supported();
  EXPECT_EQ(crc32c_kind(), __builtin_cpu_supports("sse4.2") ? "sse4.2" : "table");
#else
  EXPECT_EQ(crc32c_kind(), "rocksdb");
#endif
}

}  // namespace
}  // namespace tally
