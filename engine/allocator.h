// The C library's allocator, set for a process that runs Tally. Call it once, first
// thing in main(); the library itself never calls it, so a program that embeds Tally
// keeps its own allocator settings unless it asks for these.
//
// Tally works with buffers of megabytes that come and go with every batch: a log
// segment holds up to 8,192 records, RocksDB decompresses each segment into a block of
// its own to read it back, and a write batch carries each segment to disk. By default
// glibc gives such buffers back to the kernel as soon as they are freed (a buffer over
// its mmap threshold is unmapped; free memory at the top of the heap is trimmed once it
// passes the trim threshold), so the next batch faults the same pages in again. On the
// 2M-event rebuild that was about 11,000 of 47,000 page faults.
//
// Contract:
//   - Buffers up to kMmapThresholdBytes come from the heap, and the heap keeps up to
//     kTrimThresholdBytes free at its top for the next batch. Larger buffers are still
//     mapped and unmapped on their own.
//   - Returns false if the C library is not glibc or refused a setting; the process
//     then runs as it would have, only slower.
#pragma once

#include <cstddef>

namespace tally {

inline constexpr size_t kMmapThresholdBytes = size_t{32} << 20;
inline constexpr size_t kTrimThresholdBytes = size_t{64} << 20;

bool tune_allocator_for_batches();

}  // namespace tally
