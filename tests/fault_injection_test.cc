// Fault injection (SPEC §6): "A failed write or fsync stops the engine from accepting
// writes (read-only, loud), it never acknowledges what is not durable." The engine
// runs on a FaultEnv that fails the write-ahead log's writes or syncs at a chosen
// point; the tests check the answers, the engine's state, and what a restart finds.
//
// What a restart may find of a batch whose write failed depends on where the bytes got
// to, and the tests assert exactly what can be promised:
//   - the failed write never reached the file, or the machine lost power before the
//     bytes were synced: the log holds exactly what was acknowledged;
//   - the sync failed but the bytes stayed in the file (the disk came back): RocksDB
//     replays them, so the batch may come back — but only whole, with its projection
//     rows and chain row, never in part. The client was told storage_error, which
//     means "outcome unknown" (docs/reliability.md).
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "engine/clock.h"
#include "engine/engine.h"
#include "engine/values.h"
#include "fault_env.h"
#include "reliability_harness.h"

namespace tally::test {
namespace {

int64_t time_of(std::string_view text) {
  int64_t time_us = 0;
  EXPECT_TRUE(parse_time(text, &time_us)) << text;
  return time_us;
}

const int64_t kStart = time_of("2026-11-23T10:00:00Z");

std::unique_ptr<Engine> open_engine(const std::string& dir, Clock* clock, rocksdb::Env* env) {
  EngineOptions options;
  options.data_dir = dir;
  options.clock = clock;
  options.env = env;
  options.split_apply_commands = 2;  // batches of two or more apply on two threads
  std::unique_ptr<Engine> engine;
  const Status status = Engine::open(options, &engine);
  EXPECT_TRUE(status.ok()) << status.message;
  return engine;
}

void expect_all_ok(const std::vector<CommandResult>& results, std::string_view what) {
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_TRUE(results[i].status.ok()) << what << " #" << i << ": " << results[i].to_json();
  }
}

// An organization in budget mode with a member in a funded workspace.
std::vector<Command> setup_commands() {
  return commands({
      R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","mode":"budget"})",
      R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})",
      R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","role":"member","workspace":"design"})",
      R"({"cmd":"accept_invite","actor":"bob@acme.io","org":"acme"})",
      R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g1","kind":"plan","credits":"10000"})",
      R"({"cmd":"transfer_credits","actor":"alice@acme.io","org":"acme","from":"primary","to":"design","credits":"2000"})",
  });
}

Command usage(std::string_view id, std::string_view credits) {
  return command(R"({"cmd":"record_usage","actor":"bob@acme.io","id":")" + std::string(id) +
                 R"(","org":"acme","workspace":"design","tool":"chat","model":"gpt-x","quantity":10,"unit":"token","credits":")" +
                 std::string(credits) + R"(","occurred_at":"2026-11-23T10:00:00Z"})");
}

const std::string kBalanceQuery = R"({"query":"balance","actor":"alice@acme.io","org":"acme"})";
const std::string kDesignQuery = R"({"query":"balance","actor":"alice@acme.io","org":"acme","workspace":"design"})";

// How the write of the batch fails, and what happens to the machine afterwards.
enum class Failure {
  kSyncFailsDataKept,   // the WAL sync fails; its bytes stay in the file; the disk recovers
  kSyncFailsPowerCut,   // the WAL sync fails; power is lost before anything more is synced
  kWriteFails,          // the WAL append fails before writing anything; the disk recovers
  kTornWrite,           // the WAL append writes half of the batch, then fails; the disk recovers
};

std::string failure_name(const testing::TestParamInfo<Failure>& info) {
  switch (info.param) {
    case Failure::kSyncFailsDataKept: return "SyncFailsDataKept";
    case Failure::kSyncFailsPowerCut: return "SyncFailsPowerCut";
    case Failure::kWriteFails: return "WriteFails";
    case Failure::kTornWrite: return "TornWrite";
  }
  return "unknown";
}

class FailedBatch : public testing::TestWithParam<Failure> {};

