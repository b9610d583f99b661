// Handlers for the organization, workspace, membership, service-key and user-token
// commands (SPEC §2 "Organizations and workspaces", "Members and roles").
#include <openssl/rand.h>

#include <fmt/format.h>

#include "engine/handlers.h"
#include "engine/permissions.h"
#include "engine/values.h"

namespace tally {
namespace {

BudgetMode parse_mode(std::string_view mode) { return mode == "budget" ? BudgetMode::Budget : BudgetMode::Shared; }
Role parse_role(std::string_view role) { return role == "admin" ? Role::Admin : Role::Member; }

Status unknown_workspace(std::string_view name) {
  return Error(ErrorCode::kUnknownWorkspace, fmt::format("no workspace \"{}\"", name));
}

Status live_workspace(const Org& org, std::string_view name, uint32_t* id) {
  const auto found = org.find_workspace(name);
  if (!found) return unknown_workspace(name);
  *id = *found;
  return Status::Ok();
}

// A workspace that may be changed: live and not the primary one.
Status changeable_workspace(const Org& org, std::string_view name, uint32_t* id) {
  if (Status s = live_workspace(org, name, id); !s.ok()) return s;
  if (*id == kPrimaryWorkspaceId) return Error(ErrorCode::kPrimaryWorkspace, "the primary workspace cannot be renamed or deleted");
  return Status::Ok();
}

// A membership (active or invited) that may be changed: not the owner's.
Status changeable_member(const Org& org, std::string_view user, const Member** member) {
  auto it = org.members.find(user);
  if (it == org.members.end() || it->second.status == MemberStatus::kRemoved) {
    return Error(ErrorCode::kUnknownMember, fmt::format("{} is not a member of \"{}\"", user, org.id));
  }
  if (it->second.role == Role::Owner) {
    return Error(ErrorCode::kOwnerImmutable, "the owner's membership changes only by transfer_ownership");
  }
  *member = &it->second;
  return Status::Ok();
}

Status create_org(CommandContext& context) {
  const Command& command = context.command();
  if (context.state().orgs.find(command.org) != nullptr) {
    return Error(ErrorCode::kOrgExists, fmt::format("organization \"{}\" exists (ids are never reused)", command.org));
  }
  std::string owner = command.owner;
  switch (actor_kind(command.actor)) {
    case ActorKind::kPlatform:
      if (owner.empty()) return Error(ErrorCode::kMissingField, "the platform must name the \"owner\"");
      break;
    case ActorKind::kServiceKey:
      return Error(ErrorCode::kForbidden, "service keys cannot create organizations");
    case ActorKind::kUser:
      if (!owner.empty() && owner != command.actor) return Error(ErrorCode::kForbidden, "a user creates organizations it owns itself");
      owner = command.actor;
      break;
  }
  auto& b = context.builder();
  const std::string& name = command.name.empty() ? command.org : command.name;
  auto payload = fb::CreateOrgCreatedDirect(b, command.org.c_str(), name.c_str(), owner.c_str(), parse_mode(command.mode));
  context.emit(fb::Event::OrgCreated, payload.Union());
  return Status::Ok();
}

Status delete_org(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kOwnerOnly, &org); !s.ok()) return s;
  auto payload = fb::CreateOrgDeletedDirect(context.builder(), org->id.c_str());
  context.emit(fb::Event::OrgDeleted, payload.Union());
  return Status::Ok();
}

Status set_budget_mode(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kManageCredits, &org); !s.ok()) return s;
  const BudgetMode mode = parse_mode(context.command().mode);
  const bool sweep = org->mode == BudgetMode::Budget && mode == BudgetMode::Shared;
  auto payload = fb::CreateBudgetModeChangedDirect(context.builder(), org->id.c_str(), mode);
  context.emit(fb::Event::BudgetModeChanged, payload.Union());
  if (sweep) {
    // Shared mode keeps every credit in the primary workspace.
    for (uint32_t id = 1; id < org->workspaces.size(); ++id) emit_return_to_primary(context, *org, id, fb::MoveReason::ModeSwitch);
  }
  return Status::Ok();
}

