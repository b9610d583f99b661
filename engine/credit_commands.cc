// Handlers for the credit commands (SPEC §2 "Credits", "Usage, holds and limits"):
// grants, plans, the rate card, transfers, usage, holds, limits, and the tick that
// expires lots and times out holds.
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <limits>
#include <span>

#include <fmt/format.h>

#include "engine/handlers.h"
#include "engine/json_writer.h"
#include "engine/values.h"

namespace tally {
namespace {

constexpr uint32_t kLotsPerOrgMax = 1'000'000;
constexpr int64_t kUsageFutureSkewUs = 5 * 60 * 1'000'000LL;           // occurred_at may run ahead of engine time
constexpr int64_t kUsagePastWindowUs = 90LL * 24 * 3600 * 1'000'000LL;  // and lag behind it

LotKind parse_kind(std::string_view kind) {
  if (kind == "one_time") return LotKind::OneTime;
  if (kind == "top_up") return LotKind::TopUp;
  if (kind == "promo") return LotKind::Promo;
  return LotKind::Plan;
}

const OrgBalances& balances_of(const CommandContext& context, const Org& org) {
  const CommandLookups* found = context.lookups();
  if (found != nullptr && found->org == &org && found->balances != nullptr) return *found->balances;
  const OrgBalances* balances = context.state().balances.find(org.id);
  TALLY_ASSERT(balances != nullptr);  // every organization has balances from its creation
  return *balances;
}

// key_hash(user), which the engine may have found already (CommandLookups).
size_t user_hash(const CommandContext& context, const std::string& user) {
  const CommandLookups* found = context.lookups();
  return found != nullptr && found->user == &user ? found->user_hash : key_hash(user);
}

// In shared mode every workspace spends from the primary workspace's pool.
uint32_t funding_workspace(const Org& org, uint32_t workspace) { return org.mode == BudgetMode::Shared ? kPrimaryWorkspaceId : workspace; }

// The lots that `amount` is drawn from (OrgBalances::draw: oldest first), as the
// event's structs: in an array on the stack, or, past its 16, all of them on the heap.
// This replaced to_fb(draw(...))'s two heap vectors, which every usage event and hold
// paid for.
class DrawnLots {
 public:
  DrawnLots(const std::vector<LotPortion>& holdings, int64_t amount) {
    OrgBalances::draw_each(holdings, amount, [&](const LotPortion& portion) {
      if (count_ < stack_.size()) {
        stack_[count_] = fb::LotAmount(portion.lot, portion.amount);
      } else {
        if (heap_.empty()) heap_.assign(stack_.begin(), stack_.end());
        heap_.emplace_back(portion.lot, portion.amount);
      }
      ++count_;
    });
  }
  DrawnLots(const DrawnLots&) = delete;
  DrawnLots& operator=(const DrawnLots&) = delete;

  std::span<const fb::LotAmount> items() const { return {heap_.empty() ? stack_.data() : heap_.data(), count_}; }

