#include "projections/statements.h"

#include "engine/log.h"
#include "engine/values.h"
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

EntryKind move_kind(fb::MoveReason reason, bool incoming) {
  switch (reason) {
    case fb::MoveReason::Transfer: return incoming ? EntryKind::kTransferIn : EntryKind::kTransferOut;
    case fb::MoveReason::ModeSwitch: return incoming ? EntryKind::kSweepIn : EntryKind::kSweepOut;
    case fb::MoveReason::WorkspaceDeleted: return incoming ? EntryKind::kReturnedIn : EntryKind::kReturnedOut;
  }
  return EntryKind::kTransferIn;
}

constexpr std::string_view kKindNames[] = {"grant",        "bank_release", "transfer_in",  "transfer_out",   "sweep_in",
                                           "sweep_out",    "returned_in",  "returned_out", "expiry",         "expiry_to_bank",
                                           "usage",        "hold",         "hold_return"};

}  // namespace

static_assert(std::size(kKindNames) == kEntryKinds);

std::string_view entry_kind_name(EntryKind kind) { return kKindNames[static_cast<size_t>(kind)]; }

const StatementAccount* StatementsProjection::entries(std::string_view org, uint32_t workspace) const {
  auto it = orgs_.find(org);
  if (it == orgs_.end() || workspace >= it->second.size()) return nullptr;
  return &it->second[workspace];
}

StatementAccount& StatementsProjection::account(std::string_view org, uint32_t workspace, const std::string** org_key) {
  auto it = orgs_.emplace(org).first;  // the organization's accounts, added if new
  Accounts& accounts = it->second;
  if (accounts.size() <= workspace) accounts.resize(workspace + 1);
  if (org_key != nullptr) *org_key = &it->first;
  return accounts[workspace];
}

void StatementsProjection::add(std::string_view org, uint32_t workspace, const fb::Envelope& event, EntryKind kind, int64_t amount,
                               std::string_view ref, uint32_t other) {
  const std::string* org_key;
  StatementAccount& entries = account(org, workspace, &org_key);
  ref = ref.substr(0, StatementAccount::kRefBytesMax);  // engine ids are at most 64 bytes
  // Sequence numbers never fall through the log, so only a forged event can be refused.
  if (!entries.append(event.seq(), event.time_us(), kind, amount, ref, other)) {
    ++anomalies_;
    return;
  }
  if (!history_rows_kept_) return;
  Pending& pending = pending_.emplace_back();
  pending.org = org_key;
  pending.workspace = workspace;
  pending.entry = StatementEntry{event.seq(), event.time_us(), kind, amount, entries.balance(), {}, other};
  pending.ref = ref;
}

void StatementsProjection::apply(const fb::Envelope& event) {
  checkpoint_ = event.seq();
  switch (event.event_type()) {
    case fb::Event::CreditsGranted: {
      const auto* e = event.event_as_CreditsGranted();
      add(str(e->org()), 0, event, EntryKind::kGrant, e->amount(), str(e->grant()), 0);
      return;
    }
    case fb::Event::BankReleased: {
      const auto* e = event.event_as_BankReleased();
      add(str(e->org()), 0, event, EntryKind::kBankRelease, e->amount(), str(e->grant()), 0);
      return;
    }
    case fb::Event::CreditsMoved: {
      const auto* e = event.event_as_CreditsMoved();
      add(str(e->org()), e->from_workspace(), event, move_kind(e->reason(), false), -e->amount(), {}, e->to_workspace());
      add(str(e->org()), e->to_workspace(), event, move_kind(e->reason(), true), e->amount(), {}, e->from_workspace());
      return;
    }
    case fb::Event::LotExpired: {
      const auto* e = event.event_as_LotExpired();
      if (e->workspaces() == nullptr) return;
      for (const fb::WorkspaceAmount* part : *e->workspaces()) {
        add(str(e->org()), part->workspace(), event, e->banked() ? EntryKind::kExpiryToBank : EntryKind::kExpiry, -part->amount(), {},
            part->workspace());
      }
      return;
    }
    case fb::Event::UsageRecorded: {
      const auto* e = event.event_as_UsageRecorded();
      add(str(e->org()), e->funding_workspace(), event, EntryKind::kUsage, -e->amount(), str(e->id()), e->workspace());
      return;
    }
    case fb::Event::HoldReserved: {
      const auto* e = event.event_as_HoldReserved();
      add(str(e->org()), e->funding_workspace(), event, EntryKind::kHold, -e->amount(), str(e->hold()), e->workspace());
      return;
    }
    case fb::Event::HoldClosed: {
      const auto* e = event.event_as_HoldClosed();
      const int64_t returned = sum(e->returned_lots());
      if (returned > 0) add(str(e->org()), e->returned_to(), event, EntryKind::kHoldReturn, returned, str(e->hold()), e->returned_to());
      return;
    }
    default:
      return;
  }
}

