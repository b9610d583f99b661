// Regression tests for what the fuzz targets (tests/fuzz/) found. Each test names the
// crash it keeps fixed; the crashing inputs themselves sit in tests/fuzz/corpus/ so
// fuzz_smoke replays them too.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/clock.h"
#include "engine/engine.h"
#include "engine/event_format.h"
#include "engine/log.h"
#include "engine/test_util.h"
#include "engine/values.h"
#include "projections/projection_set.h"
#include "reliability_harness.h"

namespace tally::test {
namespace {

using Payload = std::function<flatbuffers::Offset<void>(flatbuffers::FlatBufferBuilder&)>;

// A well-formed envelope around `payload`, as a forger with the schema would write it.
std::string forged(fb::Event type, const Payload& payload) {
  flatbuffers::FlatBufferBuilder b;
  const auto body = payload(b);
  const auto actor = b.CreateString("platform");
  fb::EnvelopeBuilder envelope(b);
  envelope.add_seq(1);
  envelope.add_time_us(1'795'428'000'000'000);
  envelope.add_schema_version(kSchemaVersion);
  envelope.add_actor(actor);
  envelope.add_command_seq(1);
  envelope.add_event_type(type);
  envelope.add_event(body);
  b.Finish(envelope.Finish());
  return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

std::string credits_moved(uint32_t from, uint32_t to, int64_t amount, int64_t portion) {
  return forged(fb::Event::CreditsMoved, [&](flatbuffers::FlatBufferBuilder& b) {
    const std::vector<fb::LotAmount> lots = {fb::LotAmount(0, portion)};
    return fb::CreateCreditsMovedDirect(b, "acme", from, to, amount, fb::MoveReason::Transfer, &lots).Union();
  });
}

std::string lot_expired(int64_t amount) {
  return forged(fb::Event::LotExpired, [&](flatbuffers::FlatBufferBuilder& b) {
    const std::vector<fb::WorkspaceAmount> parts = {fb::WorkspaceAmount(0, amount)};
    return fb::CreateLotExpiredDirect(b, "acme", 0, amount, false, &parts).Union();
  });
}

// An engine on a fresh store in `dir`, on `clock`, that has run `lines` as one batch;
// null (and a test failure) if it cannot open or refuses any of them.
std::unique_ptr<Engine> engine_after(const ScratchDir& dir, ManualClock* clock, std::initializer_list<std::string_view> lines) {
  EngineOptions options;
  options.data_dir = dir.path();
  options.clock = clock;
  std::unique_ptr<Engine> engine;
  const Status status = Engine::open(options, &engine);
  EXPECT_TRUE(status.ok()) << status.message;
  if (!status.ok()) return nullptr;
  for (const CommandResult& result : engine->execute(commands(lines))) {
    EXPECT_TRUE(result.status.ok()) << result.to_json();
    if (!result.status.ok()) return nullptr;
  }
  return engine;
}

// Applies to `projections` the log of a store (in `dir`) where alice created "acme" and
// granted it 10 credits as lot 0.
void apply_acme_history(const ScratchDir& dir, ProjectionSet* projections) {
  ManualClock clock(1'795'428'000'000'000);
  const std::unique_ptr<Engine> engine = engine_after(dir, &clock, {
      R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})",
      R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g1","kind":"plan","credits":"10"})",
  });
  ASSERT_NE(engine, nullptr);
  for (const std::string& envelope : testing::log_envelopes(engine->store())) projections->apply(*decode_envelope(envelope));
}

// A forged usage event: alice spends 1 micro-credit of lot 0 in acme's workspace 0,
// with the usage id `id` (a null id leaves the field out) at `occurred_at`.
std::string usage_recorded(const char* id, int64_t occurred_at) {
  return forged(fb::Event::UsageRecorded, [&](flatbuffers::FlatBufferBuilder& b) {
    const std::vector<fb::LotAmount> lots = {fb::LotAmount(0, 1)};
    return fb::CreateUsageRecordedDirect(b, "acme", id, 0, "alice@acme.io", "chat", "gpt", 1, "tokens", 1, occurred_at, 0, &lots).Union();
  });
}

// Found by fuzz_query and fuzz_record (UBSan: "load of misaligned address" in
// flatbuffers::GetRoot, via decode_envelope): RocksDB hands out log values at any
// address, and FlatBuffers reads scalars in place. Fixed in Store::read_log (aligns each
// envelope) and decode_envelope (refuses a misaligned one).
TEST(FuzzRegression, LogEnvelopesAreAlignedForFlatBuffers) {
  ScratchDir dir("aligned");
  ManualClock clock(1'795'428'000'000'000);
  const std::unique_ptr<Engine> engine = engine_after(dir, &clock, {
      R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})",
      R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g1","kind":"plan","credits":"10"})",
      R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})",
  });
  ASSERT_NE(engine, nullptr);
  size_t records = 0;
  ASSERT_TRUE(engine->store()
                  .read_log(1, engine->store().last_seq(),
                            [&](uint64_t seq, std::string_view envelope) {
                              EXPECT_EQ(reinterpret_cast<uintptr_t>(envelope.data()) % kEnvelopeAlignment, 0u) << "record " << seq;
                              EXPECT_NE(decode_envelope(envelope), nullptr) << "record " << seq;
                              ++records;
                              return true;
                            })
                  .ok());
  EXPECT_EQ(records, engine->store().last_seq());
  // A query as of an earlier point replays the log through those envelopes.
  const std::string answer = engine->query(R"({"query":"balance","actor":"platform","org":"acme","as_of_seq":2})");
  EXPECT_NE(answer.find(R"("ok":true)"), std::string::npos) << answer;