Status create_workspace(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kManageWorkspaces, &org); !s.ok()) return s;
  const std::string& name = context.command().workspace;
  if (org->find_workspace(name)) return Error(ErrorCode::kWorkspaceExists, fmt::format("workspace \"{}\" exists", name));
  if (org->workspaces.size() >= kWorkspacesPerOrgMax) {
    return Error(ErrorCode::kTooLarge, fmt::format("an organization has at most {} workspaces, deleted ones included", kWorkspacesPerOrgMax));
  }
  const auto id = static_cast<uint32_t>(org->workspaces.size());
  auto payload = fb::CreateWorkspaceCreatedDirect(context.builder(), org->id.c_str(), id, name.c_str());
  context.emit(fb::Event::WorkspaceCreated, payload.Union());
  return Status::Ok();
}

Status rename_workspace(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kManageWorkspaces, &org); !s.ok()) return s;
  uint32_t id;
  if (Status s = changeable_workspace(*org, context.command().workspace, &id); !s.ok()) return s;
  const std::string& name = context.command().name;
  if (!valid_id(name)) return Error(ErrorCode::kInvalidArgument, "a workspace name follows the id rules (A-Z a-z 0-9 . _ -, at most 64)");
  const auto other = org->find_workspace(name);
  if (other && *other != id) return Error(ErrorCode::kWorkspaceExists, fmt::format("workspace \"{}\" exists", name));
  auto payload = fb::CreateWorkspaceRenamedDirect(context.builder(), org->id.c_str(), id, name.c_str());
  context.emit(fb::Event::WorkspaceRenamed, payload.Union());
  return Status::Ok();
}

Status delete_workspace(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kManageWorkspaces, &org); !s.ok()) return s;
  uint32_t id;
  if (Status s = changeable_workspace(*org, context.command().workspace, &id); !s.ok()) return s;
  auto payload = fb::CreateWorkspaceDeleted(context.builder(), context.builder().CreateString(org->id), id);
  context.emit(fb::Event::WorkspaceDeleted, payload.Union());
  emit_return_to_primary(context, *org, id, fb::MoveReason::WorkspaceDeleted);
  return Status::Ok();
}

Status invite_member(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kManageMembers, &org); !s.ok()) return s;
  const Command& command = context.command();
  if (org->active_member(command.user) != nullptr) {
    return Error(ErrorCode::kMemberExists, fmt::format("{} is already a member", command.user));
  }
  if (!org->members.contains(command.user) && org->members.size() >= kMembersPerOrgMax) {
    return Error(ErrorCode::kTooLarge, fmt::format("an organization has at most {} members, removed ones included", kMembersPerOrgMax));
  }
  uint32_t workspace_id;
  if (Status s = live_workspace(*org, command.workspace, &workspace_id); !s.ok()) return s;
  auto payload = fb::CreateMemberInvitedDirect(context.builder(), org->id.c_str(), command.user.c_str(), parse_role(command.role), workspace_id);
  context.emit(fb::Event::MemberInvited, payload.Union());
  return Status::Ok();
}

Status accept_invite(CommandContext& context) {
  const Command& command = context.command();
  const Org* org = context.state().orgs.find(command.org);
  if (org == nullptr) return Error(ErrorCode::kUnknownOrg, fmt::format("no organization \"{}\"", command.org));
  if (org->deleted) return Error(ErrorCode::kOrgDeleted, fmt::format("organization \"{}\" was deleted", command.org));
  if (actor_kind(command.actor) != ActorKind::kUser) return Error(ErrorCode::kForbidden, "only the invited user accepts an invitation");
  auto it = org->members.find(command.actor);
  if (it != org->members.end() && it->second.status == MemberStatus::kActive) {
    return Error(ErrorCode::kMemberExists, fmt::format("{} is already a member", command.actor));
  }
  if (it == org->members.end() || it->second.status != MemberStatus::kInvited) {
    return Error(ErrorCode::kInviteNotFound, fmt::format("no pending invitation for {}", command.actor));
  }
  auto payload = fb::CreateInviteAcceptedDirect(context.builder(), org->id.c_str(), command.actor.c_str());
  context.emit(fb::Event::InviteAccepted, payload.Union());
  return Status::Ok();
}

