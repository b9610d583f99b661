// A reference model of the credit ledger (SPEC §2 "Credits", "Usage, holds and
// limits") for one organization, written to be obviously right rather than fast: lots
// in a vector, each workspace's and each hold's credits as a map lot -> amount, the
// consumption order as a sort key, limits as a list of spend records summed on demand.
// It predicts, for each command, the error code the engine answers, the sequence
// number and event count of an accepted command, and every balance afterwards.
//
// It shares no code with the engine beyond the Command struct and the error codes:
// calendar arithmetic uses std::chrono, idempotency compares content field by field.
// Tests drive it with the same commands and the same clock readings as the engine.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/command.h"
#include "engine/error.h"

namespace tally::model {

inline constexpr int64_t kSecondUs = 1'000'000;
inline constexpr int64_t kMinuteUs = 60 * kSecondUs;
inline constexpr int64_t kHourUs = 60 * kMinuteUs;
inline constexpr int64_t kDayUs = 24 * kHourUs;
inline constexpr int64_t kAmountMax = 1'000'000'000LL * 1'000'000;  // one billion credits
inline constexpr int64_t kUsageAheadUs = 5 * kMinuteUs;              // occurred_at window
inline constexpr int64_t kUsageBehindUs = 90 * kDayUs;

// ---- UTC calendar, by std::chrono -------------------------------------------------------
inline int64_t utc_day(int64_t time_us) {
  return std::chrono::floor<std::chrono::days>(std::chrono::microseconds(time_us)).count();
}
inline int64_t utc_month(int64_t time_us) {
  const std::chrono::year_month_day date{std::chrono::sys_days(std::chrono::days(utc_day(time_us)))};
  return int64_t{static_cast<int>(date.year())} * 12 + static_cast<unsigned>(date.month());
}
// The same time of day one calendar month later, the day clamped to the month's end.
inline int64_t one_month_later(int64_t time_us) {
  using namespace std::chrono;
  const int64_t day = utc_day(time_us);
  const int64_t within_day = time_us - day * kDayUs;
  year_month_day date = year_month_day{sys_days(days(day))} + months(1);
  if (!date.ok()) date = date.year() / date.month() / last;
  return int64_t{sys_days(date).time_since_epoch().count()} * kDayUs + within_day;
}

enum class Kind { kPlan, kOneTime, kTopUp, kPromo };
inline Kind kind_of(const std::string& name) {
  if (name == "one_time") return Kind::kOneTime;
  if (name == "top_up") return Kind::kTopUp;
  if (name == "promo") return Kind::kPromo;
  return Kind::kPlan;
}

struct Lot {
  std::string grant;
  Kind kind = Kind::kPlan;
  int64_t amount = 0;
  int64_t expires_at = 0;  // 0: never
  int64_t granted_at = 0;
  bool from_bank = false;
  bool expired = false;  // its expiry was processed
  int64_t consumed = 0;
  int64_t expired_amount = 0;
  int64_t banked_amount = 0;
  int64_t outstanding() const { return amount - consumed - expired_amount - banked_amount; }
};

using Portions = std::map<uint32_t, int64_t>;  // lot id -> amount, never zero

struct Limits {
  std::optional<int64_t> day;
  std::optional<int64_t> month;
};

struct Workspace {
  std::string name;
  bool deleted = false;
  Portions holdings;
  int64_t held = 0;      // by open holds attributed to it
  int64_t consumed = 0;  // by usage and settled holds attributed to it
  int64_t usage_events = 0;
  Limits limits;
};

struct Member {
  std::string role;  // owner, admin, member
  uint32_t workspace = 0;
};

struct Spender {  // per user: what they hold and consumed, and their limits
  int64_t held = 0;
  int64_t consumed = 0;
  Limits limits;
};

enum class HoldEnd { kOpen, kSettled, kReleased, kTimedOut };

struct Hold {
  uint32_t workspace = 0;
  uint32_t funding = 0;
  std::string user;
  int64_t amount = 0;
  int64_t reserved_at = 0;
  int64_t expires_at = 0;
  Portions lots;  // while open
  HoldEnd end = HoldEnd::kOpen;
  int64_t consumed = 0;
};

// What a usage command asks for; a retry must match it field by field.
struct UsageContent {
  std::string workspace, user, tool, model, unit;
  int64_t quantity = 0;
  std::optional<int64_t> credits;
  int64_t occurred_at = 0;
  bool operator==(const UsageContent&) const = default;
};

struct UsageRecord {
  UsageContent content;
  uint64_t seq = 0;
  int64_t amount = 0;
};

// One debit as limits see it: a usage amount, or a hold (its open amount, then what
// it consumed), at the engine time it was made.
struct SpendRecord {
  int64_t at = 0;
  uint32_t workspace = 0;
  std::string user;
  int64_t amount = 0;
  std::string hold;  // when not empty, the amount comes from the hold
};

struct Price {
  std::string unit;
  int64_t per_unit = 0;
};

struct Outcome {
  ErrorCode code = ErrorCode::kOk;
  uint64_t seq = 0;     // first event, or the original's for a duplicate
  uint32_t events = 0;
  bool duplicate = false;
  std::optional<int64_t> credits;   // record_usage: what it debited
  std::optional<int64_t> returned;  // settle: what went back
  std::optional<int64_t> expires_at;  // reserve: when the hold times out
  bool ok() const { return code == ErrorCode::kOk; }
};

class Ledger {
 public:
  // ---- the state, public for tests to compare --------------------------------------------
  std::string org = "acme";
  bool org_exists = false;
  bool budget = false;
  std::string owner;
  std::vector<Workspace> workspaces;
  std::map<std::string, Member> members;  // active members
  std::set<std::string> keys;
  std::map<std::string, Spender> spenders;
  std::vector<Lot> lots;
  std::set<std::string> grants;
  std::map<std::string, Hold> holds;
  std::map<std::string, UsageRecord> usage;
  std::vector<SpendRecord> spends;
  std::map<std::pair<std::string, std::string>, std::map<int64_t, Price>> rates;
  int64_t granted = 0;
  int64_t expired = 0;
  int64_t banked = 0;
  int64_t held = 0;
  int64_t consumed = 0;
  std::optional<int64_t> plan_monthly;
  bool plan_rollover = true;

