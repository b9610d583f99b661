#include "replay/replay.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/event_format.h"
#include "engine/log.h"
#include "engine/test_storage.h"
#include "engine/values.h"
#include "engine/test_util.h"

namespace tally {
namespace {

using testing::RawDb;
using testing::TestEngine;

std::unique_ptr<Store> open_store(const std::string& path) {
  StoreOptions options;
  options.path = path;
  options.create_if_missing = false;
  std::unique_ptr<Store> store;
  const Status status = Store::open(options, &store);
  EXPECT_TRUE(status.ok()) << status.message;
  return store;
}

// Three batches of commands: 6 events.
void fill(TestEngine& t) {
  for (const auto& batch : std::vector<std::vector<std::string>>{
           {R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})",
            R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})"},
           {R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","role":"member","workspace":"design"})",
            R"({"cmd":"accept_invite","actor":"bob@acme.io","org":"acme"})"},
           {R"({"cmd":"create_service_key","actor":"platform","org":"acme","key":"backend"})",
            R"({"cmd":"rename_workspace","actor":"alice@acme.io","org":"acme","workspace":"design","name":"studio"})"}}) {
    for (const CommandResult& result : t.run_batch(batch)) ASSERT_TRUE(result.status.ok()) << result.status.message;
  }
}

bool mentions(const VerifyReport& report, std::string_view text) {
  for (const std::string& problem : report.problems) {
    if (problem.find(text) != std::string::npos) return true;
  }
  return false;
}

std::string problems(const VerifyReport& report) {
  std::string out;
  for (const std::string& problem : report.problems) out += problem + "\n";
  return out;
}

// Regression: verify used to fail on a store that never committed an event (say, after
// an apply whose every command was refused), reporting "row checkpoint/orgs is missing".
TEST(VerifyRegression, AStoreWithNoEventsReportedAMissingCheckpointRow) {
  TestEngine t;
  EXPECT_EQ(t.run(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"x"})").status.code,
            ErrorCode::kUnknownOrg);
  const VerifyReport report = verify(t.engine().store(), &t.engine().state());
  EXPECT_TRUE(report.ok()) << problems(report);
  EXPECT_EQ(report.events, 0u);
  EXPECT_EQ(report.batches, 0u);
  EXPECT_EQ(report.head_hash, std::string(64, '0'));
}

TEST(Verify, ASoundStoreVerifies) {
  TestEngine t;
  fill(t);
  const VerifyReport report = verify(t.engine().store(), &t.engine().state());
  EXPECT_TRUE(report.ok()) << problems(report);
  EXPECT_EQ(report.events, 6u);
  EXPECT_EQ(report.batches, 3u);
  EXPECT_EQ(report.head_hash, to_hex(t.engine().store().head_hash()));
  EXPECT_TRUE(verify(t.engine().store(), nullptr).ok());
}

TEST(Verify, ARecordAlteredWithAValidChecksumBreaksTheHashChain) {
  TestEngine t;
  fill(t);
  t.close();
  {
    RawDb raw(t.path());
    std::string_view envelope;
    const std::string record = raw.record(3);
    ASSERT_TRUE(decode_record(record, &envelope));
    std::string altered(envelope);
    const size_t at = altered.find("bob@acme.io");
    ASSERT_NE(at, std::string::npos);
    altered[at] = 'r';  // "rob@acme.io", re-checksummed: only the chain can tell
    raw.set_record(3, encode_record(altered));
  }
  auto store = open_store(t.path());
  const VerifyReport report = verify(*store, nullptr);
  EXPECT_FALSE(report.ok());
  EXPECT_TRUE(mentions(report, "history was altered")) << problems(report);
  EXPECT_TRUE(mentions(report, "3..4")) << "names the batch: " << problems(report);
}

TEST(Verify, AFlippedByteFailsItsChecksum) {
  TestEngine t;
  fill(t);
  t.close();
  {
    RawDb raw(t.path());
    std::string record = raw.record(5);
    record[record.size() / 2] ^= 0x04;
    raw.set_record(5, record);
  }
  auto store = open_store(t.path());
  const VerifyReport report = verify(*store, nullptr);
  EXPECT_FALSE(report.ok());
  EXPECT_TRUE(mentions(report, "record 5 fails its checksum")) << problems(report);
}

TEST(Verify, AnAlteredChainRowIsDetected) {
  TestEngine t;
  fill(t);
  t.close();
  {
    RawDb raw(t.path());
    std::string row = raw.get(RawDb::kChain, be64(1));
    row.back() ^= 0x01;
    raw.put(RawDb::kChain, be64(1), row);
  }
  auto store = open_store(t.path());
  const VerifyReport report = verify(*store, nullptr);
  EXPECT_TRUE(mentions(report, "history was altered")) << problems(report);
}

TEST(Verify, AStoredProjectionRowThatDiffersFromTheRebuildIsReported) {
  TestEngine t;
  fill(t);
  t.close();
  {
    RawDb raw(t.path());
    raw.put(RawDb::kState, "orgs/x/forged", "value");
  }
  auto store = open_store(t.path());
  const VerifyReport report = verify(*store, nullptr);
  EXPECT_FALSE(report.ok());
  EXPECT_TRUE(mentions(report, "should not exist")) << problems(report);
}

TEST(Verify, LiveProjectionsThatDifferFromTheLogAreReported) {
  TestEngine t;
  fill(t);
  // A projection set that has not seen the last event.
  ProjectionSet behind;
  ASSERT_TRUE(behind.replay(t.engine().store(), 5, std::numeric_limits<int64_t>::max()).ok());
  const VerifyReport report = verify(t.engine().store(), &behind);
  EXPECT_FALSE(report.ok());
  EXPECT_TRUE(mentions(report, "live projections")) << problems(report);
}

