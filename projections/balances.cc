#include "projections/balances.h"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "engine/log.h"
#include "engine/values.h"
#include "projections/codec.h"

namespace tally {
namespace {

constexpr uint32_t kPrimaryWorkspace = 0;

std::string_view str(const flatbuffers::String* s) { return s == nullptr ? std::string_view() : s->string_view(); }

std::string be32(uint32_t v) {
  std::string out(4, '\0');
  for (int i = 3; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}

uint32_t read_be32(std::string_view s) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4 && i < s.size(); ++i) v = (v << 8) | static_cast<uint8_t>(s[i]);
  return v;
}

// Replaces *out with the event's portions (reusing its capacity: a usage event brings
// some, and the replay meets millions of them).
void portions_of(const flatbuffers::Vector<const fb::LotAmount*>* lots, std::vector<LotPortion>* out) {
  out->clear();
  if (lots == nullptr) return;
  out->reserve(lots->size());
  for (const fb::LotAmount* portion : *lots) out->push_back({portion->lot(), portion->amount()});
}

void roll(SpendCounter& counter, int64_t bucket) {
  if (counter.bucket != bucket) counter = SpendCounter{bucket, 0, 0};
}

void write_portions(RowWriter& out, const std::vector<LotPortion>& portions) {
  out.u32(static_cast<uint32_t>(portions.size()));
  for (const LotPortion& p : portions) out.u32(p.lot).i64(p.amount);
}

std::vector<LotPortion> read_portions(RowReader& in) {
  const uint32_t n = in.u32();
  std::vector<LotPortion> portions;
  for (uint32_t i = 0; i < n && in.ok(); ++i) {
    LotPortion p;
    p.lot = in.u32();
    p.amount = in.i64();
    portions.push_back(p);
  }
  return portions;
}

void write_spend(RowWriter& out, const Spend& s) {
  out.i64(s.day.bucket).i64(s.day.spent).i64(s.day.held).i64(s.month.bucket).i64(s.month.spent).i64(s.month.held);
  out.i64(s.day_limit).i64(s.month_limit);
}

Spend read_spend(RowReader& in) {
  Spend s;
  s.day.bucket = in.i64();
  s.day.spent = in.i64();
  s.day.held = in.i64();
  s.month.bucket = in.i64();
  s.month.spent = in.i64();
  s.month.held = in.i64();
  s.day_limit = in.i64();
  s.month_limit = in.i64();
  return s;
}

}  // namespace

std::string_view lot_kind_name(LotKind kind) {
  switch (kind) {
    case LotKind::Plan: return "plan";
    case LotKind::OneTime: return "one_time";
    case LotKind::TopUp: return "top_up";
    case LotKind::Promo: return "promo";
  }
  return "plan";
}

std::string_view hold_state_name(HoldState state) {
  switch (state) {
    case HoldState::kOpen: return "open";
    case HoldState::kSettled: return "settled";
    case HoldState::kReleased: return "released";
    case HoldState::kTimedOut: return "timed_out";
  }
  return "open";
}

int64_t OrgBalances::available() const {
  int64_t total = 0;
  for (const WorkspaceBalance& w : workspaces) total += w.available;
  return total;
}

bool OrgBalances::spent_before(uint32_t a, uint32_t b) const {
  const Lot& x = lots[a];
  const Lot& y = lots[b];
  // Soonest expiry first, lots without expiry last; promo before paid kinds; the
  // oldest grant; then the grant id; the lot id only separates a purchase from the
  // bank lot it released.
  const int64_t x_expiry = x.expires_at_us == 0 ? std::numeric_limits<int64_t>::max() : x.expires_at_us;
  const int64_t y_expiry = y.expires_at_us == 0 ? std::numeric_limits<int64_t>::max() : y.expires_at_us;
  const int x_paid = x.kind == LotKind::Promo ? 0 : 1;
  const int y_paid = y.kind == LotKind::Promo ? 0 : 1;
  return std::tie(x_expiry, x_paid, x.granted_us, x.grant, a) < std::tie(y_expiry, y_paid, y.granted_us, y.grant, b);
}

std::vector<LotPortion> OrgBalances::draw(const std::vector<LotPortion>& holdings, int64_t amount) {
  std::vector<LotPortion> taken;
  draw_each(holdings, amount, [&](const LotPortion& portion) { taken.push_back(portion); });
  return taken;
}

const OrgBalances* BalancesProjection::find(std::string_view org) const {
  auto it = orgs_.find(org);
  return it == orgs_.end() ? nullptr : &it->second;
}

