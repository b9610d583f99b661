// The organization and membership domain (SPEC §2 "Organizations and workspaces",
// "Members and roles"): one test per rule and per error code the engine can answer.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "engine/event_format.h"
#include "engine/log.h"
#include "engine/test_storage.h"
#include "engine/test_util.h"
#include "engine/thread_name.h"
#include "projections/orgs.h"
#include "replay/replay.h"

namespace tally {
namespace {

using testing::TestEngine;

using Rows = std::vector<std::pair<std::string, std::string>>;

// Everything an observer can see of the engine's durable state.
struct Snapshot {
  Rows rows;
  uint64_t last_seq;
  Sha256 head;
  bool operator==(const Snapshot&) const = default;
};

// The helpers every test here uses, on an engine of its own.
class EngineHarness {
 public:
  Engine& engine() { return t_.engine(); }

  CommandResult run(std::string_view json) { return t_.run(json); }
  // Runs a command that must be accepted.
  CommandResult ok(std::string_view json) {
    CommandResult result = t_.run(json);
    EXPECT_TRUE(result.status.ok()) << json << " -> " << testing::describe(result.status);
    return result;
  }
  ErrorCode code(std::string_view json) { return t_.run(json).status.code; }
  // Runs a command that must be refused with `expected`, and checks that it changed
  // nothing at all.
  void refused(std::string_view json, ErrorCode expected) {
    const Snapshot before = snapshot();
    const CommandResult result = t_.run(json);
    EXPECT_EQ(result.status.code, expected) << json << " -> " << testing::describe(result.status);
    EXPECT_FALSE(result.status.message.empty()) << "a refusal says why";
    EXPECT_EQ(result.seq, 0u);
    EXPECT_TRUE(snapshot() == before) << json << " was refused but changed the state";
  }

  std::string query(std::string_view json) { return t_.query(json); }

  Snapshot snapshot() { return {projection_rows(engine().state()), engine().store().last_seq(), engine().store().head_hash()}; }

  const Org& org(std::string_view id) {
    const Org* found = engine().state().orgs.find(id);
    EXPECT_NE(found, nullptr) << "no organization " << id;
    static const Org kEmpty;
    return found != nullptr ? *found : kEmpty;
  }
  const Member& member(std::string_view org_id, std::string_view user) {
    const Org& o = org(org_id);
    auto it = o.members.find(user);
    EXPECT_NE(it, o.members.end()) << user << " has no membership in " << org_id;
    static const Member kNone;
    return it != o.members.end() ? it->second : kNone;
  }
  std::string workspace_of(std::string_view org_id, std::string_view user) {
    return org(org_id).workspaces.at(member(org_id, user).workspace_id).name;
  }

  void expect_verified() {
    const VerifyReport report = verify(engine().store(), &engine().state());
    EXPECT_TRUE(report.ok()) << (report.problems.empty() ? "" : report.problems.front());
  }

  // acme, owned by alice: workspace "design"; adam an active admin in primary; bob an
  // active member in design; ivy invited to design, not yet accepted; rick removed;
  // service key "backend" active and "old" revoked. A second organization "other",
  // owned by olga, with its own key "foreign".
  void make_acme() {
    const std::vector<std::string> lines = {
        R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","name":"Acme","mode":"budget"})",
        R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})",
        R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"adam@acme.io","role":"admin","workspace":"primary"})",
        R"({"cmd":"accept_invite","actor":"adam@acme.io","org":"acme"})",
        R"({"cmd":"invite_member","actor":"adam@acme.io","org":"acme","user":"bob@acme.io","role":"member","workspace":"design"})",
        R"({"cmd":"accept_invite","actor":"bob@acme.io","org":"acme"})",
        R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"ivy@acme.io","role":"member","workspace":"design"})",
        R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"rick@acme.io","role":"admin","workspace":"design"})",
        R"({"cmd":"accept_invite","actor":"rick@acme.io","org":"acme"})",
        R"({"cmd":"remove_member","actor":"alice@acme.io","org":"acme","user":"rick@acme.io"})",
        R"({"cmd":"create_service_key","actor":"platform","org":"acme","key":"backend"})",
        R"({"cmd":"create_service_key","actor":"platform","org":"acme","key":"old"})",
        R"({"cmd":"revoke_service_key","actor":"platform","org":"acme","key":"old"})",
        R"({"cmd":"create_org","actor":"olga@other.io","org":"other"})",
        R"({"cmd":"create_service_key","actor":"platform","org":"other","key":"foreign"})",
    };
    const std::vector<CommandResult> results = t_.run_batch(lines);
    for (size_t i = 0; i < results.size(); ++i) {
      ASSERT_TRUE(results[i].status.ok()) << lines[i] << " -> " << testing::describe(results[i].status);
    }
  }

  TestEngine t_;
};

class EngineTest : public ::testing::Test, public EngineHarness {};

// ---- stats --------------------------------------------------------------------------------

// The test engine splits every batch of two or more commands (TestEngine); one command
// alone is applied on the writer.
TEST_F(EngineTest, StatsCountTheBatchesAppliedOnTwoThreads) {
  ok(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})");
  EXPECT_EQ(t_.engine().stats().split_batches, 0u);
  EXPECT_EQ(t_.engine().stats().split_wait_us, 0);
  const std::vector<CommandResult> results = t_.run_batch({
      R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})",
      R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"research"})",
  });
  ASSERT_EQ(results.size(), 2u);
  EXPECT_TRUE(results[0].status.ok() && results[1].status.ok());
  EXPECT_EQ(t_.engine().stats().split_batches, 1u);
  t_.reopen_with_split_apply(0);  // never
  const std::vector<CommandResult> unsplit =
      t_.run_batch({R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"ops"})",
                    R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"sales"})"});
  ASSERT_EQ(unsplit.size(), 2u);
  EXPECT_TRUE(unsplit[0].status.ok() && unsplit[1].status.ok());
  EXPECT_EQ(t_.engine().stats().split_batches, 0u);  // a new engine, which split none
}

// The split-apply helper stays from one large batch to the next, finishing each while
// the writer goes on (Engine::begin). A small batch, run on the writer alone, waits for
// it to be idle and leaves it there; a row flush stops it.
TEST_F(EngineTest, TheSplitApplyHelperStaysFromBatchToBatchUntilARowFlush) {
  ok(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})");
  std::string found;
  EXPECT_FALSE(testing::has_thread(kSplitThreadName, &found)) << "threads: " << found;
  for (const char* workspace : {"design", "research"}) {
    const std::vector<CommandResult> results = t_.run_batch({
        fmt::format(R"({{"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"{}"}})", workspace),
        R"({"cmd":"grant_credits","actor":"platform","org":"acme","grant":")" + std::string(workspace) + R"(","kind":"plan","credits":"10"})",
    });
    ASSERT_EQ(results.size(), 2u);
    EXPECT_TRUE(results[0].status.ok() && results[1].status.ok()) << results[0].to_json() << results[1].to_json();
    EXPECT_TRUE(testing::has_thread(kSplitThreadName, &found)) << "threads: " << found;
  }
  EXPECT_EQ(t_.engine().stats().split_batches, 2u);
  ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"ops"})");
  EXPECT_TRUE(testing::has_thread(kSplitThreadName, &found)) << "threads: " << found;
  EXPECT_EQ(t_.engine().stats().split_batches, 2u);
  const std::vector<CommandResult> after = t_.run_batch({
      R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"sales"})",
      R"({"cmd":"grant_credits","actor":"platform","org":"acme","grant":"sales","kind":"plan","credits":"10"})",
  });
  ASSERT_EQ(after.size(), 2u);
  EXPECT_TRUE(after[0].status.ok() && after[1].status.ok()) << after[0].to_json() << after[1].to_json();
  EXPECT_EQ(t_.engine().stats().split_batches, 3u);
  ASSERT_TRUE(t_.engine().flush_rows().ok());
  EXPECT_FALSE(testing::has_thread(kSplitThreadName, &found)) << "threads: " << found;
  // Every batch reached the log in order, each chained to the one before.
  EXPECT_EQ(t_.engine().store().last_seq(), t_.engine().state().applied_seq());
  const VerifyReport report = verify(t_.engine().store(), &t_.engine().state());
  EXPECT_TRUE(report.ok());
}

// The commit thread carries its name (engine/thread_name.h) for top -H, perf and
// tally_load's split of the CPU time.
TEST_F(EngineTest, TheCommitThreadIsNamed) {
  ok(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})");
  std::string found;
  EXPECT_TRUE(testing::has_thread(kCommitThreadName, &found)) << "threads: " << found;
}

// ---- create_org ------------------------------------------------------------------------