TEST(RebuildProjections, RestoresRowsEqualToTheLiveOnes) {
  TestEngine t;
  fill(t);
  const auto live = projection_rows(t.engine().state());
  t.close();
  {
    RawDb raw(t.path());
    raw.erase(RawDb::kState, "checkpoint/orgs");
    raw.put(RawDb::kState, "orgs/o/acme", "garbage");
  }
  {
    StoreOptions options;
    options.path = t.path();
    std::unique_ptr<Store> store;
    ASSERT_TRUE(Store::open(options, &store).ok());
    RebuildStats stats;
    uint64_t progress_done = 0;
    ASSERT_TRUE(rebuild_projections(*store, &stats, [&](uint64_t done, uint64_t) { progress_done = done; }).ok());
    EXPECT_EQ(stats.events, 6u);
    EXPECT_EQ(progress_done, 6u);
    EXPECT_TRUE(verify(*store, nullptr).ok());
  }
  t.reopen();
  EXPECT_EQ(projection_rows(t.engine().state()), live);
}

// Enough usage to pass many chunks from the reading thread to the helper (4,096 events a
// chunk, 8 queued at most), so the queue fills and the reader waits: the rebuilt rows
// must still equal the live ones, balances and usage (the helper's) included.
TEST(RebuildProjections, ManyChunksOfEventsGiveTheLiveRows) {
  TestEngine t;
  fill(t);
  ASSERT_TRUE(t.run(R"({"cmd":"grant_credits","actor":"platform","org":"acme","grant":"g1","kind":"plan","credits":"1000"})").status.ok());
  const std::string now = format_time(t.clock().now_us());
  constexpr int kEvents = 50'000;
  std::vector<std::string> batch;
  for (int i = 0; i < kEvents; ++i) {
    const bool bob = i % 3 == 0;
    batch.push_back(fmt::format(R"({{"cmd":"record_usage","actor":"{}","id":"u{}","org":"acme","workspace":"{}","tool":"{}",)"
                                R"("model":"m{}","quantity":{},"unit":"u","credits":"0.00{}","occurred_at":"{}"}})",
                                bob ? "bob@acme.io" : "alice@acme.io", i, bob ? "studio" : "primary", i % 2 ? "chat" : "image",
                                i % 5, i % 7 + 1, i % 9 + 1, now));
    if (batch.size() == 8192 || i + 1 == kEvents) {
      for (const CommandResult& result : t.run_batch(batch)) ASSERT_TRUE(result.status.ok()) << result.status.message;
      batch.clear();
    }
  }
  const auto live = projection_rows(t.engine().state());
  const uint64_t events = t.engine().store().last_seq();
  ASSERT_GT(events, static_cast<uint64_t>(kEvents));
  t.close();
  {
    auto store = open_store(t.path());
    RebuildStats stats;
    ASSERT_TRUE(rebuild_projections(*store, &stats).ok());
    EXPECT_EQ(stats.events, events);
    EXPECT_TRUE(verify(*store, nullptr).ok());

    // ProjectionSet::replay takes the same two threads for a long replay, also when it
    // stops at a time (a query as of then): it must give what applying one event after
    // another gives.
    std::vector<int64_t> times;
    ASSERT_TRUE(store->read_log(1, events, [&](uint64_t, std::string_view bytes) {
                       times.push_back(decode_envelope(bytes)->time_us());
                       return true;
                     }).ok());
    ASSERT_EQ(times.size(), events);
    for (const int64_t to_time : {std::numeric_limits<int64_t>::max(), times[times.size() * 3 / 4]}) {
      ProjectionSet one_by_one;
      ASSERT_TRUE(store->read_log(1, events, [&](uint64_t, std::string_view bytes) {
                         const fb::Envelope* event = decode_envelope(bytes);
                         if (event->time_us() > to_time) return false;
                         one_by_one.apply(*event);
                         return true;
                       }).ok());
      ASSERT_GT(one_by_one.applied_seq(), ProjectionSet::kSplitReplayEventsMin);
      ProjectionSet split;
      ASSERT_TRUE(split.replay(*store, events, to_time).ok());
      EXPECT_EQ(split.applied_seq(), one_by_one.applied_seq());
      EXPECT_EQ(split.last_time_us(), one_by_one.last_time_us());
      EXPECT_EQ(projection_rows(split), projection_rows(one_by_one)) << "as of " << to_time;

      // A set that keeps no history rows for a flush (a rebuild, verify, a query in the
      // past) holds the same state and dumps the same rows; what it drops is only the
      // rows a flush would have written.
      ProjectionSet dropped;
      dropped.drop_history_rows();
      ASSERT_TRUE(dropped.replay(*store, events, to_time).ok());
      EXPECT_EQ(dropped.applied_seq(), one_by_one.applied_seq());
      EXPECT_EQ(projection_rows(dropped), projection_rows(one_by_one)) << "as of " << to_time;
      struct HistoryCount final : RowSink {
        uint64_t rows = 0;
        void put(std::string_view, std::string_view) override {}
        void erase(std::string_view) override {}
        void put_history(uint64_t, std::string_view, std::string_view) override { ++rows; }
      };
      // The two projections with history rows: usage ids and statement entries.
      for (const auto& [kept_by, dropped_by] : {std::pair<Projection*, Projection*>{&one_by_one.balances, &dropped.balances},
                                                 std::pair<Projection*, Projection*>{&one_by_one.statements, &dropped.statements}}) {
        HistoryCount kept, none;
        kept_by->flush_history(&kept);
        dropped_by->flush_history(&none);
        EXPECT_GT(kept.rows, one_by_one.applied_seq() / 2) << kept_by->name();
        EXPECT_EQ(none.rows, 0u) << dropped_by->name();
      }
    }
  }
  t.reopen();
  EXPECT_EQ(projection_rows(t.engine().state()), live);
}