OrgBalances* BalancesProjection::org(std::string_view id, const std::string** key) {
  auto it = orgs_.find(id);
  if (it == orgs_.end()) {
    ++anomalies_;
    return nullptr;
  }
  if (key != nullptr) *key = &it->first;
  return &it->second;
}

void BalancesProjection::mark_org(OrgBalances& org, const std::string& org_id) {
  if (org.dirty) return;
  org.dirty = true;
  changed_.push_back({RowKind::kOrg, &org_id});
}

void BalancesProjection::mark_lot(OrgBalances& org, const std::string& org_id, uint32_t lot) {
  if (org.lots[lot].dirty) return;
  org.lots[lot].dirty = true;
  changed_.push_back({RowKind::kLot, &org_id, lot});
}

void BalancesProjection::mark_member(const std::string& org_id, MemberBalance& member, const std::string& user) {
  if (member.dirty) return;
  member.dirty = true;
  changed_.push_back({RowKind::kMember, &org_id, 0, &user});
}

void BalancesProjection::mark_hold(const std::string& org_id, Hold& hold, const std::string& hold_id) {
  if (hold.dirty) return;
  hold.dirty = true;
  changed_.push_back({RowKind::kHold, &org_id, 0, &hold_id});
}

MemberBalance& BalancesProjection::member(OrgBalances& org, const std::string& org_id, std::string_view user, size_t hash) {
  auto it = org.members.find(user, hash);
  if (it == org.members.end()) it = org.members.emplace(std::string(user), MemberBalance{}).first;
  mark_member(org_id, it->second, it->first);
  return it->second;
}

WorkspaceBalance* BalancesProjection::workspace(OrgBalances& org, const std::string& org_id, uint32_t id) {
  if (id >= org.workspaces.size()) {
    ++anomalies_;
    return nullptr;
  }
  WorkspaceBalance& w = org.workspaces[id];
  if (!w.dirty) {
    w.dirty = true;
    changed_.push_back({RowKind::kWorkspace, &org_id, id});
  }
  return &w;
}

void BalancesProjection::lot_changed(OrgBalances& org, const std::string& org_id, uint32_t lot_id) {
  mark_lot(org, org_id, lot_id);
  const Lot& lot = org.lots[lot_id];
  // A lot with nothing left anywhere has nothing to expire.
  if (lot.expires_at_us != 0 && (lot.expired || lot.outstanding() == 0)) {
    timers_.erase(Timer{lot.expires_at_us, org_id, lot_id, {}});
  }
}

void BalancesProjection::take(OrgBalances& org, const std::string& org_id, uint32_t workspace_id, const std::vector<LotPortion>& lots) {
  WorkspaceBalance* w = workspace(org, org_id, workspace_id);
  if (w == nullptr) return;
  for (const LotPortion& portion : lots) {
    auto it = std::find_if(w->holdings.begin(), w->holdings.end(), [&](const LotPortion& p) { return p.lot == portion.lot; });
    if (it == w->holdings.end() || it->amount < portion.amount) {
      ++anomalies_;
      continue;
    }
    it->amount -= portion.amount;
    w->available -= portion.amount;
    if (it->amount == 0) w->holdings.erase(it);
  }
}

void BalancesProjection::give(OrgBalances& org, const std::string& org_id, uint32_t workspace_id, const std::vector<LotPortion>& lots) {
  WorkspaceBalance* w = workspace(org, org_id, workspace_id);
  if (w == nullptr) return;
  for (const LotPortion& portion : lots) {
    if (portion.lot >= org.lots.size() || portion.amount <= 0) {
      ++anomalies_;
      continue;
    }
    w->available += portion.amount;
    auto it = std::find_if(w->holdings.begin(), w->holdings.end(), [&](const LotPortion& p) { return p.lot == portion.lot; });
    if (it != w->holdings.end()) {
      it->amount += portion.amount;
      continue;
    }
    auto at = std::find_if(w->holdings.begin(), w->holdings.end(), [&](const LotPortion& p) { return org.spent_before(portion.lot, p.lot); });
    w->holdings.insert(at, portion);
  }
}

void BalancesProjection::prefetch(const fb::Envelope& event, PrefetchStage stage, PrefetchNote* note) const {
  const auto* e = event.event_as_UsageRecorded();
  if (e == nullptr) return;
  if (stage == PrefetchStage::kSlot) {
    auto it = orgs_.find(str(e->org()));
    if (it == orgs_.end()) return;
    const OrgBalances& org = it->second;
    note->entry = &*it;
    note->hashes[0] = key_hash(str(e->user()));
    org.usage_ids.prefetch(str(e->id()));
    org.members.prefetch(note->hashes[0]);
    return;
  }
  if (note->entry == nullptr) return;  // the organization was not there at kSlot
  const OrgBalances& org = static_cast<const IndexedMap<OrgBalances>::value_type*>(note->entry)->second;
  if (stage == PrefetchStage::kEntry) {
    org.members.prefetch_entry(note->hashes[0]);
  } else {
    org.members.prefetch_key(note->hashes[0]);
  }
}

