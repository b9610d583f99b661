#include "engine/error.h"

#include <array>

namespace tally {
namespace {

struct ErrorInfo {
  std::string_view name;
  Retry retry;
};

// Indexed by ErrorCode; the order must match the enum.
constexpr std::array<ErrorInfo, kErrorCodeCount> kErrors = {{
    {"ok", Retry::kNever},
    {"invalid_json", Retry::kNever},
    {"invalid_argument", Retry::kNever},
    {"unknown_command", Retry::kNever},
    {"unknown_field", Retry::kNever},
    {"missing_field", Retry::kNever},
    {"too_large", Retry::kNever},
    {"invalid_amount", Retry::kNever},
    {"unknown_org", Retry::kAfterChange},
    {"unknown_workspace", Retry::kAfterChange},
    {"unknown_member", Retry::kAfterChange},
    {"unknown_key", Retry::kAfterChange},
    {"invite_not_found", Retry::kAfterChange},
    {"hold_not_found", Retry::kAfterChange},
    {"org_exists", Retry::kNever},
    {"workspace_exists", Retry::kAfterChange},
    {"member_exists", Retry::kNever},
    {"key_exists", Retry::kNever},
    {"grant_exists", Retry::kNever},
    {"id_conflict", Retry::kNever},
    {"org_deleted", Retry::kNever},
    {"primary_workspace", Retry::kNever},
    {"owner_immutable", Retry::kNever},
    {"hold_closed", Retry::kNever},
    {"hold_exists", Retry::kNever},
    {"unknown_price", Retry::kAfterChange},
    {"wrong_mode", Retry::kAfterChange},
    {"forbidden", Retry::kNever},
    {"unauthenticated", Retry::kNever},
    {"insufficient_credits", Retry::kAfterChange},
    {"limit_exceeded", Retry::kAfterChange},
    {"read_only", Retry::kLater},
    {"storage_error", Retry::kLater},
    {"internal", Retry::kLater},
    {"unavailable", Retry::kLater},
}};

}  // namespace

std::string_view error_name(ErrorCode code) { return kErrors[static_cast<size_t>(code)].name; }

Retry error_retry(ErrorCode code) { return kErrors[static_cast<size_t>(code)].retry; }

bool error_from_name(std::string_view name, ErrorCode* code) {
  for (size_t i = 0; i < kErrors.size(); ++i) {
    if (kErrors[i].name == name) {
      *code = static_cast<ErrorCode>(i);
      return true;
    }
  }
  return false;
}

std::string_view excerpt(std::string_view text, size_t max) {
  if (text.size() <= max) return text;
  // text[cut] is the first byte left out: while it continues a character, leave out
  // that character's earlier bytes too.
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return text.substr(0, cut);
}

}  // namespace tally
