// Statements: each workspace's entries — every change to the credits it holds — with
// the running balance after each, like a bank statement. In shared mode usage is
// debited from the primary workspace's statement and names the workspace it was for.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "projections/indexed_map.h"
#include "projections/projection.h"
#include "projections/statement_account.h"

namespace tally {

class StatementsProjection final : public Projection {
 public:
  std::string_view name() const override { return "statements"; }
  void apply(const fb::Envelope& event) override;
  void flush(RowSink* sink) override;
  void flush_history(RowSink* sink) override;
  void dump(RowSink* sink) const override;
  bool load_row(std::string_view key, std::string_view value) override;
  bool load_history_row(uint64_t seq, std::string_view key, std::string_view value) override;
  void clear() override;

  // The entries of (org, workspace id); null if none.
  const StatementAccount* entries(std::string_view org, uint32_t workspace) const;
  // Entries refused because their event's sequence number is below the account's last
  // (only a forged log has such events).
  uint64_t anomalies() const { return anomalies_; }

 private:
  using Accounts = std::vector<StatementAccount>;  // by workspace id
  // An entry added since the last flush, as its row will say it.
  struct Pending {
    const std::string* org;
    uint32_t workspace;
    StatementEntry entry;  // its ref is `ref`, set when the row is written
    std::string ref;
  };
  // The account, created if need be; *org_key (if asked) is the organization's map key.
  StatementAccount& account(std::string_view org, uint32_t workspace, const std::string** org_key);
  void add(std::string_view org, uint32_t workspace, const fb::Envelope& event, EntryKind kind, int64_t amount, std::string_view ref,
           uint32_t other);
  void write_row(const std::string& org, uint32_t workspace, const StatementEntry& entry, RowSink* sink) const;

  IndexedMap<Accounts> orgs_;
  std::vector<Pending> pending_;  // entries not yet flushed
  uint64_t anomalies_ = 0;
};

}  // namespace tally