void BalancesProjection::apply_usage(const fb::Envelope& event, const fb::UsageRecorded& usage, OrgBalances& org,
                                     const std::string& org_id, size_t user_hash) {
  const int64_t now = event.time_us();
  portions_of(usage.lots(), &portions_);
  take(org, org_id, usage.funding_workspace(), portions_);
  for (const LotPortion& portion : portions_) {
    if (portion.lot >= org.lots.size()) continue;
    org.lots[portion.lot].consumed += portion.amount;
    lot_changed(org, org_id, portion.lot);
  }
  if (WorkspaceBalance* w = workspace(org, org_id, usage.workspace())) {
    w->consumed += usage.amount();
    spend(w->spend, now, usage.amount(), 0, now);
  }
  MemberBalance& m = member(org, org_id, str(usage.user()), user_hash);
  m.consumed += usage.amount();
  spend(m.spend, now, usage.amount(), 0, now);
  org.consumed += usage.amount();
  const std::string_view usage_id = str(usage.id());
  if (usage_id.size() > UsageIds::kIdBytesMax) {
    ++anomalies_;  // the engine never records such an id
  } else {
    auto [handle, inserted] = org.usage_ids.insert(usage_id, UsageRef{event.seq(), usage.content_hash(), usage.amount()});
    if (inserted) {
      if (history_rows_kept_ && !usage_history_elsewhere_) recorded_.push_back({RowKind::kUsage, &org_id, 0, nullptr, handle});
    } else {
      ++anomalies_;  // the engine answers repeats without an event
    }
  }
  mark_org(org, org_id);
}

void BalancesProjection::apply_noted(const fb::Envelope& event, const PrefetchNote& note) {
  const auto* e = event.event_as_UsageRecorded();
  if (e == nullptr || note.entry == nullptr) {
    apply(event);
    return;
  }
  // What apply() does for it, but for the lookups the note answers. The node is this
  // projection's own, passed through prefetch(), which may only read it.
  checkpoint_ = event.seq();
  auto* node = const_cast<IndexedMap<OrgBalances>::value_type*>(static_cast<const IndexedMap<OrgBalances>::value_type*>(note.entry));
  apply_usage(event, *e, node->second, node->first, note.hashes[0]);
}