// A split replay's helper thread finds a usage event's organization, member and
// product a few events before it applies the event, and keeps what it found in a note
// for the apply (Projection::PrefetchNote). What is new in the events between must not
// be missed: a log where organizations, members, products and holds each first appear
// a few events before they are used replays as applying one event after another does.
TEST(RebuildProjections, WhatIsNewJustBeforeItIsUsedReplaysAsOneEventAfterAnother) {
  TestEngine t;
  const std::string now = format_time(t.clock().now_us());
  std::vector<std::string> batch;
  int usage = 0;
  auto record = [&](const std::string& org, const std::string& user, const std::string& tool, const std::string& model) {
    batch.push_back(fmt::format(R"({{"cmd":"record_usage","actor":"{}","id":"u{}","org":"{}","workspace":"primary","tool":"{}",)"
                                R"("model":"{}","quantity":1,"unit":"u","credits":"0.00{}","occurred_at":"{}"}})",
                                user, usage, org, tool, model, usage % 9 + 1, now));
    ++usage;
  };
  int orgs = 0;
  while (t.engine().store().last_seq() < ProjectionSet::kSplitReplayEventsMin + 4096) {
    const std::string org = fmt::format("org{}", orgs), owner = fmt::format("owner@org{}.io", orgs);
    batch.push_back(fmt::format(R"({{"cmd":"create_org","actor":"{}","org":"{}"}})", owner, org));
    batch.push_back(fmt::format(R"({{"cmd":"grant_credits","actor":"platform","org":"{}","grant":"g","kind":"plan","credits":"1000"}})", org));
    record(org, owner, "chat", "m");
    for (int m = 0; m < 24; ++m) {
      const std::string user = fmt::format("m{}@org{}.io", m, orgs);
      batch.push_back(fmt::format(R"({{"cmd":"invite_member","actor":"{}","org":"{}","user":"{}","role":"member","workspace":"primary"}})", owner, org, user));
      batch.push_back(fmt::format(R"({{"cmd":"accept_invite","actor":"{}","org":"{}"}})", user, org));
      // The member's first usage right after it joins, with a model that is new every
      // few members; then usage by it and the owner in turn.
      for (int u = 0; u < 24; ++u) record(org, u % 4 == 3 ? owner : user, "image", fmt::format("m{}", (orgs * 24 + m + u % 2) / 5));
      batch.push_back(fmt::format(R"({{"cmd":"reserve","actor":"{}","org":"{}","workspace":"primary","hold":"h{}","credits":"1","timeout_s":60,"tool":"video","model":"v{}"}})",
                                  user, org, m, m));
      record(org, user, "chat", "m");
      batch.push_back(fmt::format(R"({{"cmd":"settle","actor":"{}","org":"{}","hold":"h{}","credits":"0.5"}})", user, org, m));
      record(org, user, "video", fmt::format("v{}", m));
    }
    for (const CommandResult& result : t.run_batch(batch)) ASSERT_TRUE(result.status.ok()) << result.status.message;
    batch.clear();
    ++orgs;
  }
  const uint64_t events = t.engine().store().last_seq();
  ProjectionSet one_by_one;
  ASSERT_TRUE(t.engine().store().read_log(1, events, [&](uint64_t, std::string_view bytes) {
                       one_by_one.apply(*decode_envelope(bytes));
                       return true;
                     }).ok());
  ProjectionSet split;
  ASSERT_TRUE(split.replay(t.engine().store(), events, std::numeric_limits<int64_t>::max()).ok());
  EXPECT_EQ(split.applied_seq(), events);
  EXPECT_EQ(split.balances.anomalies(), 0u);
  EXPECT_EQ(projection_rows(split), projection_rows(one_by_one));
  EXPECT_EQ(projection_rows(split), projection_rows(t.engine().state()));
}

// Rows that do not decode are not trusted: the engine rebuilds them from the log.
TEST(ProjectionLoad, MalformedRowsAreRebuiltFromTheLog) {
  TestEngine t;
  fill(t);
  const auto live = projection_rows(t.engine().state());
  t.close();
  {
    RawDb raw(t.path());
    raw.put(RawDb::kState, "orgs/o/acme", "garbage");
  }
  t.reopen();
  EXPECT_EQ(projection_rows(t.engine().state()), live);
}

// A checkpoint behind the log (rows from an older state) is caught up from the log.
TEST(ProjectionLoad, ACheckpointBehindTheLogIsCaughtUp) {
  TestEngine t;
  fill(t);
  const auto live = projection_rows(t.engine().state());
  t.close();
  {
    // Rows as they were after the first batch only.
    ProjectionSet early;
    auto store = open_store(t.path());
    ASSERT_TRUE(early.replay(*store, 2, std::numeric_limits<int64_t>::max()).ok());
    ASSERT_TRUE(store->replace_rows([&](RowSink* sink) { early.dump(sink); }).ok());
  }
  t.reopen();
  EXPECT_EQ(projection_rows(t.engine().state()), live);
  // The rows caught up in memory reach the store in turn, and verify compares each
  // projection's stored rows with the rebuild at their own checkpoint.
  ASSERT_TRUE(t.run(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"later"})").status.ok());
  const VerifyReport report = verify(t.engine().store(), &t.engine().state());
  EXPECT_TRUE(report.ok()) << problems(report);
}

// The checkpoint of each projection's rows in the store, by projection name.
std::map<std::string, uint64_t> stored_checkpoints(const Store& store) {
  std::map<std::string, uint64_t> checkpoints;
  const Status status = store.read_rows("checkpoint/", [&](std::string_view key, std::string_view value) {
    EXPECT_EQ(value.size(), 8u) << key;
    checkpoints[std::string(key.substr(std::string_view("checkpoint/").size()))] = read_be64(value);
  });
  EXPECT_TRUE(status.ok()) << status.message;
  return checkpoints;
}

bool some_projection_behind(const Store& store) {
  for (const auto& [name, seq] : stored_checkpoints(store)) {
    if (seq < store.last_seq()) return true;
  }
  return false;
}