 private:
  std::array<fb::LotAmount, 16> stack_;
  std::vector<fb::LotAmount> heap_;
  size_t count_ = 0;
};

// The drawn lots put into the event being built: the same bytes as
// CreateVectorOfStructs of to_fb(draw(...)). (CreateUninitializedVectorOfStructs would
// align the vector to the struct's size, 16, not to its alignment, 8: other bytes.)
flatbuffers::Offset<flatbuffers::Vector<const fb::LotAmount*>> drawn_lots(flatbuffers::FlatBufferBuilder& builder,
                                                                          const std::vector<LotPortion>& holdings, int64_t amount) {
  const DrawnLots lots(holdings, amount);
  return builder.CreateVectorOfStructs(lots.items().data(), lots.items().size());
}

std::vector<fb::LotAmount> to_fb(const std::vector<LotPortion>& portions) {
  std::vector<fb::LotAmount> out;
  out.reserve(portions.size());
  for (const LotPortion& p : portions) out.emplace_back(p.lot, p.amount);
  return out;
}

Status positive(const std::optional<int64_t>& credits, std::string_view field) {
  if (!credits || *credits <= 0) return Error(ErrorCode::kInvalidAmount, fmt::format("\"{}\" must be more than zero", field));
  return Status::Ok();
}

// Emits the purchase's lot and, for plan and top_up purchases, the credit bank's
// release as a new lot.
void emit_grant(CommandContext& context, const Org& org, const std::string& grant, LotKind kind, int64_t amount, int64_t expires_at,
                bool from_plan) {
  const OrgBalances& balances = balances_of(context, org);
  auto& b = context.builder();
  auto payload = fb::CreateCreditsGrantedDirect(b, org.id.c_str(), grant.c_str(), static_cast<uint32_t>(balances.lots.size()), kind,
                                                amount, expires_at, from_plan);
  context.emit(fb::Event::CreditsGranted, payload.Union());
  const bool purchase = kind == LotKind::Plan || kind == LotKind::TopUp;
  if (purchase && balances.banked > 0) {
    auto released = fb::CreateBankReleasedDirect(context.builder(), org.id.c_str(), grant.c_str(),
                                                 static_cast<uint32_t>(balances.lots.size()), balances.banked);
    context.emit(fb::Event::BankReleased, released.Union());
  }
}

Status check_new_grant(const OrgBalances& balances, const std::string& grant, int64_t amount) {
  if (balances.lot_by_grant.contains(grant)) return Error(ErrorCode::kGrantExists, fmt::format("grant \"{}\" exists", grant));
  if (balances.lots.size() + 2 > kLotsPerOrgMax) return Error(ErrorCode::kTooLarge, fmt::format("an organization has at most {} lots", kLotsPerOrgMax));
  if (balances.granted > std::numeric_limits<int64_t>::max() / 2 - amount) {
    return Error(ErrorCode::kInvalidAmount, "the organization's total grants would overflow");
  }
  return Status::Ok();
}

Status grant_credits(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kManageCredits, &org); !s.ok()) return s;
  const Command& command = context.command();
  if (Status s = positive(command.credits_micro, "credits"); !s.ok()) return s;
  const int64_t expires_at = command.expires_at_us.value_or(0);
  if (command.expires_at_us && expires_at <= context.now_us()) {
    return Error(ErrorCode::kInvalidArgument, "\"expires_at\" must be in the future");
  }
  if (Status s = check_new_grant(balances_of(context, *org), command.grant, *command.credits_micro); !s.ok()) return s;
  emit_grant(context, *org, command.grant, parse_kind(command.kind), *command.credits_micro, expires_at, false);
  return Status::Ok();
}

Status set_plan(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kManageCredits, &org); !s.ok()) return s;
  const Command& command = context.command();
  if (Status s = positive(command.monthly_credits_micro, "monthly_credits"); !s.ok()) return s;
  auto payload = fb::CreatePlanSetDirect(context.builder(), org->id.c_str(), command.plan.c_str(), *command.monthly_credits_micro,
                                         command.rollover.value_or(1) != 0);
  context.emit(fb::Event::PlanSet, payload.Union());
  return Status::Ok();
}

Status renew_plan(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kManageCredits, &org); !s.ok()) return s;
  const OrgBalances& balances = balances_of(context, *org);
  if (balances.plan_monthly <= 0) return Error(ErrorCode::kInvalidArgument, "the organization has no plan: set_plan first");
  const Command& command = context.command();
  if (Status s = check_new_grant(balances, command.grant, balances.plan_monthly); !s.ok()) return s;
  const int64_t expires_at = balances.plan_rollover ? 0 : add_months(context.now_us(), 1);
  emit_grant(context, *org, command.grant, LotKind::Plan, balances.plan_monthly, expires_at, true);
  return Status::Ok();
}

Status set_price(CommandContext& context) {
  const Command& command = context.command();
  if (Status s = authorize(nullptr, command.actor, Action::kPlatformOnly); !s.ok()) return s;
  const int64_t effective_at = command.effective_at_us.value_or(context.now_us());
  auto payload = fb::CreatePriceSetDirect(context.builder(), command.tool.c_str(), command.model.c_str(), command.unit.c_str(),
                                          *command.credits_per_unit_micro, effective_at);
  context.emit(fb::Event::PriceSet, payload.Union());
  return Status::Ok();
}

