#include "projections/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>
#include <new>

namespace tally {
namespace {

size_t round_up(size_t bytes, size_t to) { return (bytes + to - 1) / to * to; }

}  // namespace

// A large block is mapped on its own rather than taken from the heap: the heap would
// place a 2 MiB-aligned block inside a larger one and keep the slack on either side,
// and keep a freed table (UsageIds drops its old one at every growth) resident. A
// daemon given 10M usage events peaked 112 MiB higher that way (bench/RESULTS.md,
// "Runs 34-35"); mapped, a freed block goes back to the kernel.
void* allocate_huge_pages(size_t bytes) {
  if (bytes < kHugePageBytes) return ::operator new(bytes);
  const size_t length = round_up(bytes, kHugePageBytes);
  // Map a huge page more than needed, then unmap what lies before the first 2 MiB
  // boundary and after the block.
  void* mapped = mmap(nullptr, length + kHugePageBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) throw std::bad_alloc();
  const auto start = reinterpret_cast<uintptr_t>(mapped);
  const uintptr_t aligned = round_up(start, kHugePageBytes);
  if (aligned > start) munmap(mapped, aligned - start);
  const uintptr_t end = start + length + kHugePageBytes;
  if (end > aligned + length) munmap(reinterpret_cast<void*>(aligned + length), end - (aligned + length));
  void* block = reinterpret_cast<void*>(aligned);
#ifdef MADV_HUGEPAGE
  // A hint: where it fails (no transparent huge pages), the block is ordinary memory.
  (void)madvise(block, length, MADV_HUGEPAGE);
#endif
  return block;
}

void deallocate_huge_pages(void* block, size_t bytes) {
  if (bytes < kHugePageBytes) {
    ::operator delete(block);
  } else {
    munmap(block, round_up(bytes, kHugePageBytes));
  }
}

}  // namespace tally
