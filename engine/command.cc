#include "engine/command.h"

#include <simdjson.h>

#include <array>

#include <fmt/format.h>

#include "engine/json_writer.h"
#include "engine/values.h"

namespace tally {
namespace {

// How a field's JSON value is checked and stored.
enum class Kind : uint8_t {
  kActor,      // "platform", "key:<id>" or a user id
  kCommandId,  // valid_command_id
  kTime,       // RFC 3339 string -> at_us
  kId,         // valid_id
  kUser,       // valid_user
  kName,       // valid_name
  kMode,       // "shared" | "budget"
  kRole,       // "admin" | "member"
  kSha256Hex,  // 64 lowercase hex digits
};

struct FieldSpec {
  std::string_view name;
  Kind kind;
  std::string Command::*text;  // where string kinds are stored
};

// The field catalog. A field's bit in a mask is 1 << its index here.
constexpr std::array<FieldSpec, 12> kFields = {{
    {"actor", Kind::kActor, &Command::actor},
    {"id", Kind::kCommandId, &Command::id},
    {"at", Kind::kTime, nullptr},
    {"org", Kind::kId, &Command::org},
    {"name", Kind::kName, &Command::name},
    {"mode", Kind::kMode, &Command::mode},
    {"workspace", Kind::kId, &Command::workspace},
    {"user", Kind::kUser, &Command::user},
    {"role", Kind::kRole, &Command::role},
    {"owner", Kind::kUser, &Command::owner},
    {"key", Kind::kId, &Command::key},
    {"secret_sha256", Kind::kSha256Hex, &Command::secret_sha256},
}};

constexpr uint64_t bit(std::string_view name) {
  for (size_t i = 0; i < kFields.size(); ++i) {
    if (kFields[i].name == name) return uint64_t{1} << i;
  }
  throw "unknown field name in the command table";  // compile-time error in constexpr use
}

template <typename... Names>
constexpr uint64_t fields(Names... names) {
  return (uint64_t{0} | ... | bit(names));
}

struct CommandSpec {
  std::string_view name;
  CommandType type;
  uint64_t required;  // besides "cmd" and "actor"
  uint64_t optional;  // besides "id" and "at"
};

constexpr uint64_t kAlwaysRequired = fields("actor");
constexpr uint64_t kAlwaysOptional = fields("id", "at");

// Indexed by CommandType; the order must match the enum.
constexpr std::array<CommandSpec, 14> kCommands = {{
    {"create_org", CommandType::kCreateOrg, fields("org"), fields("name", "mode", "owner")},
    {"delete_org", CommandType::kDeleteOrg, fields("org"), 0},
    {"set_budget_mode", CommandType::kSetBudgetMode, fields("org", "mode"), 0},
    {"create_workspace", CommandType::kCreateWorkspace, fields("org", "workspace"), 0},
    {"rename_workspace", CommandType::kRenameWorkspace, fields("org", "workspace", "name"), 0},
    {"delete_workspace", CommandType::kDeleteWorkspace, fields("org", "workspace"), 0},
    {"invite_member", CommandType::kInviteMember, fields("org", "user", "role", "workspace"), 0},
    {"accept_invite", CommandType::kAcceptInvite, fields("org"), 0},
    {"change_role", CommandType::kChangeRole, fields("org", "user", "role"), 0},
    {"move_member", CommandType::kMoveMember, fields("org", "user", "workspace"), 0},
    {"remove_member", CommandType::kRemoveMember, fields("org", "user"), 0},
    {"transfer_ownership", CommandType::kTransferOwnership, fields("org", "user"), 0},
    {"create_service_key", CommandType::kCreateServiceKey, fields("org", "key"), fields("secret_sha256")},
    {"revoke_service_key", CommandType::kRevokeServiceKey, fields("org", "key"), 0},
}};

bool valid_actor(std::string_view actor) {
  if (actor == "platform") return true;
  if (actor.starts_with("key:")) return valid_id(actor.substr(4));
  return valid_user(actor);
}

bool valid_sha256_hex(std::string_view hex) {
  if (hex.size() != 64) return false;
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Status field_error(std::string_view field, std::string_view expected) {
  return Error(ErrorCode::kInvalidArgument, fmt::format("field \"{}\" must be {}", field, expected));
}

// Checks one string value against its kind and stores it.
Status store_text(const FieldSpec& spec, std::string_view value, Command* command) {
  switch (spec.kind) {
    case Kind::kActor:
      if (!valid_actor(value)) return field_error(spec.name, "\"platform\", \"key:<id>\" or a user id (an email)");
      break;
    case Kind::kCommandId:
      if (!valid_command_id(value)) return field_error(spec.name, "1 to 128 printable ASCII characters without spaces");
      break;
    case Kind::kTime: {
      int64_t time_us;
      if (!parse_time(value, &time_us)) return field_error(spec.name, "an RFC 3339 UTC time like 2026-11-23T10:00:00Z");
      command->at_us = time_us;
      return Status::Ok();
    }
    case Kind::kId:
      if (!valid_id(value)) return field_error(spec.name, "1 to 64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit");
      break;
    case Kind::kUser:
      if (!valid_user(value)) return field_error(spec.name, "a user id (an email, at most 254 characters)");
      break;
    case Kind::kName:
      if (!valid_name(value)) return field_error(spec.name, "1 to 200 bytes without control characters");
      break;
    case Kind::kMode:
      if (value != "shared" && value != "budget") return field_error(spec.name, "\"shared\" or \"budget\"");
      break;
    case Kind::kRole:
      if (value != "admin" && value != "member") return field_error(spec.name, "\"admin\" or \"member\"");
      break;
    case Kind::kSha256Hex:
      if (!valid_sha256_hex(value)) return field_error(spec.name, "64 lowercase hex digits");
      break;
  }
  command->*spec.text = std::string(value);
  return Status::Ok();
}

int find_field(std::string_view name) {
  for (size_t i = 0; i < kFields.size(); ++i) {
    if (kFields[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace

std::string_view command_name(CommandType type) { return kCommands[static_cast<size_t>(type)].name; }

Status decode_command(std::string_view json, Command* command) {
  if (json.size() > kCommandBytesMax) {
    return Error(ErrorCode::kTooLarge, fmt::format("a command is at most {} bytes", kCommandBytesMax));
  }
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto error = parser.parse(json.data(), json.size()).get(root)) {
    return Error(ErrorCode::kInvalidJson, fmt::format("not valid JSON: {}", simdjson::error_message(error)));
  }
  simdjson::dom::object object;
  if (root.get(object)) return Error(ErrorCode::kInvalidJson, "a command must be a JSON object");

  std::string_view cmd;
  if (auto error = object["cmd"].get(cmd)) {
    if (error == simdjson::NO_SUCH_FIELD) return Error(ErrorCode::kMissingField, "missing field \"cmd\"");
    return field_error("cmd", "a string");
  }
  const CommandSpec* spec = nullptr;
  for (const CommandSpec& candidate : kCommands) {
    if (candidate.name == cmd) spec = &candidate;
  }
  if (spec == nullptr) {
    return Error(ErrorCode::kUnknownCommand, fmt::format("unknown command \"{}\"", std::string_view(cmd).substr(0, 64)));
  }

  *command = Command();
  command->type = spec->type;
  const uint64_t allowed = spec->required | spec->optional | kAlwaysRequired | kAlwaysOptional;
  uint64_t seen = 0;
  bool seen_cmd = false;
  for (auto [key, value] : object) {
    if (key == "cmd") {
      if (seen_cmd) return Error(ErrorCode::kInvalidArgument, "field \"cmd\" appears twice");
      seen_cmd = true;
      continue;
    }
    const int index = find_field(key);
    if (index < 0 || (allowed & (uint64_t{1} << index)) == 0) {
      return Error(ErrorCode::kUnknownField,
                   fmt::format("{} takes no field \"{}\"", spec->name, std::string_view(key).substr(0, 64)));
    }
    const uint64_t mask = uint64_t{1} << index;
    if (seen & mask) return Error(ErrorCode::kInvalidArgument, fmt::format("field \"{}\" appears twice", key));
    seen |= mask;
    std::string_view text;
    if (value.get(text)) return field_error(kFields[index].name, "a string");
    if (Status status = store_text(kFields[index], text, command); !status.ok()) return status;
  }
  const uint64_t missing = (spec->required | kAlwaysRequired) & ~seen;
  if (missing != 0) {
    for (size_t i = 0; i < kFields.size(); ++i) {
      if (missing & (uint64_t{1} << i)) {
        return Error(ErrorCode::kMissingField, fmt::format("{} needs field \"{}\"", spec->name, kFields[i].name));
      }
    }
  }
  return Status::Ok();
}

std::string encode_command(const Command& command) {
  JsonWriter out;
  out.begin_object().field("cmd", command_name(command.type));
  for (const FieldSpec& spec : kFields) {
    if (spec.kind == Kind::kTime) {
      if (command.at_us) out.field(spec.name, format_time(*command.at_us));
    } else if (!(command.*spec.text).empty()) {
      out.field(spec.name, command.*spec.text);
    }
  }
  out.end_object();
  return out.take();
}

}  // namespace tally
