// Commands: what clients ask the engine to do. A Command is the decoded, type-checked
// form of one JSON command line (SPEC §4); it has not yet been checked against state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "engine/error.h"

namespace tally {

enum class CommandType : uint8_t {
  kCreateOrg,
  kDeleteOrg,
  kSetBudgetMode,
  kCreateWorkspace,
  kRenameWorkspace,
  kDeleteWorkspace,
  kInviteMember,
  kAcceptInvite,
  kChangeRole,
  kMoveMember,
  kRemoveMember,
  kTransferOwnership,
  kCreateServiceKey,
  kRevokeServiceKey,
  kGrantCredits,
  kTransferCredits,
  kSetPlan,
  kRenewPlan,
  kSetPrice,
  kRecordUsage,
  kReserve,
  kSettle,
  kReleaseHold,
  kSetLimit,
  kTick,
  kCreateUserToken,
  kRevokeUserToken,
};
inline constexpr size_t kCommandTypeCount = static_cast<size_t>(CommandType::kRevokeUserToken) + 1;

// Every field any command may carry. Which fields a command takes, and which of those
// it requires, is in the command table (command.cc); the decoder rejects any other.
struct Command {
  CommandType type = CommandType::kCreateOrg;
  std::string actor;  // user id, "platform" or "key:<id>"
  std::string id;     // optional client command id
  std::optional<int64_t> at_us;  // engine time to use; only `tally import` honours it

  std::string org;
  std::string name;
  std::string mode;       // "shared" | "budget"
  std::string workspace;  // workspace name
  std::string user;
  std::string role;       // "admin" | "member"
  std::string owner;      // create_org by the platform: who will own it
  std::string key;        // service key id
  std::string secret_sha256;  // 64 hex digits
  std::string token;      // user token id

  std::string grant;      // grant id
  std::string kind;       // "plan" | "one_time" | "top_up" | "promo"
  std::string from;       // workspace names of a transfer
  std::string to;
  std::string plan;
  std::string tool;
  std::string model;
  std::string unit;
  std::string hold;
  std::string period;     // "day" | "month"
  std::optional<int64_t> credits_micro;
  std::optional<int64_t> credits_per_unit_micro;
  std::optional<int64_t> monthly_credits_micro;
  std::optional<int64_t> expires_at_us;
  std::optional<int64_t> effective_at_us;
  std::optional<int64_t> occurred_at_us;
  std::optional<int64_t> quantity;
  std::optional<int64_t> timeout_s;
  std::optional<int64_t> rollover;  // a JSON boolean: 1 or 0
};

inline constexpr int64_t kQuantityMax = 1'000'000'000'000;  // units in one usage event
inline constexpr int64_t kHoldTimeoutSecondsMax = 7 * 24 * 3600;

std::string_view command_name(CommandType type);

// Whether a decoder insists on the "actor" field. Local tools (tally apply) require it;
// the network daemon does not, because it fills in the authenticated identity.
enum class ActorField : uint8_t { kRequired, kOptional };

// Decodes one JSON command line. On failure returns invalid_json, unknown_command,
// unknown_field, missing_field, invalid_argument, invalid_amount or too_large and a
// message naming the offending field. With ActorField::kOptional a missing actor
// leaves command->actor empty.
Status decode_command(std::string_view json, Command* command, ActorField actor = ActorField::kRequired);

// Encodes a command back into its canonical JSON line (no trailing newline); fields
// that are empty are left out. decode_command(encode_command(c)) == c.
std::string encode_command(const Command& command);

}  // namespace tally