  // A misaligned envelope is refused rather than read.
  const std::string envelope = lot_expired(1);
  std::unique_ptr<char[]> shifted(new char[envelope.size() + 1]);
  std::memcpy(shifted.get() + 1, envelope.data(), envelope.size());
  ASSERT_NE(decode_envelope(envelope), nullptr);
  EXPECT_EQ(decode_envelope(std::string_view(shifted.get() + 1, envelope.size())), nullptr);
}

// Found by fuzz_record (an assertion in StatementsProjection::add, on the seed corpus:
// the target applies an event on top of a history whatever its sequence number says).
// Statements are kept as deltas from the previous entry, so an entry older than the
// account's last cannot be added. Fixed: such an event is counted as an anomaly (which
// verify reports) and changes nothing.
TEST(FuzzRegression, AStatementEntryOlderThanTheLastIsAnAnomaly) {
  ScratchDir dir("older-entry");
  ManualClock clock(1'795'428'000'000'000);
  const std::unique_ptr<Engine> engine = engine_after(dir, &clock, {
      R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})",
      R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g1","kind":"plan","credits":"10"})",
      R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g2","kind":"top_up","credits":"5"})",
  });
  ASSERT_NE(engine, nullptr);
  std::vector<std::string> grants;
  ProjectionSet projections;
  for (const std::string& envelope : testing::log_envelopes(engine->store())) {
    const fb::Envelope* event = decode_envelope(envelope);
    if (event->event_type() == fb::Event::CreditsGranted) grants.push_back(envelope);
    projections.apply(*event);
  }
  ASSERT_EQ(grants.size(), 2u);
  ASSERT_EQ(projections.statements.entries("acme", 0)->size(), 2u);
  EXPECT_EQ(projections.anomalies(), 0u);

  projections.statements.apply(*decode_envelope(grants[0]));  // the first grant again, after the second
  EXPECT_EQ(projections.statements.anomalies(), 1u);
  EXPECT_EQ(projections.anomalies(), 1u);
  EXPECT_EQ(projections.statements.entries("acme", 0)->size(), 2u);
  EXPECT_EQ(projections.statements.entries("acme", 0)->balance(), 15'000'000);
}

