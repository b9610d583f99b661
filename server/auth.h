// Who a bearer secret authenticates as. The daemon keeps an in-memory index from the
// SHA-256 of each live secret (the admin token, every unrevoked service key, every
// unrevoked user token) to the identity it acts as, so authentication is one hash and
// one lookup. Secrets themselves are never stored or logged.
#pragma once

#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "engine/command.h"
#include "engine/engine.h"
#include "engine/log.h"
#include "engine/permissions.h"
#include "projections/projection_set.h"

namespace tally::server {

struct Identity {
  ActorKind kind = ActorKind::kUser;
  std::string actor;  // "platform", "key:<id>" or the user id
  std::string org;    // a service key's organization; empty otherwise

  bool operator==(const Identity&) const = default;
};

class AuthIndex {
 public:
  // The admin token acts as "platform". Only its hash is kept.
  void set_admin_secret(std::string_view secret);
  // Re-reads every service key and user token from `state`. Call on the writer thread
  // (or before it starts); lookups on other threads see the old or the new index whole.
  void rebuild(const ProjectionSet& state);
  // Whether a batch may have changed the credentials (an accepted key or token command),
  // so that rebuild() is due before its answers go out.
  static bool affects_credentials(std::span<const Command* const> commands, std::span<const CommandResult> results);

  // The identity `secret` authenticates as, or nothing. A hash shared by two live
  // credentials (possible only with caller-chosen secret_sha256) authenticates neither.
  std::optional<Identity> authenticate(std::string_view secret) const;
  size_t size() const;

 private:
  struct Entry {
    Identity identity;
    bool ambiguous = false;
  };
  using Index = std::unordered_map<std::string, Entry>;  // key: the 32 raw hash bytes
  static void add(Index* index, std::string hash, Identity identity);

  mutable std::shared_mutex mutex_;
  Index index_;
  std::string admin_hash_;
};

// Applies the authenticated identity to a decoded command or query: a missing actor
// becomes the identity's; a different actor is forbidden unless the identity is the
// platform (which may act as anyone); a service key may only name its own organization.
Status scope_command(const Identity& who, Command* command);
Status scope_query(const Identity& who, std::string* actor, std::string_view org);

}  // namespace tally::server