  uint64_t last_seq = 0;
  int64_t last_time = 0;  // engine time of the last event

  int64_t available(uint32_t workspace) const {
    int64_t total = 0;
    for (const auto& [lot, amount] : workspaces[workspace].holdings) total += amount;
    return total;
  }
  int64_t available() const {
    int64_t total = 0;
    for (uint32_t w = 0; w < workspaces.size(); ++w) total += available(w);
    return total;
  }

  // Soonest expiry first, no expiry last; promo before paid; oldest grant; grant id.
  auto order_key(uint32_t lot) const {
    const Lot& l = lots[lot];
    return std::make_tuple(l.expires_at == 0 ? std::numeric_limits<int64_t>::max() : l.expires_at, l.kind == Kind::kPromo ? 0 : 1,
                           l.granted_at, l.grant, lot);
  }
  std::vector<std::pair<uint32_t, int64_t>> ordered(const Portions& portions) const {
    std::vector<std::pair<uint32_t, int64_t>> out(portions.begin(), portions.end());
    std::sort(out.begin(), out.end(), [&](const auto& a, const auto& b) { return order_key(a.first) < order_key(b.first); });
    return out;
  }

  // What a workspace or member has used of its limit in the period bucket of `now`.
  int64_t used(std::optional<uint32_t> workspace, const std::string& user, bool day, int64_t now) const {
    const int64_t bucket = day ? utc_day(now) : utc_month(now);
    int64_t total = 0;
    for (const SpendRecord& record : spends) {
      if (workspace ? record.workspace != *workspace : record.user != user) continue;
      if ((day ? utc_day(record.at) : utc_month(record.at)) != bucket) continue;
      if (record.hold.empty()) {
        total += record.amount;
        continue;
      }
      const Hold& hold = holds.at(record.hold);
      total += hold.end == HoldEnd::kOpen ? hold.amount : hold.end == HoldEnd::kSettled ? hold.consumed : 0;
    }
    return total;
  }

