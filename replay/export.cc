#include "replay/export.h"

#include <string>
#include <vector>

#include <fmt/format.h>

#include "engine/event_format.h"
#include "projections/balances.h"
#include "projections/orgs.h"

namespace tally {
namespace {

std::string_view str(const flatbuffers::String* s) { return s == nullptr ? std::string_view() : s->string_view(); }

std::string workspace_name(const ProjectionSet& state, std::string_view org_id, uint32_t id) {
  const Org* org = state.orgs.find(org_id);
  if (org == nullptr || id >= org->workspaces.size()) return {};
  return org->workspaces[id].name;
}

std::string hex(const flatbuffers::Vector<uint8_t>* bytes) {
  std::string out;
  if (bytes == nullptr) return out;
  for (uint8_t b : *bytes) out += fmt::format("{:02x}", b);
  return out;
}

// The engine's own tick: lots expiring and holds timing out at that time.
Command tick_at(const fb::Envelope& event) {
  Command tick;
  tick.type = CommandType::kTick;
  tick.actor = "platform";
  tick.at_us = event.time_us();
  return tick;
}

// Renders the command that produced `event` (the first event of its command), reading
// names from `state`, which reflects everything before the event.
bool command_of(const fb::Envelope& event, const ProjectionSet& state, Command* command) {
  *command = Command();
  command->actor = str(event.actor());
  command->id = str(event.command_id());
  command->at_us = event.time_us();
  switch (event.event_type()) {
    case fb::Event::OrgCreated: {
      const auto* e = event.event_as_OrgCreated();
      command->type = CommandType::kCreateOrg;
      command->org = str(e->org());
      command->name = str(e->name());
      command->mode = mode_name(e->mode());
      command->owner = str(e->owner());
      return true;
    }
    case fb::Event::OrgDeleted:
      command->type = CommandType::kDeleteOrg;
      command->org = str(event.event_as_OrgDeleted()->org());
      return true;
    case fb::Event::BudgetModeChanged: {
      const auto* e = event.event_as_BudgetModeChanged();
      command->type = CommandType::kSetBudgetMode;
      command->org = str(e->org());
      command->mode = mode_name(e->mode());
      return true;
    }
    case fb::Event::WorkspaceCreated: {
      const auto* e = event.event_as_WorkspaceCreated();
      command->type = CommandType::kCreateWorkspace;
      command->org = str(e->org());
      command->workspace = str(e->name());
      return true;
    }
    case fb::Event::WorkspaceRenamed: {
      const auto* e = event.event_as_WorkspaceRenamed();
      command->type = CommandType::kRenameWorkspace;
      command->org = str(e->org());
      command->workspace = workspace_name(state, command->org, e->workspace_id());
      command->name = str(e->name());
      return true;
    }
    case fb::Event::WorkspaceDeleted: {
      const auto* e = event.event_as_WorkspaceDeleted();
      command->type = CommandType::kDeleteWorkspace;
      command->org = str(e->org());
      command->workspace = workspace_name(state, command->org, e->workspace_id());
      return true;
    }
    case fb::Event::MemberInvited: {
      const auto* e = event.event_as_MemberInvited();
      command->type = CommandType::kInviteMember;
      command->org = str(e->org());
      command->user = str(e->user());
      command->role = role_name(e->role());
      command->workspace = workspace_name(state, command->org, e->workspace_id());
      return true;
    }
    case fb::Event::InviteAccepted:
      command->type = CommandType::kAcceptInvite;
      command->org = str(event.event_as_InviteAccepted()->org());
      return true;
    case fb::Event::MemberRoleChanged: {
      const auto* e = event.event_as_MemberRoleChanged();
      command->type = CommandType::kChangeRole;
      command->org = str(e->org());
      command->user = str(e->user());
      command->role = role_name(e->role());
      return true;
    }
    case fb::Event::MemberMoved: {
      const auto* e = event.event_as_MemberMoved();
      command->type = CommandType::kMoveMember;
      command->org = str(e->org());
      command->user = str(e->user());
      command->workspace = workspace_name(state, command->org, e->workspace_id());
      return true;
    }
    case fb::Event::MemberRemoved: {
      const auto* e = event.event_as_MemberRemoved();
      command->type = CommandType::kRemoveMember;
      command->org = str(e->org());
      command->user = str(e->user());
      return true;
    }
    case fb::Event::OwnershipTransferred: {
      const auto* e = event.event_as_OwnershipTransferred();
      command->type = CommandType::kTransferOwnership;
      command->org = str(e->org());
      command->user = str(e->to_user());
      return true;
    }
    case fb::Event::ServiceKeyCreated: {
      const auto* e = event.event_as_ServiceKeyCreated();
      command->type = CommandType::kCreateServiceKey;
      command->org = str(e->org());
      command->key = str(e->key_id());
      command->secret_sha256 = hex(e->secret_sha256());
      return true;
    }
    case fb::Event::ServiceKeyRevoked: {
      const auto* e = event.event_as_ServiceKeyRevoked();
      command->type = CommandType::kRevokeServiceKey;
      command->org = str(e->org());
      command->key = str(e->key_id());
      return true;
    }
    case fb::Event::CreditsGranted: {
      const auto* e = event.event_as_CreditsGranted();
      command->org = str(e->org());
      command->grant = str(e->grant());
      if (e->from_plan()) {
        command->type = CommandType::kRenewPlan;
        return true;
      }
      command->type = CommandType::kGrantCredits;
      command->kind = lot_kind_name(e->kind());
      command->credits_micro = e->amount();
      if (e->expires_at() != 0) command->expires_at_us = e->expires_at();
      return true;
    }
    case fb::Event::CreditsMoved: {
      const auto* e = event.event_as_CreditsMoved();
      if (e->reason() != fb::MoveReason::Transfer) return false;  // only ever follows its command's first event
      command->type = CommandType::kTransferCredits;
      command->org = str(e->org());
      command->from = workspace_name(state, command->org, e->from_workspace());
      command->to = workspace_name(state, command->org, e->to_workspace());
      command->credits_micro = e->amount();
      return true;
    }
    case fb::Event::PlanSet: {
      const auto* e = event.event_as_PlanSet();
      command->type = CommandType::kSetPlan;
      command->org = str(e->org());
      command->plan = str(e->plan());
      command->monthly_credits_micro = e->monthly_amount();
      command->rollover = e->rollover() ? 1 : 0;
      return true;
    }
    case fb::Event::PriceSet: {
      const auto* e = event.event_as_PriceSet();
      command->type = CommandType::kSetPrice;
      command->tool = str(e->tool());
      command->model = str(e->model());
      command->unit = str(e->unit());
      command->credits_per_unit_micro = e->price();
      command->effective_at_us = e->effective_at();
      return true;
    }
    case fb::Event::UsageRecorded: {
      const auto* e = event.event_as_UsageRecorded();
      command->type = CommandType::kRecordUsage;
      command->org = str(e->org());
      command->workspace = workspace_name(state, command->org, e->workspace());
      command->user = str(e->user());
      command->tool = str(e->tool());
      command->model = str(e->model());
      command->quantity = e->quantity();
      command->unit = str(e->unit());
      if (!e->priced()) command->credits_micro = e->amount();
      command->occurred_at_us = e->occurred_at();
      return true;
    }
    case fb::Event::HoldReserved: {
      const auto* e = event.event_as_HoldReserved();
      command->type = CommandType::kReserve;
      command->org = str(e->org());
      command->workspace = workspace_name(state, command->org, e->workspace());
      command->hold = str(e->hold());
      command->credits_micro = e->amount();
      command->timeout_s = (e->expires_at() - event.time_us()) / 1'000'000;
      command->user = str(e->user());
      command->tool = str(e->tool());
      command->model = str(e->model());
      return true;
    }
    case fb::Event::HoldClosed: {
      const auto* e = event.event_as_HoldClosed();
      command->org = str(e->org());
      command->hold = str(e->hold());
      if (e->end() == fb::HoldEnd::Settled) {
        command->type = CommandType::kSettle;
        command->credits_micro = e->amount();
      } else if (e->end() == fb::HoldEnd::Released) {
        command->type = CommandType::kReleaseHold;
      } else {
        *command = tick_at(event);
      }
      return true;
    }
    case fb::Event::LotExpired:
      *command = tick_at(event);
      return true;
    case fb::Event::LimitSet: {
      const auto* e = event.event_as_LimitSet();
      command->type = CommandType::kSetLimit;
      command->org = str(e->org());
      if (str(e->user()).empty()) {
        command->workspace = workspace_name(state, command->org, e->workspace());
      } else {
        command->user = str(e->user());
      }
      command->period = e->period() == fb::LimitPeriod::Day ? "day" : "month";
      if (e->amount() >= 0) command->credits_micro = e->amount();
      return true;
    }
    case fb::Event::BankReleased:
    case fb::Event::NONE:
      return false;  // never the first event of a command
  }
  return false;
}

}  // namespace

Status export_commands(const Store& store, std::ostream& out, ExportStats* stats, const Progress& progress) {
  ProjectionSet state;  // names as of each command, for events that carry only ids
  Status failure;
  const uint64_t total = store.last_seq();
  auto visit = [&](uint64_t seq, std::string_view bytes) {
    const fb::Envelope* event = decode_envelope(bytes);
    if (event == nullptr) {
      failure = Error(ErrorCode::kStorageError, fmt::format("log record {} is not a valid envelope", seq));
      return false;
    }
    if (event->command_seq() == seq) {  // the first event of a command
      Command command;
      if (!command_of(*event, state, &command)) {
        failure = Error(ErrorCode::kInternal, fmt::format("record {} has an event type export does not know", seq));
        return false;
      }
      out << encode_command(command) << '\n';
      ++stats->commands;
    }
    state.apply(*event);
    ++stats->events;
    if (progress && seq % 65536 == 0) progress(seq, total);
    return true;
  };
  if (Status s = store.read_log(1, total, visit); !s.ok()) return s;
  if (!failure.ok()) return failure;
  out.flush();
  if (!out) return Error(ErrorCode::kStorageError, "writing the export failed");
  return Status::Ok();
}

Status import_commands(Engine& engine, std::istream& in, ImportStats* stats, const Progress& progress) {
  if (engine.store().last_seq() != 0) {
    return Error(ErrorCode::kInvalidArgument, "import needs an empty store; this one already holds events");
  }
  std::vector<Command> batch;
  std::vector<uint64_t> line_numbers;
  uint64_t line_number = 0;
  auto run = [&]() -> Status {
    const std::vector<CommandResult> results = engine.execute(batch, TimeSource::kCommand);
    for (size_t i = 0; i < results.size(); ++i) {
      if (!results[i].status.ok()) {
        return Error(results[i].status.code, fmt::format("line {}: {}", line_numbers[i], results[i].status.message));
      }
      ++stats->commands;
      stats->events += results[i].events;
    }
    batch.clear();
    line_numbers.clear();
    if (progress) progress(stats->commands, 0);
    return Status::Ok();
  };
  std::string line;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.empty()) continue;
    Command command;
    Status bad;
    if (Status s = decode_command(line, &command); !s.ok()) {
      bad = Error(s.code, fmt::format("line {}: {}", line_number, s.message));
    } else if (!command.at_us) {
      bad = Error(ErrorCode::kMissingField, fmt::format("line {}: an imported command needs \"at\"", line_number));
    }
    if (!bad.ok()) {
      // The lines before this one still go in (an earlier refusal is reported first).
      if (!batch.empty()) {
        if (Status s = run(); !s.ok()) return s;
      }
      return bad;
    }
    batch.push_back(std::move(command));
    line_numbers.push_back(line_number);
    if (batch.size() == 4096) {
      if (Status s = run(); !s.ok()) return s;
    }
  }
  if (!batch.empty()) return run();
  return Status::Ok();
}

}  // namespace tally