TEST_F(EngineTest, CreateOrgMakesTheActorOwnerOfAPrimaryWorkspace) {
  const CommandResult result = ok(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","name":"Acme Inc","mode":"budget"})");
  EXPECT_EQ(result.seq, 1u);
  EXPECT_EQ(result.events, 1u);
  const Org& acme = org("acme");
  EXPECT_EQ(acme.id, "acme");
  EXPECT_EQ(acme.name, "Acme Inc");
  EXPECT_EQ(acme.owner, "alice@acme.io");
  EXPECT_EQ(acme.mode, BudgetMode::Budget);
  EXPECT_FALSE(acme.deleted);
  EXPECT_EQ(acme.created_us, testing::kTestStartUs);
  ASSERT_EQ(acme.workspaces.size(), 1u);
  EXPECT_EQ(acme.workspaces[kPrimaryWorkspaceId].name, "primary");
  EXPECT_EQ(acme.find_workspace("primary"), std::optional<uint32_t>(kPrimaryWorkspaceId));
  ASSERT_EQ(acme.members.size(), 1u);
  const Member& alice = member("acme", "alice@acme.io");
  EXPECT_EQ(alice.role, Role::Owner);
  EXPECT_EQ(alice.status, MemberStatus::kActive);
  EXPECT_EQ(alice.workspace_id, kPrimaryWorkspaceId);
  expect_verified();
}

TEST_F(EngineTest, CreateOrgDefaultsToSharedModeAndTheIdAsName) {
  ok(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})");
  EXPECT_EQ(org("acme").mode, BudgetMode::Shared);
  EXPECT_EQ(org("acme").name, "acme");
}

TEST_F(EngineTest, CreateOrgRefusesAnIdInUseAsOrgExists) {
  ok(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})");
  refused(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})", ErrorCode::kOrgExists);
  refused(R"({"cmd":"create_org","actor":"zed@evil.io","org":"acme","name":"Mine now"})", ErrorCode::kOrgExists);
  refused(R"({"cmd":"create_org","actor":"platform","org":"acme","owner":"zed@evil.io"})", ErrorCode::kOrgExists);
  EXPECT_EQ(org("acme").owner, "alice@acme.io");
}

TEST_F(EngineTest, OrgIdsAreNeverReusedEvenAfterDelete) {
  ok(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})");
  ok(R"({"cmd":"delete_org","actor":"alice@acme.io","org":"acme"})");
  refused(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})", ErrorCode::kOrgExists);
}

TEST_F(EngineTest, ThePlatformCreatesAnOrgForTheOwnerItNames) {
  ok(R"({"cmd":"create_org","actor":"platform","org":"acme","owner":"alice@acme.io"})");
  EXPECT_EQ(org("acme").owner, "alice@acme.io");
  EXPECT_EQ(member("acme", "alice@acme.io").role, Role::Owner);
  EXPECT_EQ(org("acme").members.count("platform"), 0u);
}

TEST_F(EngineTest, ThePlatformMustNameTheOwner) {
  refused(R"({"cmd":"create_org","actor":"platform","org":"acme"})", ErrorCode::kMissingField);
}

TEST_F(EngineTest, AUserCreatesOnlyOrgsItOwnsItself) {
  refused(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","owner":"bob@acme.io"})", ErrorCode::kForbidden);
  ok(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","owner":"alice@acme.io"})");
  EXPECT_EQ(org("acme").owner, "alice@acme.io");
}

TEST_F(EngineTest, ServiceKeysCannotCreateOrgs) {
  make_acme();
  refused(R"({"cmd":"create_org","actor":"key:backend","org":"new"})", ErrorCode::kForbidden);
  refused(R"({"cmd":"create_org","actor":"key:backend","org":"new","owner":"alice@acme.io"})", ErrorCode::kForbidden);
}

TEST_F(EngineTest, AUserMayBelongToSeveralOrgs) {
  make_acme();
  ok(R"({"cmd":"invite_member","actor":"olga@other.io","org":"other","user":"bob@acme.io","role":"admin","workspace":"primary"})");
  ok(R"({"cmd":"accept_invite","actor":"bob@acme.io","org":"other"})");
  ok(R"({"cmd":"create_org","actor":"bob@acme.io","org":"bobs"})");
  EXPECT_EQ(member("acme", "bob@acme.io").role, Role::Member);
  EXPECT_EQ(member("other", "bob@acme.io").role, Role::Admin);
  EXPECT_EQ(member("bobs", "bob@acme.io").role, Role::Owner);
  // Being admin of "other" gives nothing in "acme".
  refused(R"({"cmd":"create_workspace","actor":"bob@acme.io","org":"acme","workspace":"x"})", ErrorCode::kForbidden);
  ok(R"({"cmd":"create_workspace","actor":"bob@acme.io","org":"other","workspace":"x"})");
}

// ---- unknown_org and org_deleted ---------------------------------------------------------

// One command of every kind that needs an existing organization, for `org`.
std::vector<std::string> commands_on(std::string_view org, std::string_view actor) {
  std::vector<std::string> lines;
  for (const char* fields : {R"("cmd":"delete_org")", R"("cmd":"set_budget_mode","mode":"shared")",
                             R"("cmd":"create_workspace","workspace":"w9")",
                             R"("cmd":"rename_workspace","workspace":"design","name":"d2")",
                             R"("cmd":"delete_workspace","workspace":"design")",
                             R"("cmd":"invite_member","user":"new@acme.io","role":"member","workspace":"primary")",
                             R"("cmd":"change_role","user":"bob@acme.io","role":"admin")",
                             R"("cmd":"move_member","user":"bob@acme.io","workspace":"primary")",
                             R"("cmd":"remove_member","user":"bob@acme.io")",
                             R"("cmd":"transfer_ownership","user":"adam@acme.io")",
                             R"("cmd":"create_service_key","key":"k9")", R"("cmd":"revoke_service_key","key":"backend")"}) {
    lines.push_back(fmt::format(R"({{{},"actor":"{}","org":"{}"}})", fields, actor, org));
  }
  return lines;
}

TEST_F(EngineTest, EveryCommandOnAnUnknownOrgIsUnknownOrg) {
  make_acme();
  for (const char* actor : {"alice@acme.io", "platform", "key:backend"}) {
    for (const std::string& line : commands_on("nope", actor)) refused(line, ErrorCode::kUnknownOrg);
  }
  refused(R"({"cmd":"accept_invite","actor":"ivy@acme.io","org":"nope"})", ErrorCode::kUnknownOrg);
}

// One batch creates an organization, funds it and records usage in it. begin() looks
// each usage command's organization up a few commands before running it (the
// prefetch), so the first ones are looked up before the organization exists; the
// lookup is only a hint, and every one of them is still recorded.
TEST_F(EngineTest, UsageInTheBatchThatCreatesItsOrgIsRecorded) {
  std::vector<Command> batch;
  batch.push_back(testing::command_from_json(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})"));
  batch.push_back(testing::command_from_json(R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g1","kind":"plan","credits":"100"})"));
  constexpr int kUsage = 40;
  for (int i = 0; i < kUsage; ++i) {
    batch.push_back(testing::command_from_json(fmt::format(
        R"({{"cmd":"record_usage","actor":"alice@acme.io","id":"u{}","org":"acme","workspace":"primary","tool":"chat","model":"m1",)"
        R"("quantity":1,"unit":"tokens","credits":"1","occurred_at":"{}"}})",
        i, format_time(testing::kTestStartUs))));
  }
  const std::vector<CommandResult> results = engine().execute(batch);
  ASSERT_EQ(results.size(), batch.size());
  for (const CommandResult& result : results) EXPECT_TRUE(result.status.ok()) << result.id << " -> " << testing::describe(result.status);
  EXPECT_NE(query(R"({"query":"balance","actor":"alice@acme.io","org":"acme"})").find(R"("consumed":"40")"), std::string::npos)
      << query(R"({"query":"balance","actor":"alice@acme.io","org":"acme"})");
  expect_verified();
}

