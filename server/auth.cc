#include "server/auth.h"

#include <fmt/format.h>

#include <mutex>

namespace tally::server {
namespace {

std::string hash_key(std::string_view secret) {
  const Sha256 digest = sha256(secret);
  return std::string(reinterpret_cast<const char*>(digest.data()), digest.size());
}

// Shared by commands and queries: the actor and organization rules.
Status scope(const Identity& who, std::string* actor, std::string_view org) {
  if (actor->empty()) {
    *actor = who.actor;
  } else if (*actor != who.actor && who.kind != ActorKind::kPlatform) {
    return Error(ErrorCode::kForbidden, fmt::format("this request authenticated as {} and cannot act as {}", who.actor, *actor));
  }
  if (who.kind == ActorKind::kServiceKey && org != who.org) {
    // Key ids are unique only within an organization: a key speaks for its own alone.
    return Error(ErrorCode::kForbidden, fmt::format("service key {} belongs to organization \"{}\" and acts only there", who.actor, who.org));
  }
  return Status::Ok();
}

}  // namespace

void AuthIndex::set_admin_secret(std::string_view secret) {
  std::unique_lock lock(mutex_);
  Identity platform{ActorKind::kPlatform, "platform", {}};
  if (!admin_hash_.empty()) index_.erase(admin_hash_);
  admin_hash_ = hash_key(secret);
  add(&index_, admin_hash_, std::move(platform));
}

void AuthIndex::add(Index* index, std::string hash, Identity identity) {
  auto [it, inserted] = index->try_emplace(std::move(hash), Entry{identity, false});
  if (!inserted && it->second.identity != identity) it->second.ambiguous = true;
}

void AuthIndex::rebuild(const ProjectionSet& state) {
  Index fresh;
  for (const auto& [org_id, org] : state.orgs.orgs()) {
    for (const auto& [key_id, key] : org->keys) {
      if (key.revoked || key.secret_sha256.size() != 32) continue;
      add(&fresh, key.secret_sha256, Identity{ActorKind::kServiceKey, "key:" + key_id, org_id});
    }
  }
  for (const auto& [token_id, token] : state.tokens.tokens()) {
    if (token.revoked || token.secret_sha256.size() != 32) continue;
    add(&fresh, token.secret_sha256, Identity{ActorKind::kUser, token.user, {}});
  }
  std::unique_lock lock(mutex_);
  if (!admin_hash_.empty()) add(&fresh, admin_hash_, Identity{ActorKind::kPlatform, "platform", {}});
  index_.swap(fresh);
}

bool AuthIndex::affects_credentials(std::span<const Command* const> commands, std::span<const CommandResult> results) {
  for (size_t i = 0; i < commands.size() && i < results.size(); ++i) {
    switch (commands[i]->type) {
      case CommandType::kCreateServiceKey:
      case CommandType::kRevokeServiceKey:
      case CommandType::kCreateUserToken:
      case CommandType::kRevokeUserToken:
        if (results[i].status.ok()) return true;
        break;
      default:
        break;
    }
  }
  return false;
}

std::optional<Identity> AuthIndex::authenticate(std::string_view secret) const {
  if (secret.empty()) return std::nullopt;
  const std::string hash = hash_key(secret);
  std::shared_lock lock(mutex_);
  auto it = index_.find(hash);
  if (it == index_.end() || it->second.ambiguous) return std::nullopt;
  return it->second.identity;
}

size_t AuthIndex::size() const {
  std::shared_lock lock(mutex_);
  return index_.size();
}

Status scope_command(const Identity& who, Command* command) { return scope(who, &command->actor, command->org); }

Status scope_query(const Identity& who, std::string* actor, std::string_view org) { return scope(who, actor, org); }

}  // namespace tally::server