  std::optional<uint32_t> find_workspace(const std::string& name) const {
    for (uint32_t w = 0; w < workspaces.size(); ++w) {
      if (!workspaces[w].deleted && workspaces[w].name == name) return w;
    }
    return std::nullopt;
  }

  // Runs one command at clock reading `clock_us`: first the engine's automatic tick,
  // then the command itself.
  Outcome execute(const Command& command, int64_t clock_us) {
    run_timers(clock_us);
    const int64_t now = std::max(clock_us, last_time + 1);
    switch (command.type) {
      case CommandType::kCreateOrg: return create_org(command, now);
      case CommandType::kCreateWorkspace: return create_workspace(command, now);
      case CommandType::kDeleteWorkspace: return delete_workspace(command, now);
      case CommandType::kInviteMember: return accepted(now, 1);  // setup only: see accept_invite
      case CommandType::kAcceptInvite: return accepted(now, 1);
      case CommandType::kCreateServiceKey:
        keys.insert(command.key);
        return accepted(now, 1);
      case CommandType::kSetBudgetMode: return set_budget_mode(command, now);
      case CommandType::kGrantCredits: return grant_credits(command, now);
      case CommandType::kSetPlan: return set_plan(command, now);
      case CommandType::kRenewPlan: return renew_plan(command, now);
      case CommandType::kSetPrice: return set_price(command, now);
      case CommandType::kTransferCredits: return transfer(command, now);
      case CommandType::kRecordUsage: return record_usage(command, now);
      case CommandType::kReserve: return reserve(command, now);
      case CommandType::kSettle: return close(command, now, true);
      case CommandType::kReleaseHold: return close(command, now, false);
      case CommandType::kSetLimit: return set_limit(command, now);
      default: return refused(ErrorCode::kInternal);
    }
  }

  // Setup helper: an invitation the test has had accepted.
  void add_member(const std::string& user, const std::string& role, const std::string& workspace) {
    members[user] = Member{role, *find_workspace(workspace)};
  }

 private:
  enum class Action { kUseTools, kManageWorkspaces, kManageCredits };

  static Outcome refused(ErrorCode code) {
    Outcome outcome;
    outcome.code = code;
    return outcome;
  }
  void add_workspace(const std::string& name) {
    Workspace workspace;
    workspace.name = name;
    workspaces.push_back(std::move(workspace));
  }
  Outcome accepted(int64_t now, uint32_t events) {
    Outcome outcome;
    outcome.seq = last_seq + 1;
    outcome.events = events;
    last_seq += events;
    last_time = now + events - 1;
    return outcome;
  }

  // ---- timers: lots expire and holds time out at the engine time of the next command --
  void run_timers(int64_t clock_us) {
    const int64_t now = std::max(clock_us, last_time + 1);
    std::vector<std::pair<int64_t, std::string>> due_holds;
    std::vector<std::pair<int64_t, uint32_t>> due_lots;
    for (const auto& [id, hold] : holds) {
      if (hold.end == HoldEnd::kOpen && hold.expires_at <= now) due_holds.emplace_back(hold.expires_at, id);
    }
    for (uint32_t id = 0; id < lots.size(); ++id) {
      const Lot& lot = lots[id];
      if (lot.expires_at != 0 && lot.expires_at <= now && !lot.expired && lot.outstanding() > 0) due_lots.emplace_back(lot.expires_at, id);
    }
    const auto events = static_cast<uint32_t>(due_holds.size() + due_lots.size());
    if (events == 0) return;
    // Whether a hold returns a lot's portion before or after that lot expires, the
    // portion expires either way; the order changes nothing the model tracks.
    for (const auto& [due, lot] : due_lots) expire_lot(lot);
    for (const auto& [due, id] : due_holds) end_hold(id, HoldEnd::kTimedOut, 0);
    last_seq += events;
    last_time = now + events - 1;
  }

  void lose(uint32_t lot_id, int64_t amount) {  // expiry: to the bank or gone
    Lot& lot = lots[lot_id];
    if (lot.kind == Kind::kOneTime) {
      lot.banked_amount += amount;
      banked += amount;
    } else {
      lot.expired_amount += amount;
      expired += amount;
    }
  }