// The handlers take what begin() found a few commands ahead (CommandLookups: the
// organization, the hashes of the member's and the workspace's names), but check
// membership, workspace and deletion on the state as it is when the command runs: a
// member removed, a workspace deleted or an organization deleted earlier in the same
// batch refuses the usage commands after it, each of them looked up before the change.
TEST_F(EngineTest, ChangesEarlierInABatchRefuseTheUsageLookedUpAheadOfThem) {
  make_acme();
  ok(R"({"cmd":"grant_credits","actor":"platform","org":"acme","grant":"g1","kind":"plan","credits":"100"})");
  ok(R"({"cmd":"transfer_credits","actor":"alice@acme.io","org":"acme","from":"primary","to":"design","credits":"50"})");
  const auto usage = [](int n, const char* user, const char* workspace) {
    return testing::command_from_json(fmt::format(
        R"({{"cmd":"record_usage","actor":"key:backend","user":"{}","id":"u{}","org":"acme","workspace":"{}","tool":"chat","model":"m1",)"
        R"("quantity":1,"unit":"tokens","credits":"1","occurred_at":"{}"}})",
        user, n, workspace, format_time(testing::kTestStartUs)));
  };
  std::vector<Command> batch;
  std::vector<ErrorCode> expected;  // kOk for an accepted command
  const auto add = [&](Command command, ErrorCode code) {
    batch.push_back(std::move(command));
    expected.push_back(code);
  };
  int n = 0;
  for (int i = 0; i < 20; ++i) add(usage(n++, "bob@acme.io", "design"), ErrorCode::kOk);
  add(testing::command_from_json(R"({"cmd":"accept_invite","actor":"ivy@acme.io","org":"acme"})"), ErrorCode::kOk);
  add(testing::command_from_json(R"({"cmd":"remove_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io"})"), ErrorCode::kOk);
  for (int i = 0; i < 10; ++i) add(usage(n++, "bob@acme.io", "design"), ErrorCode::kUnknownMember);
  for (int i = 0; i < 10; ++i) add(usage(n++, "ivy@acme.io", "design"), ErrorCode::kOk);
  // Its members move to the primary workspace.
  add(testing::command_from_json(R"({"cmd":"delete_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})"), ErrorCode::kOk);
  for (int i = 0; i < 10; ++i) add(usage(n++, "ivy@acme.io", "design"), ErrorCode::kUnknownWorkspace);
  for (int i = 0; i < 10; ++i) add(usage(n++, "ivy@acme.io", "primary"), ErrorCode::kOk);
  add(testing::command_from_json(R"({"cmd":"delete_org","actor":"alice@acme.io","org":"acme"})"), ErrorCode::kOk);
  for (int i = 0; i < 10; ++i) add(usage(n++, "ivy@acme.io", "primary"), ErrorCode::kOrgDeleted);
  const std::vector<CommandResult> results = engine().execute(batch);
  ASSERT_EQ(results.size(), batch.size());
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i].status.code, expected[i]) << i << ": " << results[i].id << " -> " << testing::describe(results[i].status);
  }
  expect_verified();
}

TEST_F(EngineTest, ADeletedOrgAcceptsNoCommandButStaysReadable) {
  make_acme();
  ok(R"({"cmd":"delete_org","actor":"alice@acme.io","org":"acme"})");
  EXPECT_TRUE(org("acme").deleted);
  for (const std::string& line : commands_on("acme", "platform")) refused(line, ErrorCode::kOrgDeleted);
  for (const std::string& line : commands_on("acme", "alice@acme.io")) {
    // The owner gets org_deleted for everything it could do before, forbidden for the rest.
    const bool platform_only = line.find("service_key") != std::string::npos;
    refused(line, platform_only ? ErrorCode::kForbidden : ErrorCode::kOrgDeleted);
  }
  // Those never allowed are still told forbidden first.
  refused(R"({"cmd":"create_workspace","actor":"bob@acme.io","org":"acme","workspace":"x"})", ErrorCode::kForbidden);
  refused(R"({"cmd":"delete_org","actor":"alice@acme.io","org":"acme"})", ErrorCode::kOrgDeleted);
  refused(R"({"cmd":"create_workspace","actor":"platform","org":"acme","workspace":"later"})", ErrorCode::kOrgDeleted);
  refused(R"({"cmd":"accept_invite","actor":"ivy@acme.io","org":"acme"})", ErrorCode::kOrgDeleted);
  // History stays readable.
  const std::string answer = query(R"({"query":"members","actor":"alice@acme.io","org":"acme"})");
  EXPECT_NE(answer.find(R"("ok":true)"), std::string::npos) << answer;
  EXPECT_NE(answer.find("bob@acme.io"), std::string::npos) << answer;
  EXPECT_NE(query(R"({"query":"org","actor":"platform","org":"acme"})").find(R"("deleted":true)"), std::string::npos);
  // Other organizations are untouched.
  ok(R"({"cmd":"create_workspace","actor":"olga@other.io","org":"other","workspace":"fine"})");
  expect_verified();
}

// ---- the role matrix ---------------------------------------------------------------------

// Every actor the matrix distinguishes, in make_acme()'s organization.
const std::vector<std::string> kActors = {
    "alice@acme.io",  // owner
    "adam@acme.io",   // admin
    "bob@acme.io",    // member
    "ivy@acme.io",    // invited, not yet accepted
    "rick@acme.io",   // removed (was admin)
    "zed@evil.io",    // stranger
    "olga@other.io",  // owner of another organization
    "key:backend",    // this organization's service key
    "key:old",        // this organization's revoked service key
    "key:foreign",    // another organization's service key
    "key:nokey",      // a key that does not exist
    "platform",
};

struct MatrixRow {
  std::string action;
  std::string fields;                  // the command, without actor and org
  std::vector<std::string> permitted;  // actors that may, per SPEC §2's table
};

// gtest names each case by its action (instead of dumping the struct's bytes).
void PrintTo(const MatrixRow& row, std::ostream* out) { *out << row.action; }

const std::vector<std::string> kOwnerAdmin = {"alice@acme.io", "adam@acme.io", "platform"};

std::vector<MatrixRow> matrix() {
  return {
      {"delete_org", R"("cmd":"delete_org")", {"alice@acme.io", "platform"}},
      {"transfer_ownership", R"("cmd":"transfer_ownership","user":"bob@acme.io")", {"alice@acme.io", "platform"}},
      {"set_budget_mode", R"("cmd":"set_budget_mode","mode":"shared")", kOwnerAdmin},
      {"create_workspace", R"("cmd":"create_workspace","workspace":"new")", kOwnerAdmin},
      {"rename_workspace", R"("cmd":"rename_workspace","workspace":"design","name":"studio")", kOwnerAdmin},
      {"delete_workspace", R"("cmd":"delete_workspace","workspace":"design")", kOwnerAdmin},
      {"invite_member", R"("cmd":"invite_member","user":"new@acme.io","role":"admin","workspace":"design")", kOwnerAdmin},
      {"change_role", R"("cmd":"change_role","user":"bob@acme.io","role":"admin")", kOwnerAdmin},
      {"move_member", R"("cmd":"move_member","user":"bob@acme.io","workspace":"primary")", kOwnerAdmin},
      {"remove_member", R"("cmd":"remove_member","user":"bob@acme.io")", kOwnerAdmin},
      // Not in the table, so only the platform.
      {"create_service_key", R"("cmd":"create_service_key","key":"another")", {"platform"}},
      {"revoke_service_key", R"("cmd":"revoke_service_key","key":"backend")", {"platform"}},
  };
}

class RoleMatrix : public EngineTest, public ::testing::WithParamInterface<MatrixRow> {};

TEST_P(RoleMatrix, OnlyPermittedActorsMayAndEveryOtherIsForbidden) {
  const MatrixRow& row = GetParam();
  make_acme();
  for (const std::string& actor : kActors) {
    SCOPED_TRACE(actor);
    const std::string line = fmt::format(R"({{{},"actor":"{}","org":"acme"}})", row.fields, actor);
    const bool permitted = std::find(row.permitted.begin(), row.permitted.end(), actor) != row.permitted.end();
    if (permitted) {
      // Each permitted run gets an organization of its own, so runs do not interfere.
      EngineHarness fresh;
      fresh.make_acme();
      const CommandResult result = fresh.run(line);
      EXPECT_TRUE(result.status.ok()) << line << " -> " << testing::describe(result.status);
      EXPECT_EQ(result.events, 1u);
    } else {
      refused(line, ErrorCode::kForbidden);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EveryAction, RoleMatrix, ::testing::ValuesIn(matrix()),
                         [](const ::testing::TestParamInfo<MatrixRow>& info) { return info.param.action; });

TEST_F(EngineTest, OnlyTheInvitedUserAcceptsAnInvitation) {
  make_acme();
  refused(R"({"cmd":"accept_invite","actor":"platform","org":"acme"})", ErrorCode::kForbidden);
  refused(R"({"cmd":"accept_invite","actor":"key:backend","org":"acme"})", ErrorCode::kForbidden);
  refused(R"({"cmd":"accept_invite","actor":"zed@evil.io","org":"acme"})", ErrorCode::kInviteNotFound);
  ok(R"({"cmd":"accept_invite","actor":"ivy@acme.io","org":"acme"})");
  EXPECT_EQ(member("acme", "ivy@acme.io").status, MemberStatus::kActive);
}

// ---- workspaces ------------------------------------------------------------------------

TEST_F(EngineTest, ThePrimaryWorkspaceCannotBeDeletedOrRenamed) {
  make_acme();
  refused(R"({"cmd":"delete_workspace","actor":"alice@acme.io","org":"acme","workspace":"primary"})", ErrorCode::kPrimaryWorkspace);
  refused(R"({"cmd":"delete_workspace","actor":"platform","org":"acme","workspace":"primary"})", ErrorCode::kPrimaryWorkspace);
  refused(R"({"cmd":"rename_workspace","actor":"alice@acme.io","org":"acme","workspace":"primary","name":"main"})",
          ErrorCode::kPrimaryWorkspace);
}

TEST_F(EngineTest, CreateWorkspaceGivesDenseIds) {
  make_acme();
  ok(R"({"cmd":"create_workspace","actor":"adam@acme.io","org":"acme","workspace":"research"})");
  EXPECT_EQ(org("acme").find_workspace("design"), std::optional<uint32_t>(1));
  EXPECT_EQ(org("acme").find_workspace("research"), std::optional<uint32_t>(2));
  EXPECT_EQ(org("acme").workspaces.size(), 3u);
}

TEST_F(EngineTest, ALiveWorkspaceNameIsWorkspaceExists) {
  make_acme();
  refused(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})", ErrorCode::kWorkspaceExists);
  refused(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"primary"})", ErrorCode::kWorkspaceExists);
  ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"research"})");
  refused(R"({"cmd":"rename_workspace","actor":"alice@acme.io","org":"acme","workspace":"research","name":"design"})",
          ErrorCode::kWorkspaceExists);
  refused(R"({"cmd":"rename_workspace","actor":"alice@acme.io","org":"acme","workspace":"research","name":"primary"})",
          ErrorCode::kWorkspaceExists);
  // Names are case-sensitive ids.
  ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"Design"})");
}

