// HugePageAllocator: memory for the large arrays that grow with the log, such as the
// usage ids' table and arena (usage_ids.h); allocate_huge_pages() also gives the
// memtables their entry blocks (engine/memtable.cc).
//
// A replay fills such arrays from nothing: tens of MiB for a few million usage events,
// every page touched for the first time, and each first touch is a page fault. The
// rebuild's profile had a fifth of its helper thread's samples in those faults and the
// zeroing around them. A block of kHugePageBytes or more is therefore mapped on its
// own (mmap), aligned to kHugePageBytes and, on Linux, marked for transparent huge
// pages (madvise MADV_HUGEPAGE): one fault per 2 MiB instead of one per 4 KiB, and,
// once freed, the block goes back to the kernel. Where the kernel does not give huge
// pages (transparent_hugepage set to "never", or none free), the block is ordinary
// memory and nothing else changes. Smaller blocks come from operator new as usual.
//
// Contract: a standard allocator (usable with std::vector); deallocate() must be given
// the size allocate() was, as the standard requires, since the size decides how the
// block was made. A large block may hold up to 2 MiB more in memory than asked for
// until it is freed: its last huge page, once touched, is whole. Large blocks are
// outside the heap, so AddressSanitizer does not watch their bounds.
#pragma once

#include <cstddef>

namespace tally {

inline constexpr size_t kHugePageBytes = size_t{2} << 20;

void* allocate_huge_pages(size_t bytes);              // throws std::bad_alloc
void deallocate_huge_pages(void* block, size_t bytes);  // bytes as given to allocate

template <typename T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}
  T* allocate(size_t n) { return static_cast<T*>(allocate_huge_pages(n * sizeof(T))); }
  void deallocate(T* block, size_t n) noexcept { deallocate_huge_pages(block, n * sizeof(T)); }
  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace tally
