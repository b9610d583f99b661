// CommandLookups: what the engine found for a command before running it, for its
// handler. Kept apart from engine/handlers.h so that engine/engine.h, which keeps them,
// need not include the handlers' FlatBuffers headers.
#pragma once

#include <cstddef>
#include <string>

namespace tally {

struct Org;
struct OrgBalances;

// What the engine found for a usage command a few commands before running it
// (Engine::prefetch_orgs), for its handler to use rather than look up again: its
// organization in the organizations and the balances projections (null where it was
// not there yet: look it up), and the key_hash() of its workspace's name and of the
// member it names, `user` (&command.user, or &command.actor when user is empty). A
// pointer found stays valid and is what a lookup now would return: organizations are
// never erased while a batch executes, and entries never move.
struct CommandLookups {
  const Org* org = nullptr;
  const OrgBalances* balances = nullptr;
  const std::string* user = nullptr;
  size_t user_hash = 0;
  size_t workspace_hash = 0;
};

}  // namespace tally