// After fill() and a grant: a batch of `count` usage records, ids from `first` on.
std::vector<std::string> usage_batch(TestEngine& t, int first, int count) {
  const std::string now = format_time(t.clock().now_us());
  std::vector<std::string> batch;
  for (int i = first; i < first + count; ++i) {
    batch.push_back(fmt::format(R"({{"cmd":"record_usage","actor":"{}","id":"lag{}","org":"acme","workspace":"{}","tool":"chat",)"
                                R"("model":"m","quantity":{},"unit":"u","credits":"0.00{}","occurred_at":"{}"}})",
                                i % 2 ? "bob@acme.io" : "alice@acme.io", i, i % 2 ? "studio" : "primary", i % 7 + 1, i % 9 + 1, now));
  }
  return batch;
}

void run_ok(TestEngine& t, const std::vector<std::string>& batch) {
  for (const CommandResult& result : t.run_batch(batch)) ASSERT_TRUE(result.status.ok()) << result.status.message;
}

// With EngineOptions::row_lag_events the projections write their rows in turn, every
// so many events, not with every batch. The store verifies at every step (each
// projection's rows against the rebuild at their own checkpoint), a crash leaves rows
// behind that the next open replays past, and a clean close brings them all up to date.
TEST(RowLag, ProjectionsWriteRowsInTurnAndAnOpenReplaysPastThem) {
  constexpr uint64_t kLag = 12;
  testing::FaultEnv fault;
  TestEngine t("data", fault.env.get());
  t.reopen_with_row_lag(kLag);
  fill(t);
  ASSERT_TRUE(t.run(R"({"cmd":"grant_credits","actor":"platform","org":"acme","grant":"g1","kind":"plan","credits":"1000"})").status.ok());
  bool saw_behind = false, saw_in_turn = false, saw_history_ahead = false;
  for (int b = 0; b < 20; ++b) {
    const uint64_t before = t.engine().store().last_seq();
    run_ok(t, usage_batch(t, b * 5, 5));
    const uint64_t last = t.engine().store().last_seq();
    const std::map<std::string, uint64_t> stored = stored_checkpoints(t.engine().store());
    ASSERT_EQ(stored.size(), ProjectionSet::kCount);
    std::set<uint64_t> distinct;
    for (const auto& [name, seq] : stored) {
      EXPECT_LE(seq, last) << name;
      EXPECT_LT(last - seq, kLag + (last - before)) << name << " fell too far behind";
      saw_behind = saw_behind || seq < last;
      distinct.insert(seq);
    }
    saw_in_turn = saw_in_turn || distinct.size() > 1;
    // History rows (statement entries) are written with every batch, whatever the lag.
    uint64_t newest_entry = 0;
    ASSERT_TRUE(t.engine().store().read_history([&](uint64_t seq, std::string_view key, std::string_view) {
                                     if (key.starts_with("statements/")) newest_entry = std::max(newest_entry, seq);
                                   }).ok());
    EXPECT_EQ(newest_entry, last) << "the batch's usage made statement entries";
    saw_history_ahead = saw_history_ahead || stored.at("statements") < newest_entry;
    const VerifyReport report = verify(t.engine().store(), &t.engine().state());
    EXPECT_TRUE(report.ok()) << "after batch " << b << ": " << problems(report);
  }
  EXPECT_TRUE(saw_behind) << "rows were written with every batch";
  EXPECT_TRUE(saw_in_turn) << "every projection wrote its rows in the same batches";
  EXPECT_TRUE(saw_history_ahead) << "statement entries waited for the statements' checkpoint";

  // A crash while rows are behind: a failed write turns the engine read-only, and a
  // read-only engine writes nothing at close. The open then skips the history rows past
  // each checkpoint and makes them again in its replay (loading them as well would
  // give every later statement entry twice).
  for (int b = 20; b < 40 && !some_projection_behind(t.engine().store()); ++b) run_ok(t, usage_batch(t, b * 5, 5));
  ASSERT_TRUE(some_projection_behind(t.engine().store()));
  const auto live = projection_rows(t.engine().state());
  const uint64_t durable = t.engine().store().last_seq();
  fault.file_system->fail_writes(true);
  EXPECT_EQ(t.run_batch(usage_batch(t, 1000, 1))[0].status.code, ErrorCode::kStorageError);
  t.close();
  fault.file_system->fail_writes(false);
  {
    auto store = open_store(t.path());
    EXPECT_EQ(store->last_seq(), durable);
    EXPECT_TRUE(some_projection_behind(*store));
    const VerifyReport report = verify(*store, nullptr);
    EXPECT_TRUE(report.ok()) << problems(report);
  }
  t.reopen();
  EXPECT_EQ(projection_rows(t.engine().state()), live);

  // A clean close writes what is behind.
  t.close();
  auto store = open_store(t.path());
  for (const auto& [name, seq] : stored_checkpoints(*store)) EXPECT_EQ(seq, durable) << name;
  EXPECT_TRUE(verify(*store, nullptr).ok());
}