void BalancesProjection::apply(const fb::Envelope& event) {
  checkpoint_ = event.seq();
  const int64_t now = event.time_us();
  const std::string* id_key = nullptr;
  switch (event.event_type()) {
    case fb::Event::OrgCreated: {
      auto [it, inserted] = orgs_.emplace(str(event.event_as_OrgCreated()->org()));
      if (!inserted) {
        ++anomalies_;
        return;
      }
      it->second.workspaces.resize(1);
      mark_org(it->second, it->first);
      workspace(it->second, it->first, kPrimaryWorkspace);
      return;
    }
    case fb::Event::WorkspaceCreated: {
      const auto* e = event.event_as_WorkspaceCreated();
      OrgBalances* o = org(str(e->org()), &id_key);
      if (o == nullptr) return;
      if (o->workspaces.size() <= e->workspace_id()) o->workspaces.resize(e->workspace_id() + 1);
      workspace(*o, *id_key, e->workspace_id());
      return;
    }
    case fb::Event::CreditsGranted: {
      const auto* e = event.event_as_CreditsGranted();
      OrgBalances* o = org(str(e->org()), &id_key);
      if (o == nullptr || e->lot() != o->lots.size()) {
        ++anomalies_;
        return;
      }
      const std::string& id = *id_key;
      Lot lot;
      lot.grant = str(e->grant());
      lot.kind = e->kind();
      lot.amount = e->amount();
      lot.expires_at_us = e->expires_at();
      lot.granted_us = now;
      o->lots.push_back(lot);
      o->lot_by_grant.emplace(lot.grant, e->lot());
      o->granted += e->amount();
      if (lot.expires_at_us != 0) timers_.insert(Timer{lot.expires_at_us, id, e->lot(), {}});
      give(*o, id, kPrimaryWorkspace, {LotPortion{e->lot(), e->amount()}});
      mark_org(*o, id);
      mark_lot(*o, id, e->lot());
      return;
    }
    case fb::Event::BankReleased: {
      const auto* e = event.event_as_BankReleased();
      OrgBalances* o = org(str(e->org()), &id_key);
      if (o == nullptr || e->lot() != o->lots.size()) {
        ++anomalies_;
        return;
      }
      const std::string& id = *id_key;
      Lot lot;
      lot.grant = str(e->grant());
      lot.kind = LotKind::OneTime;
      lot.amount = e->amount();
      lot.granted_us = now;
      lot.from_bank = true;
      o->lots.push_back(lot);
      o->banked -= e->amount();
      give(*o, id, kPrimaryWorkspace, {LotPortion{e->lot(), e->amount()}});
      mark_org(*o, id);
      mark_lot(*o, id, e->lot());
      return;
    }
    case fb::Event::CreditsMoved: {
      const auto* e = event.event_as_CreditsMoved();
      OrgBalances* o = org(str(e->org()), &id_key);
      if (o == nullptr) return;
      portions_of(e->lots(), &portions_);
      take(*o, *id_key, e->from_workspace(), portions_);
      give(*o, *id_key, e->to_workspace(), portions_);
      return;
    }
    case fb::Event::LotExpired: {
      const auto* e = event.event_as_LotExpired();
      OrgBalances* o = org(str(e->org()), &id_key);
      if (o == nullptr || e->lot() >= o->lots.size()) return;
      const std::string& id = *id_key;
      Lot& lot = o->lots[e->lot()];
      if (e->workspaces() != nullptr) {
        for (const fb::WorkspaceAmount* part : *e->workspaces()) take(*o, id, part->workspace(), {LotPortion{e->lot(), part->amount()}});
      }
      lot.expired = true;
      if (e->banked()) {
        lot.banked_amount += e->amount();
        o->banked += e->amount();
      } else {
        lot.expired_amount += e->amount();
        o->expired += e->amount();
      }
      timers_.erase(Timer{lot.expires_at_us, id, e->lot(), {}});
      mark_org(*o, id);
      lot_changed(*o, id, e->lot());
      return;
    }
    case fb::Event::PlanSet: {
      const auto* e = event.event_as_PlanSet();
      OrgBalances* o = org(str(e->org()), &id_key);
      if (o == nullptr) return;
      o->plan = str(e->plan());
      o->plan_monthly = e->monthly_amount();
      o->plan_rollover = e->rollover();
      mark_org(*o, *id_key);
      return;
    }
    case fb::Event::UsageRecorded: {
      const auto* e = event.event_as_UsageRecorded();
      OrgBalances* o = org(str(e->org()), &id_key);
      if (o == nullptr) return;
      apply_usage(event, *e, *o, *id_key, key_hash(str(e->user())));
      return;
    }
    case fb::Event::HoldReserved: {
      const auto* e = event.event_as_HoldReserved();
      OrgBalances* o = org(str(e->org()), &id_key);
      if (o == nullptr) return;
      const std::string& id = *id_key;
      auto [it, inserted] = o->holds.try_emplace(std::string(str(e->hold())));
      if (!inserted) {
        ++anomalies_;
        return;
      }
      Hold& hold = it->second;
      portions_of(e->lots(), &hold.lots);
      take(*o, id, e->funding_workspace(), hold.lots);
      hold.workspace = e->workspace();
      hold.funding_workspace = e->funding_workspace();
      hold.user = str(e->user());
      hold.tool = str(e->tool());
      hold.model = str(e->model());
      hold.amount = e->amount();
      hold.reserved_us = now;
      hold.expires_at_us = e->expires_at();
      if (WorkspaceBalance* w = workspace(*o, id, e->workspace())) {
        w->held += e->amount();
        spend(w->spend, now, 0, e->amount(), now);
      }
      MemberBalance& m = member(*o, id, hold.user);
      m.held += e->amount();
      spend(m.spend, now, 0, e->amount(), now);
      o->held += e->amount();
      timers_.insert(Timer{hold.expires_at_us, id, 0, it->first});
      mark_hold(id, hold, it->first);
      mark_org(*o, id);
      return;
    }
    case fb::Event::HoldClosed: {
      const auto* e = event.event_as_HoldClosed();
      OrgBalances* o = org(str(e->org()), &id_key);
      if (o == nullptr) return;
      const std::string& id = *id_key;
      auto it = o->holds.find(str(e->hold()));
      if (it == o->holds.end() || it->second.state != HoldState::kOpen) {
        ++anomalies_;
        return;
      }
      Hold& hold = it->second;
      timers_.erase(Timer{hold.expires_at_us, id, 0, it->first});
      portions_of(e->consumed_lots(), &portions_);
      for (const LotPortion& portion : portions_) {
        if (portion.lot >= o->lots.size()) continue;
        o->lots[portion.lot].consumed += portion.amount;
        lot_changed(*o, id, portion.lot);
      }
      portions_of(e->expired_lots(), &portions_);
      for (const LotPortion& portion : portions_) {
        if (portion.lot >= o->lots.size()) continue;
        Lot& lot = o->lots[portion.lot];
        if (lot.kind == LotKind::OneTime) {
          lot.banked_amount += portion.amount;
          o->banked += portion.amount;
        } else {
          lot.expired_amount += portion.amount;
          o->expired += portion.amount;
        }
        lot_changed(*o, id, portion.lot);
      }
      portions_of(e->returned_lots(), &portions_);
      give(*o, id, e->returned_to(), portions_);
      if (WorkspaceBalance* w = workspace(*o, id, hold.workspace)) {
        w->held -= hold.amount;
        w->consumed += e->amount();
        spend(w->spend, now, e->amount(), -hold.amount, hold.reserved_us);
      }
      MemberBalance& m = member(*o, id, hold.user);
      m.held -= hold.amount;
      m.consumed += e->amount();
      spend(m.spend, now, e->amount(), -hold.amount, hold.reserved_us);
      o->held -= hold.amount;
      o->consumed += e->amount();
      hold.state = e->end() == fb::HoldEnd::Settled ? HoldState::kSettled
                   : e->end() == fb::HoldEnd::Released ? HoldState::kReleased
                                                       : HoldState::kTimedOut;
      hold.consumed = e->amount();
      hold.lots.clear();
      mark_hold(id, hold, it->first);
      mark_org(*o, id);
      return;
    }
    case fb::Event::LimitSet: {
      const auto* e = event.event_as_LimitSet();
      OrgBalances* o = org(str(e->org()), &id_key);
      if (o == nullptr) return;
      Spend* target = nullptr;
      if (str(e->user()).empty()) {
        if (WorkspaceBalance* w = workspace(*o, *id_key, e->workspace())) target = &w->spend;
      } else {
        target = &member(*o, *id_key, str(e->user())).spend;
      }
      if (target == nullptr) return;
      (e->period() == fb::LimitPeriod::Day ? target->day_limit : target->month_limit) = e->amount() < 0 ? -1 : e->amount();
      return;
    }
    default:
      return;
  }
}

