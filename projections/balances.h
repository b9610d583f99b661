// The balances projection: every organization's credit lots, where each lot's credits
// sit (workspaces and holds), holds, spend limits and their counters, the credit bank,
// and the usage ids seen (for permanent idempotency). The engine decides every debit
// against it; it only records the outcome of events.
//
// Accounting identity kept by every event (check_invariants verifies it):
//   granted - expired = available + held + consumed + banked   per organization
//   amount = in workspaces + in holds + consumed + expired + banked   per lot
#pragma once

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "projections/indexed_map.h"
#include "projections/projection.h"
#include "projections/usage_ids.h"
#include "schemas/events_generated.h"

namespace tally {

using LotKind = fb::LotKind;
std::string_view lot_kind_name(LotKind kind);

struct LotPortion {
  uint32_t lot = 0;
  int64_t amount = 0;
  bool operator==(const LotPortion&) const = default;
};

struct Lot {
  std::string grant;  // for a bank lot: the purchase that released it
  LotKind kind = LotKind::Plan;
  int64_t amount = 0;
  int64_t expires_at_us = 0;  // 0: never
  int64_t granted_us = 0;
  bool from_bank = false;
  bool expired = false;
  int64_t consumed = 0;
  int64_t expired_amount = 0;
  int64_t banked_amount = 0;
  bool dirty = false;  // changed since the last flush
  // Still in a workspace or a hold.
  int64_t outstanding() const { return amount - consumed - expired_amount - banked_amount; }
};

// Spend inside one period bucket (a UTC day or month number).
struct SpendCounter {
  int64_t bucket = -1;
  int64_t spent = 0;  // consumed in the bucket
  int64_t held = 0;   // reserved in the bucket by holds still open
  int64_t used_in(int64_t b) const { return bucket == b ? spent + held : 0; }
};

struct Spend {
  SpendCounter day;
  SpendCounter month;
  int64_t day_limit = -1;  // -1: no limit
  int64_t month_limit = -1;
};

struct WorkspaceBalance {
  std::vector<LotPortion> holdings;  // in consumption order
  int64_t available = 0;
  int64_t held = 0;      // by open holds attributed to this workspace
  int64_t consumed = 0;  // by usage attributed to this workspace
  Spend spend;
  bool dirty = false;
};

struct MemberBalance {
  int64_t held = 0;
  int64_t consumed = 0;
  Spend spend;
  bool dirty = false;
};

enum class HoldState : uint8_t { kOpen = 0, kSettled = 1, kReleased = 2, kTimedOut = 3 };
std::string_view hold_state_name(HoldState state);

struct Hold {
  uint32_t workspace = 0;
  uint32_t funding_workspace = 0;
  std::string user;
  std::string tool;
  std::string model;
  int64_t amount = 0;
  int64_t reserved_us = 0;
  int64_t expires_at_us = 0;
  std::vector<LotPortion> lots;  // while open
  HoldState state = HoldState::kOpen;
  int64_t consumed = 0;          // once settled
  bool dirty = false;
};

struct OrgBalances {
  std::vector<Lot> lots;                                  // by lot id
  std::map<std::string, uint32_t, std::less<>> lot_by_grant;
  std::vector<WorkspaceBalance> workspaces;               // by workspace id
  IndexedMap<MemberBalance> members;
  std::map<std::string, Hold, std::less<>> holds;
  UsageIds usage_ids;
  int64_t granted = 0;
  int64_t expired = 0;
  int64_t banked = 0;  // the credit bank's balance
  int64_t held = 0;
  int64_t consumed = 0;
  std::string plan;
  int64_t plan_monthly = 0;
  bool plan_rollover = true;
  bool dirty = false;

  int64_t available() const;
  // True if lot a is spent before lot b (SPEC §2 consumption order).
  bool spent_before(uint32_t a, uint32_t b) const;
  // The portions `amount` would take from `holdings`, in consumption order.
  // REQUIRES: amount <= the holdings' total.
  static std::vector<LotPortion> draw(const std::vector<LotPortion>& holdings, int64_t amount);
  // draw() without the vector: take(portion) for each portion, in that order.
  template <typename Take>
  static void draw_each(const std::vector<LotPortion>& holdings, int64_t amount, Take&& take) {
    for (const LotPortion& holding : holdings) {
      if (amount == 0) break;
      const int64_t taken = std::min(amount, holding.amount);
      take(LotPortion{holding.lot, taken});
      amount -= taken;
    }
  }
};

// Something the engine must do at a time: expire a lot or time out a hold.
struct Timer {
  int64_t due_us = 0;
  std::string org;
  uint32_t lot = 0;  // when hold is empty
  std::string hold;
  auto operator<=>(const Timer&) const = default;
};

class BalancesProjection final : public Projection {
 public:
  std::string_view name() const override { return "balances"; }
  void apply(const fb::Envelope& event) override;
  // For a usage event: the usage-id slot its apply() probes (kSlot), and the member's
  // slot, entry and key, likely cache misses all. The note holds the organization's
  // node of orgs_ (entry) and the member's key_hash (hashes[0]), which apply_noted()
  // takes instead of looking them up.
  void prefetch(const fb::Envelope& event, PrefetchStage stage, PrefetchNote* note) const override;
  void apply_noted(const fb::Envelope& event, const PrefetchNote& note) override;
  void flush(RowSink* sink) override;
  void dump(RowSink* sink) const override;
  bool load_row(std::string_view key, std::string_view value) override;
  void flush_history(RowSink* sink) override;
  bool load_history_row(uint64_t seq, std::string_view key, std::string_view value) override;
  bool finish_history() override;
  void clear() override;

