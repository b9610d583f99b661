// Statements: each workspace's entries — every change to the credits it holds — with
// the running balance after each, like a bank statement. In shared mode usage is
// debited from the primary workspace's statement and names the workspace it was for.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "projections/projection.h"

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
std::string_view entry_kind_name(EntryKind kind);

// One entry as the queries see it. `ref` points into the projection: it is valid
// until the projection is cleared or destroyed.
struct StatementEntry {
  uint64_t seq = 0;
  int64_t time_us = 0;
  EntryKind kind = EntryKind::kGrant;
  int64_t amount = 0;      // signed: credits in (+) or out (-)
  int64_t balance = 0;     // available in the workspace after the entry
  std::string_view ref;    // grant, usage or hold id, when there is one
  uint32_t other_workspace = 0;  // the counterparty or the attributed workspace
};

// The ids entries refer to, packed end to end in 1 MiB chunks that never move. A
// handle holds a position and a length (refs are at most 255 bytes; longer ones are
// cut, which the engine never writes: its ids are at most 64 bytes).
class RefArena {
 public:
  static constexpr size_t kRefBytesMax = 255;
  uint64_t add(std::string_view ref);
  std::string_view get(uint64_t handle) const;

 private:
  static constexpr unsigned kChunkBits = 20;
  std::vector<std::unique_ptr<char[]>> chunks_;
  size_t tail_used_ = 0;
};

// Statements are the largest projection in memory (one entry per usage event), so an
// entry is kept in 40 bytes: its amount is the difference of two running balances and
// its ref sits in the RefArena.
struct PackedEntry {
  uint64_t seq = 0;
  int64_t time_us = 0;
  int64_t balance = 0;
  uint64_t ref = 0;  // RefArena handle
  uint32_t other_workspace = 0;
  EntryKind kind = EntryKind::kGrant;
};
static_assert(sizeof(PackedEntry) == 40);

// One workspace's entries, oldest first. A deque: appending never moves the entries
// already there, and there is no doubling copy to hold twice the memory for a moment.
class StatementAccount {
 public:
  explicit StatementAccount(const RefArena* refs) : refs_(refs) {}
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  StatementEntry operator[](size_t i) const;
  StatementEntry back() const { return (*this)[entries_.size() - 1]; }
  // The index of the first entry with a sequence number above `seq` (size() if none).
  size_t first_after(uint64_t seq) const;

 private:
  friend class StatementsProjection;
  std::deque<PackedEntry> entries_;
  const RefArena* refs_;
};

class StatementsProjection final : public Projection {
 public:
  std::string_view name() const override { return "statements"; }
  void apply(const fb::Envelope& event) override;
  void flush(RowSink* sink) override;
  void dump(RowSink* sink) const override;
  bool load_row(std::string_view key, std::string_view value) override;
  void clear() override;

  // The entries of (org, workspace id); null if none.
  const StatementAccount* entries(std::string_view org, uint32_t workspace) const;

 private:
  // By workspace id. A deque, so adding a workspace never moves the others' entries.
  using Accounts = std::deque<StatementAccount>;
  struct Pending {
    const std::string* org;
    uint32_t workspace;
    size_t index;
  };
  // The account, created if need be; *org_key (if asked) is the organization's map key.
  StatementAccount& account(std::string_view org, uint32_t workspace, const std::string** org_key);
  void add(std::string_view org, uint32_t workspace, const fb::Envelope& event, EntryKind kind, int64_t amount, std::string_view ref,
           uint32_t other);
  void write_row(const std::string& org, uint32_t workspace, const StatementEntry& entry, RowSink* sink) const;

  std::unique_ptr<RefArena> refs_ = std::make_unique<RefArena>();  // on the heap: accounts point at it
  std::map<std::string, Accounts, std::less<>> orgs_;
  std::vector<Pending> pending_;  // entries not yet flushed
};

}  // namespace tally