// Records spend: `spent` in the buckets of `time_us`; `held` changes in the buckets of
// `held_time_us` (the hold's reservation time), if those buckets are still current.
void BalancesProjection::spend(Spend& s, int64_t time_us, int64_t spent, int64_t held, int64_t held_time_us) {
  if (held >= 0) {
    // Usage and new reservations: counted in the current bucket. The buckets roll
    // together, and a day lies in one month, so the month (a civil-calendar sum, twice
    // per usage event) is worked out only when the day changes.
    const int64_t day = day_of(time_us);
    if (s.day.bucket != day) {
      roll(s.day, day);
      roll(s.month, month_of(time_us));
    }
    s.day.spent += spent;
    s.day.held += held;
    s.month.spent += spent;
    s.month.held += held;
    return;
  }
  // A hold closes: its reservation leaves the bucket it was made in, and what it
  // consumed is charged to that same bucket. A bucket already rolled over is history.
  if (s.day.bucket == day_of(held_time_us)) {
    s.day.held += held;
    s.day.spent += spent;
  }
  if (s.month.bucket == month_of(held_time_us)) {
    s.month.held += held;
    s.month.spent += spent;
  }
}

// ---- rows ----------------------------------------------------------------------------

void BalancesProjection::write_row(const Changed& row, RowSink* sink) const {
  const std::string& org_id = *row.org;
  const OrgBalances* o = find(org_id);
  if (o == nullptr) return;
  if (row.kind == RowKind::kUsage) {  // a history row, at the usage's seq
    put_usage_history_row(org_id, o->usage_ids.id_at(row.usage), o->usage_ids.ref_at(row.usage), sink);
    return;
  }
  std::string key = "balances/";
  key += static_cast<char>(row.kind);
  key += '/';
  key += org_id;
  RowWriter out;
  switch (row.kind) {
    case RowKind::kOrg:
      out.i64(o->granted).i64(o->expired).i64(o->banked).i64(o->held).i64(o->consumed);
      out.str(o->plan).i64(o->plan_monthly).u8(o->plan_rollover);
      break;
    case RowKind::kLot: {
      key += '\0';
      key += be32(row.index);
      const Lot& lot = o->lots.at(row.index);
      out.str(lot.grant).u8(static_cast<uint8_t>(lot.kind)).i64(lot.amount).i64(lot.expires_at_us).i64(lot.granted_us);
      out.u8(lot.from_bank).u8(lot.expired).i64(lot.consumed).i64(lot.expired_amount).i64(lot.banked_amount);
      break;
    }
    case RowKind::kWorkspace: {
      key += '\0';
      key += be32(row.index);
      const WorkspaceBalance& w = o->workspaces.at(row.index);
      write_portions(out, w.holdings);
      out.i64(w.available).i64(w.held).i64(w.consumed);
      write_spend(out, w.spend);
      break;
    }
    case RowKind::kMember: {
      key += '\0';
      key += *row.key;
      const MemberBalance& m = o->members.at(*row.key);
      out.i64(m.held).i64(m.consumed);
      write_spend(out, m.spend);
      break;
    }
    case RowKind::kHold: {
      key += '\0';
      key += *row.key;
      const Hold& h = o->holds.at(*row.key);
      out.u32(h.workspace).u32(h.funding_workspace).str(h.user).str(h.tool).str(h.model);
      out.i64(h.amount).i64(h.reserved_us).i64(h.expires_at_us);
      write_portions(out, h.lots);
      out.u8(static_cast<uint8_t>(h.state)).i64(h.consumed);
      break;
    }
    case RowKind::kUsage: return;  // written above
  }
  sink->put(key, out.data());
}

