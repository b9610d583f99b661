// Statements: each workspace's entries — every change to the credits it holds — with
// the running balance after each, like a bank statement. In shared mode usage is
// debited from the primary workspace's statement and names the workspace it was for.
#pragma once

#include <map>
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

struct StatementEntry {
  uint64_t seq = 0;
  int64_t time_us = 0;
  EntryKind kind = EntryKind::kGrant;
  int64_t amount = 0;  // signed: credits in (+) or out (-)
  int64_t balance = 0; // available in the workspace after the entry
  std::string ref;     // grant, usage or hold id, when there is one
  uint32_t other_workspace = 0;  // the counterparty or the attributed workspace
};

class StatementsProjection final : public Projection {
 public:
  std::string_view name() const override { return "statements"; }
  void apply(const fb::Envelope& event) override;
  void flush(RowSink* sink) override;
  void dump(RowSink* sink) const override;
  bool load_row(std::string_view key, std::string_view value) override;
  void clear() override;

  // The entries of (org, workspace id), oldest first; null if none.
  const std::vector<StatementEntry>* entries(std::string_view org, uint32_t workspace) const;

 private:
  using Accounts = std::vector<std::vector<StatementEntry>>;  // by workspace id
  struct Pending {
    const std::string* org;
    uint32_t workspace;
    size_t index;
  };
  void add(std::string_view org, uint32_t workspace, const fb::Envelope& event, EntryKind kind, int64_t amount, std::string_view ref,
           uint32_t other);
  void write_row(const std::string& org, uint32_t workspace, const StatementEntry& entry, RowSink* sink) const;

  std::map<std::string, Accounts, std::less<>> orgs_;
  std::vector<Pending> pending_;  // entries not yet flushed
};

}  // namespace tally
