#include "engine/query.h"

#include <simdjson.h>

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "engine/assert.h"
#include "engine/engine.h"
#include "engine/json_writer.h"
#include "engine/permissions.h"
#include "engine/values.h"

namespace tally {
namespace {

struct QuerySpec {
  std::string_view name;
  QueryType type;
};

constexpr QuerySpec kQueries[] = {
    {"org", QueryType::kOrg},         {"workspaces", QueryType::kWorkspaces}, {"members", QueryType::kMembers},
    {"balance", QueryType::kBalance}, {"usage", QueryType::kUsage},           {"statement", QueryType::kStatement},
};

constexpr std::string_view kGroupKeys[] = {"workspace", "member", "tool", "model", "hour", "day", "month"};

std::string_view query_name(QueryType type) {
  for (const QuerySpec& spec : kQueries) {
    if (spec.type == type) return spec.name;
  }
  return "?";
}

// The fields each query takes, besides query, actor, org, as_of and as_of_seq.
bool takes_field(QueryType type, std::string_view field) {
  static constexpr std::string_view kCommon[] = {"query", "actor", "org", "as_of", "as_of_seq"};
  if (std::find(std::begin(kCommon), std::end(kCommon), field) != std::end(kCommon)) return true;
  const bool workspace = field == "workspace" || field == "workspace_id";
  switch (type) {
    case QueryType::kOrg:
    case QueryType::kWorkspaces: return false;
    case QueryType::kMembers:
    case QueryType::kBalance: return workspace;
    case QueryType::kUsage:
      return workspace || field == "member" || field == "tool" || field == "model" || field == "from" || field == "to" || field == "group_by";
    case QueryType::kStatement: return workspace || field == "after_seq" || field == "limit";
  }
  return false;
}

Status bad_field(std::string_view field, std::string_view expected) {
  return Error(ErrorCode::kInvalidArgument, fmt::format("field \"{}\" must be {}", field, expected));
}

// What the actor may see of an organization: everything, or (members) their own
// workspace only.
struct Visibility {
  bool all = true;
  uint32_t workspace_id = kPrimaryWorkspaceId;
};

Status visibility(const Org& org, std::string_view actor, Visibility* out) {
  if (Status s = authorize(&org, actor, Action::kView); !s.ok()) return s;
  if (actor_kind(actor) == ActorKind::kUser) {
    const Member* member = org.active_member(actor);
    if (member->role == Role::Member) *out = Visibility{false, member->workspace_id};
  }
  return Status::Ok();
}

void write_org(const Org& org, JsonWriter& out) {
  size_t active_members = 0;
  for (const auto& [user, member] : org.members) active_members += member.status == MemberStatus::kActive;
  out.field("org", org.id).field("name", org.name).field("owner", org.owner).field("mode", mode_name(org.mode));
  out.field("deleted", org.deleted).field("created_at", format_time(org.created_us));
  out.field("workspaces", static_cast<uint64_t>(org.live_workspaces.size())).field("members", static_cast<uint64_t>(active_members));
}

void write_workspaces(const Org& org, const Visibility& seen, JsonWriter& out) {
  out.key("workspaces").begin_array();
  for (uint32_t id = 0; id < org.workspaces.size(); ++id) {
    if (!seen.all && id != seen.workspace_id) continue;
    const Workspace& workspace = org.workspaces[id];
    uint64_t members = 0;
    for (const auto& [user, member] : org.members) members += member.status == MemberStatus::kActive && member.workspace_id == id;
    out.begin_object().field("workspace", workspace.name).field("id", id).field("deleted", workspace.deleted);
    out.field("members", members).field("created_at", format_time(workspace.created_us)).end_object();
  }
  out.end_array();
}

void write_members(const Org& org, const Visibility& seen, std::optional<uint32_t> only, JsonWriter& out) {
  out.key("members").begin_array();
  for (const auto& [user, member] : org.members) {
    if (!seen.all && member.workspace_id != seen.workspace_id) continue;
    if (only && member.workspace_id != *only) continue;
    out.begin_object().field("user", user).field("role", role_name(member.role)).field("status", status_name(member.status));
    out.field("workspace", org.workspaces[member.workspace_id].name).field("since", format_time(member.updated_us)).end_object();
  }
  out.end_array();
}

void write_lot(const Lot& lot, uint32_t id, JsonWriter& out) {
  out.field("lot", id).field("grant", lot.grant).field("kind", lot_kind_name(lot.kind));
  if (lot.from_bank) out.field("from_bank", true);
  out.field("expires_at", lot.expires_at_us == 0 ? std::string("never") : format_time(lot.expires_at_us));
}

void write_limits(const Spend& spend, int64_t now, JsonWriter& out) {
  out.key("limits").begin_object();
  if (spend.day_limit >= 0) {
    out.key("day").begin_object().field("limit", format_credits(spend.day_limit)).field("used", format_credits(spend.day.used_in(day_of(now)))).end_object();
  }
  if (spend.month_limit >= 0) {
    out.key("month").begin_object().field("limit", format_credits(spend.month_limit)).field("used", format_credits(spend.month.used_in(month_of(now)))).end_object();
  }
  out.end_object();
}

void write_balance(const Org& org, const OrgBalances& balances, std::optional<uint32_t> workspace, int64_t now, JsonWriter& out) {
  if (!workspace) {
    out.field("org", org.id).field("mode", mode_name(org.mode));
    out.field("available", format_credits(balances.available())).field("held", format_credits(balances.held));
    out.field("consumed", format_credits(balances.consumed)).field("granted", format_credits(balances.granted));
    out.field("expired", format_credits(balances.expired)).field("banked", format_credits(balances.banked));
    if (!balances.plan.empty()) {
      out.key("plan").begin_object().field("plan", balances.plan).field("monthly_credits", format_credits(balances.plan_monthly));
      out.field("rollover", balances.plan_rollover).end_object();
    }
    out.key("lots").begin_array();
    for (uint32_t id = 0; id < balances.lots.size(); ++id) {
      const Lot& lot = balances.lots[id];
      out.begin_object();
      write_lot(lot, id, out);
      out.field("amount", format_credits(lot.amount)).field("remaining", format_credits(lot.outstanding()));
      out.field("consumed", format_credits(lot.consumed)).field("expired", format_credits(lot.expired_amount + lot.banked_amount));
      out.end_object();
    }
    out.end_array();
    return;
  }
  const WorkspaceBalance& w = balances.workspaces.at(*workspace);
  const WorkspaceBalance& funding = balances.workspaces.at(org.mode == BudgetMode::Shared ? kPrimaryWorkspaceId : *workspace);
  out.field("org", org.id).field("workspace", org.workspaces[*workspace].name);
  out.field("available", format_credits(w.available)).field("held", format_credits(w.held)).field("consumed", format_credits(w.consumed));
  // What this workspace can spend now, before limits: the shared pool in shared mode.
  out.field("spendable", format_credits(funding.available));
  write_limits(w.spend, now, out);
  out.key("lots").begin_array();
  for (const LotPortion& portion : w.holdings) {
    out.begin_object();
    write_lot(balances.lots[portion.lot], portion.lot, out);
    out.field("available", format_credits(portion.amount)).end_object();
  }
  out.end_array();
}

// The value of one group-by key for a usage row.
std::string group_value(std::string_view key, const Org& org, const UsageCell& usage) {
  if (key == "workspace") {
    if (usage.workspace >= org.workspaces.size()) return "?";
    const Workspace& workspace = org.workspaces[usage.workspace];
    // A deleted workspace's name may be taken again: keep their rows apart.
    return workspace.deleted ? fmt::format("{} (deleted, id {})", workspace.name, usage.workspace) : workspace.name;
  }
  if (key == "member") return std::string(usage.user);
  if (key == "tool") return std::string(usage.tool);
  if (key == "model") return std::string(usage.model);
  if (key == "hour") return format_time(usage.hour_us);
  if (key == "day") return format_time(day_start(usage.hour_us));
  return format_time(month_start(usage.hour_us));
}

std::string write_usage(const Org& org, const UsageProjection& usage, const Query& query, std::optional<uint32_t> workspace,
                        JsonWriter& out) {
  std::map<std::vector<std::string>, UsageTotals> groups;
  bool too_many = false;
  usage.for_each(org.id, [&](const UsageCell& key, const UsageTotals& cell) {
    if (too_many) return;
    if (workspace && key.workspace != *workspace) return;
    if (!query.member.empty() && key.user != query.member) return;
    if (!query.tool.empty() && key.tool != query.tool) return;
    if (!query.model.empty() && key.model != query.model) return;
    if (query.from_us && key.hour_us < hour_start(*query.from_us)) return;
    if (query.to_us && key.hour_us >= *query.to_us) return;
    std::vector<std::string> group;
    for (const std::string& name : query.group_by) group.push_back(group_value(name, org, key));
    UsageTotals& totals = groups[group];
    totals.events += cell.events;
    totals.quantity += cell.quantity;
    totals.credits += cell.credits;
    too_many = groups.size() > kUsageRowsMax;
  });
  if (too_many) return fmt::format("more than {} rows: narrow the filters or group by less", kUsageRowsMax);
  out.key("rows").begin_array();
  for (const auto& [group, totals] : groups) {
    out.begin_object();
    for (size_t i = 0; i < group.size(); ++i) out.field(query.group_by[i], group[i]);
    out.field("events", totals.events).field("quantity", totals.quantity).field("credits", format_credits(totals.credits));
    out.end_object();
  }
  out.end_array();
  return {};
}

void write_statement(const Org& org, const StatementsProjection& statements, uint32_t workspace, const Query& query, JsonWriter& out) {
  out.field("workspace", org.workspaces[workspace].name);
  out.key("entries").begin_array();
  const StatementAccount* entries = statements.entries(org.id, workspace);
  uint64_t next = 0;
  if (entries != nullptr) {
    const size_t first = entries->first_after(query.after_seq);
    size_t written = 0;
    entries->for_each_from(first, [&](const StatementEntry& entry) {
      if (written == query.limit) return false;
      out.begin_object().field("seq", entry.seq).field("at", format_time(entry.time_us)).field("kind", entry_kind_name(entry.kind));
      out.field("credits", format_credits(entry.amount)).field("balance", format_credits(entry.balance));
      if (!entry.ref.empty()) out.field("ref", entry.ref);
      if (entry.other_workspace != workspace && entry.other_workspace < org.workspaces.size()) {
        out.field("other_workspace", org.workspaces[entry.other_workspace].name);
      }
      out.end_object();
      next = entry.seq;
      ++written;
      return true;
    });
    if (first + written == entries->size()) next = 0;
  }
  out.end_array();
  if (next != 0) out.field("next_after_seq", next);
}

Status decode_string_field(std::string_view key, simdjson::dom::element value, Query* query) {
  std::string_view text;
  if (value.get(text)) return bad_field(key, "a string");
  auto id_field = [&](std::string* target, std::string_view what) {
    if (!valid_id(text)) return bad_field(key, what);
    *target = text;
    return Status::Ok();
  };
  if (key == "query") {
    for (const QuerySpec& spec : kQueries) {
      if (spec.name == text) {
        query->type = spec.type;
        return Status::Ok();
      }
    }
    return Error(ErrorCode::kUnknownCommand, fmt::format("unknown query \"{}\"", excerpt(text)));
  }
  if (key == "actor") {
    if (text != "platform" && !(text.starts_with("key:") && valid_id(text.substr(4))) && !valid_user(text)) {
      return bad_field(key, "\"platform\", \"key:<id>\" or a user id");
    }
    query->actor = text;
    return Status::Ok();
  }
  if (key == "org") return id_field(&query->org, "an organization id");
  if (key == "workspace") return id_field(&query->workspace, "a workspace name");
  if (key == "tool") return id_field(&query->tool, "a tool name");
  if (key == "member") {
    if (!valid_user(text)) return bad_field(key, "a user id");
    query->member = text;
    return Status::Ok();
  }
  if (key == "model") {
    if (!valid_model(text)) return bad_field(key, "a model name");
    query->model = text;
    return Status::Ok();
  }
  std::optional<int64_t>* time = key == "from" ? &query->from_us : key == "to" ? &query->to_us : key == "as_of" ? &query->as_of_us : nullptr;
  if (time == nullptr) return Error(ErrorCode::kUnknownField, fmt::format("queries take no field \"{}\"", excerpt(key)));
  int64_t time_us;
  if (!parse_time(text, &time_us)) return bad_field(key, "an RFC 3339 UTC time");
  *time = time_us;
  return Status::Ok();
}

Status decode_field(std::string_view key, simdjson::dom::element value, Query* query) {
  if (key == "workspace_id") {
    uint64_t id;
    if (value.get(id) || id >= kWorkspacesPerOrgMax) return bad_field(key, "a workspace id from the workspaces query");
    query->workspace_id = static_cast<uint32_t>(id);
    return Status::Ok();
  }
  if (key == "as_of_seq" || key == "after_seq") {
    uint64_t seq;
    if (value.get(seq)) return bad_field(key, "a non-negative integer");
    if (key == "as_of_seq") {
      query->as_of_seq = seq;
    } else {
      query->after_seq = seq;
    }
    return Status::Ok();
  }
  if (key == "limit") {
    uint64_t limit;
    if (value.get(limit) || limit < 1 || limit > kStatementPageMax) return bad_field(key, fmt::format("an integer from 1 to {}", kStatementPageMax));
    query->limit = static_cast<uint32_t>(limit);
    return Status::Ok();
  }
  if (key == "group_by") {
    simdjson::dom::array array;
    if (value.get(array)) return bad_field(key, "an array of strings");
    int time_keys = 0;
    for (simdjson::dom::element item : array) {
      std::string_view name;
      if (item.get(name) || std::find(std::begin(kGroupKeys), std::end(kGroupKeys), name) == std::end(kGroupKeys)) {
        return bad_field(key, "names from workspace, member, tool, model, hour, day, month");
      }
      if (std::find(query->group_by.begin(), query->group_by.end(), name) != query->group_by.end()) {
        return bad_field(key, "names without repeats");
      }
      time_keys += name == "hour" || name == "day" || name == "month";
      query->group_by.emplace_back(name);
    }
    if (time_keys > 1) return bad_field(key, "at most one of hour, day, month");
    return Status::Ok();
  }
  return decode_string_field(key, value, query);
}

}  // namespace

std::string error_json(const Status& status) {
  CommandResult result;
  result.status = status;
  return result.to_json();
}

Status decode_query(std::string_view json, Query* query, ActorField actor) {
  if (json.size() > kCommandBytesMax) return Error(ErrorCode::kTooLarge, fmt::format("a query is at most {} bytes", kCommandBytesMax));
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto error = parser.parse(json.data(), json.size()).get(root)) {
    return Error(ErrorCode::kInvalidJson, fmt::format("not valid JSON: {}", simdjson::error_message(error)));
  }
  simdjson::dom::object object;
  if (root.get(object)) return Error(ErrorCode::kInvalidJson, "a query must be a JSON object");
  *query = Query();
  std::set<std::string_view> seen;
  for (auto [key, value] : object) {
    if (!seen.insert(key).second) return Error(ErrorCode::kInvalidArgument, fmt::format("field \"{}\" appears twice", excerpt(key)));
    if (Status s = decode_field(key, value, query); !s.ok()) return s;
  }
  if (!seen.contains("query")) return Error(ErrorCode::kMissingField, "missing field \"query\"");
  // Each query takes only the fields that mean something to it.
  for (std::string_view key : seen) {
    if (!takes_field(query->type, key)) {
      return Error(ErrorCode::kUnknownField, fmt::format("the {} query takes no field \"{}\"", query_name(query->type), excerpt(key)));
    }
  }
  if (query->workspace_id && !query->workspace.empty()) {
    return Error(ErrorCode::kInvalidArgument, "name the workspace by \"workspace\" or by \"workspace_id\", not both");
  }
  if (actor == ActorField::kRequired && !seen.contains("actor")) return Error(ErrorCode::kMissingField, "missing field \"actor\"");
  if (query->org.empty()) return Error(ErrorCode::kMissingField, "this query needs field \"org\"");
  return Status::Ok();
}