// Verify compares a projection whose rows are behind the log with the rebuild at their
// checkpoint, so an altered row is caught there too, and named.
TEST(RowLag, VerifyNamesAnAlteredRowOfAProjectionBehindTheLog) {
  testing::FaultEnv fault;
  TestEngine t("data", fault.env.get());
  t.reopen_with_row_lag(12);
  fill(t);
  ASSERT_TRUE(t.run(R"({"cmd":"grant_credits","actor":"platform","org":"acme","grant":"g1","kind":"plan","credits":"1000"})").status.ok());
  // Until the usage projection has written rows and is behind the log again.
  auto usage_rows_behind = [&] {
    bool rows = false;
    EXPECT_TRUE(t.engine().store().read_rows("usage/", [&](std::string_view, std::string_view) { rows = true; }).ok());
    return rows && stored_checkpoints(t.engine().store()).at("usage") < t.engine().store().last_seq();
  };
  for (int b = 0; b < 20 && !usage_rows_behind(); ++b) run_ok(t, usage_batch(t, b * 5, 5));
  ASSERT_TRUE(usage_rows_behind());
  // Leave the rows behind, as a crash does.
  fault.file_system->fail_writes(true);
  EXPECT_EQ(t.run_batch(usage_batch(t, 1000, 1))[0].status.code, ErrorCode::kStorageError);
  t.close();
  fault.file_system->fail_writes(false);
  std::string key, value;
  {
    auto store = open_store(t.path());
    const uint64_t usage_at = stored_checkpoints(*store).at("usage");
    ASSERT_LT(usage_at, store->last_seq());
    ASSERT_TRUE(verify(*store, nullptr).ok());
    ASSERT_TRUE(store->read_rows("usage/", [&](std::string_view k, std::string_view v) {
                       if (key.empty()) key = k, value = v;
                     }).ok());
    ASSERT_FALSE(key.empty()) << "the usage projection has rows";
  }
  {
    RawDb raw(t.path());
    value.back() ^= 0x01;
    raw.put(RawDb::kState, key, value);
    raw.put(RawDb::kState, "usage/forged", "value");
  }
  auto store = open_store(t.path());
  const VerifyReport report = verify(*store, nullptr);
  EXPECT_FALSE(report.ok());
  EXPECT_TRUE(mentions(report, "differs from the rebuild")) << problems(report);
  EXPECT_TRUE(mentions(report, "usage/forged should not exist")) << problems(report);
}

// History rows (statement entries, usage ids) are checked like the others: an altered
// one is named, and one that belongs to no projection is reported.
TEST(Verify, AnAlteredHistoryRowAndAStrayOneAreReported) {
  TestEngine t;
  fill(t);
  ASSERT_TRUE(t.run(R"({"cmd":"grant_credits","actor":"platform","org":"acme","grant":"g1","kind":"plan","credits":"1000"})").status.ok());
  run_ok(t, usage_batch(t, 0, 3));
  t.close();
  uint64_t usage_seq = 0;
  std::string usage_key, usage_value;
  {
    auto store = open_store(t.path());
    ASSERT_TRUE(verify(*store, nullptr).ok());
    ASSERT_TRUE(store->read_history([&](uint64_t seq, std::string_view key, std::string_view value) {
                       if (key.starts_with("balances/u/") && usage_key.empty()) usage_seq = seq, usage_key = key, usage_value = value;
                     }).ok());
    ASSERT_FALSE(usage_key.empty()) << "recorded usage ids are history rows";
  }
  {
    RawDb raw(t.path());
    usage_value.back() ^= 0x01;  // the amount
    raw.set_history_row(usage_seq, usage_key, usage_value);
  }
  {
    auto store = open_store(t.path());
    const VerifyReport report = verify(*store, nullptr);
    EXPECT_FALSE(report.ok());
    EXPECT_TRUE(mentions(report, "balances/u/acme\\x00lag0 differs from the rebuild")) << problems(report);
  }
  {
    RawDb raw(t.path());
    usage_value.back() ^= 0x01;
    raw.set_history_row(usage_seq, usage_key, usage_value);
    raw.set_history_row(1, "nobody/row", "x");
  }
  auto store = open_store(t.path());
  const VerifyReport report = verify(*store, nullptr);
  EXPECT_FALSE(report.ok());
  EXPECT_TRUE(mentions(report, "1 history rows belong to no projection")) << problems(report);
}

// An open restores the usage ids' history rows on a helper thread (HistoryLoader). One
// that does not decode, in the middle of many chunks of them, is caught there too: the
// balances projection is rebuilt from the log, equal to what the engine had.
TEST(ProjectionLoad, AMalformedUsageIdRowIsRebuiltFromTheLog) {
  TestEngine t;
  t.reopen_with_row_lag(0);  // every batch writes every row: all are loaded back
  fill(t);
  ASSERT_TRUE(t.run(R"({"cmd":"grant_credits","actor":"platform","org":"acme","grant":"g1","kind":"plan","credits":"1000"})").status.ok());
  run_ok(t, usage_batch(t, 0, 8000));
  run_ok(t, usage_batch(t, 8000, 4000));
  const auto live = projection_rows(t.engine().state());
  t.close();
  uint64_t usage_seq = 0;
  std::string usage_key;
  size_t usage_rows = 0;
  {
    auto store = open_store(t.path());
    ASSERT_TRUE(store->read_history([&](uint64_t seq, std::string_view key, std::string_view) {
                       if (key.starts_with("balances/u/") && ++usage_rows == 6000) usage_seq = seq, usage_key = key;
                     }).ok());
    ASSERT_EQ(usage_rows, 12000u);
  }
  {
    RawDb raw(t.path());
    raw.set_history_row(usage_seq, usage_key, "x");  // too short to decode
  }
  t.reopen();
  EXPECT_EQ(projection_rows(t.engine().state()), live);
}

// A store of format 1 (history rows in the state family) opens as format 5: its rows
// are dropped and rebuilt from the log, equal to what the engine had, and written anew.
TEST(ProjectionLoad, AFormat1StoreIsRebuiltFromItsLog) {
  TestEngine t;
  fill(t);
  ASSERT_TRUE(t.run(R"({"cmd":"grant_credits","actor":"platform","org":"acme","grant":"g1","kind":"plan","credits":"1000"})").status.ok());
  run_ok(t, usage_batch(t, 0, 4));
  const auto live = projection_rows(t.engine().state());
  t.close();
  {
    RawDb raw(t.path());
    raw.put(RawDb::kState, "meta/format", "tally-log-1");
    raw.put(RawDb::kState, std::string("statements/acme\0\0\0\0\0", 20) + be64(9), "a format-1 entry");
  }
  t.reopen();
  EXPECT_EQ(projection_rows(t.engine().state()), live);
  t.close();
  auto store = open_store(t.path());
  std::string format;
  bool found = false;
  ASSERT_TRUE(store->get_row("meta/format", &format, &found).ok());
  EXPECT_EQ(format, "tally-log-5");
  size_t entries = 0;
  ASSERT_TRUE(store->read_history([&](uint64_t, std::string_view key, std::string_view) { entries += key.starts_with("statements/"); }).ok());
  EXPECT_EQ(entries, 5u) << "the grant and four usage entries, written again";
  const VerifyReport report = verify(*store, nullptr);
  EXPECT_TRUE(report.ok()) << problems(report);
}