void BalancesProjection::put_usage_history_row(std::string_view org_id, std::string_view id, const UsageRef& usage, RowSink* sink) {
  std::string key;
  key.reserve(sizeof "balances/u/" + org_id.size() + 1 + id.size());
  key += "balances/";
  key += static_cast<char>(RowKind::kUsage);
  key += '/';
  key += org_id;
  key += '\0';
  key += id;
  RowWriter out;
  out.u64(usage.seq).u64(usage.content_hash).i64(usage.amount);
  sink->put_history(usage.seq, key, out.data());
}

void BalancesProjection::put_usage_history(const fb::Envelope& event, RowSink* sink) {
  const fb::UsageRecorded* usage = event.event_as_UsageRecorded();
  if (usage == nullptr || usage->id() == nullptr || usage->id()->size() > UsageIds::kIdBytesMax) return;
  put_usage_history_row(str(usage->org()), str(usage->id()), UsageRef{event.seq(), usage->content_hash(), usage->amount()}, sink);
}

void BalancesProjection::flush_history(RowSink* sink) {
  for (const Changed& row : recorded_) write_row(row, sink);
  recorded_.clear();
}

void BalancesProjection::flush(RowSink* sink) {
  flush_history(sink);
  for (const Changed& row : changed_) {
    write_row(row, sink);
    // Clear the entity's flag so its next change queues it again.
    OrgBalances& o = orgs_.find(*row.org)->second;
    switch (row.kind) {
      case RowKind::kOrg: o.dirty = false; break;
      case RowKind::kLot: o.lots[row.index].dirty = false; break;
      case RowKind::kWorkspace: o.workspaces[row.index].dirty = false; break;
      case RowKind::kMember: o.members.find(*row.key)->second.dirty = false; break;
      case RowKind::kHold: o.holds.find(*row.key)->second.dirty = false; break;
      case RowKind::kUsage: break;  // in recorded_, never here
    }
  }
  changed_.clear();
  sink->put(checkpoint_key(), be64(checkpoint_));
}

void BalancesProjection::dump(RowSink* sink) const {
  for (const auto& [id, o] : orgs_) {
    write_row({RowKind::kOrg, &id}, sink);
    for (uint32_t i = 0; i < o.lots.size(); ++i) write_row({RowKind::kLot, &id, i}, sink);
    for (uint32_t i = 0; i < o.workspaces.size(); ++i) write_row({RowKind::kWorkspace, &id, i}, sink);
    for (const auto& [user, m] : o.members) write_row({RowKind::kMember, &id, 0, &user}, sink);
    for (const auto& [hold, h] : o.holds) write_row({RowKind::kHold, &id, 0, &hold}, sink);
    const std::string* org_id = &id;  // clang 14 lambdas cannot capture structured bindings
    o.usage_ids.for_each([&](UsageIds::Handle usage) { write_row({RowKind::kUsage, org_id, 0, nullptr, usage}, sink); });
  }
  sink->put(checkpoint_key(), be64(checkpoint_));
}

OrgBalances& BalancesProjection::loading_org(std::string_view org_id) {
  // Rows arrive in key order, an organization's together (and usage rows mostly one
  // organization's after another's): look it up once per run.
  if (loading_ == nullptr || loading_id_ != org_id) {
    loading_ = &orgs_.emplace(org_id).first->second;
    loading_id_ = org_id;
  }
  return *loading_;
}

