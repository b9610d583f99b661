#include "engine/allocator.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

// The sanitizers bring their own allocator, which takes no mallopt settings.
#if defined(__SANITIZE_ADDRESS__)
#define TALLY_OWN_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TALLY_OWN_ALLOCATOR 1
#endif
#endif

namespace tally {
namespace {

TEST(Allocator, ASegmentSizedBufferComesFromTheHeapOnceTuned) {
#if !defined(__GLIBC__) || defined(TALLY_OWN_ALLOCATOR)
  GTEST_SKIP() << "glibc's own allocator only";
#else
  ASSERT_TRUE(tune_allocator_for_batches());
  // A segment of 8,192 records of about 500 bytes: under glibc's default it would be
  // mapped on its own, and each batch would fault its pages in afresh.
  constexpr size_t kSegmentBytes = size_t{4} << 20;
  static_assert(kSegmentBytes < kMmapThresholdBytes && kMmapThresholdBytes < kTrimThresholdBytes);
  const size_t mapped_before = mallinfo2().hblks;
  void* segment = std::malloc(kSegmentBytes);
  ASSERT_NE(segment, nullptr);
  std::memset(segment, 1, kSegmentBytes);
  EXPECT_EQ(mallinfo2().hblks, mapped_before);
  std::free(segment);
  // Past the threshold a buffer is still mapped on its own.
  void* large = std::malloc(2 * kMmapThresholdBytes);
  ASSERT_NE(large, nullptr);
  EXPECT_EQ(mallinfo2().hblks, mapped_before + 1);
  std::free(large);
#endif
}

}  // namespace
}  // namespace tally
