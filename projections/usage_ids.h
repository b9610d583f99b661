// The usage ids one organization has recorded, for permanent idempotency: id -> the
// first recording's sequence number, content fingerprint and amount.
//
// It holds one entry per usage event ever recorded, so it is built for size: every
// entry is packed into an append-only arena of chunks (one length byte, the id's bytes,
// the 8-byte fingerprint, then seq and amount as LEB128 varints, the amount zigzagged;
// chunks grow from 4 KiB to 4 MiB, so an organization with few ids holds little), and
// an open-addressing table of 8-byte slots points into it (the top 28 bits of the id's
// hash above a 36-bit arena position). About 15 + id-length bytes of record and 9 to 18
// of table per id, against about 90 for a std::unordered_map<std::string, …> node and
// its bucket. Entries are never removed.
//
// A slot's home is the top bits of its id's hash, which the slot keeps: the table is in
// hash order, and growing it doubles every home, so the new table is written front to
// back from the old one read front to back, without reading a single id (up to 2^28
// slots; past that the ids are hashed again).
//
// Contract:
//   - find() and insert() compare ids byte for byte; the hash only narrows the search.
//   - A Handle names an entry for good: it stays valid while the index lives and is
//     not cleared (the arena never moves an entry).
//   - Ids are at most kIdBytesMax (255) bytes; insert() of a longer id is a caller bug.
//   - The records of one index take at most 64 GiB (2^36 bytes, some two billion ids,
//     far past what memory holds); insert() stops the process rather than go past.
//   - for_each() visits the entries in insertion order.
//   - Not thread-safe; like every projection it belongs to one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "projections/huge_pages.h"

namespace tally {

struct UsageRef {
  uint64_t seq = 0;
  uint64_t content_hash = 0;
  int64_t amount = 0;
  bool operator==(const UsageRef&) const = default;
};

class UsageIds {
 public:
  using Handle = uint64_t;  // an entry's position in the arena
  static constexpr size_t kIdBytesMax = 255;

  UsageIds() = default;
  UsageIds(UsageIds&&) noexcept = default;
  UsageIds& operator=(UsageIds&&) noexcept = default;
  UsageIds(const UsageIds&) = delete;
  UsageIds& operator=(const UsageIds&) = delete;

  std::optional<UsageRef> find(std::string_view id) const;
  bool contains(std::string_view id) const { return find(id).has_value(); }
  // Adds id -> ref unless id is there; returns the entry's handle and whether it was
  // added. An existing entry is left as it is.
  std::pair<Handle, bool> insert(std::string_view id, const UsageRef& ref);
  // Starts loading the slot where a lookup of `id` begins, and the next 64 bytes of
  // slots (a hint; changes nothing): a probe for an id not yet there runs on to an
  // empty slot, which in a table three quarters full is about eight slots on.
  void prefetch(std::string_view id) const;
  std::string_view id_at(Handle handle) const;
  UsageRef ref_at(Handle handle) const;
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void clear();
  // Bytes held by the table and the arena.
  size_t memory_bytes() const;

  // visit(Handle) for every entry, oldest first.
  template <typename Visit>
  void for_each(Visit&& visit) const {
    for (size_t chunk = 0; chunk < chunks_.size(); ++chunk) {
      const size_t used = chunk + 1 == chunks_.size() ? tail_used_ : chunk_used_[chunk];
      for (size_t at = 0; at < used;) {
        const Handle handle = (static_cast<Handle>(chunk) << kChunkBits) | at;
        visit(handle);
        at += record_size(handle);
      }
    }
  }

 private:
  static constexpr unsigned kChunkBits = 22;  // the largest arena chunk: 4 MiB
  static constexpr size_t kChunkBytes = size_t{1} << kChunkBits;
  static constexpr unsigned kFirstChunkBits = 12;
  static constexpr size_t chunk_capacity(size_t chunk) {
    return chunk + kFirstChunkBits >= kChunkBits ? kChunkBytes : size_t{1} << (kFirstChunkBits + chunk);
  }
  static constexpr size_t kRecordBytesMax = 1 + kIdBytesMax + 8 + 2 * 10;  // two varints of at most 10 bytes
  size_t record_size(Handle handle) const;

  const char* record(Handle handle) const { return chunks_[handle >> kChunkBits].get() + (handle & (kChunkBytes - 1)); }
  // The slot holding id, or the empty slot where it would go.
  size_t probe(std::string_view id, uint64_t hash) const;
  // Where the probe for the id of `slot` begins in a table of 2^bits slots.
  size_t home(uint64_t slot, unsigned bits) const;
  void grow();
  friend struct UsageIdsPeer;  // the tests' view of home()

  // A slot: 0 when empty, else the hash's top kHashBits bits, then handle + 1 in the
  // low kHandleBits.
  static constexpr unsigned kHandleBits = 36;
  static constexpr unsigned kHashBits = 64 - kHandleBits;
  static constexpr uint64_t kHandleMask = (uint64_t{1} << kHandleBits) - 1;
  static constexpr uint64_t kTagMask = ~kHandleMask;
  std::vector<uint64_t, HugePageAllocator<uint64_t>> slots_;
  unsigned bits_ = 0;  // slots_.size() == 2^bits_ when not empty
  // The arena's chunks, chunk_capacity(i) bytes each, from HugePageAllocator.
  struct FreeChunk {
    size_t bytes;
    void operator()(char* chunk) const { HugePageAllocator<char>().deallocate(chunk, bytes); }
  };
  std::vector<std::unique_ptr<char[], FreeChunk>> chunks_;
  std::vector<uint32_t> chunk_used_;  // bytes used in each chunk but the last
  size_t tail_used_ = 0;              // bytes used in the last chunk
  size_t size_ = 0;
};

}  // namespace tally