// A batch applied on two threads (usage and statements on a helper, SplitApplier
// kLive) must answer, log and leave behind exactly what applying each event in turn
// does: refusals, duplicates, holds reserved and settled within the batch, and ticks
// that fire in the middle of it included. A failed write with a helper at work leaves
// the engine as it was before the batch.
TEST(SplitApply, ABatchSplitAcrossTwoThreadsEqualsOneEventAfterAnother) {
  testing::FaultEnv fault;
  TestEngine split("split", fault.env.get());
  TestEngine in_turn("in_turn");
  split.reopen_with_split_apply(1);
  in_turn.reopen_with_split_apply(0);
  auto both = [&](const std::vector<std::string>& batch) {
    const std::vector<CommandResult> a = split.run_batch(batch);
    const std::vector<CommandResult> b = in_turn.run_batch(batch);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].to_json(), b[i].to_json()) << batch[i];
  };
  auto advance = [&](int64_t us) {
    split.clock().advance(us);
    in_turn.clock().advance(us);
  };
  // fill() without its service key, whose secret is random.
  both({R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})",
        R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"studio"})",
        R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","role":"member","workspace":"studio"})",
        R"({"cmd":"accept_invite","actor":"bob@acme.io","org":"acme"})"});
  const std::string soon = format_time(split.clock().now_us() + 30'000'000);
  both({R"({"cmd":"grant_credits","actor":"platform","org":"acme","grant":"g1","kind":"plan","credits":"1000"})",
        R"({"cmd":"grant_credits","actor":"platform","org":"acme","grant":"g2","kind":"promo","credits":"5","expires_at":")" + soon + R"("})"});
  for (int round = 0; round < 4; ++round) {
    std::vector<std::string> batch = usage_batch(split, round * 300, 300);
    const std::string now = format_time(split.clock().now_us());
    batch.insert(batch.begin() + 10, usage_batch(split, round * 300, 1)[0]);  // a duplicate
    batch.insert(batch.begin() + 20,
                 fmt::format(R"({{"cmd":"record_usage","actor":"carol@acme.io","id":"c{}","org":"acme","workspace":"primary","tool":"chat",)"
                             R"("model":"m","quantity":1,"unit":"u","credits":"1","occurred_at":"{}"}})",
                             round, now));  // refused: not a member
    batch.push_back(fmt::format(R"({{"cmd":"reserve","actor":"alice@acme.io","org":"acme","workspace":"primary","hold":"h{}","credits":"3","timeout_s":20,"tool":"video","model":"v"}})", round));
    batch.push_back(fmt::format(R"({{"cmd":"settle","actor":"alice@acme.io","org":"acme","hold":"h{}","credits":"{}"}})", round, round % 2 ? "1" : "0"));
    batch.push_back(fmt::format(R"({{"cmd":"reserve","actor":"bob@acme.io","org":"acme","workspace":"studio","hold":"t{}","credits":"2","timeout_s":20,"tool":"chat","model":"m"}})", round));
    both(batch);
    // The promo lot expires and the hold t<round> times out: the next batch starts
    // with a tick.
    advance(25'000'000);
  }
  EXPECT_GT(split.engine().stats().events_by_type[static_cast<size_t>(fb::Event::HoldClosed)], 4u) << "no hold timed out";
  EXPECT_GT(split.engine().stats().events_by_type[static_cast<size_t>(fb::Event::LotExpired)], 0u) << "no lot expired";
  EXPECT_EQ(split.engine().store().head_hash(), in_turn.engine().store().head_hash());
  EXPECT_EQ(testing::log_envelopes(split.engine().store()), testing::log_envelopes(in_turn.engine().store()));
  EXPECT_EQ(split.engine().state().last_time_us(), in_turn.engine().state().last_time_us());
  const auto live = projection_rows(split.engine().state());
  EXPECT_EQ(live, projection_rows(in_turn.engine().state()));
  const VerifyReport report = verify(split.engine().store(), &split.engine().state());
  EXPECT_TRUE(report.ok()) << problems(report);
  // The history rows (statement entries, written by the helper chunk by chunk, and
  // usage ids) are stored as one event after another stores them.
  const std::vector<std::string> split_history = testing::stored_history(split.engine().store());
  EXPECT_GT(std::count_if(split_history.begin(), split_history.end(),
                          [](const std::string& row) { return row.substr(row.find(':') + 1).starts_with("statements/"); }),
            1200);
  EXPECT_EQ(split_history, testing::stored_history(in_turn.engine().store()));

  // A write that fails while the helper has part of the batch: nothing of it stays.
  fault.file_system->fail_writes(true);
  for (const CommandResult& result : split.run_batch(usage_batch(split, 5000, 500))) {
    EXPECT_EQ(result.status.code, ErrorCode::kStorageError);
  }
  EXPECT_EQ(projection_rows(split.engine().state()), live);
  split.close();
  fault.file_system->fail_writes(false);
  split.reopen();
  EXPECT_EQ(projection_rows(split.engine().state()), live);
}

std::vector<Command> commands_of(const std::vector<std::string>& lines) {
  std::vector<Command> commands;
  for (const std::string& line : lines) commands.push_back(testing::command_from_json(line));
  return commands;
}

