#include "engine/query.h"

#include <simdjson.h>

#include <fmt/format.h>

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
    {"org", QueryType::kOrg},
    {"workspaces", QueryType::kWorkspaces},
    {"members", QueryType::kMembers},
};

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
  size_t live_workspaces = org.live_workspaces.size();
  size_t active_members = 0;
  for (const auto& [user, member] : org.members) active_members += member.status == MemberStatus::kActive;
  out.field("org", org.id).field("name", org.name).field("owner", org.owner).field("mode", mode_name(org.mode));
  out.field("deleted", org.deleted).field("created_at", format_time(org.created_us));
  out.field("workspaces", static_cast<uint64_t>(live_workspaces)).field("members", static_cast<uint64_t>(active_members));
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

}  // namespace

std::string error_json(const Status& status) {
  CommandResult result;
  result.status = status;
  return result.to_json();
}

Status decode_query(std::string_view json, Query* query) {
  if (json.size() > kCommandBytesMax) return Error(ErrorCode::kTooLarge, fmt::format("a query is at most {} bytes", kCommandBytesMax));
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto error = parser.parse(json.data(), json.size()).get(root)) {
    return Error(ErrorCode::kInvalidJson, fmt::format("not valid JSON: {}", simdjson::error_message(error)));
  }
  simdjson::dom::object object;
  if (root.get(object)) return Error(ErrorCode::kInvalidJson, "a query must be a JSON object");
  *query = Query();
  bool have_type = false;
  bool have_actor = false;
  constexpr std::string_view kKnownFields[] = {"query", "actor", "org", "workspace", "as_of", "as_of_seq"};
  uint32_t seen = 0;
  for (auto [key, value] : object) {
    for (size_t i = 0; i < std::size(kKnownFields); ++i) {
      if (key != kKnownFields[i]) continue;
      if (seen & (1u << i)) return Error(ErrorCode::kInvalidArgument, fmt::format("field \"{}\" appears twice", key));
      seen |= 1u << i;
    }
    std::string_view text;
    if (key == "as_of_seq") {
      uint64_t seq;
      if (value.get(seq)) return bad_field(key, "a non-negative integer");
      query->as_of_seq = seq;
      continue;
    }
    if (value.get(text)) return bad_field(key, "a string");
    if (key == "query") {
      for (const QuerySpec& spec : kQueries) {
        if (spec.name == text) {
          query->type = spec.type;
          have_type = true;
        }
      }
      if (!have_type) return Error(ErrorCode::kUnknownCommand, fmt::format("unknown query \"{}\"", text.substr(0, 64)));
    } else if (key == "actor") {
      if (text != "platform" && !(text.starts_with("key:") && valid_id(text.substr(4))) && !valid_user(text)) {
        return bad_field(key, "\"platform\", \"key:<id>\" or a user id");
      }
      query->actor = text;
      have_actor = true;
    } else if (key == "org") {
      if (!valid_id(text)) return bad_field(key, "an organization id");
      query->org = text;
    } else if (key == "workspace") {
      if (!valid_id(text)) return bad_field(key, "a workspace name");
      query->workspace = text;
    } else if (key == "as_of") {
      int64_t time_us;
      if (!parse_time(text, &time_us)) return bad_field(key, "an RFC 3339 UTC time");
      query->as_of_us = time_us;
    } else {
      return Error(ErrorCode::kUnknownField, fmt::format("queries take no field \"{}\"", std::string_view(key).substr(0, 64)));
    }
  }
  if (!have_type) return Error(ErrorCode::kMissingField, "missing field \"query\"");
  if (!have_actor) return Error(ErrorCode::kMissingField, "missing field \"actor\"");
  if (query->org.empty()) return Error(ErrorCode::kMissingField, "this query needs field \"org\"");
  return Status::Ok();
}

std::string answer_query(const ProjectionSet& state, const Query& query, uint64_t seq) {
  const Org* org = state.orgs.find(query.org);
  if (org == nullptr) return error_json(Error(ErrorCode::kUnknownOrg, fmt::format("no organization \"{}\"", query.org)));
  Visibility seen;
  if (Status s = visibility(*org, query.actor, &seen); !s.ok()) return error_json(s);
  std::optional<uint32_t> only;
  if (!query.workspace.empty()) {
    only = org->find_workspace(query.workspace);
    if (!only) return error_json(Error(ErrorCode::kUnknownWorkspace, fmt::format("no workspace \"{}\"", query.workspace)));
    if (!seen.all && *only != seen.workspace_id) return error_json(Error(ErrorCode::kForbidden, "members see only their own workspace"));
  }
  JsonWriter out;
  out.begin_object().field("ok", true).field("as_of_seq", seq);
  switch (query.type) {
    case QueryType::kOrg: write_org(*org, out); break;
    case QueryType::kWorkspaces: write_workspaces(*org, seen, out); break;
    case QueryType::kMembers: write_members(*org, seen, only, out); break;
  }
  out.end_object();
  return out.take();
}

std::string Engine::query(std::string_view json) {
  Query query;
  if (Status s = decode_query(json, &query); !s.ok()) return error_json(s);
  if (!query.as_of_seq && !query.as_of_us) return answer_query(state_, query, store_->last_seq());
  // A past state: replay the log into fresh projections up to the point asked for.
  ProjectionSet past;
  const uint64_t to_seq = std::min(query.as_of_seq.value_or(store_->last_seq()), store_->last_seq());
  if (Status s = past.replay(*store_, to_seq, query.as_of_us.value_or(std::numeric_limits<int64_t>::max())); !s.ok()) {
    return error_json(s);
  }
  return answer_query(past, query, past.applied_seq());
}

}  // namespace tally
