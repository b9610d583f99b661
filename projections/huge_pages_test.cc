#include "projections/huge_pages.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace tally {
namespace {

// Whether the kernel gives huge pages is its own affair (transparent_hugepage may be
// "never"); what the allocator promises is the alignment that lets it, and memory that
// works as any other.
TEST(HugePageAllocator, ABlockOfAHugePageOrMoreIsAlignedToOneAndUsable) {
  for (const size_t bytes : {size_t{1}, size_t{4096}, kHugePageBytes - 1, kHugePageBytes, 3 * kHugePageBytes + 17}) {
    char* block = HugePageAllocator<char>().allocate(bytes);
    ASSERT_NE(block, nullptr);
    if (bytes >= kHugePageBytes) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(block) % kHugePageBytes, 0u) << bytes << " bytes";
    }
    std::memset(block, 0x5a, bytes);
    EXPECT_EQ(block[bytes - 1], 0x5a);
    HugePageAllocator<char>().deallocate(block, bytes);
  }
}

TEST(HugePageAllocator, AVectorGrowsThroughTheThresholdAndKeepsItsContents) {
  std::vector<uint64_t, HugePageAllocator<uint64_t>> values;
  const size_t count = 3 * kHugePageBytes / sizeof(uint64_t);
  for (uint64_t i = 0; i < count; ++i) values.push_back(i * 7);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(values.data()) % kHugePageBytes, 0u);
  for (uint64_t i = 0; i < count; i += 4099) ASSERT_EQ(values[i], i * 7);
  EXPECT_EQ(values.back(), (count - 1) * 7);
}

}  // namespace
}  // namespace tally
