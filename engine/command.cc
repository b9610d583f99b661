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
  kTime,       // RFC 3339 string
  kId,         // valid_id
  kModel,      // valid_model
  kUser,       // valid_user
  kName,       // valid_name
  kMode,       // "shared" | "budget"
  kRole,       // "admin" | "member"
  kLotKind,    // "plan" | "one_time" | "top_up" | "promo"
  kPeriod,     // "day" | "month"
  kSha256Hex,  // 64 lowercase hex digits
  kCredits,    // decimal credits string -> micro-credits
  kQuantity,   // JSON integer 0..kQuantityMax
  kTimeout,    // JSON integer 1..kHoldTimeoutSecondsMax
  kBool,       // JSON true/false
};

struct FieldSpec {
  std::string_view name;
  Kind kind;
  std::string Command::*text = nullptr;             // where string kinds are stored
  std::optional<int64_t> Command::*number = nullptr;  // where numeric kinds are stored
};

// The field catalog. A field's bit in a mask is 1 << its index here.
constexpr std::array<FieldSpec, 32> kFields = {{
    {"actor", Kind::kActor, &Command::actor},
    {"id", Kind::kCommandId, &Command::id},
    {"at", Kind::kTime, nullptr, &Command::at_us},
    {"org", Kind::kId, &Command::org},
    {"name", Kind::kName, &Command::name},
    {"mode", Kind::kMode, &Command::mode},
    {"workspace", Kind::kId, &Command::workspace},
    {"user", Kind::kUser, &Command::user},
    {"role", Kind::kRole, &Command::role},
    {"owner", Kind::kUser, &Command::owner},
    {"key", Kind::kId, &Command::key},
    {"secret_sha256", Kind::kSha256Hex, &Command::secret_sha256},
    {"grant", Kind::kId, &Command::grant},
    {"kind", Kind::kLotKind, &Command::kind},
    {"credits", Kind::kCredits, nullptr, &Command::credits_micro},
    {"expires_at", Kind::kTime, nullptr, &Command::expires_at_us},
    {"from", Kind::kId, &Command::from},
    {"to", Kind::kId, &Command::to},
    {"plan", Kind::kId, &Command::plan},
    {"monthly_credits", Kind::kCredits, nullptr, &Command::monthly_credits_micro},
    {"rollover", Kind::kBool, nullptr, &Command::rollover},
    {"tool", Kind::kId, &Command::tool},
    {"model", Kind::kModel, &Command::model},
    {"unit", Kind::kId, &Command::unit},
    {"credits_per_unit", Kind::kCredits, nullptr, &Command::credits_per_unit_micro},
    {"effective_at", Kind::kTime, nullptr, &Command::effective_at_us},
    {"quantity", Kind::kQuantity, nullptr, &Command::quantity},
    {"occurred_at", Kind::kTime, nullptr, &Command::occurred_at_us},
    {"hold", Kind::kId, &Command::hold},
    {"timeout_s", Kind::kTimeout, nullptr, &Command::timeout_s},
    {"period", Kind::kPeriod, &Command::period},
    {"token", Kind::kId, &Command::token},
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
constexpr std::array<CommandSpec, 27> kCommands = {{
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
    {"grant_credits", CommandType::kGrantCredits, fields("org", "grant", "kind", "credits"), fields("expires_at")},
    {"transfer_credits", CommandType::kTransferCredits, fields("org", "from", "to", "credits"), 0},
    {"set_plan", CommandType::kSetPlan, fields("org", "plan", "monthly_credits"), fields("rollover")},
    {"renew_plan", CommandType::kRenewPlan, fields("org", "grant"), 0},
    {"set_price", CommandType::kSetPrice, fields("tool", "model", "unit", "credits_per_unit"), fields("effective_at")},
    {"record_usage", CommandType::kRecordUsage, fields("id", "org", "workspace", "tool", "model", "quantity", "unit", "occurred_at"),
     fields("user", "credits")},
    {"reserve", CommandType::kReserve, fields("org", "workspace", "hold", "credits", "timeout_s"), fields("user", "tool", "model")},
    {"settle", CommandType::kSettle, fields("org", "hold", "credits"), 0},
    {"release_hold", CommandType::kReleaseHold, fields("org", "hold"), 0},
    {"set_limit", CommandType::kSetLimit, fields("org", "period"), fields("workspace", "user", "credits")},
    {"tick", CommandType::kTick, 0, 0},
    {"create_user_token", CommandType::kCreateUserToken, fields("user", "token"), fields("secret_sha256")},
    {"revoke_user_token", CommandType::kRevokeUserToken, fields("token"), 0},
}};

constexpr bool table_follows_enum() {
  for (size_t i = 0; i < kCommands.size(); ++i) {
    if (kCommands[i].type != static_cast<CommandType>(i)) return false;
  }
  return kCommands.size() == kCommandTypeCount;
}
static_assert(table_follows_enum(), "kCommands must list every CommandType in enum order");

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

// Checks one JSON value against its field's kind and stores it.
Status store_value(const FieldSpec& spec, simdjson::dom::element value, Command* command) {
  switch (spec.kind) {
    case Kind::kQuantity:
    case Kind::kTimeout: {
      int64_t number;
      if (value.get(number)) return field_error(spec.name, "an integer");
      const int64_t low = spec.kind == Kind::kTimeout ? 1 : 0;
      const int64_t high = spec.kind == Kind::kTimeout ? kHoldTimeoutSecondsMax : kQuantityMax;
      if (number < low || number > high) return field_error(spec.name, fmt::format("an integer from {} to {}", low, high));
      command->*spec.number = number;
      return Status::Ok();
    }
    case Kind::kBool: {
      bool flag;
      if (value.get(flag)) return field_error(spec.name, "true or false");
      command->*spec.number = flag ? 1 : 0;
      return Status::Ok();
    }
    default:
      break;
  }
  std::string_view text;
  if (value.get(text)) return field_error(spec.name, "a string");
  switch (spec.kind) {
    case Kind::kActor:
      if (!valid_actor(text)) return field_error(spec.name, "\"platform\", \"key:<id>\" or a user id (an email)");
      break;
    case Kind::kCommandId:
      if (!valid_command_id(text)) return field_error(spec.name, "1 to 128 printable ASCII characters without spaces");
      break;
    case Kind::kTime: {
      int64_t time_us;
      if (!parse_time(text, &time_us)) return field_error(spec.name, "an RFC 3339 UTC time like 2026-11-23T10:00:00Z");
      command->*spec.number = time_us;
      return Status::Ok();
    }
    case Kind::kCredits: {
      int64_t micro;
      if (!parse_credits(text, &micro)) {
        return Error(ErrorCode::kInvalidAmount, fmt::format("field \"{}\" must be decimal credits like \"2.42\": no sign, "
                                                            "at most 6 decimals, at most 1000000000", spec.name));
      }
      command->*spec.number = micro;
      return Status::Ok();
    }
    case Kind::kId:
      if (!valid_id(text)) return field_error(spec.name, "1 to 64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit");
      break;
    case Kind::kModel:
      if (!valid_model(text)) return field_error(spec.name, "1 to 128 printable ASCII characters without spaces");
      break;
    case Kind::kUser:
      if (!valid_user(text)) return field_error(spec.name, "a user id (an email, at most 254 characters)");
      break;
    case Kind::kName:
      if (!valid_name(text)) return field_error(spec.name, "1 to 200 bytes without control characters");
      break;
    case Kind::kMode:
      if (text != "shared" && text != "budget") return field_error(spec.name, "\"shared\" or \"budget\"");
      break;
    case Kind::kRole:
      if (text != "admin" && text != "member") return field_error(spec.name, "\"admin\" or \"member\"");
      break;
    case Kind::kLotKind:
      if (text != "plan" && text != "one_time" && text != "top_up" && text != "promo") {
        return field_error(spec.name, "\"plan\", \"one_time\", \"top_up\" or \"promo\"");
      }
      break;
    case Kind::kPeriod:
      if (text != "day" && text != "month") return field_error(spec.name, "\"day\" or \"month\"");
      break;
    case Kind::kSha256Hex:
      if (!valid_sha256_hex(text)) return field_error(spec.name, "64 lowercase hex digits");
      break;
    default:
      return Error(ErrorCode::kInternal, "a field kind has no decoder");
  }
  command->*spec.text = std::string(text);
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

Status decode_command(std::string_view json, Command* command, ActorField actor) {
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
    return Error(ErrorCode::kUnknownCommand, fmt::format("unknown command \"{}\"", excerpt(cmd)));
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
                   fmt::format("{} takes no field \"{}\"", spec->name, excerpt(key)));
    }
    const uint64_t mask = uint64_t{1} << index;
    if (seen & mask) return Error(ErrorCode::kInvalidArgument, fmt::format("field \"{}\" appears twice", key));
    seen |= mask;
    if (Status status = store_value(kFields[index], value, command); !status.ok()) return status;
  }
  const uint64_t required = spec->required | (actor == ActorField::kRequired ? kAlwaysRequired : 0);
  const uint64_t missing = required & ~seen;
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
    if (spec.text != nullptr) {
      if (!(command.*spec.text).empty()) out.field(spec.name, command.*spec.text);
      continue;
    }
    const std::optional<int64_t>& number = command.*spec.number;
    if (!number) continue;
    switch (spec.kind) {
      case Kind::kTime: out.field(spec.name, format_time(*number)); break;
      case Kind::kCredits: out.field(spec.name, format_credits(*number)); break;
      case Kind::kBool: out.field(spec.name, *number != 0); break;
      default: out.field(spec.name, *number); break;
    }
  }
  out.end_object();
  return out.take();
}

}  // namespace tally
