#include "engine/allocator.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace tally {

bool tune_allocator_for_batches() {
#if defined(__GLIBC__)
  // Setting either threshold turns off glibc's own adjustment of both, so set both.
  return mallopt(M_MMAP_THRESHOLD, static_cast<int>(kMmapThresholdBytes)) == 1 &&
         mallopt(M_TRIM_THRESHOLD, static_cast<int>(kTrimThresholdBytes)) == 1;
#else
  return false;
#endif
}

}  // namespace tally