  void expire_lot(uint32_t lot_id) {
    for (Workspace& workspace : workspaces) {
      auto it = workspace.holdings.find(lot_id);
      if (it == workspace.holdings.end()) continue;
      lose(lot_id, it->second);
      workspace.holdings.erase(it);
    }
    lots[lot_id].expired = true;
  }

  void give(uint32_t workspace, uint32_t lot, int64_t amount) {
    if (amount > 0) workspaces[workspace].holdings[lot] += amount;
  }

  // Takes `amount` from `from` in consumption order. REQUIRES: enough is there.
  Portions take(Portions& from, int64_t amount) {
    Portions taken;
    for (const auto& [lot, has] : ordered(from)) {
      if (amount == 0) break;
      const int64_t part = std::min(amount, has);
      taken[lot] = part;
      amount -= part;
      if ((from[lot] -= part) == 0) from.erase(lot);
    }
    return taken;
  }

  // Returns what went back to a workspace: the unspent rest, less portions of lots that
  // expired while held (those expire now, or go to the bank).
  int64_t end_hold(const std::string& id, HoldEnd end, int64_t spent) {
    Hold& hold = holds.at(id);
    int64_t returned = 0;
    const Portions consumed_lots = take(hold.lots, spent);
    for (const auto& [lot, amount] : consumed_lots) lots[lot].consumed += amount;
    const uint32_t back = !budget || workspaces[hold.funding].deleted ? 0 : hold.funding;
    for (const auto& [lot, amount] : hold.lots) {
      if (lots[lot].expired) {
        lose(lot, amount);
      } else {
        give(back, lot, amount);
        returned += amount;
      }
    }
    hold.lots.clear();
    hold.end = end;
    hold.consumed = spent;
    workspaces[hold.workspace].held -= hold.amount;
    workspaces[hold.workspace].consumed += spent;
    if (end == HoldEnd::kSettled) ++workspaces[hold.workspace].usage_events;
    spenders[hold.user].held -= hold.amount;
    spenders[hold.user].consumed += spent;
    held -= hold.amount;
    consumed += spent;
    return returned;
  }

  // ---- permissions (SPEC §2 role matrix) ------------------------------------------------
  ErrorCode authorize(const std::string& actor, Action action) const {
    if (actor == "platform") return ErrorCode::kOk;
    if (actor.rfind("key:", 0) == 0) {
      return keys.contains(actor.substr(4)) && action == Action::kUseTools ? ErrorCode::kOk : ErrorCode::kForbidden;
    }
    auto it = members.find(actor);
    if (it == members.end()) return ErrorCode::kForbidden;
    if (action == Action::kUseTools || it->second.role != "member") return ErrorCode::kOk;
    return ErrorCode::kForbidden;
  }
  ErrorCode authorized_org(const Command& command, Action action) const {
    if (!org_exists || command.org != org) return ErrorCode::kUnknownOrg;
    return authorize(command.actor, action);
  }

  // Who the usage or hold is for and where: users act for themselves in their own
  // workspace, service keys for any member in that member's workspace, the platform
  // for anyone anywhere.
  ErrorCode acting_user(const Command& command, std::string* user) const {
    const bool platform = command.actor == "platform";
    const bool key = command.actor.rfind("key:", 0) == 0;
    *user = command.user;
    if (!platform && !key) {
      if (!user->empty() && *user != command.actor) return ErrorCode::kForbidden;
      *user = command.actor;
    } else if (user->empty()) {
      return ErrorCode::kMissingField;
    }
    return ErrorCode::kOk;
  }
  ErrorCode user_workspace(const Command& command, const std::string& user, uint32_t* workspace) const {
    const bool platform = command.actor == "platform";
    auto member = members.find(user);
    if (member == members.end()) return ErrorCode::kUnknownMember;
    const auto found = find_workspace(command.workspace);
    if (!found) return ErrorCode::kUnknownWorkspace;
    if (!platform && *found != member->second.workspace) return ErrorCode::kForbidden;
    *workspace = *found;
    return ErrorCode::kOk;
  }
  ErrorCode resolve_user(const Command& command, std::string* user, uint32_t* workspace) const {
    if (ErrorCode e = acting_user(command, user); e != ErrorCode::kOk) return e;
    return user_workspace(command, *user, workspace);
  }

