// Stable error codes. The string form of each code is part of Tally's interface:
// clients match on it, so a code is never renamed or reused for another meaning.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tally {

// What a client should do when it gets a code (after absl::StatusCode's classes).
enum class Retry : uint8_t {
  kNever,       // the request itself is wrong or not allowed: fix it, do not resend
  kAfterChange, // valid, but the ledger's state refuses it now (e.g. no credits yet)
  kLater,       // the engine cannot take writes now: retry after recovery
};

enum class ErrorCode : uint8_t {
  kOk = 0,
  // The request is malformed.
  kInvalidJson,
  kInvalidArgument,
  kUnknownCommand,
  kUnknownField,
  kMissingField,
  kTooLarge,
  kInvalidAmount,
  // The request names something that does not exist (or no longer does).
  kUnknownOrg,
  kUnknownWorkspace,
  kUnknownMember,
  kUnknownKey,
  kInviteNotFound,
  kHoldNotFound,
  // The request conflicts with what exists.
  kOrgExists,
  kWorkspaceExists,
  kMemberExists,
  kKeyExists,
  kGrantExists,
  kIdConflict,
  kOrgDeleted,
  kPrimaryWorkspace,
  kOwnerImmutable,
  kHoldClosed,
  kHoldExists,
  kUnknownPrice,
  kWrongMode,
  // Permission.
  kForbidden,
  kUnauthenticated,
  // Money.
  kInsufficientCredits,
  kLimitExceeded,
  // The engine.
  kReadOnly,
  kStorageError,
  kInternal,
  // The daemon is overloaded or shutting down and did not take the request.
  kUnavailable,
};

// The stable snake_case name, e.g. "insufficient_credits".
std::string_view error_name(ErrorCode code);
Retry error_retry(ErrorCode code);
// Parses a name produced by error_name; returns false for an unknown name.
bool error_from_name(std::string_view name, ErrorCode* code);
// Every code, for documentation and tests.
inline constexpr int kErrorCodeCount = static_cast<int>(ErrorCode::kUnavailable) + 1;

// An error code with a human message; default-constructed means success.
struct Status {
  ErrorCode code = ErrorCode::kOk;
  std::string message;

  bool ok() const { return code == ErrorCode::kOk; }
  static Status Ok() { return {}; }
};

inline Status Error(ErrorCode code, std::string message) { return Status{code, std::move(message)}; }

// At most `max` bytes of `text`, for quoting untrusted input in an error message. The cut
// never falls inside a UTF-8 character, so a message quoting valid UTF-8 stays valid
// UTF-8 (and its JSON answer valid JSON).
std::string_view excerpt(std::string_view text, size_t max = 64);

}  // namespace tally
