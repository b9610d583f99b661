#include "projections/usage_ids.h"

// XXH3 compiled here rather than called in libxxhash: every usage id is hashed twice
// (its prefetch, then its insert), and ids are short, where a call costs most.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstring>

#include "engine/assert.h"
#include "projections/varint.h"

namespace tally {
namespace {

uint64_t hash_of(std::string_view id) { return XXH3_64bits(id.data(), id.size()); }

}  // namespace

std::string_view UsageIds::id_at(Handle handle) const {
  const char* at = record(handle);
  return {at + 1, static_cast<unsigned char>(at[0])};
}

UsageRef UsageIds::ref_at(Handle handle) const {
  const char* at = record(handle);
  at += 1 + static_cast<unsigned char>(at[0]);
  UsageRef ref;
  std::memcpy(&ref.content_hash, at, 8);
  // The index wrote these bytes itself: a varint cannot run past its record.
  at = get_varint(at + 8, at + 8 + 2 * kVarintBytesMax, &ref.seq);
  uint64_t amount;
  get_varint(at, at + kVarintBytesMax, &amount);
  ref.amount = unzigzag(amount);
  return ref;
}

size_t UsageIds::record_size(Handle handle) const {
  const char* start = record(handle);
  const char* at = start + 1 + static_cast<unsigned char>(start[0]) + 8;
  uint64_t ignored;
  at = get_varint(at, at + kVarintBytesMax, &ignored);
  at = get_varint(at, at + kVarintBytesMax, &ignored);
  return static_cast<size_t>(at - start);
}

size_t UsageIds::probe(std::string_view id, uint64_t hash) const {
  const size_t mask = slots_.size() - 1;
  const uint64_t tag = hash & kTagMask;
  for (size_t i = hash >> (64 - bits_);; i = (i + 1) & mask) {
    const uint64_t slot = slots_[i];
    if (slot == 0) return i;
    if ((slot & kTagMask) == tag && id_at((slot & kHandleMask) - 1) == id) return i;
  }
}

void UsageIds::prefetch(std::string_view id) const {
  if (slots_.empty()) return;
  const size_t home = hash_of(id) >> (64 - bits_);
  __builtin_prefetch(&slots_[home]);
  __builtin_prefetch(&slots_[(home + 8) & (slots_.size() - 1)]);
}

std::optional<UsageRef> UsageIds::find(std::string_view id) const {
  if (slots_.empty()) return std::nullopt;
  const uint64_t slot = slots_[probe(id, hash_of(id))];
  if (slot == 0) return std::nullopt;
  return ref_at((slot & kHandleMask) - 1);
}

std::pair<UsageIds::Handle, bool> UsageIds::insert(std::string_view id, const UsageRef& ref) {
  TALLY_ASSERT(id.size() <= kIdBytesMax);
  // Keep the table at most 7/8 full, so every probe ends at an empty slot.
  if ((size_ + 1) * 8 > slots_.size() * 7) grow();
  const uint64_t hash = hash_of(id);
  const size_t i = probe(id, hash);
  if (slots_[i] != 0) return {(slots_[i] & kHandleMask) - 1, false};

  char record[kRecordBytesMax];
  record[0] = static_cast<char>(id.size());
  // An empty id may come with a null data(): memcpy must not see it, even for 0 bytes.
  if (!id.empty()) std::memcpy(record + 1, id.data(), id.size());
  std::memcpy(record + 1 + id.size(), &ref.content_hash, 8);
  char* end = put_varint(record + 1 + id.size() + 8, ref.seq);
  end = put_varint(end, zigzag(ref.amount));
  const size_t bytes = static_cast<size_t>(end - record);
  if (chunks_.empty() || tail_used_ + bytes > chunk_capacity(chunks_.size() - 1)) {
    if (!chunks_.empty()) chunk_used_.push_back(static_cast<uint32_t>(tail_used_));
    // Not zeroed: only the bytes written count toward the process's memory.
    const size_t bytes = chunk_capacity(chunks_.size());
    chunks_.push_back(std::unique_ptr<char[], FreeChunk>(HugePageAllocator<char>().allocate(bytes), FreeChunk{bytes}));
    tail_used_ = 0;
  }
  const Handle handle = (static_cast<Handle>(chunks_.size() - 1) << kChunkBits) | tail_used_;
  TALLY_ASSERT(handle < kHandleMask);
  std::memcpy(chunks_.back().get() + tail_used_, record, bytes);
  tail_used_ += bytes;
  slots_[i] = (hash & kTagMask) | (handle + 1);
  ++size_;
  return {handle, true};
}

size_t UsageIds::home(uint64_t slot, unsigned bits) const {
  // The slot's top bits are its hash's, as far as it keeps them.
  if (bits <= kHashBits) return static_cast<size_t>(slot >> (64 - bits));
  return static_cast<size_t>(hash_of(id_at((slot & kHandleMask) - 1)) >> (64 - bits));
}

void UsageIds::grow() {
  auto old = std::move(slots_);
  bits_ = old.empty() ? 6 : bits_ + 1;
  slots_.assign(size_t{1} << bits_, 0);
  const size_t mask = slots_.size() - 1;
  // Old slots in order have their homes in order (but for a run that wrapped around
  // the end), so these writes go front to back too.
  for (const uint64_t slot : old) {
    if (slot == 0) continue;
    size_t i = home(slot, bits_);
    while (slots_[i] != 0) i = (i + 1) & mask;
    slots_[i] = slot;
  }
}

void UsageIds::clear() { *this = UsageIds(); }

size_t UsageIds::memory_bytes() const {
  size_t bytes = slots_.capacity() * sizeof(uint64_t);
  for (size_t chunk = 0; chunk < chunks_.size(); ++chunk) bytes += chunk_capacity(chunk);
  return bytes;
}

}  // namespace tally