TEST_P(FailedBatch, IsNeverAcknowledgedAndTheEngineTurnsReadOnly) {
  const Failure failure = GetParam();
  ScratchDir dir("fault");
  ManualClock clock(kStart);
  FaultEnv env;
  env.set_target(".log");  // the write-ahead log: where a commit's bytes go

  std::vector<LoggedEvent> acknowledged;
  std::string balance_before, design_before;
  {
    std::unique_ptr<Engine> engine = open_engine(dir.path(), &clock, &env);
    ASSERT_NE(engine, nullptr);
    expect_all_ok(engine->execute(setup_commands()), "setup");
    clock.advance(1'000'000);
    const std::vector<Command> first = {usage("u-1", "1.5"), usage("u-2", "2")};
    expect_all_ok(engine->execute(first), "first usage batch");
    acknowledged = read_whole_log(engine->store());
    balance_before = engine->query(kBalanceQuery);
    design_before = engine->query(kDesignQuery);

    switch (failure) {
      case Failure::kSyncFailsDataKept:
      case Failure::kSyncFailsPowerCut: env.fail_after(FaultKind::kSync, 0); break;
      case Failure::kTornWrite: env.set_torn_writes(true); [[fallthrough]];
      case Failure::kWriteFails: env.fail_after(FaultKind::kWrite, 0); break;
    }
    clock.advance(1'000'000);
    const std::vector<Command> batch = {
        usage("fail-1", "5"),
        command(R"({"cmd":"grant_credits","actor":"alice@acme.io","id":"fail-2","org":"acme","grant":"g-fail","kind":"top_up","credits":"100"})"),
        command(R"({"cmd":"create_workspace","actor":"alice@acme.io","id":"fail-3","org":"nope","workspace":"x"})"),
        command(R"({"cmd":"reserve","actor":"bob@acme.io","id":"fail-4","org":"acme","workspace":"design","hold":"h-fail","credits":"50","timeout_s":60})"),
        usage("u-1", "1.5"),  // a repeat of an acknowledged usage: accepted without an event
    };
    const std::vector<CommandResult> results = engine->execute(batch);
    ASSERT_EQ(results.size(), batch.size());
    for (size_t i = 0; i < results.size(); ++i) {
      EXPECT_FALSE(results[i].status.ok()) << "command " << i << " was acknowledged: " << results[i].to_json();
      EXPECT_EQ(results[i].seq, 0u) << results[i].to_json();
      const ErrorCode expected = i == 2 ? ErrorCode::kUnknownOrg : ErrorCode::kStorageError;
      EXPECT_EQ(error_name(results[i].status.code), error_name(expected)) << results[i].to_json();
    }
    EXPECT_GT(env.failures(failure == Failure::kSyncFailsDataKept || failure == Failure::kSyncFailsPowerCut ? FaultKind::kSync
                                                                                                               : FaultKind::kWrite),
              0u);

    // Read-only, loudly: every further command is refused, valid or not.
    EXPECT_TRUE(engine->read_only());
    EXPECT_TRUE(engine->store().failed());
    const std::vector<CommandResult> later = engine->execute(std::vector<Command>{
        usage("u-3", "1"), command(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"nope","workspace":"x"})")});
    for (const CommandResult& result : later) EXPECT_EQ(error_name(result.status.code), "read_only") << result.to_json();

    // Nothing of the failed batch is visible: the state was reloaded from the store.
    EXPECT_EQ(engine->store().last_seq(), acknowledged.size());
    EXPECT_EQ(engine->query(kBalanceQuery), balance_before);
    EXPECT_EQ(engine->query(kDesignQuery), design_before);
    EXPECT_TRUE(projection_rows(engine->state()) == rebuilt_rows(engine->store()));
    EXPECT_FALSE(engine->state().balances.find("acme")->usage_ids.contains("fail-1"));

    if (failure != Failure::kSyncFailsPowerCut) env.clear();  // the disk recovers before the restart
  }  // closes the store
  if (failure == Failure::kSyncFailsPowerCut) {
    ASSERT_TRUE(env.drop_unsynced_data().ok());
    env.clear();
  }

  // The restart, without faults.
  std::unique_ptr<Engine> engine = open_engine(dir.path(), &clock, nullptr);
  ASSERT_NE(engine, nullptr);
  EXPECT_FALSE(engine->read_only());
  const std::vector<LoggedEvent> log = read_whole_log(engine->store());
  ASSERT_GE(log.size(), acknowledged.size());
  EXPECT_TRUE(std::equal(acknowledged.begin(), acknowledged.end(), log.begin())) << "an acknowledged event changed or went missing";
  std::set<std::string> tail_commands;
  for (size_t i = acknowledged.size(); i < log.size(); ++i) tail_commands.insert(log[i].command_id);
  if (failure == Failure::kSyncFailsDataKept) {
    // All or nothing: every accepted command of the failed batch, or none of them.
    const std::set<std::string> whole_batch = {"fail-1", "fail-2", "fail-4"};
    EXPECT_TRUE(tail_commands.empty() || tail_commands == whole_batch) << "part of a failed batch came back";
    RecordProperty("failed_batch_came_back", tail_commands.empty() ? "no" : "yes");
  } else {
    EXPECT_EQ(log.size(), acknowledged.size()) << "a batch that was never durable came back";
    EXPECT_EQ(engine->query(kBalanceQuery), balance_before);
  }
  expect_sound(*engine, "after the restart");

  // The engine takes writes again, right after what the log holds.
  clock.advance(1'000'000);
  const std::vector<CommandResult> results = engine->execute(std::vector<Command>{usage("after-1", "1")});
  ASSERT_TRUE(results[0].status.ok()) << results[0].to_json();
  EXPECT_EQ(results[0].seq, log.size() + 1);
  expect_sound(*engine, "after writing again");
}

INSTANTIATE_TEST_SUITE_P(Wal, FailedBatch,
                         testing::Values(Failure::kSyncFailsDataKept, Failure::kSyncFailsPowerCut, Failure::kWriteFails,
                                         Failure::kTornWrite),
                         failure_name);

// Every point at which the WAL's n-th write or sync fails, over a run of small batches:
// what was acknowledged before survives a power cut, and nothing else does.
TEST(FaultInjection, EveryWalFaultPointLosesNothingAcknowledged) {
  for (FaultKind kind : {FaultKind::kWrite, FaultKind::kSync}) {
    for (uint64_t point = 0; point < 6; ++point) {
      SCOPED_TRACE(testing::Message() << (kind == FaultKind::kWrite ? "write" : "sync") << " fault at call " << point);
      ScratchDir dir("sweep");
      ManualClock clock(kStart);
      FaultEnv env;
      env.set_target(".log");
      std::vector<LoggedEvent> acknowledged;
      {
        std::unique_ptr<Engine> engine = open_engine(dir.path(), &clock, &env);
        ASSERT_NE(engine, nullptr);
        expect_all_ok(engine->execute(setup_commands()), "setup");
        acknowledged = read_whole_log(engine->store());
        env.fail_after(kind, point);
        bool failed = false;
        for (int batch = 0; batch < 12 && !failed; ++batch) {
          clock.advance(1'000'000);
          const std::vector<Command> commands = {usage(fmt::format("b{}-1", batch), "1"), usage(fmt::format("b{}-2", batch), "0.5")};
          const std::vector<CommandResult> results = engine->execute(commands);
          failed = !results[0].status.ok();
          for (const CommandResult& result : results) {
            EXPECT_EQ(result.status.ok(), !failed) << "a batch was answered in part: " << result.to_json();
            if (failed) {
              EXPECT_EQ(error_name(result.status.code), "storage_error") << result.to_json();
            }
          }
          if (!failed) acknowledged = read_whole_log(engine->store());
        }
        EXPECT_TRUE(failed) << "the fault never fired";
        EXPECT_TRUE(engine->read_only());
      }
      ASSERT_TRUE(env.drop_unsynced_data().ok());
      std::unique_ptr<Engine> engine = open_engine(dir.path(), &clock, nullptr);
      ASSERT_NE(engine, nullptr);
      EXPECT_TRUE(read_whole_log(engine->store()) == acknowledged) << "the log is not exactly what was acknowledged";
      expect_sound(*engine, "after the power cut");
    }
  }
}

// Group sync (engine/committer.h): batches handed to the commit thread while it waits
// for a sync are written together next and synced once. After the setup, batch a's
// sync is held and b and c are begun meanwhile; if `fail_group_sync`, the sync that b
// and c share fails. Then the power goes: the reopened log must be exactly what was
// acknowledged, and sound.
struct GroupRun {
  std::vector<std::vector<CommandResult>> results;  // a's, b's and c's
  uint64_t syncs = 0;                               // WAL syncs from a's on
  bool read_only = false;                           // the engine, after c's results
  bool b_in_state = false;                          // b's first usage id, after c's results
  size_t events_before = 0;                         // the log's length before a
  std::vector<LoggedEvent> acknowledged;            // the log after c's results
};

GroupRun run_group(const std::string& name, bool fail_group_sync) {
  GroupRun run;
  ScratchDir dir(name);
  ManualClock clock(kStart);
  FaultEnv env;
  env.set_target(".log");
  {
    std::unique_ptr<Engine> engine = open_engine(dir.path(), &clock, &env);
    if (engine == nullptr) return run;
    expect_all_ok(engine->execute(setup_commands()), "setup");
    run.events_before = engine->store().last_seq();
    clock.advance(1'000'000);
    const std::vector<std::vector<Command>> batches = {
        {usage("a-1", "1")}, {usage("b-1", "1"), usage("b-2", "0.5")}, {usage("c-1", "2")}};
    const uint64_t syncs_before = env.calls(FaultKind::kSync);
    env.hold_syncs();
    engine->begin(batches[0]);
    for (int ms = 0; ms < 10'000 && env.held_syncs() == 0; ++ms) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_EQ(env.held_syncs(), 1u) << "a's sync never reached the disk";
    if (fail_group_sync) env.fail_after(FaultKind::kSync, 0);  // a's sync is past the check
    engine->begin(batches[1]);
    engine->begin(batches[2]);
    EXPECT_EQ(engine->durable_in_flight(), 0u) << "nothing is durable while a's sync is held";
    env.release_syncs();
    for (size_t i = 0; i < batches.size(); ++i) run.results.push_back(engine->finish());
    run.syncs = env.calls(FaultKind::kSync) - syncs_before;
    run.read_only = engine->read_only();
    run.b_in_state = engine->state().balances.find("acme")->usage_ids.contains("b-1");
    run.acknowledged = read_whole_log(engine->store());
    env.clear();
  }
  EXPECT_TRUE(env.drop_unsynced_data().ok());
  std::unique_ptr<Engine> engine = open_engine(dir.path(), &clock, nullptr);
  if (engine == nullptr) return run;
  EXPECT_TRUE(read_whole_log(engine->store()) == run.acknowledged) << "the log is not exactly what was acknowledged";
  expect_sound(*engine, "after the power cut");
  return run;
}

TEST(FaultInjection, BatchesQueuedBehindASyncAreSyncedOnceTogether) {
  const GroupRun run = run_group("group", false);
  ASSERT_EQ(run.results.size(), 3u);
  for (const auto& results : run.results) expect_all_ok(results, "a batch of the group");
  EXPECT_EQ(run.syncs, 2u) << "a's sync, then one for b and c together";
  EXPECT_FALSE(run.read_only);
  EXPECT_EQ(run.acknowledged.size(), run.events_before + 4) << "every event of a, b and c survives the power cut";
}

TEST(FaultInjection, AFailedGroupSyncFailsEveryBatchOfTheGroup) {
  const GroupRun run = run_group("group-fail", true);
  ASSERT_EQ(run.results.size(), 3u);
  expect_all_ok(run.results[0], "a, synced before the fault");
  // b was written, unsynced, before the sync it shares with c failed: not acknowledged.
  for (size_t batch = 1; batch < 3; ++batch) {
    for (const CommandResult& result : run.results[batch]) {
      EXPECT_EQ(error_name(result.status.code), "storage_error") << "batch " << batch << ": " << result.to_json();
      EXPECT_EQ(result.seq, 0u) << result.to_json();
    }
  }
  EXPECT_TRUE(run.read_only);
  EXPECT_FALSE(run.b_in_state) << "the state was not reloaded without b";
  EXPECT_EQ(run.acknowledged.size(), run.events_before + 1) << "only a's event is in the durable log";
}

// A store with history in both an SST file and the live WAL.
void fill_store(const std::string& dir, ManualClock* clock, std::vector<LoggedEvent>* log) {
  {
    std::unique_ptr<Engine> engine = open_engine(dir, clock, nullptr);
    ASSERT_NE(engine, nullptr);
    expect_all_ok(engine->execute(setup_commands()), "setup");
    clock->advance(1'000'000);
    expect_all_ok(engine->execute(std::vector<Command>{usage("u-1", "1"), usage("u-2", "2")}), "usage");
  }
  std::unique_ptr<Engine> engine = open_engine(dir, clock, nullptr);  // recovery flushes the WAL into an SST
  ASSERT_NE(engine, nullptr);
  clock->advance(1'000'000);
  expect_all_ok(engine->execute(std::vector<Command>{usage("u-3", "3")}), "more usage");
  *log = read_whole_log(engine->store());
}

// Opening a store while reads, writes or syncs fail, at every point of the open: the
// open either succeeds or returns storage_error — never a crash, never a store that a
// healthy restart cannot read in full.
class FaultWhileOpening : public testing::TestWithParam<FaultKind> {};

TEST_P(FaultWhileOpening, IsACleanErrorAndLosesNothing) {
  const FaultKind kind = GetParam();
  ScratchDir dir("open");
  ManualClock clock(kStart);
  std::vector<LoggedEvent> log;
  fill_store(dir.path(), &clock, &log);
  ASSERT_FALSE(log.empty());

  FaultEnv env;
  uint64_t calls = 0;
  {
    std::unique_ptr<Engine> engine = open_engine(dir.path(), &clock, &env);  // counts a clean open's calls
    ASSERT_NE(engine, nullptr);
    calls = env.calls(kind);
  }
  ASSERT_GT(calls, 0u);
  // Bounded: at most ~40 fault points, spread over the whole open.
  const uint64_t stride = calls / 40 + 1;
  int failed_opens = 0;
  for (uint64_t point = 0; point <= calls; point += stride) {
    SCOPED_TRACE(testing::Message() << "fault at call " << point << " of " << calls);
    {
      env.fail_after(kind, point);
      EngineOptions options;
      options.data_dir = dir.path();
      options.clock = &clock;
      options.env = &env;
      options.split_apply_commands = 2;  // batches of two or more apply on two threads
      std::unique_ptr<Engine> engine;
      const Status status = Engine::open(options, &engine);
      if (status.ok()) {
        env.clear();
        expect_sound(*engine, "opened despite the fault");
      } else {
        ++failed_opens;
        EXPECT_EQ(error_name(status.code), "storage_error") << status.message;
        EXPECT_FALSE(status.message.empty());
        EXPECT_EQ(engine, nullptr);
      }
      env.clear();
    }
    std::unique_ptr<Engine> engine = open_engine(dir.path(), &clock, nullptr);
    ASSERT_NE(engine, nullptr);
    EXPECT_TRUE(read_whole_log(engine->store()) == log) << "the faulty open changed the log";
    expect_sound(*engine, "healthy open after the faulty one");
  }
  EXPECT_GT(failed_opens, 0) << "no fault point made the open fail";
  RecordProperty("calls_in_a_clean_open", std::to_string(calls));
  RecordProperty("failed_opens", std::to_string(failed_opens));
}

std::string kind_name(const testing::TestParamInfo<FaultKind>& info) {
  switch (info.param) {
    case FaultKind::kWrite: return "Write";
    case FaultKind::kSync: return "Sync";
    case FaultKind::kRead: return "Read";
  }
  return "unknown";
}

INSTANTIATE_TEST_SUITE_P(AllKinds, FaultWhileOpening, testing::Values(FaultKind::kRead, FaultKind::kWrite, FaultKind::kSync),
                         kind_name);

// A disk that fails every read: the open answers storage_error naming the store.
TEST(FaultInjection, UnreadableStoreIsACleanError) {
  ScratchDir dir("unreadable");
  ManualClock clock(kStart);
  std::vector<LoggedEvent> log;
  fill_store(dir.path(), &clock, &log);
  FaultEnv env;
  env.set_failing(FaultKind::kRead, true);
  EngineOptions options;
  options.data_dir = dir.path();
  options.clock = &clock;
  options.env = &env;
  std::unique_ptr<Engine> engine;
  const Status status = Engine::open(options, &engine);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(error_name(status.code), "storage_error");
  EXPECT_NE(status.message.find(dir.path()), std::string::npos) << status.message;
  EXPECT_EQ(engine, nullptr);
}

}  // namespace
}  // namespace tally::test