  ErrorCode check_spend(uint32_t workspace, const std::string& user, int64_t amount, int64_t now) const {
    if (available(budget ? workspace : 0) < amount) return ErrorCode::kInsufficientCredits;
    const Limits& ws = workspaces[workspace].limits;
    if (ws.day && used(workspace, {}, true, now) + amount > *ws.day) return ErrorCode::kLimitExceeded;
    if (ws.month && used(workspace, {}, false, now) + amount > *ws.month) return ErrorCode::kLimitExceeded;
    auto spender = spenders.find(user);
    if (spender != spenders.end()) {
      const Limits& mine = spender->second.limits;
      if (mine.day && used(std::nullopt, user, true, now) + amount > *mine.day) return ErrorCode::kLimitExceeded;
      if (mine.month && used(std::nullopt, user, false, now) + amount > *mine.month) return ErrorCode::kLimitExceeded;
    }
    return ErrorCode::kOk;
  }

  // ---- organizations and workspaces -------------------------------------------------------
  Outcome create_org(const Command& command, int64_t now) {
    org = command.org;
    org_exists = true;
    budget = command.mode == "budget";
    owner = command.actor;
    add_workspace("primary");
    members[owner] = Member{"owner", 0};
    return accepted(now, 1);
  }

  Outcome create_workspace(const Command& command, int64_t now) {
    if (ErrorCode e = authorized_org(command, Action::kManageWorkspaces); e != ErrorCode::kOk) return refused(e);
    if (find_workspace(command.workspace)) return refused(ErrorCode::kWorkspaceExists);
    add_workspace(command.workspace);
    return accepted(now, 1);
  }

  Outcome delete_workspace(const Command& command, int64_t now) {
    if (ErrorCode e = authorized_org(command, Action::kManageWorkspaces); e != ErrorCode::kOk) return refused(e);
    const auto found = find_workspace(command.workspace);
    if (!found) return refused(ErrorCode::kUnknownWorkspace);
    if (*found == 0) return refused(ErrorCode::kPrimaryWorkspace);
    Workspace& gone = workspaces[*found];
    gone.deleted = true;
    for (auto& [user, member] : members) {
      if (member.workspace == *found) member.workspace = 0;
    }
    const bool had_credits = !gone.holdings.empty();
    for (const auto& [lot, amount] : Portions(gone.holdings)) give(0, lot, amount);
    gone.holdings.clear();
    return accepted(now, had_credits ? 2 : 1);
  }

  Outcome set_budget_mode(const Command& command, int64_t now) {
    if (ErrorCode e = authorized_org(command, Action::kManageCredits); e != ErrorCode::kOk) return refused(e);
    const bool to_budget = command.mode == "budget";
    uint32_t events = 1;
    if (budget && !to_budget) {  // every workspace's credits go back to the primary one
      for (uint32_t w = 1; w < workspaces.size(); ++w) {
        if (workspaces[w].holdings.empty()) continue;
        ++events;
        for (const auto& [lot, amount] : Portions(workspaces[w].holdings)) give(0, lot, amount);
        workspaces[w].holdings.clear();
      }
    }
    budget = to_budget;
    return accepted(now, events);
  }

  // ---- credits ---------------------------------------------------------------------------
  uint32_t add_lot(const std::string& grant, Kind kind, int64_t amount, int64_t expires_at, int64_t at, bool from_bank) {
    const auto id = static_cast<uint32_t>(lots.size());
    lots.push_back(Lot{grant, kind, amount, expires_at, at, from_bank});
    give(0, id, amount);
    return id;
  }

  Outcome grant(const std::string& grant_id, Kind kind, int64_t amount, int64_t expires_at, int64_t now) {
    grants.insert(grant_id);
    add_lot(grant_id, kind, amount, expires_at, now, false);
    granted += amount;
    uint32_t events = 1;
    if ((kind == Kind::kPlan || kind == Kind::kTopUp) && banked > 0) {  // a purchase brings the bank back
      add_lot(grant_id, Kind::kOneTime, banked, 0, now + 1, true);
      banked = 0;
      events = 2;
    }
    return accepted(now, events);
  }