  // A usage id's history row follows from its event alone: the organization, the id,
  // the seq, the fingerprint and the amount. For a batch applied on two threads
  // (SplitApplier kLive) the thread that has the envelopes writes them: after
  // usage_history_elsewhere(true), apply() keeps none for flush_history(), and
  // put_usage_history() writes the row of a usage event. It reads nothing of the
  // projection, so it may run on another thread while this one applies; it writes the
  // row apply() would have kept, given an event the engine made (a new id, an
  // organization that exists: the handler checked both on this state).
  void usage_history_elsewhere(bool elsewhere) { usage_history_elsewhere_ = elsewhere; }
  static void put_usage_history(const fb::Envelope& event, RowSink* sink);

  const OrgBalances* find(std::string_view org) const;
  // The earliest pending timer, if any.
  const Timer* next_timer() const { return timers_.empty() ? nullptr : &*timers_.begin(); }
  // Broken accounting identities, described; empty when all hold.
  std::vector<std::string> check_invariants() const;
  uint64_t anomalies() const { return anomalies_; }

 private:
  enum class RowKind : char { kOrg = 'o', kLot = 'l', kWorkspace = 'w', kMember = 'm', kHold = 'h', kUsage = 'u' };
  // A row changed since the last flush. Entities carry a dirty flag so each is queued
  // once; `key` points at a map key (stable), `index` is a lot or workspace id, `usage`
  // a usage id's handle in OrgBalances::usage_ids.
  struct Changed {
    RowKind kind;
    const std::string* org;
    uint32_t index = 0;
    const std::string* key = nullptr;
    UsageIds::Handle usage = 0;
  };

  OrgBalances* org(std::string_view id, const std::string** key = nullptr);
  WorkspaceBalance* workspace(OrgBalances& org, const std::string& org_id, uint32_t id);
  void take(OrgBalances& org, const std::string& org_id, uint32_t workspace, const std::vector<LotPortion>& lots);
  void give(OrgBalances& org, const std::string& org_id, uint32_t workspace, const std::vector<LotPortion>& lots);
  void lot_changed(OrgBalances& org, const std::string& org_id, uint32_t lot);
  static void spend(Spend& spend, int64_t time_us, int64_t spent_delta, int64_t held_delta, int64_t held_bucket_time_us);
  void mark_org(OrgBalances& org, const std::string& org_id);
  void mark_lot(OrgBalances& org, const std::string& org_id, uint32_t lot);
  void mark_member(const std::string& org_id, MemberBalance& member, const std::string& user);
  void mark_hold(const std::string& org_id, Hold& hold, const std::string& hold_id);
  // `hash`: the user's key_hash.
  MemberBalance& member(OrgBalances& org, const std::string& org_id, std::string_view user, size_t hash);
  MemberBalance& member(OrgBalances& org, const std::string& org_id, std::string_view user) {
    return member(org, org_id, user, key_hash(user));
  }
  void apply_usage(const fb::Envelope& event, const fb::UsageRecorded& usage, OrgBalances& org, const std::string& org_id,
                   size_t user_hash);
  void write_row(const Changed& row, RowSink* sink) const;
  // The history row of usage id `id` of organization `org_id` (RowKind::kUsage).
  static void put_usage_history_row(std::string_view org_id, std::string_view id, const UsageRef& usage, RowSink* sink);
  OrgBalances& loading_org(std::string_view org_id);
  void rebuild_timers();

  IndexedMap<OrgBalances> orgs_;
  std::set<Timer> timers_;
  std::vector<Changed> changed_;
  // Usage ids recorded since the last flush (RowKind::kUsage): history rows, written
  // with every batch (flush_history) rather than with the other rows.
  std::vector<Changed> recorded_;
  bool usage_history_elsewhere_ = false;  // see usage_history_elsewhere()
  uint64_t anomalies_ = 0;
  // The portions of the event being applied (usage, transfers): one buffer for all.
  std::vector<LotPortion> portions_;
  // The last organization of load_row or load_history_row (map nodes never move).
  OrgBalances* loading_ = nullptr;
  std::string loading_id_;
  // Usage ids read from history rows and not yet in their index: each one's slot is
  // prefetched as it arrives and the id inserted kLoadAhead rows later, so the index's
  // cache misses (one per id, in a table of millions) overlap. A ring, oldest at
  // load_next_; finish_history() inserts what is left.
  static constexpr size_t kLoadAhead = 16;
  struct PendingUsageId {
    OrgBalances* org = nullptr;
    std::string id;
    UsageRef ref;
  };
  std::vector<PendingUsageId> load_pending_;
  size_t load_next_ = 0;
  // Inserts the oldest pending id; false if it was there already (a malformed store).
  bool insert_oldest_pending();
};

}  // namespace tally
