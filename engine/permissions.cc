#include "engine/permissions.h"

#include <fmt/format.h>

#include "projections/orgs.h"

namespace tally {
namespace {

// Columns: owner, admin, member, service key. Rows: Action. Platform may do anything.
constexpr bool kMatrix[7][4] = {
    /* kUseTools         */ {true, true, true, true},
    /* kView             */ {true, true, true, true},
    /* kManageMembers    */ {true, true, false, false},
    /* kManageWorkspaces */ {true, true, false, false},
    /* kManageCredits    */ {true, true, false, false},
    /* kOwnerOnly        */ {true, false, false, false},
    /* kPlatformOnly     */ {false, false, false, false},
};

Status forbidden(std::string_view actor, std::string_view why) {
  return Error(ErrorCode::kForbidden, fmt::format("{} may not do this: {}", actor, why));
}

}  // namespace

ActorKind actor_kind(std::string_view actor) {
  if (actor == "platform") return ActorKind::kPlatform;
  if (actor.starts_with("key:")) return ActorKind::kServiceKey;
  return ActorKind::kUser;
}

Status authorize(const Org* org, std::string_view actor, Action action) {
  const ActorKind kind = actor_kind(actor);
  if (kind == ActorKind::kPlatform) return Status::Ok();
  if (org == nullptr) return forbidden(actor, "only the platform may");
  const auto row = static_cast<size_t>(action);
  if (kind == ActorKind::kServiceKey) {
    auto it = org->keys.find(actor.substr(4));
    if (it == org->keys.end() || it->second.revoked) return forbidden(actor, "no such active service key in this organization");
    return kMatrix[row][3] ? Status::Ok() : forbidden(actor, "service keys only use tools and view");
  }
  const Member* member = org->active_member(actor);
  if (member == nullptr) return forbidden(actor, "not an active member of the organization");
  const size_t column = member->role == Role::Owner ? 0 : member->role == Role::Admin ? 1 : 2;
  if (!kMatrix[row][column]) return forbidden(actor, fmt::format("the {} role does not allow it", role_name(member->role)));
  return Status::Ok();
}

}  // namespace tally
