// The role matrix of SPEC §2, in one place. Every command and query asks here.
#pragma once

#include <string_view>

#include "engine/error.h"

namespace tally {

struct Org;

enum class Action : uint8_t {
  kUseTools,          // reserve, settle, record usage (members: own workspace only)
  kView,              // balances, usage, members, workspaces (members: own workspace)
  kManageMembers,     // invite, remove, change role, move
  kManageWorkspaces,  // create, rename, delete workspaces; transfer credits; set limits
  kManageCredits,     // grant credits, change plan, set budget mode
  kOwnerOnly,         // transfer ownership, delete the organization
  kPlatformOnly,      // service keys, the rate card
};

enum class ActorKind : uint8_t { kPlatform, kServiceKey, kUser };

ActorKind actor_kind(std::string_view actor);

// Whether `actor` may take `action` on `org` (null for actions outside any
// organization). Returns forbidden with a message saying why not.
Status authorize(const Org* org, std::string_view actor, Action action);

}  // namespace tally