// Found by fuzz_record in CI (UBSan: "null pointer passed as argument 2" to memcpy in
// UsageIds::insert): a usage event without an id reads as a string_view with a null
// data(). Fixed in UsageIds::insert, which no longer hands an empty id to memcpy; the
// engine never records such an event, so the projection keeps it like any other id.
TEST(FuzzRegression, AUsageEventWithoutAnIdApplies) {
  ScratchDir dir("no-usage-id");
  ProjectionSet projections;
  ASSERT_NO_FATAL_FAILURE(apply_acme_history(dir, &projections));
  const std::string usage = usage_recorded(nullptr, 0);
  const fb::Envelope* event = decode_envelope(usage);
  ASSERT_NE(event, nullptr);
  ASSERT_EQ(event->event_as_UsageRecorded()->id(), nullptr);
  // Straight to each projection, as the fuzz target does (the set skips a sequence
  // number it has already applied).
  for (Projection* projection : projections.all()) projection->apply(*event);
  EXPECT_EQ(projections.balances.find("acme")->usage_ids.size(), 1u);
  EXPECT_TRUE(projections.balances.find("acme")->usage_ids.find("").has_value());
  EXPECT_FALSE(projection_rows(projections).empty());
}

// Found by fuzz_record (UBSan: signed integer overflow in hour_start): a usage event
// whose occurred_at is near the start of the int64 range put its usage cell in an hour
// that int64 cannot hold. Fixed in engine/values.cc: the bucket starts saturate.
TEST(FuzzRegression, AUsageEventAtTheStartOfTimeApplies) {
  ScratchDir dir("usage-at-int64-min");
  ProjectionSet projections;
  ASSERT_NO_FATAL_FAILURE(apply_acme_history(dir, &projections));
  const std::string usage = usage_recorded("u1", std::numeric_limits<int64_t>::min());
  const fb::Envelope* event = decode_envelope(usage);
  ASSERT_NE(event, nullptr);
  for (Projection* projection : projections.all()) projection->apply(*event);
  EXPECT_FALSE(projection_rows(projections).empty());
}

// Found by fuzz_record (ASan: out-of-memory in StatementsProjection::add, resizing a
// table to a forged workspace id of ~4 billion). Fixed in decode_envelope: workspace
// ids at or beyond kWorkspacesPerOrgMax are refused.
TEST(FuzzRegression, ForgedWorkspaceIdIsRefused) {
  EXPECT_EQ(decode_envelope(credits_moved(0, 0xfffffff0u, 1, 1)), nullptr);
  EXPECT_EQ(decode_envelope(credits_moved(kWorkspacesPerOrgMax, 0, 1, 1)), nullptr);
  EXPECT_EQ(decode_envelope(forged(fb::Event::WorkspaceCreated,
                                   [](flatbuffers::FlatBufferBuilder& b) {
                                     return fb::CreateWorkspaceCreatedDirect(b, "acme", 0xfffffffeu, "w").Union();
                                   })),
            nullptr);
  EXPECT_NE(decode_envelope(credits_moved(0, kWorkspacesPerOrgMax - 1, 1, 1)), nullptr);
}

// Found by fuzz_record (UBSan: signed integer overflow in Lot::outstanding, from a
// LotExpired amount of -9223372036854357777). Fixed in decode_envelope: amounts outside
// what the engine ever logs are refused.
TEST(FuzzRegression, ForgedAmountIsRefused) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kSumMax = std::numeric_limits<int64_t>::max() / 2;
  EXPECT_EQ(decode_envelope(lot_expired(-9'223'372'036'854'357'777)), nullptr);
  EXPECT_EQ(decode_envelope(lot_expired(-1)), nullptr);
  EXPECT_EQ(decode_envelope(lot_expired(kSumMax + 1)), nullptr);
  EXPECT_EQ(decode_envelope(credits_moved(0, 1, kMin, 1)), nullptr);
  EXPECT_EQ(decode_envelope(credits_moved(0, 1, 1, kMin)), nullptr);
  EXPECT_EQ(decode_envelope(forged(fb::Event::CreditsGranted,
                                   [](flatbuffers::FlatBufferBuilder& b) {
                                     return fb::CreateCreditsGrantedDirect(b, "acme", "g", 0, fb::LotKind::Plan, kCreditsMicroMax + 1).Union();
                                   })),
            nullptr);
  EXPECT_EQ(decode_envelope(forged(fb::Event::LimitSet,
                                   [](flatbuffers::FlatBufferBuilder& b) {
                                     return fb::CreateLimitSetDirect(b, "acme", 0, "", fb::LimitPeriod::Day, -2).Union();
                                   })),
            nullptr);
  // The largest amounts the engine can log still decode: a sweep of a workspace holding
  // nearly all of an organization's grants, one grant of the maximum, "no limit".
  EXPECT_NE(decode_envelope(lot_expired(kSumMax)), nullptr);
  EXPECT_NE(decode_envelope(credits_moved(1, 0, kSumMax, kSumMax)), nullptr);
  EXPECT_NE(decode_envelope(forged(fb::Event::CreditsGranted,
                                   [](flatbuffers::FlatBufferBuilder& b) {
                                     return fb::CreateCreditsGrantedDirect(b, "acme", "g", 0, fb::LotKind::Plan, kCreditsMicroMax).Union();
                                   })),
            nullptr);
  EXPECT_NE(decode_envelope(forged(fb::Event::LimitSet,
                                   [](flatbuffers::FlatBufferBuilder& b) {
                                     return fb::CreateLimitSetDirect(b, "acme", 0, "", fb::LimitPeriod::Day, -1).Union();
                                   })),
            nullptr);
}