// An organization with two workspaces, two members and 1,000 credits, as usage_batch() wants.
const std::vector<std::string> kPipelineSetup = {
    R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})",
    R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"studio"})",
    R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","role":"member","workspace":"studio"})",
    R"({"cmd":"accept_invite","actor":"bob@acme.io","org":"acme"})",
    R"({"cmd":"grant_credits","actor":"platform","org":"acme","grant":"g1","kind":"plan","credits":"1000"})"};

// Expects one batch's answers to equal another's, answer by answer (`what` names the batch).
void expect_same_answers(const std::vector<CommandResult>& got, const std::vector<CommandResult>& expected, const std::string& what) {
  ASSERT_EQ(got.size(), expected.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].to_json(), expected[i].to_json()) << what << ", command " << i;
}

// Pipelined batches (Engine::begin, the next batch executed while the last one is
// written) must answer, log and leave behind exactly what executing one batch after
// another does; a batch's events are durable only once finish() returns them. A
// failed write fails the batch begun on top of it too, a duplicate's answer pointing
// into the failed batch included, and leaves the engine as it was before both. The
// batches are split (TestEngine), so the helper finishes, seals and delivers each one
// while the writer executes the next; a row lag shorter than a batch makes every
// projection write its rows in each, the writer's through LogBatch::deferred_rows().
TEST(Pipeline, BatchesInFlightTogetherEqualOneBatchAfterAnother) {
  testing::FaultEnv fault;
  TestEngine piped("piped", fault.env.get());
  TestEngine in_turn("in_turn");
  piped.reopen_with_row_lag(50);
  in_turn.reopen_with_row_lag(50);
  piped.run_batch(kPipelineSetup);
  in_turn.run_batch(kPipelineSetup);
  std::vector<std::vector<Command>> batches;
  for (int round = 0; round < 6; ++round) {
    std::vector<std::string> batch = usage_batch(piped, round * 200, 200);
    batch.push_back(usage_batch(piped, round == 0 ? 5000 : round * 200 - 100, 1)[0]);  // a duplicate of the batch before
    batch.push_back(R"({"cmd":"record_usage","actor":"carol@acme.io","id":"c","org":"acme","workspace":"primary","tool":"chat",)"
                    R"("model":"m","quantity":1,"unit":"u","credits":"1","occurred_at":")" + format_time(piped.clock().now_us()) + R"("})");
    batches.push_back(commands_of(batch));
  }
  std::vector<std::vector<CommandResult>> expected;
  for (const std::vector<Command>& batch : batches) expected.push_back(in_turn.engine().execute(batch));

  Engine& engine = piped.engine();
  std::vector<std::vector<CommandResult>> got;
  for (const std::vector<Command>& batch : batches) {
    if (engine.in_flight() == kPipelineDepthMax) got.push_back(engine.finish());
    const uint64_t durable = engine.store().last_seq();
    engine.begin(batch);
    // Begun is not durable: the store's head moves only when finish() returns the batch.
    // (Its sealed head moves when the batch is sealed: by the split-apply helper, for
    // these batches, at a time of its own.)
    EXPECT_EQ(engine.store().last_seq(), durable);
  }
  EXPECT_EQ(engine.in_flight(), kPipelineDepthMax);  // six batches, the pipeline full
  while (engine.in_flight() > 0) got.push_back(engine.finish());
  ASSERT_EQ(got.size(), expected.size());
  for (size_t b = 0; b < got.size(); ++b) expect_same_answers(got[b], expected[b], fmt::format("batch {}", b));
  EXPECT_EQ(engine.stats().commits, in_turn.engine().stats().commits);
  EXPECT_EQ(engine.store().head_hash(), in_turn.engine().store().head_hash());
  EXPECT_EQ(testing::log_envelopes(engine.store()), testing::log_envelopes(in_turn.engine().store()));
  const auto live = projection_rows(engine.state());
  EXPECT_EQ(live, projection_rows(in_turn.engine().state()));
  const VerifyReport report = verify(engine.store(), &engine.state());
  EXPECT_TRUE(report.ok()) << problems(report);

  // Batch a's write fails; batch b, begun on top of it, repeats one of a's usage ids
  // (a duplicate whose answer would point into a) and records a new one.
  const uint64_t last_seq = engine.store().last_seq();
  const std::vector<Command> a = commands_of(usage_batch(piped, 9000, 50));
  const std::vector<Command> b = commands_of(usage_batch(piped, 9049, 20));
  fault.file_system->fail_writes(true);
  engine.begin(a);
  engine.begin(b);
  for (const CommandResult& result : engine.finish()) EXPECT_EQ(result.status.code, ErrorCode::kStorageError) << result.to_json();
  EXPECT_TRUE(engine.read_only());
  fault.file_system->fail_writes(false);  // b is not written even though the disk is back
  for (const CommandResult& result : engine.finish()) EXPECT_EQ(result.status.code, ErrorCode::kStorageError) << result.to_json();
  EXPECT_EQ(engine.store().last_seq(), last_seq);
  EXPECT_EQ(projection_rows(engine.state()), live);
  engine.begin(b);  // read-only now: refused without running
  for (const CommandResult& result : engine.finish()) EXPECT_EQ(result.status.code, ErrorCode::kReadOnly);
  piped.reopen();
  EXPECT_EQ(piped.engine().store().last_seq(), last_seq);
  EXPECT_EQ(piped.engine().store().head_hash(), in_turn.engine().store().head_hash());
  EXPECT_EQ(projection_rows(piped.engine().state()), live);

  // Again, with a batch that writes nothing: only duplicates of the failing batch. Its
  // answers (ok, duplicate, seq in the failed batch) must not go out either.
  fault.file_system->fail_writes(true);
  piped.engine().begin(a);
  piped.engine().begin(commands_of(usage_batch(piped, 9000, 5)));
  for (int batch = 0; batch < 2; ++batch) {
    for (const CommandResult& result : piped.engine().finish()) EXPECT_EQ(result.status.code, ErrorCode::kStorageError) << result.to_json();
  }
  fault.file_system->fail_writes(false);
  EXPECT_EQ(projection_rows(piped.engine().state()), live);
}

