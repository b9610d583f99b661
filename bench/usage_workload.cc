#include "bench/usage_workload.h"

#include <fmt/format.h>

#include "engine/values.h"

namespace tally::bench {
namespace {

Command make(CommandType type, std::string actor, std::string org) {
  Command command;
  command.type = type;
  command.actor = std::move(actor);
  command.org = std::move(org);
  return command;
}

std::string org_id(uint32_t o) { return fmt::format("org{}", o); }
std::string owner(uint32_t o) { return fmt::format("owner@org{}.example", o); }
std::string workspace_name(uint32_t w) { return fmt::format("ws{}", w); }
std::string member_id(uint32_t m) { return fmt::format("m{}@example.com", m); }

}  // namespace

UsageWorkload::UsageWorkload(const UsageWorkloadOptions& options) : options_(options) {}

std::vector<Command> UsageWorkload::setup(int64_t now_us) const {
  std::vector<Command> out;
  Command price = make(CommandType::kSetPrice, "platform", {});
  price.tool = "chat";
  price.model = "gpt-4.1";
  price.unit = "token";
  price.credits_per_unit_micro = 2;  // 0.000002 credits a token
  price.effective_at_us = now_us - 1;
  out.push_back(price);
  const uint32_t workspaces_per_org = options_.workspaces / options_.orgs;
  const uint32_t members_per_workspace = options_.members / options_.workspaces;
  for (uint32_t o = 0; o < options_.orgs; ++o) {
    Command create = make(CommandType::kCreateOrg, owner(o), org_id(o));
    create.mode = "budget";
    out.push_back(create);
    Command grant = make(CommandType::kGrantCredits, owner(o), org_id(o));
    grant.grant = "plan";
    grant.kind = "plan";
    grant.credits_micro = kCreditsMicroMax;
    out.push_back(grant);
    Command service_key = make(CommandType::kCreateServiceKey, "platform", org_id(o));
    service_key.key = "backend";
    service_key.secret_sha256 = std::string(64, 'a');
    out.push_back(service_key);
    for (uint32_t w = 0; w < workspaces_per_org; ++w) {
      const uint32_t global = o * workspaces_per_org + w;
      Command workspace = make(CommandType::kCreateWorkspace, owner(o), org_id(o));
      workspace.workspace = workspace_name(global);
      out.push_back(workspace);
      Command transfer = make(CommandType::kTransferCredits, owner(o), org_id(o));
      transfer.from = "primary";
      transfer.to = workspace_name(global);
      transfer.credits_micro = kCreditsMicroMax / workspaces_per_org;
      out.push_back(transfer);
      for (uint32_t m = 0; m < members_per_workspace; ++m) {
        const uint32_t member = global * members_per_workspace + m;
        Command invite = make(CommandType::kInviteMember, owner(o), org_id(o));
        invite.user = member_id(member);
        invite.role = "member";
        invite.workspace = workspace_name(global);
        out.push_back(invite);
        out.push_back(make(CommandType::kAcceptInvite, member_id(member), org_id(o)));
      }
    }
  }
  return out;
}

Command UsageWorkload::usage(uint64_t n, int64_t now_us) const {
  // Members take turns, scattered by a multiplicative hash so consecutive events hit
  // different workspaces and organizations.
  const auto member = static_cast<uint32_t>((n * 2654435761ULL) % options_.members);
  const uint32_t members_per_workspace = options_.members / options_.workspaces;
  const uint32_t workspace = member / members_per_workspace;
  const uint32_t org = workspace / (options_.workspaces / options_.orgs);
  Command command = make(CommandType::kRecordUsage, "key:backend", org_id(org));
  command.id = fmt::format("u{}", n);
  command.workspace = workspace_name(workspace);
  command.user = member_id(member);
  command.tool = "chat";
  command.model = "gpt-4.1";
  command.unit = "token";
  command.quantity = 500 + static_cast<int64_t>(n % 1500);
  command.occurred_at_us = now_us;
  return command;
}

}  // namespace tally::bench