// A history row, at the entry's seq; key: "statements/<org>\0<ws be32>".
void StatementsProjection::write_row(const std::string& org, uint32_t workspace, const StatementEntry& entry, RowSink* sink) const {
  std::string key = row_prefix() + org;
  key += '\0';
  for (int i = 0; i < 4; ++i) key += static_cast<char>(workspace >> (24 - 8 * i));
  RowWriter value;
  value.i64(entry.time_us).u8(static_cast<uint8_t>(entry.kind)).i64(entry.amount).i64(entry.balance).str(entry.ref).u32(entry.other_workspace);
  sink->put_history(entry.seq, key, value.data());
}

void StatementsProjection::flush_history(RowSink* sink) {
  for (Pending& p : pending_) {
    p.entry.ref = p.ref;
    write_row(*p.org, p.workspace, p.entry, sink);
  }
  pending_.clear();
}

void StatementsProjection::flush(RowSink* sink) {
  flush_history(sink);
  sink->put(checkpoint_key(), be64(checkpoint_));
}

void StatementsProjection::dump(RowSink* sink) const {
  for (const auto& [org_id, accounts] : orgs_) {
    const std::string& org = org_id;  // clang 14 lambdas cannot capture structured bindings
    for (uint32_t w = 0; w < accounts.size(); ++w) {
      accounts[w].for_each_from(0, [&](const StatementEntry& entry) {
        write_row(org, w, entry, sink);
        return true;
      });
    }
  }
  sink->put(checkpoint_key(), be64(checkpoint_));
}

bool StatementsProjection::load_row(std::string_view key, std::string_view value) {
  // Entries are history rows; the checkpoint is the only other row.
  if (key != checkpoint_key() || value.size() != 8) return false;
  checkpoint_ = read_be64(value);
  return true;
}

bool StatementsProjection::load_history_row(uint64_t seq, std::string_view key, std::string_view value) {
  if (!key.starts_with(row_prefix())) return false;
  const std::string_view rest = key.substr(row_prefix().size());
  const size_t nul = rest.find('\0');
  if (nul == std::string_view::npos || rest.size() != nul + 1 + 4) return false;
  uint32_t workspace = 0;
  for (char c : rest.substr(nul + 1, 4)) workspace = (workspace << 8) | static_cast<uint8_t>(c);
  if (workspace >= kWorkspacesPerOrgMax) return false;
  RowReader in(value);
  const int64_t time_us = in.i64();
  const uint8_t kind = in.u8();
  if (kind >= kEntryKinds) return false;
  const int64_t amount = in.i64();
  const int64_t balance = in.i64();
  const std::string ref = in.str();
  const uint32_t other = in.u32();
  if (!in.done()) return false;
  // Rows load in sequence order, so each account's entries arrive oldest first, and each
  // balance must be the one before it plus the entry's amount.
  StatementAccount& entries = account(rest.substr(0, nul), workspace, nullptr);
  int64_t change;
  if (__builtin_sub_overflow(balance, entries.balance(), &change) || change != amount) return false;
  return entries.append(seq, time_us, static_cast<EntryKind>(kind), amount, ref, other);
}

void StatementsProjection::clear() {
  orgs_.clear();
  anomalies_ = 0;
  pending_.clear();
  checkpoint_ = 0;
}

}  // namespace tally
