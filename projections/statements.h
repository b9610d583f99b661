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

struct StatementEntry {
  uint64_t seq = 0;
  int64_t time_us = 0;
  std::string kind;    // grant, bank_release, transfer_in, transfer_out, sweep_in, ...
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
  using Account = std::pair<std::string, uint32_t>;  // org, workspace id
  void add(const std::string& org, uint32_t workspace, const fb::Envelope& event, std::string_view kind, int64_t amount,
           std::string_view ref, uint32_t other);
  void write_row(const Account& account, const StatementEntry& entry, RowSink* sink) const;

  std::map<Account, std::vector<StatementEntry>> accounts_;
  std::vector<std::pair<Account, size_t>> pending_;  // entries not yet flushed
};

}  // namespace tally
