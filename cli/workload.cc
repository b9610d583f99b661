#include "cli/workload.h"

#include <algorithm>

#include <fmt/format.h>

#include "engine/values.h"

namespace tally::cli {
namespace {

struct Model {
  const char* tool;
  const char* model;
  const char* unit;
  const char* price;  // credits per unit
  int64_t quantity_min;
  int64_t quantity_max;
  int weight;  // share of usage events
};

// Real-looking models; 1 credit is about one US cent.
constexpr Model kModels[] = {
    {"chat", "gpt-4.1", "token", "0.0008", 200, 4000, 30},
    {"chat", "claude-sonnet-4.5", "token", "0.0012", 200, 6000, 20},
    {"chat", "llama-3.3-70b", "token", "0.0002", 100, 3000, 15},
    {"image", "flux-1.1-pro", "image", "4", 1, 4, 12},
    {"image", "gpt-image-1", "image", "6", 1, 2, 6},
    {"image", "sdxl", "image", "1", 1, 8, 5},
    {"audio", "whisper-large-v3", "second", "0.02", 10, 900, 6},
    {"audio", "eleven-multilingual-v2", "character", "0.003", 50, 2000, 6},
};
constexpr const char* kVideoModels[] = {"veo-3.1", "runway-gen4"};
constexpr const char* kTeamNames[] = {"design", "research", "marketing", "support", "video", "audio", "data", "growth"};
constexpr const char* kFirstNames[] = {"ana", "ben", "chen", "dara", "eli", "fatima", "gus", "hana", "ivan", "jo", "kai", "lea",
                                       "maya", "noor", "omar", "pia", "quinn", "ravi", "sofia", "tom", "uma", "vik", "wen", "yara"};
constexpr const char* kOrgNames[] = {"northwind", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "acme"};

Command base(CommandType type, const std::string& actor, const std::string& org) {
  Command command;
  command.type = type;
  command.actor = actor;
  command.org = org;
  return command;
}

int64_t credits(const char* text) {
  int64_t micro = 0;
  parse_credits(text, &micro);
  return micro;
}

}  // namespace

Workload::Workload(const WorkloadOptions& options) : options_(options), random_(options.seed) {
  // About 1% of commands are not usage events (holds, money, refusals).
  step_us_ = std::max<int64_t>(1, options.month_us / static_cast<int64_t>(options.usage_events + options.usage_events / 100 + 1000));
  for (uint32_t i = 0; i < options.orgs; ++i) {
    OrgPlan org;
    org.id = i < std::size(kOrgNames) ? kOrgNames[i] : fmt::format("org-{}", i);
    org.shared = i % 2 == 0;
    org.owner = fmt::format("owner@{}.example", org.id);
    org.workspaces.push_back("primary");
    const size_t teams = 3 + random_() % 5;
    for (size_t t = 0; t < teams; ++t) org.workspaces.push_back(kTeamNames[t]);
    const size_t people = 24 + random_() % 40;
    org.members.emplace_back(org.owner, 0);
    for (size_t p = 0; p < people; ++p) {
      const std::string user = fmt::format("{}.{}@{}.example", kFirstNames[p % std::size(kFirstNames)], p, org.id);
      org.members.emplace_back(user, 1 + random_() % teams);
    }
    orgs_.push_back(std::move(org));
  }
}

void Workload::emit(Command command, std::vector<Command>* out) {
  out->push_back(std::move(command));
  ++emitted_;
}

std::vector<Command> Workload::setup() {
  std::vector<Command> out;
  for (const Model& model : kModels) {
    Command price = base(CommandType::kSetPrice, "platform", {});
    price.tool = model.tool;
    price.model = model.model;
    price.unit = model.unit;
    price.credits_per_unit_micro = credits(model.price);
    out.push_back(price);
  }
  for (const OrgPlan& org : orgs_) {
    Command create = base(CommandType::kCreateOrg, org.owner, org.id);
    create.name = org.id;
    create.mode = org.shared ? "shared" : "budget";
    out.push_back(create);
    for (size_t w = 1; w < org.workspaces.size(); ++w) {
      Command workspace = base(CommandType::kCreateWorkspace, org.owner, org.id);
      workspace.workspace = org.workspaces[w];
      out.push_back(workspace);
    }
    for (size_t m = 1; m < org.members.size(); ++m) {
      Command invite = base(CommandType::kInviteMember, org.owner, org.id);
      invite.user = org.members[m].first;
      invite.role = m <= 2 ? "admin" : "member";
      invite.workspace = org.workspaces[org.members[m].second];
      out.push_back(invite);
      out.push_back(base(CommandType::kAcceptInvite, org.members[m].first, org.id));
    }
    Command key = base(CommandType::kCreateServiceKey, "platform", org.id);
    key.key = "backend";
    out.push_back(key);
    // Scale the plan to the usage this organization will generate (about 4 credits an
    // event on this rate card), with some room.
    const int64_t monthly = static_cast<int64_t>(options_.usage_events / orgs_.size()) * 6 * kMicrosPerCredit + 5000 * kMicrosPerCredit;
    Command plan = base(CommandType::kSetPlan, org.owner, org.id);
    plan.plan = "team";
    plan.monthly_credits_micro = std::min(monthly, kCreditsMicroMax);
    plan.rollover = 1;
    out.push_back(plan);
    Command renew = base(CommandType::kRenewPlan, org.owner, org.id);
    renew.grant = "plan-2026-11";
    out.push_back(renew);
    if (!org.shared) {
      // Budget mode: the owner hands each workspace its budget.
      const int64_t share = plan.monthly_credits_micro.value() * 9 / 10 / static_cast<int64_t>(org.workspaces.size() - 1);
      for (size_t w = 1; w < org.workspaces.size(); ++w) {
        Command transfer = base(CommandType::kTransferCredits, org.owner, org.id);
        transfer.from = "primary";
        transfer.to = org.workspaces[w];
        transfer.credits_micro = share;
        out.push_back(transfer);
      }
    }
    // Granted after the budgets were handed out, so in budget mode the promo and the
    // pack wait in the primary workspace; the top-up transfers take from them first
    // (soonest expiry), and what is left when they expire goes (the pack) to the bank.
    Command promo = base(CommandType::kGrantCredits, org.owner, org.id);
    promo.grant = "welcome-promo";
    promo.kind = "promo";
    promo.credits_micro = 3000 * kMicrosPerCredit;
    promo.expires_at_us = options_.start_us + options_.month_us / 2;
    out.push_back(promo);
    Command pack = base(CommandType::kGrantCredits, org.owner, org.id);
    pack.grant = "launch-pack";
    pack.kind = "one_time";
    pack.credits_micro = 2000 * kMicrosPerCredit;
    pack.expires_at_us = options_.start_us + options_.month_us / 3;
    out.push_back(pack);
    Command limit = base(CommandType::kSetLimit, org.owner, org.id);
    limit.workspace = org.workspaces.back();
    limit.period = "day";
    // A daily cap about a third above the workspace's average day: busy days hit it.
    const int64_t daily = static_cast<int64_t>(options_.usage_events / orgs_.size() / (org.workspaces.size() - 1) / 30) * 4 * 4 / 3;
    limit.credits_micro = std::max<int64_t>(50, daily) * kMicrosPerCredit;
    out.push_back(limit);
  }
  emitted_ += out.size();
  return out;
}

Command Workload::usage(const OrgPlan& org, size_t member) {
  int total_weight = 0;
  for (const Model& model : kModels) total_weight += model.weight;
  int pick = static_cast<int>(random_() % static_cast<uint64_t>(total_weight));
  const Model* model = &kModels[0];
  for (const Model& candidate : kModels) {
    if (pick < candidate.weight) {
      model = &candidate;
      break;
    }
    pick -= candidate.weight;
  }
  // Most traffic comes from backends with the organization's service key.
  const bool by_key = random_() % 4 != 0;
  Command command = base(CommandType::kRecordUsage, by_key ? "key:backend" : org.members[member].first, org.id);
  command.id = fmt::format("u-{}", next_id_++);
  command.workspace = org.workspaces[org.members[member].second];
  command.user = org.members[member].first;
  command.tool = model->tool;
  command.model = model->model;
  command.unit = model->unit;
  command.quantity = model->quantity_min + static_cast<int64_t>(random_() % static_cast<uint64_t>(model->quantity_max - model->quantity_min + 1));
  command.occurred_at_us = now() - static_cast<int64_t>(random_() % 2'000'000);
  return command;
}

void Workload::add_video_job(const OrgPlan& org, size_t member, std::vector<Command>* out) {
  const std::string hold = fmt::format("job-{}", next_id_++);
  const int64_t seconds = 4 + static_cast<int64_t>(random_() % 12);
  const int64_t estimate = seconds * 8 * kMicrosPerCredit;  // about 8 credits a generated second
  Command reserve = base(CommandType::kReserve, "key:backend", org.id);
  reserve.workspace = org.workspaces[org.members[member].second];
  reserve.user = org.members[member].first;
  reserve.hold = hold;
  reserve.credits_micro = estimate;
  reserve.timeout_s = 600;
  reserve.tool = "video";
  reserve.model = kVideoModels[random_() % 2];
  emit(reserve, out);
  // Most jobs settle a few minutes later for less than the estimate; some fail and
  // release; a few are abandoned and time out.
  const uint64_t fate = random_() % 20;
  if (fate == 0) return;
  Command end = base(fate == 1 ? CommandType::kReleaseHold : CommandType::kSettle, "key:backend", org.id);
  end.hold = hold;
  if (fate != 1) end.credits_micro = estimate * static_cast<int64_t>(60 + random_() % 40) / 100;
  const int64_t finishes_in_us = static_cast<int64_t>(60 + random_() % 240) * 1'000'000;
  pending_.emplace_back(emitted_ + static_cast<uint64_t>(finishes_in_us / step_us_), end);
  std::push_heap(pending_.begin(), pending_.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
}

void Workload::add_money_events(std::vector<Command>* out) {
  const int64_t day = (now() - options_.start_us) / (24LL * 3600 * 1'000'000);
  if (day == last_day_) return;
  last_day_ = day;
  // Every fifth day each organization tops up; budget organizations move some credits
  // between workspaces; on day 20 the second organization switches from budget to
  // shared mode, which sweeps every workspace's credits back to the primary one.
  if (day == 20 && orgs_.size() > 1 && !orgs_[1].shared) {
    Command mode = base(CommandType::kSetBudgetMode, orgs_[1].owner, orgs_[1].id);
    mode.mode = "shared";
    emit(mode, out);
    orgs_[1].shared = true;
  }
  for (const OrgPlan& org : orgs_) {
    if (day % 5 == 4) {
      Command top_up = base(CommandType::kGrantCredits, org.owner, org.id);
      top_up.grant = fmt::format("top-up-{}", day);
      top_up.kind = "top_up";
      top_up.credits_micro = 1000 * kMicrosPerCredit;
      emit(top_up, out);
      if (!org.shared) {
        Command transfer = base(CommandType::kTransferCredits, org.owner, org.id);
        transfer.from = "primary";
        transfer.to = org.workspaces[1 + static_cast<size_t>(day) % (org.workspaces.size() - 1)];
        transfer.credits_micro = 800 * kMicrosPerCredit;
        emit(transfer, out);
      }
    }
  }
}

void Workload::add_refusals(std::vector<Command>* out) {
  const OrgPlan& org = orgs_[random_() % orgs_.size()];
  switch (random_() % 4) {
    case 0: {  // a member tries to grant themselves credits: forbidden
      Command grant = base(CommandType::kGrantCredits, org.members.back().first, org.id);
      grant.grant = fmt::format("free-{}", next_id_++);
      grant.kind = "top_up";
      grant.credits_micro = 1000000 * kMicrosPerCredit;
      emit(grant, out);
      break;
    }
    case 1: {  // a retried usage event: answered as a duplicate, debited once
      Command first = usage(org, 1 + random_() % (org.members.size() - 1));
      emit(first, out);
      emit(first, out);
      ++usage_generated_;
      break;
    }
    case 2: {  // the same usage id with different content: id_conflict
      Command first = usage(org, 1 + random_() % (org.members.size() - 1));
      Command second = first;
      second.quantity = *first.quantity + 1;
      emit(first, out);
      emit(second, out);
      ++usage_generated_;
      break;
    }
    default: {  // a model nobody priced: unknown_price
      Command unpriced = usage(org, 1 + random_() % (org.members.size() - 1));
      unpriced.model = "experimental-x";
      emit(unpriced, out);
      break;
    }
  }
}

std::vector<Command> Workload::next(size_t max_commands) {
  std::vector<Command> out;
  auto later = [](const auto& a, const auto& b) { return a.first > b.first; };
  while (out.size() + 4 < max_commands) {
    const bool usage_done = usage_generated_ >= options_.usage_events;
    if (usage_done && pending_.empty()) break;
    // Jobs that have finished by now settle first; once the usage is done, the rest.
    if (!pending_.empty() && (usage_done || pending_.front().first <= emitted_)) {
      std::pop_heap(pending_.begin(), pending_.end(), later);
      emit(std::move(pending_.back().second), &out);
      pending_.pop_back();
      continue;
    }
    add_money_events(&out);
    const OrgPlan& org = orgs_[random_() % orgs_.size()];
    const size_t member = 1 + random_() % (org.members.size() - 1);
    const uint64_t roll = random_() % 1000;
    if (roll < 6) {
      add_video_job(org, member, &out);
    } else if (roll < 7) {
      add_refusals(&out);
    } else {
      emit(usage(org, member), &out);
      ++usage_generated_;
    }
  }
  return out;
}

}  // namespace tally::cli