TEST_F(EngineTest, ADeletedWorkspacesNameMayBeReused) {
  make_acme();
  ok(R"({"cmd":"delete_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})");
  EXPECT_FALSE(org("acme").find_workspace("design").has_value());
  ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})");
  const Org& acme = org("acme");
  ASSERT_EQ(acme.workspaces.size(), 3u);
  EXPECT_EQ(acme.find_workspace("design"), std::optional<uint32_t>(2)) << "a new workspace, not the old one revived";
  EXPECT_TRUE(acme.workspaces[1].deleted);
  EXPECT_EQ(acme.workspaces[1].name, "design");
  EXPECT_FALSE(acme.workspaces[2].deleted);
  // The reused name resolves to the new workspace in later commands.
  ok(R"({"cmd":"move_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","workspace":"design"})");
  EXPECT_EQ(member("acme", "bob@acme.io").workspace_id, 2u);
  expect_verified();
}

TEST_F(EngineTest, RenamingFreesTheOldNameAndKeepsTheId) {
  make_acme();
  ok(R"({"cmd":"rename_workspace","actor":"adam@acme.io","org":"acme","workspace":"design","name":"studio"})");
  EXPECT_EQ(org("acme").find_workspace("studio"), std::optional<uint32_t>(1));
  EXPECT_FALSE(org("acme").find_workspace("design").has_value());
  EXPECT_EQ(workspace_of("acme", "bob@acme.io"), "studio") << "members stay in the renamed workspace";
  refused(R"({"cmd":"delete_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})", ErrorCode::kUnknownWorkspace);
  ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})");
  EXPECT_EQ(org("acme").find_workspace("design"), std::optional<uint32_t>(2));
  // Renaming to its own name is harmless.
  ok(R"({"cmd":"rename_workspace","actor":"adam@acme.io","org":"acme","workspace":"studio","name":"studio"})");
  EXPECT_EQ(org("acme").find_workspace("studio"), std::optional<uint32_t>(1));
  expect_verified();
}

TEST_F(EngineTest, AWorkspaceNameMustBeAnId) {
  make_acme();
  refused(R"({"cmd":"rename_workspace","actor":"alice@acme.io","org":"acme","workspace":"design","name":"Design Team"})",
          ErrorCode::kInvalidArgument);
  refused(R"({"cmd":"rename_workspace","actor":"alice@acme.io","org":"acme","workspace":"design","name":"-x"})",
          ErrorCode::kInvalidArgument);
}

TEST_F(EngineTest, DeletingAWorkspaceMovesItsMembersToPrimary) {
  make_acme();
  ok(R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"cara@acme.io","role":"member","workspace":"design"})");
  ok(R"({"cmd":"accept_invite","actor":"cara@acme.io","org":"acme"})");
  ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"research"})");
  ok(R"({"cmd":"move_member","actor":"alice@acme.io","org":"acme","user":"cara@acme.io","workspace":"research"})");
  ok(R"({"cmd":"delete_workspace","actor":"adam@acme.io","org":"acme","workspace":"design"})");
  EXPECT_EQ(workspace_of("acme", "bob@acme.io"), "primary");
  EXPECT_EQ(member("acme", "bob@acme.io").status, MemberStatus::kActive);
  EXPECT_EQ(workspace_of("acme", "ivy@acme.io"), "primary") << "a pending invitation moves too";
  EXPECT_EQ(workspace_of("acme", "cara@acme.io"), "research") << "members of other workspaces stay";
  EXPECT_TRUE(org("acme").workspaces[1].deleted);
  // The deleted workspace is still listed, marked deleted.
  const std::string answer = query(R"({"query":"workspaces","actor":"alice@acme.io","org":"acme"})");
  EXPECT_NE(answer.find(R"("workspace":"design","id":1,"deleted":true)"), std::string::npos) << answer;
  // The invitee accepts into primary.
  ok(R"({"cmd":"accept_invite","actor":"ivy@acme.io","org":"acme"})");
  EXPECT_EQ(workspace_of("acme", "ivy@acme.io"), "primary");
  expect_verified();
}

TEST_F(EngineTest, UnknownOrDeletedWorkspacesAreUnknownWorkspace) {
  make_acme();
  refused(R"({"cmd":"delete_workspace","actor":"alice@acme.io","org":"acme","workspace":"nope"})", ErrorCode::kUnknownWorkspace);
  refused(R"({"cmd":"rename_workspace","actor":"alice@acme.io","org":"acme","workspace":"nope","name":"x"})", ErrorCode::kUnknownWorkspace);
  refused(R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"new@acme.io","role":"member","workspace":"nope"})",
          ErrorCode::kUnknownWorkspace);
  refused(R"({"cmd":"move_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","workspace":"nope"})", ErrorCode::kUnknownWorkspace);
  ok(R"({"cmd":"delete_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})");
  refused(R"({"cmd":"delete_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})", ErrorCode::kUnknownWorkspace);
  refused(R"({"cmd":"rename_workspace","actor":"alice@acme.io","org":"acme","workspace":"design","name":"x"})", ErrorCode::kUnknownWorkspace);
  refused(R"({"cmd":"move_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","workspace":"design"})", ErrorCode::kUnknownWorkspace);
  refused(R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"new@acme.io","role":"member","workspace":"design"})",
          ErrorCode::kUnknownWorkspace);
}

TEST_F(EngineTest, SetBudgetModeSwitchesTheMode) {
  make_acme();
  EXPECT_EQ(org("acme").mode, BudgetMode::Budget);
  ok(R"({"cmd":"set_budget_mode","actor":"adam@acme.io","org":"acme","mode":"shared"})");
  EXPECT_EQ(org("acme").mode, BudgetMode::Shared);
  ok(R"({"cmd":"set_budget_mode","actor":"alice@acme.io","org":"acme","mode":"budget"})");
  EXPECT_EQ(org("acme").mode, BudgetMode::Budget);
}

// ---- members -----------------------------------------------------------------------------

TEST_F(EngineTest, AnInviteeBecomesActiveByAccepting) {
  make_acme();
  ok(R"({"cmd":"invite_member","actor":"adam@acme.io","org":"acme","user":"new@acme.io","role":"admin","workspace":"design"})");
  EXPECT_EQ(member("acme", "new@acme.io").status, MemberStatus::kInvited);
  EXPECT_EQ(member("acme", "new@acme.io").role, Role::Admin);
  // An invitee has no powers yet.
  refused(R"({"cmd":"create_workspace","actor":"new@acme.io","org":"acme","workspace":"x"})", ErrorCode::kForbidden);
  ok(R"({"cmd":"accept_invite","actor":"new@acme.io","org":"acme"})");
  EXPECT_EQ(member("acme", "new@acme.io").status, MemberStatus::kActive);
  EXPECT_EQ(workspace_of("acme", "new@acme.io"), "design");
  ok(R"({"cmd":"create_workspace","actor":"new@acme.io","org":"acme","workspace":"x"})");
}

TEST_F(EngineTest, InvitingAnActiveMemberIsMemberExists) {
  make_acme();
  refused(R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","role":"admin","workspace":"design"})",
          ErrorCode::kMemberExists);
  refused(R"({"cmd":"invite_member","actor":"adam@acme.io","org":"acme","user":"alice@acme.io","role":"member","workspace":"design"})",
          ErrorCode::kMemberExists);
  refused(R"({"cmd":"invite_member","actor":"platform","org":"acme","user":"adam@acme.io","role":"member","workspace":"primary"})",
          ErrorCode::kMemberExists);
}