Status change_role(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kManageMembers, &org); !s.ok()) return s;
  const Command& command = context.command();
  const Member* member;
  if (Status s = changeable_member(*org, command.user, &member); !s.ok()) return s;
  auto payload = fb::CreateMemberRoleChangedDirect(context.builder(), org->id.c_str(), command.user.c_str(), parse_role(command.role));
  context.emit(fb::Event::MemberRoleChanged, payload.Union());
  return Status::Ok();
}

Status move_member(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kManageMembers, &org); !s.ok()) return s;
  const Command& command = context.command();
  auto it = org->members.find(command.user);
  if (it == org->members.end() || it->second.status == MemberStatus::kRemoved) {
    return Error(ErrorCode::kUnknownMember, fmt::format("{} is not a member of \"{}\"", command.user, org->id));
  }
  uint32_t workspace_id;
  if (Status s = live_workspace(*org, command.workspace, &workspace_id); !s.ok()) return s;
  auto payload = fb::CreateMemberMovedDirect(context.builder(), org->id.c_str(), command.user.c_str(), workspace_id);
  context.emit(fb::Event::MemberMoved, payload.Union());
  return Status::Ok();
}

Status remove_member(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kManageMembers, &org); !s.ok()) return s;
  const Command& command = context.command();
  const Member* member;
  if (Status s = changeable_member(*org, command.user, &member); !s.ok()) return s;
  auto payload = fb::CreateMemberRemovedDirect(context.builder(), org->id.c_str(), command.user.c_str());
  context.emit(fb::Event::MemberRemoved, payload.Union());
  return Status::Ok();
}

Status transfer_ownership(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kOwnerOnly, &org); !s.ok()) return s;
  const Command& command = context.command();
  if (command.user == org->owner) return Error(ErrorCode::kInvalidArgument, fmt::format("{} already owns \"{}\"", command.user, org->id));
  if (org->active_member(command.user) == nullptr) {
    return Error(ErrorCode::kUnknownMember, fmt::format("{} is not an active member of \"{}\"", command.user, org->id));
  }
  auto payload = fb::CreateOwnershipTransferredDirect(context.builder(), org->id.c_str(), org->owner.c_str(), command.user.c_str());
  context.emit(fb::Event::OwnershipTransferred, payload.Union());
  return Status::Ok();
}

std::string hex_of(const uint8_t* bytes, size_t size) {
  std::string out;
  for (size_t i = 0; i < size; ++i) out += fmt::format("{:02x}", bytes[i]);
  return out;
}

bool bytes_of_hex(std::string_view hex, std::vector<uint8_t>* out) {
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  out->clear();
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out->push_back(static_cast<uint8_t>(nibble(hex[i]) << 4 | nibble(hex[i + 1])));
  return out->size() == 32;
}

// The secret's hash: the given one, or that of a new random secret with `prefix`, which
// the answer shows once.
Status new_secret_hash(CommandContext& context, std::string_view prefix, std::vector<uint8_t>* hash) {
  const std::string& given = context.command().secret_sha256;
  if (!given.empty()) {
    bytes_of_hex(given, hash);
    return Status::Ok();
  }
  uint8_t random[24];
  if (RAND_bytes(random, sizeof random) != 1) return Error(ErrorCode::kInternal, "the system random source failed");
  const std::string secret = std::string(prefix) + hex_of(random, sizeof random);
  const Sha256 digest = sha256(secret);
  hash->assign(digest.begin(), digest.end());
  context.add_result("secret", secret);
  return Status::Ok();
}

Status create_service_key(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kPlatformOnly, &org); !s.ok()) return s;
  const Command& command = context.command();
  if (org->keys.contains(command.key)) return Error(ErrorCode::kKeyExists, fmt::format("service key \"{}\" exists", command.key));
  std::vector<uint8_t> hash;
  if (Status s = new_secret_hash(context, "tsk_", &hash); !s.ok()) return s;
  auto payload = fb::CreateServiceKeyCreatedDirect(context.builder(), org->id.c_str(), command.key.c_str(), &hash);
  context.emit(fb::Event::ServiceKeyCreated, payload.Union());
  return Status::Ok();
}