Status transfer_credits(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kManageWorkspaces, &org); !s.ok()) return s;
  const Command& command = context.command();
  if (org->mode != BudgetMode::Budget) {
    return Error(ErrorCode::kWrongMode, "transfers need budget mode; in shared mode every workspace spends from the primary pool");
  }
  if (Status s = positive(command.credits_micro, "credits"); !s.ok()) return s;
  const auto from = org->find_workspace(command.from);
  if (!from) return Error(ErrorCode::kUnknownWorkspace, fmt::format("no workspace \"{}\"", command.from));
  const auto to = org->find_workspace(command.to);
  if (!to) return Error(ErrorCode::kUnknownWorkspace, fmt::format("no workspace \"{}\"", command.to));
  if (*from == *to) return Error(ErrorCode::kInvalidArgument, "\"from\" and \"to\" are the same workspace");
  const WorkspaceBalance& source = balances_of(context, *org).workspaces.at(*from);
  if (source.available < *command.credits_micro) {
    return Error(ErrorCode::kInsufficientCredits,
                 fmt::format("workspace \"{}\" has {} available", command.from, format_credits(source.available)));
  }
  // In the order CreateCreditsMovedDirect would make them (the same bytes).
  flatbuffers::FlatBufferBuilder& builder = context.builder();
  const auto org_id = builder.CreateString(org->id);
  const auto lots = drawn_lots(builder, source.holdings, *command.credits_micro);
  auto payload = fb::CreateCreditsMoved(builder, org_id, *from, *to, *command.credits_micro, fb::MoveReason::Transfer, lots);
  context.emit(fb::Event::CreditsMoved, payload.Union());
  return Status::Ok();
}

// Who the usage or hold is for, and the workspace it is attributed to, checked
// against the role matrix: users act for themselves in their own workspace; service
// keys act for any member in that member's workspace; the platform for anyone.
// The user a usage or hold is for: users act only for themselves; service keys and
// the platform name the user.
// *user points into `command` (no copy: this runs for every usage event).
Status acting_user(const Command& command, const std::string** user) {
  if (actor_kind(command.actor) == ActorKind::kUser) {
    if (!command.user.empty() && command.user != command.actor) return Error(ErrorCode::kForbidden, "users use tools only for themselves");
    *user = &command.actor;
  } else if (command.user.empty()) {
    return Error(ErrorCode::kMissingField, "a service key or the platform must name the \"user\"");
  } else {
    *user = &command.user;
  }
  return Status::Ok();
}

// SPEC §2: the tool is one of the built-in families or a name registered by pricing it.
Status known_tool(const CommandContext& context, std::string_view tool) {
  static constexpr std::string_view kBuiltIn[] = {"chat", "image", "video", "audio", "music"};
  if (tool.empty() || std::find(std::begin(kBuiltIn), std::end(kBuiltIn), tool) != std::end(kBuiltIn)) return Status::Ok();
  if (context.state().rates.has_tool(tool)) return Status::Ok();
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("unknown tool \"{}\": use chat, image, video, audio or music, or register it with set_price", tool));
}

Status resolve_user(const CommandContext& context, const Org& org, const std::string** user, uint32_t* workspace) {
  const Command& command = context.command();
  const ActorKind kind = actor_kind(command.actor);
  if (Status s = acting_user(command, user); !s.ok()) return s;
  const Member* member = org.active_member(**user, user_hash(context, **user));
  if (member == nullptr) return Error(ErrorCode::kUnknownMember, fmt::format("{} is not an active member of \"{}\"", **user, org.id));
  const CommandLookups* lookups = context.lookups();
  const auto found = org.find_workspace(command.workspace, lookups != nullptr ? lookups->workspace_hash : key_hash(command.workspace));
  if (!found) return Error(ErrorCode::kUnknownWorkspace, fmt::format("no workspace \"{}\"", command.workspace));
  if (kind != ActorKind::kPlatform && *found != member->workspace_id) {
    return Error(ErrorCode::kForbidden, fmt::format("{} uses tools only in workspace \"{}\"", **user, org.workspaces[member->workspace_id].name));
  }
  *workspace = *found;
  return Status::Ok();
}