TEST_F(EngineTest, AcceptingTwiceIsMemberExists) {
  make_acme();
  refused(R"({"cmd":"accept_invite","actor":"bob@acme.io","org":"acme"})", ErrorCode::kMemberExists);
  refused(R"({"cmd":"accept_invite","actor":"alice@acme.io","org":"acme"})", ErrorCode::kMemberExists);
}

TEST_F(EngineTest, AcceptingWithoutAPendingInvitationIsInviteNotFound) {
  make_acme();
  refused(R"({"cmd":"accept_invite","actor":"zed@evil.io","org":"acme"})", ErrorCode::kInviteNotFound);
  // Removed is not invited.
  refused(R"({"cmd":"accept_invite","actor":"rick@acme.io","org":"acme"})", ErrorCode::kInviteNotFound);
  // A cancelled invitation cannot be accepted.
  ok(R"({"cmd":"remove_member","actor":"alice@acme.io","org":"acme","user":"ivy@acme.io"})");
  refused(R"({"cmd":"accept_invite","actor":"ivy@acme.io","org":"acme"})", ErrorCode::kInviteNotFound);
  // An invitation to one organization does not open another.
  refused(R"({"cmd":"accept_invite","actor":"bob@acme.io","org":"other"})", ErrorCode::kInviteNotFound);
}

TEST_F(EngineTest, ReinvitingReplacesAPendingInvitation) {
  make_acme();
  ok(R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"ivy@acme.io","role":"admin","workspace":"primary"})");
  EXPECT_EQ(member("acme", "ivy@acme.io").role, Role::Admin);
  EXPECT_EQ(workspace_of("acme", "ivy@acme.io"), "primary");
  ok(R"({"cmd":"accept_invite","actor":"ivy@acme.io","org":"acme"})");
  EXPECT_EQ(member("acme", "ivy@acme.io").role, Role::Admin);
}

TEST_F(EngineTest, ARemovedMemberMayBeInvitedAgain) {
  make_acme();
  EXPECT_EQ(member("acme", "rick@acme.io").status, MemberStatus::kRemoved);
  ok(R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"rick@acme.io","role":"member","workspace":"primary"})");
  ok(R"({"cmd":"accept_invite","actor":"rick@acme.io","org":"acme"})");
  EXPECT_EQ(member("acme", "rick@acme.io").status, MemberStatus::kActive);
  EXPECT_EQ(member("acme", "rick@acme.io").role, Role::Member) << "the new invitation's role, not the old one";
}

TEST_F(EngineTest, RoleChangesTakeEffectAtOnce) {
  make_acme();
  const std::vector<CommandResult> results = t_.run_batch({
      R"({"cmd":"create_workspace","actor":"bob@acme.io","org":"acme","workspace":"x"})",
      R"({"cmd":"change_role","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","role":"admin"})",
      R"({"cmd":"create_workspace","actor":"bob@acme.io","org":"acme","workspace":"x"})",
      R"({"cmd":"change_role","actor":"bob@acme.io","org":"acme","user":"adam@acme.io","role":"member"})",
      R"({"cmd":"create_workspace","actor":"adam@acme.io","org":"acme","workspace":"y"})",
  });
  ASSERT_EQ(results.size(), 5u);
  EXPECT_EQ(results[0].status.code, ErrorCode::kForbidden);
  EXPECT_TRUE(results[1].status.ok());
  EXPECT_TRUE(results[2].status.ok()) << "promoted within the same batch";
  EXPECT_TRUE(results[3].status.ok()) << "an admin demotes another admin";
  EXPECT_EQ(results[4].status.code, ErrorCode::kForbidden) << "demoted within the same batch";
  EXPECT_EQ(member("acme", "bob@acme.io").role, Role::Admin);
  EXPECT_EQ(member("acme", "adam@acme.io").role, Role::Member);
}

TEST_F(EngineTest, ARemovedMemberLosesAccessAtOnceButTheRecordStays) {
  make_acme();
  ok(R"({"cmd":"remove_member","actor":"adam@acme.io","org":"acme","user":"bob@acme.io"})");
  EXPECT_EQ(member("acme", "bob@acme.io").status, MemberStatus::kRemoved);
  EXPECT_EQ(workspace_of("acme", "bob@acme.io"), "design");
  const std::string answer = query(R"({"query":"members","actor":"bob@acme.io","org":"acme"})");
  EXPECT_NE(answer.find(R"("error":"forbidden")"), std::string::npos) << answer;
  const std::string listed = query(R"({"query":"members","actor":"alice@acme.io","org":"acme"})");
  EXPECT_NE(listed.find(R"("user":"bob@acme.io","role":"member","status":"removed")"), std::string::npos) << listed;
}

TEST_F(EngineTest, MovingAMemberChangesTheirWorkspace) {
  make_acme();
  ok(R"({"cmd":"move_member","actor":"adam@acme.io","org":"acme","user":"bob@acme.io","workspace":"primary"})");
  EXPECT_EQ(workspace_of("acme", "bob@acme.io"), "primary");
  ok(R"({"cmd":"move_member","actor":"adam@acme.io","org":"acme","user":"ivy@acme.io","workspace":"primary"})");
  EXPECT_EQ(workspace_of("acme", "ivy@acme.io"), "primary");
  EXPECT_EQ(member("acme", "ivy@acme.io").status, MemberStatus::kInvited);
}

TEST_F(EngineTest, ChangingUnknownOrRemovedMembersIsUnknownMember) {
  make_acme();
  for (const char* user : {"zed@evil.io", "rick@acme.io"}) {
    SCOPED_TRACE(user);
    refused(fmt::format(R"({{"cmd":"change_role","actor":"alice@acme.io","org":"acme","user":"{}","role":"admin"}})", user),
            ErrorCode::kUnknownMember);
    refused(fmt::format(R"({{"cmd":"move_member","actor":"alice@acme.io","org":"acme","user":"{}","workspace":"primary"}})", user),
            ErrorCode::kUnknownMember);
    refused(fmt::format(R"({{"cmd":"remove_member","actor":"alice@acme.io","org":"acme","user":"{}"}})", user),
            ErrorCode::kUnknownMember);
    refused(fmt::format(R"({{"cmd":"transfer_ownership","actor":"alice@acme.io","org":"acme","user":"{}"}})", user),
            ErrorCode::kUnknownMember);
  }
  // Ownership goes only to an active member, not to an invitee.
  refused(R"({"cmd":"transfer_ownership","actor":"alice@acme.io","org":"acme","user":"ivy@acme.io"})", ErrorCode::kUnknownMember);
  // A member of another organization is unknown here.
  refused(R"({"cmd":"remove_member","actor":"alice@acme.io","org":"acme","user":"olga@other.io"})", ErrorCode::kUnknownMember);
}

TEST_F(EngineTest, TheOwnersMembershipChangesOnlyByTransfer) {
  make_acme();
  for (const char* actor : {"adam@acme.io", "alice@acme.io", "platform"}) {
    SCOPED_TRACE(actor);
    refused(fmt::format(R"({{"cmd":"change_role","actor":"{}","org":"acme","user":"alice@acme.io","role":"member"}})", actor),
            ErrorCode::kOwnerImmutable);
    refused(fmt::format(R"({{"cmd":"remove_member","actor":"{}","org":"acme","user":"alice@acme.io"}})", actor),
            ErrorCode::kOwnerImmutable);
  }
  EXPECT_EQ(member("acme", "alice@acme.io").role, Role::Owner);
}

TEST_F(EngineTest, TransferOwnershipMakesTheOldOwnerAdmin) {
  make_acme();
  ok(R"({"cmd":"transfer_ownership","actor":"alice@acme.io","org":"acme","user":"bob@acme.io"})");
  EXPECT_EQ(org("acme").owner, "bob@acme.io");
  EXPECT_EQ(member("acme", "bob@acme.io").role, Role::Owner);
  EXPECT_EQ(member("acme", "alice@acme.io").role, Role::Admin);
  EXPECT_EQ(member("acme", "alice@acme.io").status, MemberStatus::kActive);
  int owners = 0;
  for (const auto& [user, m] : org("acme").members) owners += m.role == Role::Owner;
  EXPECT_EQ(owners, 1) << "exactly one owner";
  // The powers move with the role, at once.
  refused(R"({"cmd":"delete_org","actor":"alice@acme.io","org":"acme"})", ErrorCode::kForbidden);
  refused(R"({"cmd":"remove_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io"})", ErrorCode::kOwnerImmutable);
  ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"still-admin"})");
  ok(R"({"cmd":"transfer_ownership","actor":"bob@acme.io","org":"acme","user":"adam@acme.io"})");
  EXPECT_EQ(member("acme", "bob@acme.io").role, Role::Admin);
  ok(R"({"cmd":"remove_member","actor":"adam@acme.io","org":"acme","user":"bob@acme.io"})");
  expect_verified();
}