// begin()'s `between` lets the caller finish the batches begun before, as their writes
// end, while it executes the next one (here large enough for the helper thread): what
// it finishes there is what it would have finished after begin() returned, the batch
// being executed is never counted durable, and neither is a failed write.
TEST(Pipeline, BatchesDurableMeanwhileAreFinishedFromInsideBegin) {
  testing::FaultEnv fault;
  TestEngine piped("piped", fault.env.get());
  TestEngine in_turn("in_turn");
  piped.run_batch(kPipelineSetup);
  in_turn.run_batch(kPipelineSetup);
  const std::vector<Command> a = commands_of(usage_batch(piped, 0, 10));
  const std::vector<Command> b = commands_of(usage_batch(piped, 10, 1100));
  ASSERT_GE(b.size(), kSplitApplyCommandsDefault);
  const std::vector<CommandResult> a_expected = in_turn.engine().execute(a);
  const std::vector<CommandResult> b_expected = in_turn.engine().execute(b);

  Engine& engine = piped.engine();
  engine.begin(a);
  // Wait (10 s at most) for a's write, so the first call of `between` finds it durable.
  for (int ms = 0; ms < 10'000 && engine.durable_in_flight() == 0; ++ms) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(engine.durable_in_flight(), 1u);
  std::vector<CommandResult> a_got;
  size_t calls = 0;
  engine.begin(b, TimeSource::kClock, [&] {
    ++calls;
    EXPECT_EQ(engine.in_flight(), a_got.empty() ? 2u : 1u);
    EXPECT_EQ(engine.durable_in_flight(), a_got.empty() ? 1u : 0u);  // b, being executed, is not counted
    if (a_got.empty()) a_got = engine.finish();
    return false;
  });
  EXPECT_EQ(calls, (b.size() - 1) / kBetweenCommands);  // after 64, 128, ... commands, not after the last
  EXPECT_EQ(engine.in_flight(), 1u);
  const std::vector<CommandResult> b_got = engine.finish();
  expect_same_answers(a_got, a_expected, "a");
  expect_same_answers(b_got, b_expected, "b");
  EXPECT_EQ(engine.store().head_hash(), in_turn.engine().store().head_hash());
  const auto live = projection_rows(engine.state());
  EXPECT_EQ(live, projection_rows(in_turn.engine().state()));

  // `between` ends batch e (long enough for the helper thread) at its second call: the
  // rest, begun as a batch of its own, answers and logs what e as one batch does.
  const std::vector<Command> e = commands_of(usage_batch(piped, 1200, 1100));
  const std::vector<CommandResult> e_expected = in_turn.engine().execute(e);
  size_t e_calls = 0;
  ASSERT_EQ(engine.begin(e, TimeSource::kClock, [&] { return ++e_calls == 2; }), 2 * kBetweenCommands);
  ASSERT_EQ(engine.begin(std::span(e).subspan(2 * kBetweenCommands)), e.size() - 2 * kBetweenCommands);
  std::vector<CommandResult> e_got = engine.finish();
  for (CommandResult& result : engine.finish()) e_got.push_back(std::move(result));
  expect_same_answers(e_got, e_expected, "e");
  // (The head hash differs: the log's chain has a link per batch.)
  EXPECT_EQ(testing::log_envelopes(engine.store()), testing::log_envelopes(in_turn.engine().store()));
  const VerifyReport report = verify(engine.store(), &engine.state());
  EXPECT_TRUE(report.ok()) << problems(report);
  const auto live_after_e = projection_rows(engine.state());
  EXPECT_EQ(live_after_e, projection_rows(in_turn.engine().state()));

  // c's write fails: it is never counted durable, and is answered storage_error once
  // begin() has returned; so is d, begun on top of it.
  const std::vector<Command> c = commands_of(usage_batch(piped, 3000, 10));
  const std::vector<Command> d = commands_of(usage_batch(piped, 3010, 200));
  fault.file_system->fail_writes(true);
  engine.begin(c);
  engine.begin(d, TimeSource::kClock, [&] {
    EXPECT_EQ(engine.durable_in_flight(), 0u);
    return false;
  });
  for (int batch = 0; batch < 2; ++batch) {
    for (const CommandResult& result : engine.finish()) EXPECT_EQ(result.status.code, ErrorCode::kStorageError) << result.to_json();
  }
  EXPECT_TRUE(engine.read_only());
  EXPECT_EQ(engine.durable_in_flight(), 0u);
  fault.file_system->fail_writes(false);
  EXPECT_EQ(projection_rows(engine.state()), live_after_e);
}

TEST(Verify, RowsWhoseCheckpointIsPastTheLogAreReported) {
  TestEngine t;
  fill(t);
  t.close();
  RawDb(t.path()).put(RawDb::kState, "checkpoint/rates", be64(99));
  auto store = open_store(t.path());
  const VerifyReport report = verify(*store, nullptr);
  EXPECT_TRUE(mentions(report, "the rows of rates are at sequence 99, past the log's last record 6")) << problems(report);
}

TEST(ProjectionRows, AreSortedAndIncludeTheCheckpoint) {
  TestEngine t;
  fill(t);
  const auto rows = projection_rows(t.engine().state());
  ASSERT_FALSE(rows.empty());
  for (size_t i = 1; i < rows.size(); ++i) EXPECT_LT(rows[i - 1].first, rows[i].first);
  bool checkpoint = false;
  for (const auto& [key, value] : rows) {
    if (key == "checkpoint/orgs") {
      checkpoint = true;
      EXPECT_EQ(read_be64(value), 6u);
    }
  }
  EXPECT_TRUE(checkpoint);
}

}  // namespace
}  // namespace tally