// `who` names the spender for the error message; it is called only when the limit is
// exceeded (formatting the name for every usage event cost several percent of ingest).
template <typename Who>
Status check_limit(const Spend& spend, int64_t now, int64_t amount, const Who& who) {
  const std::pair<int64_t, const SpendCounter*> periods[] = {{spend.day_limit, &spend.day}, {spend.month_limit, &spend.month}};
  for (size_t i = 0; i < 2; ++i) {
    const auto [limit, counter] = periods[i];
    if (limit < 0) continue;
    const int64_t bucket = i == 0 ? day_of(now) : month_of(now);
    const int64_t used = counter->used_in(bucket);
    if (used + amount > limit) {
      return Error(ErrorCode::kLimitExceeded, fmt::format("{} has a {} limit of {} and has used {}", who(), i == 0 ? "daily" : "monthly",
                                                          format_credits(limit), format_credits(used)));
    }
  }
  return Status::Ok();
}

// Checks that `amount` may leave the funding workspace for `workspace` and `user` now.
Status check_spend(const CommandContext& context, const Org& org, uint32_t workspace, const std::string& user, int64_t amount) {
  const OrgBalances& balances = balances_of(context, org);
  const WorkspaceBalance& funding = balances.workspaces.at(funding_workspace(org, workspace));
  if (funding.available < amount) {
    return Error(ErrorCode::kInsufficientCredits, fmt::format("{} credits needed, {} available", format_credits(amount),
                                                              format_credits(funding.available)));
  }
  const int64_t now = context.now_us();
  const auto workspace_name = [&] { return fmt::format("workspace \"{}\"", org.workspaces[workspace].name); };
  if (Status s = check_limit(balances.workspaces.at(workspace).spend, now, amount, workspace_name); !s.ok()) return s;
  auto member = balances.members.find(user, user_hash(context, user));
  if (member != balances.members.end()) {
    if (Status s = check_limit(member->second.spend, now, amount, [&] { return user; }); !s.ok()) return s;
  }
  return Status::Ok();
}

// Fingerprint of what a usage command asks for, for permanent idempotency: XXH3 of its
// fields in decimal, one per line. The log keeps it, so these bytes must never change
// (CreditsTest.UsageFingerprintIsPinned checks them). The text is put together on the
// stack; only a command whose names are longer than the parsers allow needs the heap.
// The heap string this was, with the lots' two heap vectors (drawn_lots), cost about
// 1,000 of the 12,500 instructions the writer spends on a usage event (callgrind,
// tally_load --events 200000; bench/RESULTS.md, "Runs 57-58").
uint64_t usage_fingerprint(const Command& command, const std::string& user) {
  const std::string_view names[] = {command.org, command.workspace, user, command.tool, command.model};
  constexpr size_t kNumberChars = 20;  // the longest int64_t in decimal, its sign included
  size_t size = command.unit.size() + 1 + 3 * (kNumberChars + 1);
  for (std::string_view name : names) size += name.size() + 1;
  char stack[1024];
  std::string heap;
  if (size > sizeof stack) heap.resize(size);
  char* const text = heap.empty() ? stack : heap.data();
  char* at = text;
  const auto line = [&](std::string_view value) {
    std::memcpy(at, value.data(), value.size());
    at += value.size();
    *at++ = '\n';
  };
  const auto number = [&](int64_t value) { at = std::to_chars(at, text + size, value).ptr; };
  for (std::string_view name : names) line(name);
  number(*command.quantity);
  *at++ = '\n';
  line(command.unit);
  number(command.credits_micro.value_or(-1));
  *at++ = '\n';
  number(*command.occurred_at_us);
  return XXH3_64bits(text, static_cast<size_t>(at - text));
}

