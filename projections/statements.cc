#include "projections/statements.h"

#include "engine/log.h"
#include "projections/codec.h"
#include "schemas/events_generated.h"

namespace tally {
namespace {

std::string_view str(const flatbuffers::String* s) { return s == nullptr ? std::string_view() : s->string_view(); }

int64_t sum(const flatbuffers::Vector<const fb::LotAmount*>* lots) {
  int64_t total = 0;
  if (lots != nullptr) {
    for (const fb::LotAmount* portion : *lots) total += portion->amount();
  }
  return total;
}

std::string_view move_kind(fb::MoveReason reason, bool incoming) {
  switch (reason) {
    case fb::MoveReason::Transfer: return incoming ? "transfer_in" : "transfer_out";
    case fb::MoveReason::ModeSwitch: return incoming ? "sweep_in" : "sweep_out";
    case fb::MoveReason::WorkspaceDeleted: return incoming ? "returned_in" : "returned_out";
  }
  return "move";
}

}  // namespace

const std::vector<StatementEntry>* StatementsProjection::entries(std::string_view org, uint32_t workspace) const {
  auto it = accounts_.find(Account(std::string(org), workspace));
  return it == accounts_.end() ? nullptr : &it->second;
}

void StatementsProjection::add(const std::string& org, uint32_t workspace, const fb::Envelope& event, std::string_view kind,
                               int64_t amount, std::string_view ref, uint32_t other) {
  Account account(org, workspace);
  std::vector<StatementEntry>& entries = accounts_[account];
  const int64_t before = entries.empty() ? 0 : entries.back().balance;
  entries.push_back(StatementEntry{event.seq(), event.time_us(), std::string(kind), amount, before + amount, std::string(ref), other});
  pending_.emplace_back(std::move(account), entries.size() - 1);
}

void StatementsProjection::apply(const fb::Envelope& event) {
  checkpoint_ = event.seq();
  switch (event.event_type()) {
    case fb::Event::CreditsGranted: {
      const auto* e = event.event_as_CreditsGranted();
      add(std::string(str(e->org())), 0, event, "grant", e->amount(), str(e->grant()), 0);
      return;
    }
    case fb::Event::BankReleased: {
      const auto* e = event.event_as_BankReleased();
      add(std::string(str(e->org())), 0, event, "bank_release", e->amount(), str(e->grant()), 0);
      return;
    }
    case fb::Event::CreditsMoved: {
      const auto* e = event.event_as_CreditsMoved();
      const std::string org(str(e->org()));
      add(org, e->from_workspace(), event, move_kind(e->reason(), false), -e->amount(), {}, e->to_workspace());
      add(org, e->to_workspace(), event, move_kind(e->reason(), true), e->amount(), {}, e->from_workspace());
      return;
    }
    case fb::Event::LotExpired: {
      const auto* e = event.event_as_LotExpired();
      if (e->workspaces() == nullptr) return;
      const std::string org(str(e->org()));
      for (const fb::WorkspaceAmount* part : *e->workspaces()) {
        add(org, part->workspace(), event, e->banked() ? "expiry_to_bank" : "expiry", -part->amount(), {}, part->workspace());
      }
      return;
    }
    case fb::Event::UsageRecorded: {
      const auto* e = event.event_as_UsageRecorded();
      add(std::string(str(e->org())), e->funding_workspace(), event, "usage", -e->amount(), str(e->id()), e->workspace());
      return;
    }
    case fb::Event::HoldReserved: {
      const auto* e = event.event_as_HoldReserved();
      add(std::string(str(e->org())), e->funding_workspace(), event, "hold", -e->amount(), str(e->hold()), e->workspace());
      return;
    }
    case fb::Event::HoldClosed: {
      const auto* e = event.event_as_HoldClosed();
      const int64_t returned = sum(e->returned_lots());
      if (returned > 0) add(std::string(str(e->org())), e->returned_to(), event, "hold_return", returned, str(e->hold()), e->returned_to());
      return;
    }
    default:
      return;
  }
}

// Key: "statements/<org>\0<ws be32><seq be64>".
void StatementsProjection::write_row(const Account& account, const StatementEntry& entry, RowSink* sink) const {
  std::string key = row_prefix() + account.first;
  key += '\0';
  for (int i = 0; i < 4; ++i) key += static_cast<char>(account.second >> (24 - 8 * i));
  key += be64(entry.seq);
  RowWriter value;
  value.i64(entry.time_us).str(entry.kind).i64(entry.amount).i64(entry.balance).str(entry.ref).u32(entry.other_workspace);
  sink->put(key, value.data());
}

void StatementsProjection::flush(RowSink* sink) {
  for (const auto& [account, index] : pending_) write_row(account, accounts_.at(account)[index], sink);
  pending_.clear();
  sink->put(checkpoint_key(), be64(checkpoint_));
}

void StatementsProjection::dump(RowSink* sink) const {
  for (const auto& [account, entries] : accounts_) {
    for (const StatementEntry& entry : entries) write_row(account, entry, sink);
  }
  sink->put(checkpoint_key(), be64(checkpoint_));
}

bool StatementsProjection::load_row(std::string_view key, std::string_view value) {
  if (key == checkpoint_key()) {
    if (value.size() != 8) return false;
    checkpoint_ = read_be64(value);
    return true;
  }
  const std::string_view rest = key.substr(row_prefix().size());
  const size_t nul = rest.find('\0');
  if (nul == std::string_view::npos || rest.size() != nul + 1 + 4 + 8) return false;
  Account account(std::string(rest.substr(0, nul)), 0);
  for (char c : rest.substr(nul + 1, 4)) account.second = (account.second << 8) | static_cast<uint8_t>(c);
  StatementEntry entry;
  entry.seq = read_be64(rest.substr(nul + 5));
  RowReader in(value);
  entry.time_us = in.i64();
  entry.kind = in.str();
  entry.amount = in.i64();
  entry.balance = in.i64();
  entry.ref = in.str();
  entry.other_workspace = in.u32();
  // Rows load in key order, so each account's entries arrive oldest first.
  accounts_[account].push_back(std::move(entry));
  return in.done();
}

void StatementsProjection::clear() {
  accounts_.clear();
  pending_.clear();
  checkpoint_ = 0;
}

}  // namespace tally