bool BalancesProjection::load_history_row(uint64_t seq, std::string_view key, std::string_view value) {
  // The only history rows here: "balances/u/<org>\0<usage id>".
  const std::string prefix = row_prefix() + "u/";
  if (!key.starts_with(prefix)) return false;
  const std::string_view rest = key.substr(prefix.size());
  const size_t nul = rest.find('\0');
  if (nul == std::string_view::npos) return false;
  const std::string_view usage_id = rest.substr(nul + 1);
  if (usage_id.empty() || usage_id.size() > UsageIds::kIdBytesMax) return false;
  RowReader in(value);
  UsageRef u;
  u.seq = in.u64();
  u.content_hash = in.u64();
  u.amount = in.i64();
  if (!in.done() || u.seq != seq) return false;
  OrgBalances& org = loading_org(rest.substr(0, nul));
  org.usage_ids.prefetch(usage_id);
  if (load_pending_.size() < kLoadAhead) {
    load_pending_.push_back(PendingUsageId{&org, std::string(usage_id), u});
    return true;
  }
  if (!insert_oldest_pending()) return false;
  PendingUsageId& slot = load_pending_[load_next_];
  slot.org = &org;
  slot.id.assign(usage_id);  // reuses the string's buffer
  slot.ref = u;
  load_next_ = (load_next_ + 1) % kLoadAhead;
  return true;
}

bool BalancesProjection::insert_oldest_pending() {
  const PendingUsageId& oldest = load_pending_[load_next_];
  return oldest.org->usage_ids.insert(oldest.id, oldest.ref).second;
}

bool BalancesProjection::finish_history() {
  // Oldest first, so each index keeps its ids in the order of their rows.
  bool ok = true;
  for (size_t i = 0; i < load_pending_.size() && ok; ++i) {
    ok = insert_oldest_pending();
    load_next_ = (load_next_ + 1) % load_pending_.size();
  }
  load_pending_.clear();
  load_next_ = 0;
  return ok;
}

bool BalancesProjection::load_row(std::string_view key, std::string_view value) {
  if (key == checkpoint_key()) {
    if (value.size() != 8) return false;
    checkpoint_ = read_be64(value);
    rebuild_timers();
    return true;
  }
  const std::string prefix = row_prefix();
  if (!key.starts_with(prefix) || key.size() < prefix.size() + 3 || key[prefix.size() + 1] != '/') return false;
  const char kind = key[prefix.size()];
  const std::string_view rest = key.substr(prefix.size() + 2);
  const size_t nul = rest.find('\0');
  const std::string_view org_id = rest.substr(0, nul);
  const std::string_view sub = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
  if ((kind == 'o') != (nul == std::string_view::npos)) return false;
  OrgBalances& o = loading_org(org_id);
  RowReader in(value);
  switch (kind) {
    case 'o':
      o.granted = in.i64();
      o.expired = in.i64();
      o.banked = in.i64();
      o.held = in.i64();
      o.consumed = in.i64();
      o.plan = in.str();
      o.plan_monthly = in.i64();
      o.plan_rollover = in.u8() != 0;
      break;
    case 'l': {
      if (sub.size() != 4) return false;
      const uint32_t id = read_be32(sub);
      if (id > 100'000'000) return false;
      if (o.lots.size() <= id) o.lots.resize(id + 1);
      Lot& lot = o.lots[id];
      lot.grant = in.str();
      lot.kind = static_cast<LotKind>(in.u8());
      lot.amount = in.i64();
      lot.expires_at_us = in.i64();
      lot.granted_us = in.i64();
      lot.from_bank = in.u8() != 0;
      lot.expired = in.u8() != 0;
      lot.consumed = in.i64();
      lot.expired_amount = in.i64();
      lot.banked_amount = in.i64();
      if (!lot.from_bank) o.lot_by_grant[lot.grant] = id;
      break;
    }
    case 'w': {
      if (sub.size() != 4) return false;
      const uint32_t id = read_be32(sub);
      if (id >= kWorkspacesPerOrgMax) return false;
      if (o.workspaces.size() <= id) o.workspaces.resize(id + 1);
      WorkspaceBalance& w = o.workspaces[id];
      w.holdings = read_portions(in);
      w.available = in.i64();
      w.held = in.i64();
      w.consumed = in.i64();
      w.spend = read_spend(in);
      break;
    }
    case 'm': {
      MemberBalance& m = o.members[std::string(sub)];
      m.held = in.i64();
      m.consumed = in.i64();
      m.spend = read_spend(in);
      break;
    }
    case 'h': {
      Hold& h = o.holds[std::string(sub)];
      h.workspace = in.u32();
      h.funding_workspace = in.u32();
      h.user = in.str();
      h.tool = in.str();
      h.model = in.str();
      h.amount = in.i64();
      h.reserved_us = in.i64();
      h.expires_at_us = in.i64();
      h.lots = read_portions(in);
      h.state = static_cast<HoldState>(in.u8());
      h.consumed = in.i64();
      break;
    }
    default:
      return false;
  }
  return in.done();
}