Status record_usage(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kUseTools, &org); !s.ok()) return s;
  const Command& command = context.command();
  // Idempotency first: a retry gets the first answer even if the member has moved or
  // left since. The fingerprint covers the command as sent (names, not ids).
  const std::string* user = nullptr;
  if (Status s = acting_user(command, &user); !s.ok()) return s;
  const OrgBalances& balances = balances_of(context, *org);
  const uint64_t fingerprint = usage_fingerprint(command, *user);
  if (const std::optional<UsageRef> seen = balances.usage_ids.find(command.id)) {
    if (seen->content_hash != fingerprint) {
      return Error(ErrorCode::kIdConflict, fmt::format("usage \"{}\" was recorded with different content", command.id));
    }
    context.answer_duplicate(seen->seq);
    context.set_amount("credits", seen->amount);
    return Status::Ok();
  }
  uint32_t workspace;
  if (Status s = resolve_user(context, *org, &user, &workspace); !s.ok()) return s;
  if (Status s = known_tool(context, command.tool); !s.ok()) return s;

  const int64_t now = context.now_us();
  const int64_t occurred_at = *command.occurred_at_us;
  if (occurred_at > now + kUsageFutureSkewUs || occurred_at < now - kUsagePastWindowUs) {
    return Error(ErrorCode::kInvalidArgument, "\"occurred_at\" must lie within 90 days before and 5 minutes after now");
  }
  int64_t amount;
  bool priced = false;
  if (command.credits_micro) {
    amount = *command.credits_micro;
  } else {
    const Rate* rate = context.state().rates.find(command.tool, command.model, occurred_at);
    if (rate == nullptr) {
      return Error(ErrorCode::kUnknownPrice, fmt::format("no price for {} / {} at {}: give \"credits\" or set_price", command.tool,
                                                         command.model, format_time(occurred_at)));
    }
    if (rate->unit != command.unit) {
      return Error(ErrorCode::kInvalidArgument, fmt::format("{} / {} is priced per \"{}\", not \"{}\"", command.tool, command.model, rate->unit, command.unit));
    }
    if (__builtin_mul_overflow(*command.quantity, rate->price, &amount) || amount > kCreditsMicroMax) {
      return Error(ErrorCode::kInvalidAmount, "quantity x price exceeds the largest amount");
    }
    priced = true;
  }
  if (Status s = check_spend(context, *org, workspace, *user, amount); !s.ok()) return s;

  const uint32_t funding = funding_workspace(*org, workspace);
  const DrawnLots lots(balances.workspaces.at(funding).holdings, amount);
  context.emit_usage(UsageRecordedFields{.org = org->id,
                                         .id = command.id,
                                         .workspace = workspace,
                                         .user = *user,
                                         .tool = command.tool,
                                         .model = command.model,
                                         .quantity = *command.quantity,
                                         .unit = command.unit,
                                         .amount = amount,
                                         .occurred_at = occurred_at,
                                         .funding_workspace = funding,
                                         .lots = lots.items(),
                                         .priced = priced,
                                         .content_hash = fingerprint});
  context.set_amount("credits", amount);
  return Status::Ok();
}

Status reserve(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kUseTools, &org); !s.ok()) return s;
  const Command& command = context.command();
  const std::string* user = nullptr;
  uint32_t workspace;
  if (Status s = resolve_user(context, *org, &user, &workspace); !s.ok()) return s;
  if (Status s = known_tool(context, command.tool); !s.ok()) return s;
  if (Status s = positive(command.credits_micro, "credits"); !s.ok()) return s;
  const OrgBalances& balances = balances_of(context, *org);
  if (balances.holds.contains(command.hold)) return Error(ErrorCode::kHoldExists, fmt::format("hold \"{}\" exists", command.hold));
  if (Status s = check_spend(context, *org, workspace, *user, *command.credits_micro); !s.ok()) return s;
  const uint32_t funding = funding_workspace(*org, workspace);
  const int64_t expires_at = context.now_us() + *command.timeout_s * 1'000'000;
  flatbuffers::FlatBufferBuilder& builder = context.builder();
  const auto org_id = builder.CreateString(org->id);
  const auto hold = builder.CreateString(command.hold);
  const auto user_id = builder.CreateString(*user);
  const auto tool = builder.CreateString(command.tool);
  const auto model = builder.CreateString(command.model);
  const auto lots = drawn_lots(builder, balances.workspaces.at(funding).holdings, *command.credits_micro);
  auto payload = fb::CreateHoldReserved(builder, org_id, hold, workspace, user_id, tool, model, *command.credits_micro, expires_at, funding, lots);
  context.emit(fb::Event::HoldReserved, payload.Union());
  context.add_result("expires_at", format_time(expires_at));
  return Status::Ok();
}