TEST_F(EngineTest, TransferringOwnershipToTheOwnerIsInvalidArgument) {
  make_acme();
  refused(R"({"cmd":"transfer_ownership","actor":"alice@acme.io","org":"acme","user":"alice@acme.io"})", ErrorCode::kInvalidArgument);
}

TEST_F(EngineTest, ThePlatformMayTransferOwnership) {
  make_acme();
  ok(R"({"cmd":"transfer_ownership","actor":"platform","org":"acme","user":"adam@acme.io"})");
  EXPECT_EQ(org("acme").owner, "adam@acme.io");
  EXPECT_EQ(member("acme", "alice@acme.io").role, Role::Admin);
}

// ---- service keys ------------------------------------------------------------------------

// Every log record's envelope bytes, concatenated.
std::string all_log_bytes(const Store& store) {
  std::string bytes;
  EXPECT_TRUE(store.read_log(1, store.last_seq(), [&](uint64_t, std::string_view envelope) {
    bytes.append(envelope);
    return true;
  }).ok());
  return bytes;
}

std::string secret_in(const CommandResult& result) {
  const std::string json = result.to_json();
  const std::string marker = R"("secret":")";
  const size_t start = json.find(marker);
  if (start == std::string::npos) return {};
  const size_t end = json.find('"', start + marker.size());
  return json.substr(start + marker.size(), end - start - marker.size());
}

TEST_F(EngineTest, CreateServiceKeyShowsTheSecretOnceAndStoresOnlyItsSha256) {
  make_acme();
  const CommandResult result = ok(R"({"cmd":"create_service_key","actor":"platform","org":"acme","key":"ingest"})");
  const std::string secret = secret_in(result);
  ASSERT_GE(secret.size(), 32u) << result.to_json();
  EXPECT_TRUE(secret.starts_with("tsk_")) << secret;

  const ServiceKey& key = org("acme").keys.at("ingest");
  const Sha256 digest = sha256(secret);
  EXPECT_EQ(key.secret_sha256, std::string(reinterpret_cast<const char*>(digest.data()), digest.size()));
  EXPECT_FALSE(key.revoked);

  // The secret is nowhere in the log or the projection rows.
  const std::string secret_hex = secret.substr(4);
  EXPECT_EQ(all_log_bytes(engine().store()).find(secret_hex), std::string::npos);
  for (const auto& [row_key, value] : projection_rows(engine().state())) {
    EXPECT_EQ(value.find(secret_hex), std::string::npos) << row_key;
  }
  // Every key gets a new secret.
  const CommandResult second = ok(R"({"cmd":"create_service_key","actor":"platform","org":"acme","key":"ingest2"})");
  EXPECT_NE(secret_in(second), secret);
  EXPECT_NE(org("acme").keys.at("ingest2").secret_sha256, key.secret_sha256);
  // Once shown, never again: reopening keeps the hash only.
  t_.reopen();
  EXPECT_EQ(org("acme").keys.at("ingest").secret_sha256, std::string(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

TEST_F(EngineTest, CreateServiceKeyWithAGivenHashStoresItAndShowsNoSecret) {
  make_acme();
  const std::string hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  const CommandResult result = ok(
      R"({"cmd":"create_service_key","actor":"platform","org":"acme","key":"given","secret_sha256":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"})");
  EXPECT_EQ(secret_in(result), "");
  EXPECT_EQ(result.members(), "");
  const std::string& stored = org("acme").keys.at("given").secret_sha256;
  ASSERT_EQ(stored.size(), 32u);
  std::string stored_hex;
  for (char c : stored) stored_hex += fmt::format("{:02x}", static_cast<unsigned char>(c));
  EXPECT_EQ(stored_hex, hex);
}

TEST_F(EngineTest, KeyIdsAreUniqueWithinAnOrgEvenAfterRevoke) {
  make_acme();
  refused(R"({"cmd":"create_service_key","actor":"platform","org":"acme","key":"backend"})", ErrorCode::kKeyExists);
  refused(R"({"cmd":"create_service_key","actor":"platform","org":"acme","key":"old"})", ErrorCode::kKeyExists);
  // Another organization may use the same key id.
  ok(R"({"cmd":"create_service_key","actor":"platform","org":"other","key":"backend"})");
}

TEST_F(EngineTest, RevokingAnUnknownKeyIsUnknownKey) {
  make_acme();
  refused(R"({"cmd":"revoke_service_key","actor":"platform","org":"acme","key":"nope"})", ErrorCode::kUnknownKey);
  refused(R"({"cmd":"revoke_service_key","actor":"platform","org":"acme","key":"foreign"})", ErrorCode::kUnknownKey);
}

TEST_F(EngineTest, ARevokedKeyLosesAccessAtOnce) {
  make_acme();
  const std::string q = R"({"query":"members","actor":"key:backend","org":"acme"})";
  EXPECT_NE(query(q).find(R"("ok":true)"), std::string::npos);
  ok(R"({"cmd":"revoke_service_key","actor":"platform","org":"acme","key":"backend"})");
  EXPECT_TRUE(org("acme").keys.at("backend").revoked);
  EXPECT_NE(query(q).find(R"("error":"forbidden")"), std::string::npos);
}

// ---- queries -----------------------------------------------------------------------------

TEST_F(EngineTest, MembersSeeOnlyTheirOwnWorkspace) {
  make_acme();
  const std::string workspaces = query(R"({"query":"workspaces","actor":"bob@acme.io","org":"acme"})");
  EXPECT_NE(workspaces.find(R"("workspace":"design")"), std::string::npos) << workspaces;
  EXPECT_EQ(workspaces.find(R"("workspace":"primary")"), std::string::npos) << workspaces;

  const std::string members = query(R"({"query":"members","actor":"bob@acme.io","org":"acme"})");
  EXPECT_NE(members.find("bob@acme.io"), std::string::npos) << members;
  EXPECT_NE(members.find("ivy@acme.io"), std::string::npos) << members;
  EXPECT_EQ(members.find("alice@acme.io"), std::string::npos) << members;
  EXPECT_EQ(members.find("adam@acme.io"), std::string::npos) << members;

  const std::string filtered = query(R"({"query":"members","actor":"bob@acme.io","org":"acme","workspace":"primary"})");
  EXPECT_NE(filtered.find(R"("error":"forbidden")"), std::string::npos) << filtered;
  EXPECT_NE(query(R"({"query":"members","actor":"bob@acme.io","org":"acme","workspace":"design"})").find(R"("ok":true)"),
            std::string::npos);

  // Moving the member moves what they see, at once.
  ok(R"({"cmd":"move_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","workspace":"primary"})");
  const std::string moved = query(R"({"query":"members","actor":"bob@acme.io","org":"acme"})");
  EXPECT_NE(moved.find("alice@acme.io"), std::string::npos) << moved;
  EXPECT_EQ(moved.find("ivy@acme.io"), std::string::npos) << moved;
}

TEST_F(EngineTest, OwnersAdminsAndServiceKeysSeeEveryWorkspace) {
  make_acme();
  for (const char* actor : {"alice@acme.io", "adam@acme.io", "key:backend", "platform"}) {
    SCOPED_TRACE(actor);
    const std::string members = query(fmt::format(R"({{"query":"members","actor":"{}","org":"acme"}})", actor));
    for (const char* user : {"alice@acme.io", "adam@acme.io", "bob@acme.io", "ivy@acme.io", "rick@acme.io"}) {
      EXPECT_NE(members.find(user), std::string::npos) << members;
    }
    const std::string workspaces = query(fmt::format(R"({{"query":"workspaces","actor":"{}","org":"acme"}})", actor));
    EXPECT_NE(workspaces.find(R"("workspace":"primary")"), std::string::npos) << workspaces;
    EXPECT_NE(workspaces.find(R"("workspace":"design")"), std::string::npos) << workspaces;
  }
}

TEST_F(EngineTest, OutsidersMayNotQuery) {
  make_acme();
  for (const char* actor : {"zed@evil.io", "ivy@acme.io", "rick@acme.io", "olga@other.io", "key:foreign", "key:old"}) {
    for (const char* type : {"org", "workspaces", "members"}) {
      const std::string answer = query(fmt::format(R"({{"query":"{}","actor":"{}","org":"acme"}})", type, actor));
      EXPECT_NE(answer.find(R"("error":"forbidden")"), std::string::npos) << actor << " " << type << ": " << answer;
    }
  }
}

TEST_F(EngineTest, QueriesAnswerAsOfTheLatestSequence) {
  make_acme();
  const std::string answer = query(R"({"query":"org","actor":"alice@acme.io","org":"acme"})");
  EXPECT_EQ(answer, fmt::format(R"({{"ok":true,"as_of_seq":{},"org":"acme","name":"Acme","owner":"alice@acme.io","mode":"budget",)"
                                R"("deleted":false,"created_at":"2026-11-23T10:00:00Z","workspaces":2,"members":3}})",
                                engine().store().last_seq()));
}

TEST_F(EngineTest, MalformedQueriesAreRefusedWithTheirCodes) {
  make_acme();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "invalid_json"},
      {"[]", "invalid_json"},
      {R"({"actor":"alice@acme.io","org":"acme"})", "missing_field"},
      {R"({"query":"members","org":"acme"})", "missing_field"},
      {R"({"query":"members","actor":"alice@acme.io"})", "missing_field"},
      {R"({"query":"balances","actor":"alice@acme.io","org":"acme"})", "unknown_command"},
      {R"({"query":"members","actor":"alice@acme.io","org":"acme","colour":"red"})", "unknown_field"},
      {R"({"query":"members","actor":"alice@acme.io","org":"acme","as_of_seq":"3"})", "invalid_argument"},
      {R"({"query":"members","actor":"alice@acme.io","org":"acme","as_of_seq":-1})", "invalid_argument"},
      {R"({"query":"members","actor":"alice@acme.io","org":"acme","as_of":"yesterday"})", "invalid_argument"},
      {R"({"query":"members","actor":"alice","org":"acme"})", "invalid_argument"},
      {R"({"query":"members","actor":"alice@acme.io","org":"a b"})", "invalid_argument"},
      {R"({"query":"members","actor":"alice@acme.io","org":"acme","workspace":7})", "invalid_argument"},
      {R"({"query":"members","actor":"alice@acme.io","org":"nope"})", "unknown_org"},
      {R"({"query":"members","actor":"alice@acme.io","org":"acme","workspace":"nope"})", "unknown_workspace"},
      {std::string(kCommandBytesMax + 1, ' '), "too_large"},
  };
  for (const auto& [json, expected] : cases) {
    const std::string answer = query(json);
    EXPECT_NE(answer.find(fmt::format(R"("ok":false,"error":"{}")", expected)), std::string::npos)
        << json.substr(0, 100) << " -> " << answer;
  }
}

