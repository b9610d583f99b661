// Properties of the organization and membership domain under random use.
//
// Each case generates a sequence of org, workspace, member and service-key commands
// over small pools of organization ids, users, workspace names and keys, with actors
// drawn from every role (owners, admins, members, invitees, strangers, the platform,
// service keys), so that many commands are refused. The commands run in random batch
// sizes. The properties then hold SPEC §2's invariants to account:
//   (a) rebuilding from the log equals the live projections, byte for byte;
//   (b) export, then import into a fresh store, gives the same rows and answers;
//   (c) a refused command changes nothing;
//   (d) reopening the engine gives the same rows.
//
// Stores live in an in-memory RocksDB environment: these properties are about the
// engine's logic, not the disk (engine/log_test.cc and engine_test.cc cover that), and
// fsync-free stores keep 100 cases per property fast.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <rocksdb/env.h>

#include <array>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "engine/engine.h"
#include "engine/test_util.h"
#include "projections/orgs.h"
#include "replay/export.h"
#include "replay/replay.h"

namespace tally {
namespace {

using Rows = std::vector<std::pair<std::string, std::string>>;

constexpr std::array<const char*, 2> kOrgs = {"o1", "o2"};
constexpr std::array<const char*, 6> kUsers = {"u0@x.io", "u1@x.io", "u2@x.io", "u3@x.io", "u4@x.io", "u5@x.io"};
constexpr std::array<const char*, 4> kWorkspaces = {"primary", "w1", "w2", "w3"};
constexpr std::array<const char*, 2> kKeys = {"k1", "k2"};
constexpr const char* kStranger = "zed@y.io";
// A secret hash given on some create_service_key commands.
constexpr const char* kGivenHash = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

// One generated command, as small numbers; turned into a Command against the state
// current when its batch is built, so actors can be "the owner", "an admin", ...
struct Step {
  int kind = 0;   // 0..99, weighted over the command types
  int org = 0;    // index into kOrgs
  int actor = 0;  // 0..15, see actor_for
  int a = 0, b = 0, c = 0;
};

std::ostream& operator<<(std::ostream& out, const Step& step) {
  return out << fmt::format("Step{{kind={},org={},actor={},a={},b={},c={}}}", step.kind, step.org, step.actor, step.a, step.b, step.c);
}

// rapidcheck scales inRange by the case's size; a fixed size keeps every command type
// and actor equally likely in short sequences too (only their length grows).
constexpr int kFullSize = 100;

rc::Gen<Step> step_gen() {
  return rc::gen::resize(
      kFullSize, rc::gen::map(rc::gen::tuple(rc::gen::inRange(0, 100), rc::gen::inRange(0, 2), rc::gen::inRange(0, 16),
                                             rc::gen::inRange(0, 6), rc::gen::inRange(0, 6), rc::gen::inRange(0, 4)),
                              [](const std::tuple<int, int, int, int, int, int>& t) {
                                return Step{std::get<0>(t), std::get<1>(t), std::get<2>(t),
                                            std::get<3>(t), std::get<4>(t), std::get<5>(t)};
                              }));
}

// 0 to 60 commands per case, whatever rapidcheck's size.
constexpr int kStepsMax = 60;
rc::Gen<std::vector<Step>> steps_gen() { return rc::gen::resize(kStepsMax, rc::gen::container<std::vector<Step>>(step_gen())); }

rc::Gen<std::vector<int>> batch_sizes_gen() {
  return rc::gen::nonEmpty(rc::gen::container<std::vector<int>>(rc::gen::resize(kFullSize, rc::gen::inRange(1, 9))));
}

// Users of `org` in a given role and status, in user order.
std::vector<std::string> users_where(const Org* org, Role role, MemberStatus status) {
  std::vector<std::string> users;
  if (org == nullptr) return users;
  for (const auto& [user, member] : org->members) {
    if (member.role == role && member.status == status) users.push_back(user);
  }
  return users;
}

std::string pick(const std::vector<std::string>& candidates, int index, std::string fallback) {
  return candidates.empty() ? fallback : candidates[static_cast<size_t>(index) % candidates.size()];
}

// Commands are built against the state before their batch runs; this remembers the
// organizations an earlier command of the same batch creates, and their owners.
using Creating = std::map<std::string, std::string>;

// Owners and admins make way for invitees on accept_invite (they could only be told
// member_exists), and for the platform on service-key commands (only it may).
enum class Favour : uint8_t { kNone, kInvitees, kPlatform };

std::string actor_for(const ProjectionSet& state, const Creating& creating, const Step& step, Favour favour) {
  const Org* org = state.orgs.find(kOrgs[step.org]);
  const std::string anyone = kUsers[step.a % kUsers.size()];
  // Weighted towards those who may act, so that sequences get somewhere.
  int actor = step.actor;
  if (favour == Favour::kInvitees && actor < 8) actor = 9;
  if (favour == Favour::kPlatform && actor < 5) actor = 12;
  switch (actor) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 4: {
      if (org != nullptr) return org->owner;
      auto it = creating.find(kOrgs[step.org]);
      return it != creating.end() ? it->second : anyone;
    }
    case 5:
    case 6:
    case 7: return pick(users_where(org, Role::Admin, MemberStatus::kActive), step.c, anyone);
    case 8: return pick(users_where(org, Role::Member, MemberStatus::kActive), step.c, anyone);
    case 9:
    case 10: {
      std::vector<std::string> invited = users_where(org, Role::Admin, MemberStatus::kInvited);
      for (const std::string& user : users_where(org, Role::Member, MemberStatus::kInvited)) invited.push_back(user);
      return pick(invited, step.c, anyone);
    }
    case 11: return anyone;
    case 12:
    case 13: return "platform";
    case 14: return fmt::format("key:{}", kKeys[step.b % kKeys.size()]);
    default: return kStranger;
  }
}

// Live workspace names and member users of `org` (empty when it does not exist),
// mostly without the primary workspace and the owner, which most commands refuse.
std::vector<std::string> live_workspaces(const Org* org, bool with_primary) {
  std::vector<std::string> names;
  if (org != nullptr) {
    for (const auto& [name, id] : org->live_workspaces) {
      if (with_primary || id != kPrimaryWorkspaceId) names.push_back(name);
    }
  }
  return names;
}
std::vector<std::string> members_of(const Org* org, bool with_owner) {
  std::vector<std::string> users;
  if (org != nullptr) {
    for (const auto& [user, member] : org->members) {
      if (with_owner || user != org->owner) users.push_back(user);
    }
  }
  return users;
}

Command command_for(const ProjectionSet& state, Creating& creating, const Step& step) {
  Command command;
  command.org = kOrgs[step.org];
  const Org* org = state.orgs.find(command.org);
  // Most commands for an organization that does not exist yet create it instead, so
  // that sequences reach the interesting states; the rest are refused unknown_org.
  const int k = org == nullptr && !creating.contains(command.org) && step.c != 3 ? 0 : step.kind;
  const Favour favour = k >= 53 && k < 66 ? Favour::kInvitees : k >= 90 ? Favour::kPlatform : Favour::kNone;
  command.actor = actor_for(state, creating, step, favour);
  // Names and users come mostly from what exists (so commands can succeed), sometimes
  // from the pools (so they also hit unknown and conflicting names).
  const bool existing = step.c != 3;
  const std::string pool_user = kUsers[step.a % kUsers.size()];
  const std::string user = existing ? pick(members_of(org, step.c == 2), step.a, pool_user) : pool_user;
  const std::string pool_workspace = kWorkspaces[step.a % kWorkspaces.size()];
  const std::string workspace = existing ? pick(live_workspaces(org, step.c == 2), step.a, pool_workspace) : pool_workspace;
  const std::string other_pool_workspace = kWorkspaces[step.b % kWorkspaces.size()];
  const std::string other_workspace = step.c < 2 ? pick(live_workspaces(org, true), step.b, other_pool_workspace) : other_pool_workspace;
  const std::string role = step.b % 2 == 0 ? "member" : "admin";
  if (k < 8) {
    command.type = CommandType::kCreateOrg;
    if (command.actor == "platform") command.owner = pool_user;
    if (step.b % 3 != 0) command.mode = step.b % 2 == 0 ? "shared" : "budget";
    if (step.c == 1) command.name = fmt::format("Org \"{}\" \\ caf\xc3\xa9", step.a);
    if (step.c == 2 && command.actor != "platform") command.owner = kUsers[step.b % kUsers.size()];
    if (org == nullptr && !creating.contains(command.org)) {
      creating[command.org] = command.owner.empty() ? command.actor : command.owner;
    }
  } else if (k < 10) {
    command.type = CommandType::kDeleteOrg;
  } else if (k < 15) {
    command.type = CommandType::kSetBudgetMode;
    command.mode = step.b % 2 == 0 ? "shared" : "budget";
  } else if (k < 25) {
    command.type = CommandType::kCreateWorkspace;
    command.workspace = pool_workspace;
  } else if (k < 31) {
    command.type = CommandType::kRenameWorkspace;
    command.workspace = workspace;
    // An invalid name, a live one (a conflict, or itself), or a fresh one.
    command.name = step.c == 3 ? "Not An Id" : step.c == 0 ? other_workspace : fmt::format("r{}", step.b);
  } else if (k < 37) {
    command.type = CommandType::kDeleteWorkspace;
    command.workspace = workspace;
  } else if (k < 53) {
    command.type = CommandType::kInviteMember;
    command.user = step.c == 0 ? user : pool_user;
    command.role = role;
    command.workspace = step.c < 3 ? pick(live_workspaces(org, true), step.b, "primary") : other_pool_workspace;
  } else if (k < 66) {
    command.type = CommandType::kAcceptInvite;
  } else if (k < 73) {
    command.type = CommandType::kChangeRole;
    command.user = user;
    command.role = role;
  } else if (k < 80) {
    command.type = CommandType::kMoveMember;
    command.user = user;
    command.workspace = other_workspace;
  } else if (k < 86) {
    command.type = CommandType::kRemoveMember;
    command.user = user;
  } else if (k < 90) {
    command.type = CommandType::kTransferOwnership;
    command.user = user;
  } else if (k < 96) {
    command.type = CommandType::kCreateServiceKey;
    command.key = kKeys[step.b % kKeys.size()];
    if (step.c % 2 == 0) command.secret_sha256 = kGivenHash;
  } else {
    command.type = CommandType::kRevokeServiceKey;
    command.key = kKeys[step.b % kKeys.size()];
  }
  if (step.c == 0 && step.a % 2 == 0) command.id = fmt::format("cmd-{}-{}", step.kind, step.a);
  return command;
}

// An engine on an in-memory store of its own.
struct World {
  std::unique_ptr<rocksdb::Env> env{rocksdb::NewMemEnv(rocksdb::Env::Default())};
  testing::TestEngine engine{"data", env.get()};
  uint64_t accepted = 0;
  uint64_t refused = 0;
};

// Executes `steps` in batches of the given sizes (cycled), checking what every batch
// must satisfy: answers in order, consecutive sequence numbers for the accepted
// commands, and exactly their events in the log.
void run_steps(World& world, const std::vector<Step>& steps, const std::vector<int>& batch_sizes) {
  Engine& engine = world.engine.engine();
  size_t next = 0;
  for (size_t batch_index = 0; next < steps.size(); ++batch_index) {
    const size_t size = std::min(steps.size() - next, static_cast<size_t>(batch_sizes[batch_index % batch_sizes.size()]));
    std::vector<Command> batch;
    Creating creating;
    for (size_t i = 0; i < size; ++i) batch.push_back(command_for(engine.state(), creating, steps[next + i]));
    next += size;
    const uint64_t seq_before = engine.store().last_seq();
    const std::vector<CommandResult> results = engine.execute(batch);
    RC_ASSERT(results.size() == batch.size());
    uint64_t expected_seq = seq_before + 1;
    for (size_t i = 0; i < results.size(); ++i) {
      RC_ASSERT(results[i].id == batch[i].id);
      if (results[i].status.ok()) {
        RC_ASSERT(results[i].seq == expected_seq);
        RC_ASSERT(results[i].events == 1u);
        expected_seq += results[i].events;
        ++world.accepted;
      } else {
        RC_ASSERT(results[i].seq == 0u);
        RC_ASSERT(results[i].events == 0u);
        RC_ASSERT(results[i].status.code != ErrorCode::kInternal);
        RC_ASSERT(results[i].status.code != ErrorCode::kStorageError);
        ++world.refused;
      }
    }
    RC_ASSERT(engine.store().last_seq() == expected_seq - 1);
    RC_ASSERT(!engine.read_only());
    // Time moves on irregularly between batches, sometimes not at all.
    world.engine.clock().advance(static_cast<int64_t>(batch_index % 3) * 1'500'000);
  }
}

// SPEC §2's structural rules, checked on the state itself.
void check_domain_invariants(const ProjectionSet& state) {
  for (const auto& [id, org] : state.orgs.orgs()) {
    RC_ASSERT(!org->workspaces.empty());
    RC_ASSERT(org->workspaces[kPrimaryWorkspaceId].name == kPrimaryWorkspaceName);
    RC_ASSERT(!org->workspaces[kPrimaryWorkspaceId].deleted);
    // Exactly one owner, active, and the one the organization names.
    int owners = 0;
    for (const auto& [user, member] : org->members) {
      RC_ASSERT(member.workspace_id < org->workspaces.size());
      if (member.role == Role::Owner) {
        ++owners;
        RC_ASSERT(user == org->owner);
        RC_ASSERT(member.status == MemberStatus::kActive);
      }
      // Only removed members may be left in a deleted workspace.
      if (member.status != MemberStatus::kRemoved) RC_ASSERT(!org->workspaces[member.workspace_id].deleted);
    }
    RC_ASSERT(owners == 1);
    // The live names are exactly the workspaces not deleted, and unique.
    size_t live = 0;
    for (uint32_t w = 0; w < org->workspaces.size(); ++w) {
      if (org->workspaces[w].deleted) continue;
      ++live;
      RC_ASSERT(org->find_workspace(org->workspaces[w].name) == std::optional<uint32_t>(w));
    }
    RC_ASSERT(org->live_workspaces.size() == live);
  }
  RC_ASSERT(state.anomalies() == 0u);
}

// Queries whose answers must agree between two engines with the same history.
std::vector<std::string> probe_queries(uint64_t last_seq) {
  std::vector<std::string> queries;
  std::vector<std::string> actors = {"platform", kStranger, "key:k1", "key:k2"};
  for (const char* user : kUsers) actors.emplace_back(user);
  for (const char* org : kOrgs) {
    for (const std::string& actor : actors) {
      for (const char* type : {"org", "workspaces", "members"}) {
        queries.push_back(fmt::format(R"({{"query":"{}","actor":"{}","org":"{}"}})", type, actor, org));
      }
    }
    for (const char* workspace : kWorkspaces) {
      queries.push_back(fmt::format(R"({{"query":"members","actor":"platform","org":"{}","workspace":"{}"}})", org, workspace));
    }
    for (uint64_t seq : {last_seq / 3, last_seq / 2, last_seq > 0 ? last_seq - 1 : 0}) {
      queries.push_back(fmt::format(R"({{"query":"members","actor":"platform","org":"{}","as_of_seq":{}}})", org, seq));
      queries.push_back(fmt::format(R"({{"query":"workspaces","actor":"{}","org":"{}","as_of_seq":{}}})", kUsers[seq % kUsers.size()], org, seq));
    }
    queries.push_back(fmt::format(R"({{"query":"members","actor":"platform","org":"{}","as_of":"{}"}})", org,
                                  format_time(testing::kTestStartUs + 3'000'000)));
  }
  return queries;
}

// ---- (a) rebuild equals live -------------------------------------------------------------

RC_GTEST_PROP(OrgProperties, RebuildingFromTheLogEqualsTheLiveProjections, ()) {
  const std::vector<Step> steps = *steps_gen();
  const std::vector<int> batch_sizes = *batch_sizes_gen();
  World world;
  run_steps(world, steps, batch_sizes);
  Engine& engine = world.engine.engine();
  RC_TAG(world.accepted == 0 ? "nothing accepted" : world.refused == 0 ? "nothing refused" : "mixed");

  const VerifyReport report = verify(engine.store(), &engine.state());
  RC_ASSERT(report.ok());
  RC_ASSERT(report.events == engine.store().last_seq());
  // An independent rebuild, from nothing, of the same log.
  ProjectionSet rebuilt;
  RC_ASSERT(rebuilt.replay(engine.store(), engine.store().last_seq(), std::numeric_limits<int64_t>::max()).ok());
  RC_ASSERT(projection_rows(rebuilt) == projection_rows(engine.state()));
  check_domain_invariants(engine.state());
}

// ---- (b) export, import ------------------------------------------------------------------

RC_GTEST_PROP(OrgProperties, ExportThenImportGivesTheSameRowsAndAnswers, ()) {
  const std::vector<Step> steps = *steps_gen();
  const std::vector<int> batch_sizes = *batch_sizes_gen();
  World original;
  run_steps(original, steps, batch_sizes);
  Engine& engine = original.engine.engine();

  std::stringstream exported;
  ExportStats export_stats;
  RC_ASSERT(export_commands(engine.store(), exported, &export_stats).ok());
  RC_ASSERT(export_stats.commands == original.accepted);
  RC_ASSERT(export_stats.events == engine.store().last_seq());

  World copy;
  ImportStats import_stats;
  const Status imported = import_commands(copy.engine.engine(), exported, &import_stats);
  RC_ASSERT(imported.ok());
  RC_ASSERT(import_stats.commands == original.accepted);
  Engine& restored = copy.engine.engine();
  RC_ASSERT(restored.store().last_seq() == engine.store().last_seq());
  RC_ASSERT(projection_rows(restored.state()) == projection_rows(engine.state()));
  RC_ASSERT(restored.last_time_us() == engine.last_time_us());
  for (const std::string& q : probe_queries(engine.store().last_seq())) RC_ASSERT(restored.query(q) == engine.query(q));
  RC_ASSERT(verify(restored.store(), &restored.state()).ok());

  // Exporting the copy gives the same lines again.
  std::stringstream again;
  ExportStats again_stats;
  RC_ASSERT(export_commands(restored.store(), again, &again_stats).ok());
  RC_ASSERT(again.str() == exported.str());
}

// ---- (c) a refused command changes nothing ---------------------------------------------

RC_GTEST_PROP(OrgProperties, ARefusedCommandChangesNothing, ()) {
  const std::vector<Step> steps = *steps_gen();
  const std::vector<int> batch_sizes = *batch_sizes_gen();
  const std::vector<Step> probes = *rc::gen::container<std::vector<Step>>(12, step_gen());
  World world;
  run_steps(world, steps, batch_sizes);
  Engine& engine = world.engine.engine();

  int refusals = 0;
  for (const Step& probe : probes) {
    Creating creating;
    const Command command = command_for(engine.state(), creating, probe);
    const Rows rows_before = projection_rows(engine.state());
    const uint64_t seq_before = engine.store().last_seq();
    const Sha256 head_before = engine.store().head_hash();
    const int64_t time_before = engine.last_time_us();
    const std::vector<CommandResult> results = engine.execute(std::span(&command, 1));
    RC_ASSERT(results.size() == 1u);
    if (results[0].status.ok()) {
      RC_ASSERT(engine.store().last_seq() == seq_before + 1);
      RC_ASSERT(projection_rows(engine.state()) != rows_before);
    } else {
      ++refusals;
      RC_ASSERT(projection_rows(engine.state()) == rows_before);
      RC_ASSERT(engine.store().last_seq() == seq_before);
      RC_ASSERT(engine.store().head_hash() == head_before);
      RC_ASSERT(engine.last_time_us() == time_before);
    }
  }
  RC_CLASSIFY(refusals > 0, "some probe refused");
  // What the refusals did not change is still exactly what the log says.
  RC_ASSERT(verify(engine.store(), &engine.state()).ok());
}

// ---- (d) reopening -------------------------------------------------------------------------

RC_GTEST_PROP(OrgProperties, ReopeningTheEngineGivesTheSameRows, ()) {
  const std::vector<Step> steps = *steps_gen();
  const std::vector<int> batch_sizes = *batch_sizes_gen();
  const std::vector<Step> more = *rc::gen::resize(15, rc::gen::container<std::vector<Step>>(step_gen()));
  World world;
  run_steps(world, steps, batch_sizes);

  const Rows rows = projection_rows(world.engine.engine().state());
  const uint64_t seq = world.engine.engine().store().last_seq();
  const Sha256 head = world.engine.engine().store().head_hash();
  const int64_t time = world.engine.engine().last_time_us();
  const std::vector<std::string> queries = probe_queries(seq);
  std::vector<std::string> answers;
  for (const std::string& q : queries) answers.push_back(world.engine.query(q));

  world.engine.reopen();
  Engine& reopened = world.engine.engine();
  RC_ASSERT(projection_rows(reopened.state()) == rows);
  RC_ASSERT(reopened.store().last_seq() == seq);
  RC_ASSERT(reopened.store().head_hash() == head);
  RC_ASSERT(reopened.last_time_us() == time);
  for (size_t i = 0; i < queries.size(); ++i) RC_ASSERT(reopened.query(queries[i]) == answers[i]);
  RC_ASSERT(verify(reopened.store(), &reopened.state()).ok());

  // The reopened engine carries on exactly as one that was never closed.
  run_steps(world, more, batch_sizes);
  RC_ASSERT(verify(world.engine.engine().store(), &world.engine.engine().state()).ok());
  check_domain_invariants(world.engine.engine().state());
}

}  // namespace
}  // namespace tally