  Outcome grant_credits(const Command& command, int64_t now) {
    if (ErrorCode e = authorized_org(command, Action::kManageCredits); e != ErrorCode::kOk) return refused(e);
    if (*command.credits_micro <= 0) return refused(ErrorCode::kInvalidAmount);
    if (command.expires_at_us && *command.expires_at_us <= now) return refused(ErrorCode::kInvalidArgument);
    if (grants.contains(command.grant)) return refused(ErrorCode::kGrantExists);
    return grant(command.grant, kind_of(command.kind), *command.credits_micro, command.expires_at_us.value_or(0), now);
  }

  Outcome set_plan(const Command& command, int64_t now) {
    if (ErrorCode e = authorized_org(command, Action::kManageCredits); e != ErrorCode::kOk) return refused(e);
    if (*command.monthly_credits_micro <= 0) return refused(ErrorCode::kInvalidAmount);
    plan_monthly = *command.monthly_credits_micro;
    plan_rollover = command.rollover.value_or(1) != 0;
    return accepted(now, 1);
  }

  Outcome renew_plan(const Command& command, int64_t now) {
    if (ErrorCode e = authorized_org(command, Action::kManageCredits); e != ErrorCode::kOk) return refused(e);
    if (!plan_monthly) return refused(ErrorCode::kInvalidArgument);
    if (grants.contains(command.grant)) return refused(ErrorCode::kGrantExists);
    return grant(command.grant, Kind::kPlan, *plan_monthly, plan_rollover ? 0 : one_month_later(now), now);
  }

  Outcome set_price(const Command& command, int64_t now) {
    if (command.actor != "platform") return refused(ErrorCode::kForbidden);
    rates[{command.tool, command.model}][command.effective_at_us.value_or(now)] = Price{command.unit, *command.credits_per_unit_micro};
    return accepted(now, 1);
  }

  Outcome transfer(const Command& command, int64_t now) {
    if (ErrorCode e = authorized_org(command, Action::kManageWorkspaces); e != ErrorCode::kOk) return refused(e);
    if (!budget) return refused(ErrorCode::kWrongMode);
    if (*command.credits_micro <= 0) return refused(ErrorCode::kInvalidAmount);
    const auto from = find_workspace(command.from);
    if (!from) return refused(ErrorCode::kUnknownWorkspace);
    const auto to = find_workspace(command.to);
    if (!to) return refused(ErrorCode::kUnknownWorkspace);
    if (*from == *to) return refused(ErrorCode::kInvalidArgument);
    if (available(*from) < *command.credits_micro) return refused(ErrorCode::kInsufficientCredits);
    for (const auto& [lot, amount] : take(workspaces[*from].holdings, *command.credits_micro)) give(*to, lot, amount);
    return accepted(now, 1);
  }

  Outcome record_usage(const Command& command, int64_t now) {
    if (ErrorCode e = authorized_org(command, Action::kUseTools); e != ErrorCode::kOk) return refused(e);
    std::string user;
    if (ErrorCode e = acting_user(command, &user); e != ErrorCode::kOk) return refused(e);
    // Idempotency is permanent: a retry is answered from the first result whatever
    // happened to the member or the workspace since.
    const UsageContent content{command.workspace, user,          command.tool, command.model, command.unit,
                               *command.quantity, command.credits_micro, *command.occurred_at_us};
    if (auto seen = usage.find(command.id); seen != usage.end()) {
      if (!(seen->second.content == content)) return refused(ErrorCode::kIdConflict);
      Outcome outcome;
      outcome.seq = seen->second.seq;
      outcome.duplicate = true;
      outcome.credits = seen->second.amount;
      return outcome;
    }
    uint32_t workspace = 0;
    if (ErrorCode e = user_workspace(command, user, &workspace); e != ErrorCode::kOk) return refused(e);
    if (content.occurred_at > now + kUsageAheadUs || content.occurred_at < now - kUsageBehindUs) return refused(ErrorCode::kInvalidArgument);
    int64_t amount = 0;
    if (command.credits_micro) {
      amount = *command.credits_micro;
    } else {
      const Price* price = nullptr;
      if (auto card = rates.find({command.tool, command.model}); card != rates.end()) {
        for (const auto& [effective_at, entry] : card->second) {
          if (effective_at <= content.occurred_at) price = &entry;
        }
      }
      if (price == nullptr) return refused(ErrorCode::kUnknownPrice);
      if (price->unit != command.unit) return refused(ErrorCode::kInvalidArgument);
      if (price->per_unit != 0 && content.quantity > kAmountMax / price->per_unit) return refused(ErrorCode::kInvalidAmount);
      amount = content.quantity * price->per_unit;
    }
    if (ErrorCode e = check_spend(workspace, user, amount, now); e != ErrorCode::kOk) return refused(e);
    for (const auto& [lot, part] : take(workspaces[budget ? workspace : 0].holdings, amount)) lots[lot].consumed += part;
    workspaces[workspace].consumed += amount;
    ++workspaces[workspace].usage_events;
    spenders[user].consumed += amount;
    consumed += amount;
    spends.push_back(SpendRecord{now, workspace, user, amount, {}});
    Outcome outcome = accepted(now, 1);
    usage[command.id] = UsageRecord{content, outcome.seq, amount};
    outcome.credits = amount;
    return outcome;
  }