void BalancesProjection::rebuild_timers() {
  timers_.clear();
  for (const auto& [id, o] : orgs_) {
    for (uint32_t i = 0; i < o.lots.size(); ++i) {
      const Lot& lot = o.lots[i];
      if (lot.expires_at_us != 0 && !lot.expired && lot.outstanding() > 0) timers_.insert(Timer{lot.expires_at_us, id, i, {}});
    }
    for (const auto& [hold_id, hold] : o.holds) {
      if (hold.state == HoldState::kOpen) timers_.insert(Timer{hold.expires_at_us, id, 0, hold_id});
    }
  }
}

void BalancesProjection::clear() {
  orgs_.clear();
  loading_ = nullptr;
  load_pending_.clear();
  load_next_ = 0;
  timers_.clear();
  changed_.clear();
  recorded_.clear();
  anomalies_ = 0;
  checkpoint_ = 0;
}

std::vector<std::string> BalancesProjection::check_invariants() const {
  std::vector<std::string> problems;
  auto problem = [&](std::string text) {
    if (problems.size() < 20) problems.push_back(std::move(text));
  };
  for (const auto& [id, o] : orgs_) {
    // Where each lot's credits are now.
    std::vector<int64_t> in_workspaces(o.lots.size(), 0);
    std::vector<int64_t> in_holds(o.lots.size(), 0);
    int64_t available = 0;
    for (uint32_t w = 0; w < o.workspaces.size(); ++w) {
      const WorkspaceBalance& ws = o.workspaces[w];
      int64_t sum = 0;
      for (size_t i = 0; i < ws.holdings.size(); ++i) {
        const LotPortion& p = ws.holdings[i];
        if (p.lot >= o.lots.size() || p.amount <= 0) {
          problem(fmt::format("{}: workspace {} holds a bad portion of lot {}", id, w, p.lot));
          continue;
        }
        if (i > 0 && !o.spent_before(ws.holdings[i - 1].lot, p.lot)) problem(fmt::format("{}: workspace {} holdings out of order", id, w));
        in_workspaces[p.lot] += p.amount;
        sum += p.amount;
      }
      if (sum != ws.available) problem(fmt::format("{}: workspace {} available {} != its lots {}", id, w, ws.available, sum));
      if (ws.available < 0 || ws.held < 0 || ws.consumed < 0) problem(fmt::format("{}: workspace {} has a negative balance", id, w));
      available += ws.available;
      for (const auto* counter : {&ws.spend.day, &ws.spend.month}) {
        if (counter->held < 0 || counter->spent < 0) problem(fmt::format("{}: workspace {} spend counter negative", id, w));
      }
    }
    int64_t held = 0;
    for (const auto& [hold_id, hold] : o.holds) {
      if (hold.state != HoldState::kOpen) continue;
      int64_t sum = 0;
      for (const LotPortion& p : hold.lots) {
        if (p.lot < o.lots.size()) in_holds[p.lot] += p.amount;
        sum += p.amount;
      }
      if (sum != hold.amount) problem(fmt::format("{}: hold {} amount {} != its lots {}", id, hold_id, hold.amount, sum));
      held += hold.amount;
    }
    for (uint32_t i = 0; i < o.lots.size(); ++i) {
      const Lot& lot = o.lots[i];
      if (lot.consumed < 0 || lot.expired_amount < 0 || lot.banked_amount < 0 || lot.outstanding() < 0) {
        problem(fmt::format("{}: lot {} goes below zero", id, i));
      }
      if (lot.outstanding() != in_workspaces[i] + in_holds[i]) {
        problem(fmt::format("{}: lot {} outstanding {} but {} in workspaces and {} in holds", id, i, lot.outstanding(), in_workspaces[i], in_holds[i]));
      }
    }
    if (held != o.held) problem(fmt::format("{}: held {} != open holds {}", id, o.held, held));
    if (o.granted - o.expired != available + o.held + o.consumed + o.banked) {
      problem(fmt::format("{}: conservation broken: granted {} - expired {} != available {} + held {} + consumed {} + banked {}", id,
                          o.granted, o.expired, available, o.held, o.consumed, o.banked));
    }
  }
  return problems;
}

}  // namespace tally