// Found by fuzz_record (UBSan: "member call on misaligned address" for LotAmount in
// decode_envelope's own bounds check): the FlatBuffers 2.0 verifier accepts a vector of
// 8-byte structs at a 4-byte boundary. Fixed in decode_envelope: such vectors are
// refused. The input is tests/fuzz/corpus/record/crash-misaligned-struct-vector.
TEST(FuzzRegression, MisalignedStructVectorIsRefused) {
  const std::string hex =
      "1c00000000000000140038002c00240022001c0018000c000b000400140000006c000000000000151600000000000000"
      "00000000200000002400000000000100809978a9ee60060016000000000000000000000003000000752d31000b000000"
      "626f624061636d652e696f002000500008000c001000140018001c002c00200034003c00240028000700440020000000"
      "00000001980000008c0000000100000074000000640000005400000044000000010000002c0000000200000000000000"
      "0048e8010000000000e828a8ee6006004b45bdc44888abce000000000100000001000000000000000048e80100000000"
      "05000000696d61676500000004000000666c75780000000005000000696d61670100000613000000626f624061636d65"
      "2e696f0003000000752d31000400000061636d6500000000";
  std::string bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) bytes += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  EXPECT_EQ(decode_envelope(bytes), nullptr);
}

// The same check must not refuse what the engine writes: FlatBuffers leaves an empty
// vector of structs 4-aligned (a released hold has no expired portions). Found by the
// simulation, when the first version of the check refused the engine's own events.
TEST(FuzzRegression, EmptyStructVectorsFromTheEngineDecode) {
  for (size_t padding = 0; padding < 8; ++padding) {
    const std::string envelope = forged(fb::Event::HoldClosed, [&](flatbuffers::FlatBufferBuilder& b) {
      const std::vector<fb::LotAmount> none, some = {fb::LotAmount(0, 5)};
      const std::string hold(padding + 1, 'h');  // shifts the layout
      return fb::CreateHoldClosedDirect(b, "acme", hold.c_str(), fb::HoldEnd::Released, 0, &none, 0, &some, &none).Union();
    });
    EXPECT_NE(decode_envelope(envelope), nullptr) << "padding " << padding;
  }
}

// What the fuzz target does with every envelope that decodes: apply it to fresh
// projections, flush, dump and check them. The bounds above keep this well-defined.
TEST(FuzzRegression, ExtremeButValidEventsApplyCleanly) {
  for (const std::string& envelope : {lot_expired(std::numeric_limits<int64_t>::max() / 2),
                                      credits_moved(kWorkspacesPerOrgMax - 1, 0, std::numeric_limits<int64_t>::max() / 2, 1)}) {
    const fb::Envelope* event = decode_envelope(envelope);
    ASSERT_NE(event, nullptr);
    ProjectionSet projections;
    projections.apply(*event);
    EXPECT_GT(projections.anomalies(), 0u);  // "acme" does not exist here
    (void)projections.balances.check_invariants();
    EXPECT_FALSE(projection_rows(projections).empty());
  }
}

}  // namespace
}  // namespace tally::test
