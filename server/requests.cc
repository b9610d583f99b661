#include "server/requests.h"

#include <fmt/format.h>

#include "engine/assert.h"
#include "engine/values.h"

namespace tally::server {
namespace {

// parse_time accepts years 1970..9999; typed times keep to the same range.
constexpr int64_t kTimeUsMax = 253'402'300'799'999'999;

Status bad(std::string_view field, std::string_view expected) {
  return Error(ErrorCode::kInvalidArgument, fmt::format("field \"{}\" must be {}", field, expected));
}

Status missing(std::string_view field) { return Error(ErrorCode::kMissingField, fmt::format("record_usage needs field \"{}\"", field)); }

}  // namespace

void CommandBatch::reserve(size_t commands) {
  results_.reserve(commands);
  commands_.reserve(commands);
  slots_.reserve(commands);
}

void CommandBatch::add(Command&& command) {
  slots_.push_back(static_cast<uint32_t>(results_.size()));
  results_.emplace_back();
  commands_.push_back(std::move(command));
}

void CommandBatch::refuse(Status status, std::string id) {
  TALLY_ASSERT(!status.ok());
  CommandResult result;
  result.status = std::move(status);
  result.id = std::move(id);
  results_.push_back(std::move(result));
}

void CommandBatch::complete(std::vector<CommandResult> results) {
  TALLY_ASSERT(results.size() == slots_.size());
  for (size_t i = 0; i < results.size(); ++i) results_[slots_[i]] = std::move(results[i]);
}

Status add_json_command(std::string_view line, const Identity& who, CommandBatch* batch) {
  Command command;
  if (Status decoded = decode_command(line, &command, ActorField::kOptional); !decoded.ok()) {
    batch->refuse(std::move(decoded));
    return Status::Ok();
  }
  if (Status scoped = scope_command(who, &command); !scoped.ok()) return scoped;
  batch->add(std::move(command));
  return Status::Ok();
}

Status add_json_lines(std::string_view body, const Identity& who, CommandBatch* batch) {
  size_t start = 0;
  while (start < body.size()) {
    size_t end = body.find('\n', start);
    if (end == std::string_view::npos) end = body.size();
    const std::string_view line = body.substr(start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    if (batch->size() == kBatchCommandsMax) {
      return Error(ErrorCode::kTooLarge, fmt::format("a request holds at most {} commands", kBatchCommandsMax));
    }
    if (Status s = add_json_command(line, who, batch); !s.ok()) return s;
  }
  if (batch->size() == 0) return Error(ErrorCode::kInvalidArgument, "the body holds no command (one JSON object per line)");
  return Status::Ok();
}

Status check_usage(const Command& command) {
  TALLY_ASSERT(command.type == CommandType::kRecordUsage);
  if (command.id.empty()) return missing("id");
  if (!valid_command_id(command.id)) return bad("id", "1 to 128 printable ASCII characters without spaces");
  if (command.org.empty()) return missing("org");
  if (!valid_id(command.org)) return bad("org", "an id (A-Z a-z 0-9 . _ -, at most 64)");
  if (command.workspace.empty()) return missing("workspace");
  if (!valid_id(command.workspace)) return bad("workspace", "an id (A-Z a-z 0-9 . _ -, at most 64)");
  if (!command.user.empty() && !valid_user(command.user)) return bad("user", "a user id (an email, at most 254 characters)");
  if (command.tool.empty()) return missing("tool");
  if (!valid_id(command.tool)) return bad("tool", "an id (A-Z a-z 0-9 . _ -, at most 64)");
  if (command.model.empty()) return missing("model");
  if (!valid_model(command.model)) return bad("model", "1 to 128 printable ASCII characters without spaces");
  if (command.unit.empty()) return missing("unit");
  if (!valid_id(command.unit)) return bad("unit", "an id (A-Z a-z 0-9 . _ -, at most 64)");
  if (!command.quantity) return missing("quantity");
  if (*command.quantity < 0 || *command.quantity > kQuantityMax) return bad("quantity", fmt::format("an integer from 0 to {}", kQuantityMax));
  if (!command.occurred_at_us) return missing("occurred_at");
  if (*command.occurred_at_us < 0 || *command.occurred_at_us > kTimeUsMax) return bad("occurred_at", "a time from 1970 to 9999");
  if (command.credits_micro && (*command.credits_micro < 0 || *command.credits_micro > kCreditsMicroMax)) {
    return Error(ErrorCode::kInvalidAmount, "credits must be from 0 to 1000000000 credits");
  }
  return Status::Ok();
}

unsigned http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return 200;
    case ErrorCode::kInvalidJson:
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kUnknownCommand:
    case ErrorCode::kUnknownField:
    case ErrorCode::kMissingField:
    case ErrorCode::kInvalidAmount: return 400;
    case ErrorCode::kTooLarge: return 413;
    case ErrorCode::kUnknownOrg:
    case ErrorCode::kUnknownWorkspace:
    case ErrorCode::kUnknownMember:
    case ErrorCode::kUnknownKey:
    case ErrorCode::kInviteNotFound:
    case ErrorCode::kHoldNotFound:
    case ErrorCode::kUnknownPrice: return 404;
    case ErrorCode::kOrgExists:
    case ErrorCode::kWorkspaceExists:
    case ErrorCode::kMemberExists:
    case ErrorCode::kKeyExists:
    case ErrorCode::kGrantExists:
    case ErrorCode::kIdConflict:
    case ErrorCode::kOrgDeleted:
    case ErrorCode::kPrimaryWorkspace:
    case ErrorCode::kOwnerImmutable:
    case ErrorCode::kHoldClosed:
    case ErrorCode::kHoldExists:
    case ErrorCode::kWrongMode:
    case ErrorCode::kInsufficientCredits:
    case ErrorCode::kLimitExceeded: return 409;
    case ErrorCode::kForbidden: return 403;
    case ErrorCode::kUnauthenticated: return 401;
    case ErrorCode::kReadOnly:
    case ErrorCode::kStorageError:
    case ErrorCode::kUnavailable: return 503;
    case ErrorCode::kInternal: return 500;
  }
  return 500;
}

}  // namespace tally::server