// Ends an open hold: `consumed` of it is spent, the rest goes back to its workspace
// (the primary one in shared mode, or when its workspace was deleted), except
// portions of lots that expired while held, which expire now.
// Returns the credits that went back to a workspace.
int64_t emit_hold_closed(CommandContext& context, const Org& org, const std::string& hold_id, fb::HoldEnd end, int64_t consumed) {
  const OrgBalances& balances = balances_of(context, org);
  const Hold& hold = balances.holds.at(hold_id);
  const std::vector<LotPortion> spent = OrgBalances::draw(hold.lots, consumed);
  std::vector<LotPortion> returned;
  std::vector<LotPortion> expired;
  for (size_t i = 0; i < hold.lots.size(); ++i) {
    LotPortion rest = hold.lots[i];
    if (i < spent.size()) rest.amount -= spent[i].amount;
    if (rest.amount == 0) continue;
    (balances.lots[rest.lot].expired ? expired : returned).push_back(rest);
  }
  uint32_t returned_to = funding_workspace(org, hold.funding_workspace);
  if (org.workspaces[returned_to].deleted) returned_to = kPrimaryWorkspaceId;
  const std::vector<fb::LotAmount> spent_fb = to_fb(spent), returned_fb = to_fb(returned), expired_fb = to_fb(expired);
  auto payload = fb::CreateHoldClosedDirect(context.builder(), org.id.c_str(), hold_id.c_str(), end, consumed, &spent_fb, returned_to,
                                            &returned_fb, &expired_fb);
  context.emit(fb::Event::HoldClosed, payload.Union());
  int64_t returned_total = 0;
  for (const LotPortion& portion : returned) returned_total += portion.amount;
  return returned_total;
}

Status open_hold(const CommandContext& context, const Org& org, const Hold** hold) {
  const Command& command = context.command();
  const OrgBalances& balances = balances_of(context, org);
  auto it = balances.holds.find(command.hold);
  if (it == balances.holds.end()) return Error(ErrorCode::kHoldNotFound, fmt::format("no hold \"{}\"", command.hold));
  if (it->second.state != HoldState::kOpen) {
    return Error(ErrorCode::kHoldClosed, fmt::format("hold \"{}\" is already {}", command.hold, hold_state_name(it->second.state)));
  }
  if (actor_kind(command.actor) == ActorKind::kUser && command.actor != it->second.user) {
    return Error(ErrorCode::kForbidden, "only the user who reserved a hold settles or releases it");
  }
  *hold = &it->second;
  return Status::Ok();
}

Status settle(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kUseTools, &org); !s.ok()) return s;
  const Hold* hold;
  if (Status s = open_hold(context, *org, &hold); !s.ok()) return s;
  const int64_t credits = *context.command().credits_micro;
  if (credits > hold->amount) {
    return Error(ErrorCode::kInvalidAmount, fmt::format("settles at most the held {}", format_credits(hold->amount)));
  }
  // What comes back may be less than held minus settled: held credits of a lot that
  // expired meanwhile expire now instead of returning.
  const int64_t returned = emit_hold_closed(context, *org, context.command().hold, fb::HoldEnd::Settled, credits);
  context.set_amount("returned", returned);
  return Status::Ok();
}

Status release_hold(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kUseTools, &org); !s.ok()) return s;
  const Hold* hold;
  if (Status s = open_hold(context, *org, &hold); !s.ok()) return s;
  emit_hold_closed(context, *org, context.command().hold, fb::HoldEnd::Released, 0);
  return Status::Ok();
}