Status revoke_service_key(CommandContext& context) {
  const Org* org;
  if (Status s = authorized_org(context, Action::kPlatformOnly, &org); !s.ok()) return s;
  const Command& command = context.command();
  if (!org->keys.contains(command.key)) return Error(ErrorCode::kUnknownKey, fmt::format("no service key \"{}\"", command.key));
  auto payload = fb::CreateServiceKeyRevokedDirect(context.builder(), org->id.c_str(), command.key.c_str());
  context.emit(fb::Event::ServiceKeyRevoked, payload.Union());
  return Status::Ok();
}

Status create_user_token(CommandContext& context) {
  const Command& command = context.command();
  if (Status s = authorize(nullptr, command.actor, Action::kPlatformOnly); !s.ok()) return s;
  if (context.state().tokens.find(command.token) != nullptr) {
    return Error(ErrorCode::kKeyExists, fmt::format("user token \"{}\" exists (token ids are never reused)", command.token));
  }
  std::vector<uint8_t> hash;
  if (Status s = new_secret_hash(context, "tut_", &hash); !s.ok()) return s;
  auto payload = fb::CreateUserTokenCreatedDirect(context.builder(), command.token.c_str(), command.user.c_str(), &hash);
  context.emit(fb::Event::UserTokenCreated, payload.Union());
  return Status::Ok();
}

// The platform revokes any token; a user revokes their own.
Status revoke_user_token(CommandContext& context) {
  const Command& command = context.command();
  const UserToken* token = context.state().tokens.find(command.token);
  const bool own = token != nullptr && actor_kind(command.actor) == ActorKind::kUser && token->user == command.actor;
  if (!own) {
    if (Status s = authorize(nullptr, command.actor, Action::kPlatformOnly); !s.ok()) return s;
  }
  if (token == nullptr) return Error(ErrorCode::kUnknownKey, fmt::format("no user token \"{}\"", command.token));
  auto payload = fb::CreateUserTokenRevokedDirect(context.builder(), command.token.c_str());
  context.emit(fb::Event::UserTokenRevoked, payload.Union());
  return Status::Ok();
}

}  // namespace

Status authorized_org(const CommandContext& context, Action action, const Org** org) {
  const Command& command = context.command();
  const CommandLookups* found = context.lookups();
  *org = found != nullptr && found->org != nullptr ? found->org : context.state().orgs.find(command.org);
  if (*org == nullptr) return Error(ErrorCode::kUnknownOrg, fmt::format("no organization \"{}\"", command.org));
  if (Status s = authorize(*org, command.actor, action); !s.ok()) return s;
  if ((*org)->deleted) return Error(ErrorCode::kOrgDeleted, fmt::format("organization \"{}\" was deleted", command.org));
  return Status::Ok();
}

Status handle_command(CommandContext& context) {
  const CommandType type = context.command().type;
  if (type >= CommandType::kGrantCredits && type <= CommandType::kTick) return handle_credit_command(context);
  return handle_org_command(context);
}

Status handle_org_command(CommandContext& context) {
  switch (context.command().type) {
    case CommandType::kCreateOrg: return create_org(context);
    case CommandType::kDeleteOrg: return delete_org(context);
    case CommandType::kSetBudgetMode: return set_budget_mode(context);
    case CommandType::kCreateWorkspace: return create_workspace(context);
    case CommandType::kRenameWorkspace: return rename_workspace(context);
    case CommandType::kDeleteWorkspace: return delete_workspace(context);
    case CommandType::kInviteMember: return invite_member(context);
    case CommandType::kAcceptInvite: return accept_invite(context);
    case CommandType::kChangeRole: return change_role(context);
    case CommandType::kMoveMember: return move_member(context);
    case CommandType::kRemoveMember: return remove_member(context);
    case CommandType::kTransferOwnership: return transfer_ownership(context);
    case CommandType::kCreateServiceKey: return create_service_key(context);
    case CommandType::kRevokeServiceKey: return revoke_service_key(context);
    case CommandType::kCreateUserToken: return create_user_token(context);
    case CommandType::kRevokeUserToken: return revoke_user_token(context);
    default: break;
  }
  return Error(ErrorCode::kInternal, "a command type has no handler");
}

}  // namespace tally
