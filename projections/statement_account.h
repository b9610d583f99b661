// One workspace's statement: its entries, oldest first, each with the running balance
// after it. Statements are the largest thing Tally keeps in memory (an entry per usage
// event), so an account stores its entries encoded, in groups of 32:
//
//   group  = the sequence number, time and balance of the entry before it, then its
//            entries, each one written as the change from the entry before:
//   entry  = kind (1 byte), seq - previous seq, time - previous time (zigzag), amount
//            (zigzag; the balance is the previous balance plus it), other workspace,
//            ref length, ref bytes   -- every number a LEB128 varint
//
// A usage entry takes about 20 bytes this way, against 40 packed in a struct and 80 as
// a struct with a std::string. Reading entry i decodes at most 31 entries before it in
// its group.
//
// Contract:
//   - append() takes entries in sequence-number order (one event may add two entries
//     to an account); a refused entry (seq below the last, ref over kRefBytesMax)
//     leaves the account unchanged.
//   - The `ref` of a returned StatementEntry points into the account: it is valid until
//     the account next changes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tally {

enum class EntryKind : uint8_t {
  kGrant,
  kBankRelease,
  kTransferIn,
  kTransferOut,
  kSweepIn,       // budget -> shared mode switch
  kSweepOut,
  kReturnedIn,    // a deleted workspace's credits
  kReturnedOut,
  kExpiry,
  kExpiryToBank,
  kUsage,
  kHold,
  kHoldReturn,
};
inline constexpr size_t kEntryKinds = 13;
std::string_view entry_kind_name(EntryKind kind);

// One entry as the queries see it.
struct StatementEntry {
  uint64_t seq = 0;
  int64_t time_us = 0;
  EntryKind kind = EntryKind::kGrant;
  int64_t amount = 0;            // signed: credits in (+) or out (-)
  int64_t balance = 0;           // available in the workspace after the entry
  std::string_view ref;          // grant, usage or hold id, when there is one
  uint32_t other_workspace = 0;  // the counterparty or the attributed workspace
};

class StatementAccount {
 public:
  static constexpr size_t kRefBytesMax = 255;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  StatementEntry operator[](size_t i) const;
  StatementEntry back() const { return (*this)[size_ - 1]; }
  // The index of the first entry with a sequence number above `seq` (size() if none).
  size_t first_after(uint64_t seq) const;
  // The balance after the last entry (0 when empty).
  int64_t balance() const { return last_balance_; }

  // Adds an entry after the last; its balance is balance() + amount. False (and
  // nothing changes) if seq is below the last entry's or the ref is too long.
  bool append(uint64_t seq, int64_t time_us, EntryKind kind, int64_t amount, std::string_view ref, uint32_t other_workspace);

  // visit(const StatementEntry&) for entries first, first + 1, ... while it returns
  // true. Decodes each entry once.
  template <typename Visit>
  void for_each_from(size_t first, Visit&& visit) const {
    if (first >= size_) return;
    size_t g = first / kGroupEntries;
    StatementEntry entry = start_of(groups_[g]);
    size_t pos = 0;
    for (size_t k = 0; k < first % kGroupEntries; ++k) entry = decode(groups_[g].bytes, &pos, entry);
    for (size_t i = first; i < size_; ++i) {
      if (i % kGroupEntries == 0 && i != first) {
        g = i / kGroupEntries;
        pos = 0;
      }
      entry = decode(groups_[g].bytes, &pos, entry);
      if (!visit(entry)) return;
    }
  }

  // Bytes held, for measurement.
  size_t memory_bytes() const;

 private:
  static constexpr size_t kGroupEntries = 32;
  struct Group {
    uint64_t seq_before = 0;
    int64_t time_before = 0;
    int64_t balance_before = 0;
    std::string bytes;
  };
  // Decodes the entry at `pos` in `bytes`, after `previous`; moves pos past it.
  static StatementEntry decode(const std::string& bytes, size_t* pos, const StatementEntry& previous);
  static StatementEntry start_of(const Group& group);
  uint64_t last_seq_of(size_t group) const;

  std::vector<Group> groups_;
  size_t size_ = 0;
  uint64_t last_seq_ = 0;
  int64_t last_time_ = 0;
  int64_t last_balance_ = 0;
};

}  // namespace tally