  Outcome reserve(const Command& command, int64_t now) {
    if (ErrorCode e = authorized_org(command, Action::kUseTools); e != ErrorCode::kOk) return refused(e);
    std::string user;
    uint32_t workspace = 0;
    if (ErrorCode e = resolve_user(command, &user, &workspace); e != ErrorCode::kOk) return refused(e);
    const int64_t amount = *command.credits_micro;
    if (amount <= 0) return refused(ErrorCode::kInvalidAmount);
    if (holds.contains(command.hold)) return refused(ErrorCode::kHoldExists);
    if (ErrorCode e = check_spend(workspace, user, amount, now); e != ErrorCode::kOk) return refused(e);
    Hold hold;
    hold.workspace = workspace;
    hold.funding = budget ? workspace : 0;
    hold.user = user;
    hold.amount = amount;
    hold.reserved_at = now;
    hold.expires_at = now + *command.timeout_s * kSecondUs;
    hold.lots = take(workspaces[hold.funding].holdings, amount);
    workspaces[workspace].held += amount;
    spenders[user].held += amount;
    held += amount;
    spends.push_back(SpendRecord{now, workspace, user, 0, command.hold});
    Outcome outcome = accepted(now, 1);
    outcome.expires_at = hold.expires_at;
    holds[command.hold] = std::move(hold);
    return outcome;
  }

  Outcome close(const Command& command, int64_t now, bool settle) {
    if (ErrorCode e = authorized_org(command, Action::kUseTools); e != ErrorCode::kOk) return refused(e);
    auto it = holds.find(command.hold);
    if (it == holds.end()) return refused(ErrorCode::kHoldNotFound);
    if (it->second.end != HoldEnd::kOpen) return refused(ErrorCode::kHoldClosed);
    const bool user_actor = command.actor != "platform" && command.actor.rfind("key:", 0) != 0;
    if (user_actor && command.actor != it->second.user) return refused(ErrorCode::kForbidden);
    const int64_t spent = settle ? *command.credits_micro : 0;
    if (spent > it->second.amount) return refused(ErrorCode::kInvalidAmount);
    const int64_t returned = end_hold(command.hold, settle ? HoldEnd::kSettled : HoldEnd::kReleased, spent);
    Outcome outcome = accepted(now, 1);
    if (settle) outcome.returned = returned;
    return outcome;
  }

  Outcome set_limit(const Command& command, int64_t now) {
    if (ErrorCode e = authorized_org(command, Action::kManageWorkspaces); e != ErrorCode::kOk) return refused(e);
    if (command.workspace.empty() == command.user.empty()) return refused(ErrorCode::kInvalidArgument);
    Limits* limits = nullptr;
    if (!command.workspace.empty()) {
      const auto found = find_workspace(command.workspace);
      if (!found) return refused(ErrorCode::kUnknownWorkspace);
      limits = &workspaces[*found].limits;
    } else {
      if (!members.contains(command.user)) return refused(ErrorCode::kUnknownMember);
      limits = &spenders[command.user].limits;
    }
    (command.period == "day" ? limits->day : limits->month) = command.credits_micro;
    return accepted(now, 1);
  }
};

}  // namespace tally::model