TEST_F(EngineTest, AsOfSeqAnswersFromThePast) {
  ok(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})");                                 // seq 1
  ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})");     // seq 2
  ok(R"({"cmd":"rename_workspace","actor":"alice@acme.io","org":"acme","workspace":"design","name":"studio"})");  // 3
  ok(R"({"cmd":"delete_workspace","actor":"alice@acme.io","org":"acme","workspace":"studio"})");     // seq 4
  auto workspaces_at = [&](uint64_t seq) {
    return query(fmt::format(R"({{"query":"workspaces","actor":"alice@acme.io","org":"acme","as_of_seq":{}}})", seq));
  };
  EXPECT_NE(workspaces_at(0).find(R"("error":"unknown_org")"), std::string::npos) << "before the organization existed";
  const std::string at1 = workspaces_at(1);
  EXPECT_NE(at1.find(R"("as_of_seq":1)"), std::string::npos) << at1;
  EXPECT_EQ(at1.find("design"), std::string::npos) << at1;
  const std::string at2 = workspaces_at(2);
  EXPECT_NE(at2.find(R"("workspace":"design","id":1,"deleted":false)"), std::string::npos) << at2;
  const std::string at3 = workspaces_at(3);
  EXPECT_NE(at3.find(R"("workspace":"studio","id":1,"deleted":false)"), std::string::npos) << at3;
  const std::string at4 = workspaces_at(4);
  EXPECT_NE(at4.find(R"("workspace":"studio","id":1,"deleted":true)"), std::string::npos) << at4;
  // Beyond the head means now.
  EXPECT_EQ(workspaces_at(1000), query(R"({"query":"workspaces","actor":"alice@acme.io","org":"acme"})"));
  // The past is judged by the past's permissions.
  ok(R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","role":"admin","workspace":"primary"})");
  ok(R"({"cmd":"accept_invite","actor":"bob@acme.io","org":"acme"})");
  EXPECT_NE(query(R"({"query":"workspaces","actor":"bob@acme.io","org":"acme","as_of_seq":2})").find(R"("error":"forbidden")"),
            std::string::npos);
  EXPECT_NE(query(R"({"query":"workspaces","actor":"bob@acme.io","org":"acme"})").find(R"("ok":true)"), std::string::npos);
}

TEST_F(EngineTest, AsOfTimeAnswersFromThePast) {
  const int64_t t0 = testing::kTestStartUs;
  t_.clock().set(t0);
  ok(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})");
  t_.clock().set(t0 + 60'000'000);
  ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})");
  t_.clock().set(t0 + 120'000'000);
  ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"research"})");
  auto workspaces_as_of = [&](int64_t time_us) {
    return query(fmt::format(R"({{"query":"workspaces","actor":"alice@acme.io","org":"acme","as_of":"{}"}})", format_time(time_us)));
  };
  EXPECT_NE(workspaces_as_of(t0 - 1).find(R"("error":"unknown_org")"), std::string::npos);
  const std::string at_creation = workspaces_as_of(t0);
  EXPECT_NE(at_creation.find(R"("as_of_seq":1)"), std::string::npos) << at_creation;
  EXPECT_EQ(at_creation.find("design"), std::string::npos) << at_creation;
  const std::string just_before = workspaces_as_of(t0 + 60'000'000 - 1);
  EXPECT_EQ(just_before.find("design"), std::string::npos) << just_before;
  const std::string at_design = workspaces_as_of(t0 + 60'000'000);
  EXPECT_NE(at_design.find("design"), std::string::npos) << at_design;
  EXPECT_EQ(at_design.find("research"), std::string::npos) << at_design;
  EXPECT_NE(at_design.find(R"("as_of_seq":2)"), std::string::npos) << at_design;
  const std::string later = workspaces_as_of(t0 + 3600'000'000LL);
  EXPECT_NE(later.find("research"), std::string::npos) << later;
  // Both bounds together: the earlier one wins.
  const std::string both = query(fmt::format(R"({{"query":"workspaces","actor":"alice@acme.io","org":"acme","as_of":"{}","as_of_seq":1}})",
                                             format_time(t0 + 3600'000'000LL)));
  EXPECT_EQ(both.find("design"), std::string::npos) << both;
}

// ---- batches, time and durability ------------------------------------------------------

TEST_F(EngineTest, ARefusedCommandInABatchChangesNothingWhileTheOthersCommit) {
  make_acme();
  const Snapshot before = snapshot();
  const std::vector<CommandResult> results = t_.run_batch({
      R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"a","id":"c1"})",
      R"({"cmd":"create_workspace","actor":"bob@acme.io","org":"acme","workspace":"b","id":"c2"})",
      R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"a","id":"c3"})",
      R"({"cmd":"create_workspace","actor":"adam@acme.io","org":"acme","workspace":"c","id":"c4"})",
  });
  ASSERT_EQ(results.size(), 4u);
  EXPECT_TRUE(results[0].status.ok());
  EXPECT_EQ(results[1].status.code, ErrorCode::kForbidden);
  EXPECT_EQ(results[2].status.code, ErrorCode::kWorkspaceExists);
  EXPECT_TRUE(results[3].status.ok());
  for (size_t i = 0; i < results.size(); ++i) EXPECT_EQ(results[i].id, fmt::format("c{}", i + 1)) << "ids are echoed in order";
  EXPECT_EQ(results[0].seq, before.last_seq + 1);
  EXPECT_EQ(results[3].seq, before.last_seq + 2) << "refused commands take no sequence number";
  EXPECT_EQ(results[1].seq, 0u);
  EXPECT_EQ(engine().store().last_seq(), before.last_seq + 2);
  EXPECT_FALSE(org("acme").find_workspace("b").has_value());
  EXPECT_TRUE(org("acme").find_workspace("a").has_value());
  EXPECT_TRUE(org("acme").find_workspace("c").has_value());
  // The two accepted commands went out as one group commit: one chain row.
  int batches_after = 0;
  ASSERT_TRUE(engine().store().read_chain([&](uint64_t first, uint64_t last, const Sha256&) {
    if (first > before.last_seq) {
      ++batches_after;
      EXPECT_EQ(first, before.last_seq + 1);
      EXPECT_EQ(last, before.last_seq + 2);
    }
    return true;
  }).ok());
  EXPECT_EQ(batches_after, 1);
  expect_verified();
}

