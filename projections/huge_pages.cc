#include "projections/huge_pages.h"

#include <sys/mman.h>

#include <new>

namespace tally {

void* allocate_huge_pages(size_t bytes) {
  if (bytes < kHugePageBytes) return ::operator new(bytes);
  void* block = ::operator new(bytes, std::align_val_t{kHugePageBytes});
#ifdef MADV_HUGEPAGE
  // A hint: where it fails (no transparent huge pages), the block is ordinary memory.
  (void)madvise(block, bytes, MADV_HUGEPAGE);
#endif
  return block;
}

void deallocate_huge_pages(void* block, size_t bytes) {
  if (bytes < kHugePageBytes) {
    ::operator delete(block);
  } else {
    ::operator delete(block, std::align_val_t{kHugePageBytes});
  }
}

}  // namespace tally