Status set_limit(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kManageWorkspaces, &org); !s.ok()) return s;
  const Command& command = context.command();
  if (command.workspace.empty() == command.user.empty()) {
    return Error(ErrorCode::kInvalidArgument, "name exactly one of \"workspace\" and \"user\"");
  }
  uint32_t workspace = 0;
  if (!command.workspace.empty()) {
    const auto found = org->find_workspace(command.workspace);
    if (!found) return Error(ErrorCode::kUnknownWorkspace, fmt::format("no workspace \"{}\"", command.workspace));
    workspace = *found;
  } else if (org->active_member(command.user) == nullptr) {
    return Error(ErrorCode::kUnknownMember, fmt::format("{} is not an active member of \"{}\"", command.user, org->id));
  }
  const fb::LimitPeriod period = command.period == "day" ? fb::LimitPeriod::Day : fb::LimitPeriod::Month;
  auto payload = fb::CreateLimitSetDirect(context.builder(), org->id.c_str(), workspace, command.user.c_str(), period,
                                          command.credits_micro.value_or(-1));
  context.emit(fb::Event::LimitSet, payload.Union());
  return Status::Ok();
}

}  // namespace

Status tick(CommandContext& context) {
  if (Status s = authorize(nullptr, context.command().actor, Action::kPlatformOnly); !s.ok()) return s;
  const int64_t now = context.now_us();
  const ProjectionSet& state = context.state();
  while (const Timer* next = state.balances.next_timer()) {
    if (next->due_us > now) break;
    const Timer timer = *next;  // the emit below removes it
    const Org* org = state.orgs.find(timer.org);
    TALLY_ASSERT(org != nullptr);
    const OrgBalances& balances = balances_of(context, *org);
    if (!timer.hold.empty()) {
      emit_hold_closed(context, *org, timer.hold, fb::HoldEnd::TimedOut, 0);
      continue;
    }
    const Lot& lot = balances.lots.at(timer.lot);
    std::vector<fb::WorkspaceAmount> parts;
    int64_t total = 0;
    for (uint32_t w = 0; w < balances.workspaces.size(); ++w) {
      for (const LotPortion& portion : balances.workspaces[w].holdings) {
        if (portion.lot == timer.lot) {
          parts.emplace_back(w, portion.amount);
          total += portion.amount;
        }
      }
    }
    auto payload = fb::CreateLotExpiredDirect(context.builder(), org->id.c_str(), timer.lot, total, lot.kind == LotKind::OneTime, &parts);
    context.emit(fb::Event::LotExpired, payload.Union());
  }
  if (context.events() == 0) context.answer_duplicate(0);  // nothing was due: nothing to log
  return Status::Ok();
}

// Credits leave a workspace that is deleted, or every non-primary workspace when the
// organization switches to shared mode: they go to the primary workspace.
void emit_return_to_primary(CommandContext& context, const Org& org, uint32_t workspace, fb::MoveReason reason) {
  const WorkspaceBalance& source = balances_of(context, org).workspaces.at(workspace);
  if (source.available == 0) return;
  const std::vector<fb::LotAmount> lots = to_fb(source.holdings);
  auto payload = fb::CreateCreditsMovedDirect(context.builder(), org.id.c_str(), workspace, kPrimaryWorkspaceId, source.available, reason, &lots);
  context.emit(fb::Event::CreditsMoved, payload.Union());
}

Status handle_credit_command(CommandContext& context) {
  switch (context.command().type) {
    case CommandType::kGrantCredits: return grant_credits(context);
    case CommandType::kTransferCredits: return transfer_credits(context);
    case CommandType::kSetPlan: return set_plan(context);
    case CommandType::kRenewPlan: return renew_plan(context);
    case CommandType::kSetPrice: return set_price(context);
    case CommandType::kRecordUsage: return record_usage(context);
    case CommandType::kReserve: return reserve(context);
    case CommandType::kSettle: return settle(context);
    case CommandType::kReleaseHold: return release_hold(context);
    case CommandType::kSetLimit: return set_limit(context);
    case CommandType::kTick: return tick(context);
    default: return Error(ErrorCode::kInternal, "not a credit command");
  }
}

}  // namespace tally
