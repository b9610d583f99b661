// HashIndex: finds items kept elsewhere, in a dense array, by key.
//
// The usage projection looks up a member and an aggregate cell for every usage event,
// and a replay does nothing else for millions of events. A std::unordered_map reads a
// bucket, then the node before the one wanted, then the node, and divides by a prime to
// pick the bucket. This index is one array of 8-byte slots (a 32-bit hash and the
// item's number) probed linearly from a power-of-two mask: a lookup reads, as a rule,
// one slot and then the item. Items themselves stay where their owner keeps them,
// numbered 0, 1, 2, ... in the order they were added, so iterating over them is a walk
// down an array.
//
// Contract:
//   - The owner numbers items densely: insert() is given the next number (the count
//     of items so far) and the owner appends the item if insert() says it was added.
//   - `same(item)` answers whether item number `item` has the key being looked up; it
//     is called only for items whose 32-bit hash matches.
//   - Items are never removed one by one; clear() forgets them all.
//   - At most 2^32 - 1 items.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <utility>
#include <vector>

namespace tally {

class HashIndex {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  // The number of the item with this hash for which same(item) holds, or kNone.
  template <typename Same>
  uint32_t find(uint64_t hash, Same&& same) const {
    if (slots_.empty()) return kNone;
    const uint32_t tag = tag_of(hash);
    const size_t mask = slots_.size() - 1;
    for (size_t i = tag & mask;; i = (i + 1) & mask) {
      const Slot slot = slots_[i];
      if (slot.tag == 0) return kNone;
      if (slot.tag == tag && same(slot.item)) return slot.item;
    }
  }

  // The number of the matching item, found as find() does; if there is none, records
  // `next` for this hash and returns {next, true}: the caller then adds item `next`.
  template <typename Same>
  std::pair<uint32_t, bool> insert(uint64_t hash, uint32_t next, Same&& same) {
    if (next == kNone) throw std::length_error("HashIndex: too many items");
    // At most three quarters full, so a probe for a missing key stops soon.
    if ((size_ + 1) * 4 > slots_.size() * 3) grow();
    const uint32_t tag = tag_of(hash);
    const size_t mask = slots_.size() - 1;
    size_t i = tag & mask;
    for (;; i = (i + 1) & mask) {
      const Slot slot = slots_[i];
      if (slot.tag == 0) break;
      if (slot.tag == tag && same(slot.item)) return {slot.item, false};
    }
    slots_[i] = Slot{tag, next};
    ++size_;
    return {next, true};
  }

  // Hints that a key with this hash is looked up soon; they change nothing. prefetch()
  // starts loading the slot where the lookup begins; candidate(), called once that slot
  // has had time to arrive, reads it and gives the number of the first item whose hash
  // matches (kNone if none), whose owner may then start loading that item.
  void prefetch(uint64_t hash) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[tag_of(hash) & (slots_.size() - 1)]);
  }
  uint32_t candidate(uint64_t hash) const {
    return find(hash, [](uint32_t) { return true; });
  }

  size_t size() const { return size_; }
  void clear() {
    slots_.clear();
    size_ = 0;
  }
  // Bytes held, for measurement.
  size_t memory_bytes() const { return slots_.capacity() * sizeof(Slot); }

 private:
  struct Slot {
    uint32_t tag = 0;  // 0: empty; else the item's 32-bit hash (never 0)
    uint32_t item = 0;
  };

  // The high half of a multiplicative mix, so that keys hashing alike in their low bits
  // (small integers, as a cell's fields are) still spread over the table.
  static uint32_t tag_of(uint64_t hash) {
    const auto tag = static_cast<uint32_t>((hash * 0x9E3779B97F4A7C15ULL) >> 32);
    return tag == 0 ? 1 : tag;
  }

  void grow() {
    std::vector<Slot> old = std::exchange(slots_, std::vector<Slot>(slots_.empty() ? 16 : slots_.size() * 2));
    const size_t mask = slots_.size() - 1;
    for (const Slot& slot : old) {
      if (slot.tag == 0) continue;
      size_t i = slot.tag & mask;
      while (slots_[i].tag != 0) i = (i + 1) & mask;
      slots_[i] = slot;
    }
  }

  std::vector<Slot> slots_;  // size 0 or a power of two
  size_t size_ = 0;
};

}  // namespace tally