std::string answer_query(const ProjectionSet& state, const Query& query, uint64_t seq, int64_t now_us) {
  const Org* org = state.orgs.find(query.org);
  if (org == nullptr) return error_json(Error(ErrorCode::kUnknownOrg, fmt::format("no organization \"{}\"", query.org)));
  Visibility seen;
  if (Status s = visibility(*org, query.actor, &seen); !s.ok()) return error_json(s);
  std::optional<uint32_t> workspace;
  if (query.workspace_id) {
    // By id, deleted workspaces too: their history stays queryable.
    if (*query.workspace_id >= org->workspaces.size()) {
      return error_json(Error(ErrorCode::kUnknownWorkspace, fmt::format("no workspace with id {}", *query.workspace_id)));
    }
    workspace = *query.workspace_id;
    if (!seen.all && *workspace != seen.workspace_id) return error_json(Error(ErrorCode::kForbidden, "members see only their own workspace"));
  } else if (!query.workspace.empty()) {
    workspace = org->find_workspace(query.workspace);
    if (!workspace) return error_json(Error(ErrorCode::kUnknownWorkspace, fmt::format("no workspace \"{}\"", query.workspace)));
    if (!seen.all && *workspace != seen.workspace_id) return error_json(Error(ErrorCode::kForbidden, "members see only their own workspace"));
  } else if (!seen.all && (query.type == QueryType::kBalance || query.type == QueryType::kUsage || query.type == QueryType::kStatement)) {
    workspace = seen.workspace_id;  // a member's view is their own workspace
  }
  const OrgBalances* balances = state.balances.find(org->id);
  JsonWriter out(512);  // room for most answers without regrowing
  out.begin_object().field("ok", true).field("as_of_seq", seq);
  switch (query.type) {
    case QueryType::kOrg: write_org(*org, out); break;
    case QueryType::kWorkspaces: write_workspaces(*org, seen, out); break;
    case QueryType::kMembers: write_members(*org, seen, workspace, out); break;
    case QueryType::kBalance:
      if (balances == nullptr) return error_json(Error(ErrorCode::kInternal, "the organization has no balances"));
      write_balance(*org, *balances, workspace, now_us, out);
      break;
    case QueryType::kUsage:
      if (std::string error = write_usage(*org, state.usage, query, workspace, out); !error.empty()) {
        return error_json(Error(ErrorCode::kTooLarge, error));
      }
      break;
    case QueryType::kStatement:
      if (!workspace) return error_json(Error(ErrorCode::kMissingField, "a statement query needs field \"workspace\""));
      write_statement(*org, state.statements, *workspace, query, out);
      break;
  }
  out.end_object();
  return out.take();
}

std::string Engine::query(std::string_view json) {
  Query query;
  if (Status s = decode_query(json, &query); !s.ok()) return error_json(s);
  return this->query(query);
}

std::string Engine::query(const Query& query) {
  TALLY_ASSERT(in_flight_.empty());  // a query sees durable state only
  // Limits are reported for the current day and month: by the clock for the live state,
  // by the last event's time for a past one.
  if (!query.as_of_seq && !query.as_of_us) return answer_query(state_, query, store_->last_seq(), std::max(clock_->now_us(), last_time_us_));
  // A past state: replay the log into fresh projections up to the point asked for.
  ProjectionSet past;
  past.drop_history_rows();  // read, never flushed
  const uint64_t to_seq = std::min(query.as_of_seq.value_or(store_->last_seq()), store_->last_seq());
  const int64_t to_time = query.as_of_us.value_or(std::numeric_limits<int64_t>::max());
  if (Status s = past.replay(*store_, to_seq, to_time); !s.ok()) return error_json(s);
  return answer_query(past, query, past.applied_seq(), query.as_of_us.value_or(past.last_time_us()));
}

}  // namespace tally