TEST_F(EngineTest, ABatchOfRefusedCommandsWritesNothing) {
  make_acme();
  const Snapshot before = snapshot();
  const std::vector<CommandResult> results = t_.run_batch({
      R"({"cmd":"create_workspace","actor":"bob@acme.io","org":"acme","workspace":"b"})",
      R"({"cmd":"delete_org","actor":"adam@acme.io","org":"acme"})",
      R"({"cmd":"create_org","actor":"zed@evil.io","org":"acme"})",
  });
  for (const CommandResult& result : results) EXPECT_FALSE(result.status.ok());
  EXPECT_TRUE(snapshot() == before);
}

TEST_F(EngineTest, LaterCommandsOfABatchSeeEarlierOnes) {
  const std::vector<CommandResult> results = t_.run_batch({
      R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})",
      R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})",
      R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","role":"member","workspace":"design"})",
      R"({"cmd":"accept_invite","actor":"bob@acme.io","org":"acme"})",
  });
  for (const CommandResult& result : results) EXPECT_TRUE(result.status.ok()) << testing::describe(result.status);
  EXPECT_EQ(workspace_of("acme", "bob@acme.io"), "design");
  EXPECT_EQ(results[3].seq, 4u);
}

TEST_F(EngineTest, EngineTimeFollowsTheClockAndAlwaysRises) {
  t_.clock().set(testing::kTestStartUs);
  ok(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})");
  t_.clock().set(testing::kTestStartUs - 3'600'000'000LL);  // the clock jumps back an hour
  ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"a"})");
  ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"b"})");
  t_.clock().set(testing::kTestStartUs + 5'000'000);
  ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"c"})");
  std::vector<int64_t> times;
  ASSERT_TRUE(engine().store().read_log(1, 4, [&](uint64_t, std::string_view bytes) {
    const fb::Envelope* event = decode_envelope(bytes);
    EXPECT_NE(event, nullptr);
    if (event != nullptr) times.push_back(event->time_us());
    return true;
  }).ok());
  EXPECT_EQ(times, (std::vector<int64_t>{testing::kTestStartUs, testing::kTestStartUs + 1, testing::kTestStartUs + 2,
                                         testing::kTestStartUs + 5'000'000}));
  EXPECT_EQ(engine().last_time_us(), testing::kTestStartUs + 5'000'000);
  // And after a restart the engine remembers where time stood.
  t_.clock().set(0);
  t_.reopen();
  EXPECT_EQ(engine().last_time_us(), testing::kTestStartUs + 5'000'000);
  ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"d"})");
  EXPECT_EQ(org("acme").workspaces.back().created_us, testing::kTestStartUs + 5'000'001);
}

TEST_F(EngineTest, EventsCarryTheirEnvelope) {
  ok(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","id":"req-1"})");
  ASSERT_TRUE(engine().store().read_log(1, 1, [&](uint64_t seq, std::string_view bytes) {
    const fb::Envelope* event = decode_envelope(bytes);
    EXPECT_NE(event, nullptr);
    if (event == nullptr) return false;
    EXPECT_EQ(event->seq(), seq);
    EXPECT_EQ(event->schema_version(), kSchemaVersion);
    EXPECT_EQ(event->actor()->string_view(), "alice@acme.io");
    EXPECT_EQ(event->command_id()->string_view(), "req-1");
    EXPECT_EQ(event->command_seq(), seq);
    EXPECT_EQ(event->event_type(), fb::Event::OrgCreated);
    EXPECT_EQ(event->event_as_OrgCreated()->owner()->string_view(), "alice@acme.io");
    return true;
  }).ok());
}

TEST_F(EngineTest, ImportTimeUsesTheCommandsAt) {
  Command command = testing::command_from_json(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","at":"2025-01-02T03:04:05Z"})");
  const std::vector<CommandResult> results = engine().execute(std::span(&command, 1), TimeSource::kCommand);
  ASSERT_TRUE(results[0].status.ok());
  EXPECT_EQ(format_time(org("acme").created_us), "2025-01-02T03:04:05Z");
  // Without TimeSource::kCommand the clock rules.
  Command other = testing::command_from_json(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme2","at":"2025-01-02T03:04:05Z"})");
  ASSERT_TRUE(engine().execute(std::span(&other, 1))[0].status.ok());
  EXPECT_EQ(org("acme2").created_us, testing::kTestStartUs);
}

TEST_F(EngineTest, ResultsRenderAsOneJsonLine) {
  make_acme();
  const CommandResult accepted = ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"x","id":"r1"})");
  EXPECT_EQ(accepted.to_json(), fmt::format(R"({{"ok":true,"seq":{},"id":"r1"}})", accepted.seq));
  const CommandResult refusal = run(R"({"cmd":"create_workspace","actor":"bob@acme.io","org":"acme","workspace":"y"})");
  const std::string json = refusal.to_json();
  EXPECT_TRUE(json.starts_with(R"({"ok":false,"error":"forbidden","message":")")) << json;
  EXPECT_TRUE(json.ends_with("\"}")) << json;
  EXPECT_EQ(json.find('\n'), std::string::npos);
}

TEST_F(EngineTest, ReopeningRestoresIdenticalState) {
  make_acme();
  ok(R"({"cmd":"delete_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})");
  ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})");
  ok(R"({"cmd":"rename_workspace","actor":"alice@acme.io","org":"acme","workspace":"design","name":"studio"})");
  ok(R"({"cmd":"transfer_ownership","actor":"alice@acme.io","org":"acme","user":"adam@acme.io"})");
  ok(R"({"cmd":"delete_org","actor":"olga@other.io","org":"other"})");
  const Snapshot before = snapshot();
  const int64_t time_before = engine().last_time_us();
  std::vector<std::string> answers_before;
  const std::vector<std::string> queries = {
      R"({"query":"org","actor":"platform","org":"acme"})", R"({"query":"members","actor":"platform","org":"acme"})",
      R"({"query":"workspaces","actor":"bob@acme.io","org":"acme"})", R"({"query":"members","actor":"platform","org":"other"})",
      R"({"query":"members","actor":"platform","org":"acme","as_of_seq":5})"};
  for (const std::string& q : queries) answers_before.push_back(query(q));

  t_.reopen();
  EXPECT_TRUE(snapshot() == before);
  EXPECT_EQ(engine().last_time_us(), time_before);
  for (size_t i = 0; i < queries.size(); ++i) EXPECT_EQ(query(queries[i]), answers_before[i]) << queries[i];
  expect_verified();
  // The reopened engine goes on where it stopped.
  const CommandResult next = ok(R"({"cmd":"create_workspace","actor":"adam@acme.io","org":"acme","workspace":"after"})");
  EXPECT_EQ(next.seq, before.last_seq + 1);
  expect_verified();
}

TEST(EngineFailure, AStorageFailureTurnsTheEngineReadOnlyAndAcknowledgesNothing) {
  testing::TempDir dir;
  testing::FaultEnv fault;
  ManualClock clock(testing::kTestStartUs);
  EngineOptions options;
  options.data_dir = dir.sub("data");
  options.clock = &clock;
  options.env = fault.env.get();
  std::unique_ptr<Engine> faulty;
  ASSERT_TRUE(Engine::open(options, &faulty).ok());
  auto execute = [&](const std::vector<std::string>& lines) {
    std::vector<Command> commands;
    for (const std::string& line : lines) commands.push_back(testing::command_from_json(line));
    return faulty->execute(commands);
  };
  ASSERT_TRUE(execute({R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})"})[0].status.ok());
  const Rows durable = projection_rows(faulty->state());

  fault.file_system->fail_writes(true);
  const std::vector<CommandResult> results = execute({
      R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"lost"})",
      R"({"cmd":"create_workspace","actor":"bob@acme.io","org":"acme","workspace":"refused"})",
  });
  EXPECT_EQ(results[0].status.code, ErrorCode::kStorageError) << "never acknowledged";
  EXPECT_EQ(results[0].seq, 0u);
  EXPECT_EQ(results[1].status.code, ErrorCode::kForbidden) << "a refusal stays a refusal";
  EXPECT_TRUE(faulty->read_only());
  EXPECT_EQ(projection_rows(faulty->state()), durable) << "what was applied but not made durable is forgotten";
  EXPECT_FALSE(faulty->state().orgs.find("acme")->find_workspace("lost").has_value());

  fault.file_system->fail_writes(false);
  const std::vector<CommandResult> later = execute({R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"x"})"});
  EXPECT_EQ(later[0].status.code, ErrorCode::kReadOnly);
  faulty.reset();

  options.env = nullptr;
  std::unique_ptr<Engine> reopened;
  ASSERT_TRUE(Engine::open(options, &reopened).ok());
  EXPECT_EQ(reopened->store().last_seq(), 1u);
  EXPECT_EQ(projection_rows(reopened->state()), durable);
  EXPECT_FALSE(reopened->read_only());
  EXPECT_TRUE(verify(reopened->store(), &reopened->state()).ok());
}

}  // namespace
}  // namespace tally
