#include "projections/statement_account.h"

#include "engine/assert.h"
#include "projections/varint.h"

namespace tally {
namespace {

uint64_t get(const std::string& in, size_t* pos) {
  uint64_t value;
  const char* end = get_varint(in.data() + *pos, in.data() + in.size(), &value);
  TALLY_ASSERT(end != nullptr);  // the account wrote these bytes itself
  *pos = static_cast<size_t>(end - in.data());
  return value;
}

}  // namespace

StatementEntry StatementAccount::start_of(const Group& group) {
  StatementEntry start;
  start.seq = group.seq_before;
  start.time_us = group.time_before;
  start.balance = group.balance_before;
  return start;
}

StatementEntry StatementAccount::decode(const std::string& bytes, size_t* pos, const StatementEntry& previous) {
  StatementEntry entry;
  entry.kind = static_cast<EntryKind>(static_cast<uint8_t>(bytes[(*pos)++]));
  entry.seq = previous.seq + get(bytes, pos);
  // Unsigned arithmetic: the differences were taken the same way, and wrap back.
  entry.time_us = static_cast<int64_t>(static_cast<uint64_t>(previous.time_us) + static_cast<uint64_t>(unzigzag(get(bytes, pos))));
  entry.amount = unzigzag(get(bytes, pos));
  entry.balance = static_cast<int64_t>(static_cast<uint64_t>(previous.balance) + static_cast<uint64_t>(entry.amount));
  entry.other_workspace = static_cast<uint32_t>(get(bytes, pos));
  const size_t ref_size = get(bytes, pos);
  TALLY_ASSERT(*pos + ref_size <= bytes.size());
  entry.ref = std::string_view(bytes).substr(*pos, ref_size);
  *pos += ref_size;
  return entry;
}

bool StatementAccount::append(uint64_t seq, int64_t time_us, EntryKind kind, int64_t amount, std::string_view ref, uint32_t other_workspace) {
  if (seq < last_seq_ || ref.size() > kRefBytesMax) return false;
  if (size_ % kGroupEntries == 0) {
    size_t expected = 0;
    if (!groups_.empty()) {
      std::string& full = groups_.back().bytes;
      full.shrink_to_fit();  // a full group takes no more than it needs
      // The next group's entries are about as long as this one's: room for them, and an
      // eighth more, saves the string's growth copying them over and over.
      expected = full.size() + full.size() / 8;
    }
    groups_.push_back(Group{last_seq_, last_time_, last_balance_, {}});
    groups_.back().bytes.reserve(expected);
  }
  // The entry's fixed part goes together into one buffer, then onto the group in one
  // append: an append for each varint took a tenth of the rebuild's reading thread.
  char head[1 + 5 * kVarintBytesMax];
  head[0] = static_cast<char>(kind);
  char* end = put_varint(head + 1, seq - last_seq_);
  end = put_varint(end, zigzag(static_cast<int64_t>(static_cast<uint64_t>(time_us) - static_cast<uint64_t>(last_time_))));
  end = put_varint(end, zigzag(amount));
  end = put_varint(end, other_workspace);
  end = put_varint(end, ref.size());
  std::string& out = groups_.back().bytes;
  out.append(head, static_cast<size_t>(end - head));
  out += ref;
  ++size_;
  last_seq_ = seq;
  last_time_ = time_us;
  last_balance_ = static_cast<int64_t>(static_cast<uint64_t>(last_balance_) + static_cast<uint64_t>(amount));
  return true;
}

StatementEntry StatementAccount::operator[](size_t i) const {
  TALLY_ASSERT(i < size_);
  const Group& group = groups_[i / kGroupEntries];
  StatementEntry entry = start_of(group);
  size_t pos = 0;
  for (size_t k = 0; k <= i % kGroupEntries; ++k) entry = decode(group.bytes, &pos, entry);
  return entry;
}

uint64_t StatementAccount::last_seq_of(size_t group) const { return group + 1 < groups_.size() ? groups_[group + 1].seq_before : last_seq_; }

size_t StatementAccount::first_after(uint64_t seq) const {
  // The first group whose last entry is above seq, then the first such entry in it.
  size_t low = 0, high = groups_.size();
  while (low < high) {
    const size_t middle = low + (high - low) / 2;
    if (last_seq_of(middle) > seq) {
      high = middle;
    } else {
      low = middle + 1;
    }
  }
  if (low == groups_.size()) return size_;
  const Group& group = groups_[low];
  StatementEntry entry = start_of(group);
  size_t pos = 0;
  for (size_t index = low * kGroupEntries;; ++index) {
    entry = decode(group.bytes, &pos, entry);
    if (entry.seq > seq) return index;
  }
}

size_t StatementAccount::memory_bytes() const {
  size_t bytes = groups_.capacity() * sizeof(Group);
  for (const Group& group : groups_) bytes += group.bytes.capacity() > 15 ? group.bytes.capacity() + 1 : 0;
  return bytes;
}

}  // namespace tally
