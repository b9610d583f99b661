// Corruption (SPEC §3, §6): the log's per-record checksums and hash chain catch a
// damaged or altered store. Each test alters a healthy store behind Tally's back, with
// RocksDB directly, then checks what opening it and `verify` say: a clear
// storage_error or a named problem — never a crash, never a silent success.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/clock.h"
#include "engine/engine.h"
#include "engine/entry_compression.h"
#include "engine/event_format.h"
#include "engine/log.h"
#include "engine/test_storage.h"
#include "engine/values.h"
#include "reliability_harness.h"

namespace tally::test {
namespace {

constexpr int64_t kStart = 1'795'428'000'000'000;  // 2026-11-23T10:00:00Z

// The raw store, as RocksDB sees it: the column families of engine/log.cc, and the
// log's records wherever its entries hold them.
class RawStore : public tally::testing::RawDb {
 public:
  using RawDb::RawDb;
  // Recomputes every chain row from the log, as a forger who knows the format would.
  void rechain() {
    std::vector<std::pair<std::string, uint64_t>> batches;  // key, last seq
    scan(kChain, [&](std::string_view key, std::string_view value) { batches.emplace_back(key, read_be64(value)); });
    Sha256 previous{};
    for (const auto& [key, last] : batches) {
      ChainHasher hasher(previous);
      for (uint64_t seq = read_be64(key); seq <= last; ++seq) hasher.add(seq, record(seq));
      previous = hasher.finish();
      put(kChain, key, be64(last) + std::string(reinterpret_cast<const char*>(previous.data()), previous.size()));
    }
  }
  // The first key of the family that starts with `prefix`.
  std::string first_key(int family, const std::string& prefix) {
    std::string found;
    scan(family, [&](std::string_view key, std::string_view) {
      if (found.empty() && key.starts_with(prefix)) found = key;
    });
    EXPECT_FALSE(found.empty()) << "no key starts with " << prefix;
    return found;
  }
};

// A healthy store of a few batches; returns how many events it holds.
uint64_t make_store(const std::string& path) {
  ManualClock clock(kStart);
  EngineOptions options;
  options.data_dir = path;
  options.clock = &clock;
  std::unique_ptr<Engine> engine;
  EXPECT_TRUE(Engine::open(options, &engine).ok());
  const std::vector<std::vector<std::string_view>> batches = {
      {R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","mode":"budget"})",
       R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g1","kind":"plan","credits":"100"})"},
      {R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})",
       R"({"cmd":"transfer_credits","actor":"alice@acme.io","org":"acme","from":"primary","to":"design","credits":"40"})"},
      {R"({"cmd":"record_usage","actor":"alice@acme.io","id":"u-1","org":"acme","workspace":"primary","tool":"chat","model":"m","quantity":1,"unit":"token","credits":"2","occurred_at":"2026-11-23T10:00:00Z"})"},
  };
  for (const auto& lines : batches) {
    std::vector<Command> commands;
    for (std::string_view line : lines) commands.push_back(command(line));
    clock.advance(1'000'000);
    for (const CommandResult& result : engine->execute(commands)) EXPECT_TRUE(result.status.ok()) << result.to_json();
  }
  EXPECT_TRUE(verify(engine->store(), &engine->state()).ok());
  return engine->store().last_seq();
}

struct Opened {
  Status open;                        // what Engine::open said
  std::vector<std::string> problems;  // what verify said, when the open succeeded
};

Opened open_and_verify(const std::string& path) {
  EngineOptions options;
  options.data_dir = path;
  options.create_if_missing = false;
  std::unique_ptr<Engine> engine;
  Opened out;
  out.open = Engine::open(options, &engine);
  if (out.open.ok()) out.problems = verify(engine->store(), &engine->state()).problems;
  return out;
}

bool mentions(const std::vector<std::string>& problems, std::string_view text) {
  for (const std::string& problem : problems) {
    if (problem.find(text) != std::string::npos) return true;
  }
  return false;
}

std::string joined(const std::vector<std::string>& problems) {
  std::string out;
  for (const std::string& problem : problems) out += "\n  " + problem;
  return out;
}

class Corruption : public ::testing::Test {
 protected:
  void SetUp() override { events_ = make_store(dir_.path()); }
  // Alters the closed store through RocksDB, then opens and verifies it with Tally.
  Opened alter(const std::function<void(RawStore&)>& change) {
    {
      RawStore raw(dir_.path());
      change(raw);
    }
    return open_and_verify(dir_.path());
  }
  ScratchDir dir_{"corrupt"};
  uint64_t events_ = 0;
};

TEST_F(Corruption, FlippedByteInARecordFailsItsChecksum) {
  const Opened opened = alter([](RawStore& raw) {
    std::string record = raw.record(2);
    record[record.size() / 2] ^= 0x01;
    raw.set_record(2, record);
  });
  // The open reads only the last record; verify reads them all.
  ASSERT_TRUE(opened.open.ok()) << opened.open.message;
  EXPECT_TRUE(mentions(opened.problems, "log record 2 fails its checksum")) << joined(opened.problems);
}

TEST_F(Corruption, TruncatedRecordFailsItsChecksum) {
  const Opened opened = alter([](RawStore& raw) {
    const std::string record = raw.record(3);
    raw.set_record(3, record.substr(0, record.size() - 5));
  });
  ASSERT_TRUE(opened.open.ok()) << opened.open.message;
  EXPECT_TRUE(mentions(opened.problems, "log record 3 fails its checksum")) << joined(opened.problems);
}

TEST_F(Corruption, RecordShorterThanItsChecksum) {
  const Opened opened = alter([](RawStore& raw) { raw.set_record(1, "abc"); });
  ASSERT_TRUE(opened.open.ok()) << opened.open.message;
  EXPECT_TRUE(mentions(opened.problems, "log record 1 fails its checksum")) << joined(opened.problems);
}

TEST_F(Corruption, CorruptLastRecordRefusesTheOpen) {
  const uint64_t last = events_;
  const Opened opened = alter([last](RawStore& raw) {
    std::string record = raw.record(last);
    record.back() ^= 0x40;
    raw.set_record(last, record);
  });
  EXPECT_EQ(error_name(opened.open.code), "storage_error");
  EXPECT_NE(opened.open.message.find("fails its checksum"), std::string::npos) << opened.open.message;
}

// A forger who also fixes the checksum is caught by the hash chain.
TEST_F(Corruption, AlteredRecordWithAValidChecksumBreaksTheHashChain) {
  const Opened opened = alter([](RawStore& raw) {
    std::string_view envelope;
    const std::string record = raw.record(2);
    ASSERT_TRUE(decode_record(record, &envelope));
    std::string altered(envelope);
    const size_t at = altered.find("g1");  // the grant id
    ASSERT_NE(at, std::string::npos);
    altered[at + 1] = '2';
    raw.set_record(2, encode_record(altered));
  });
  ASSERT_TRUE(opened.open.ok()) << opened.open.message;
  EXPECT_TRUE(mentions(opened.problems, "does not match: history was altered")) << joined(opened.problems);
}

// A forger who also recomputes the hash chain gets past the chain (it proves integrity
// only against a head hash kept elsewhere), but an event no engine could have logged is
// still refused: here a grant of minus five credits.
TEST_F(Corruption, ImpossibleEventWithARecomputedChainIsNotAValidEnvelope) {
  const Opened opened = alter([](RawStore& raw) {
    std::string_view envelope;
    const std::string record = raw.record(2);
    ASSERT_TRUE(decode_record(record, &envelope));
    const std::string copy(envelope);
    const fb::Envelope* event = decode_envelope(copy);
    ASSERT_NE(event, nullptr);
    ASSERT_EQ(event->event_type(), fb::Event::CreditsGranted);
    flatbuffers::FlatBufferBuilder b;
    const auto payload = fb::CreateCreditsGrantedDirect(b, "acme", "g1", 0, fb::LotKind::Plan, -5'000'000);
    const auto actor = b.CreateString(event->actor()->str());
    fb::EnvelopeBuilder forged(b);
    forged.add_seq(2);
    forged.add_time_us(event->time_us());
    forged.add_schema_version(event->schema_version());
    forged.add_actor(actor);
    forged.add_command_seq(event->command_seq());
    forged.add_event_type(fb::Event::CreditsGranted);
    forged.add_event(payload.Union());
    b.Finish(forged.Finish());
    raw.set_record(2, encode_record(std::string_view(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize())));
    raw.rechain();
  });
  ASSERT_TRUE(opened.open.ok()) << opened.open.message;
  EXPECT_FALSE(mentions(opened.problems, "history was altered")) << joined(opened.problems);
  EXPECT_TRUE(mentions(opened.problems, "record 2 is not a valid envelope")) << joined(opened.problems);
}

TEST_F(Corruption, GarbageEnvelopeWithAValidChecksum) {
  const Opened opened = alter([](RawStore& raw) { raw.set_record(1, encode_record("not a flatbuffer at all")); });
  ASSERT_TRUE(opened.open.ok()) << opened.open.message;
  EXPECT_FALSE(opened.problems.empty());
  EXPECT_TRUE(mentions(opened.problems, "record 1 is not a valid envelope") || mentions(opened.problems, "history was altered"))
      << joined(opened.problems);
}

TEST_F(Corruption, MissingRecordIsAGap) {
  const Opened opened = alter([](RawStore& raw) { raw.erase_record(2); });
  ASSERT_TRUE(opened.open.ok()) << opened.open.message;
  EXPECT_TRUE(mentions(opened.problems, "gap or a stray key at sequence 2")) << joined(opened.problems);
}

TEST_F(Corruption, RecordBeyondTheChainRefusesTheOpen) {
  const uint64_t next = events_ + 1;
  const Opened opened = alter([next](RawStore& raw) { raw.add_record(next, raw.record(next - 1)); });
  EXPECT_EQ(error_name(opened.open.code), "storage_error");
  EXPECT_NE(opened.open.message.find("the store was altered"), std::string::npos) << opened.open.message;
}

TEST_F(Corruption, LostLastRecordRefusesTheOpen) {
  const uint64_t last = events_;
  const Opened opened = alter([last](RawStore& raw) { raw.erase_record(last); });
  EXPECT_EQ(error_name(opened.open.code), "storage_error");
  EXPECT_NE(opened.open.message.find("the store was altered"), std::string::npos) << opened.open.message;
}

TEST_F(Corruption, MalformedChainRowRefusesTheOpen) {
  const Opened opened = alter([](RawStore& raw) { raw.put(RawStore::kChain, be64(1'000'000), "short"); });  // sorts last: the head's row
  EXPECT_EQ(error_name(opened.open.code), "storage_error");
  EXPECT_NE(opened.open.message.find("malformed"), std::string::npos) << opened.open.message;
}

// Projection rows are not the source of truth: a damaged row is rebuilt from the log
// at the open, and verify names the stored row that differs.
TEST_F(Corruption, DamagedProjectionRowIsRebuiltFromTheLog) {
  const Opened opened = alter([](RawStore& raw) {
    const std::string key = raw.first_key(RawStore::kState, "balances/o");
    raw.put(RawStore::kState, key, "garbage");
  });
  ASSERT_TRUE(opened.open.ok()) << opened.open.message;
  EXPECT_TRUE(mentions(opened.problems, "stored projections: row balances/o")) << joined(opened.problems);
  EXPECT_FALSE(mentions(opened.problems, "live projections")) << "the live state should be the rebuild" << joined(opened.problems);
}

// History rows (statement entries, usage ids) are kept in packs. A pack whose framing
// is damaged cannot be read past, so the open refuses the store and names the pack;
// `tally replay` (rebuild_projections) rewrites every history row from the log, and
// the store then opens and verifies clean.
TEST_F(Corruption, AMalformedHistoryPackRefusesTheOpenUntilARebuild) {
  const Opened opened = alter([](RawStore& raw) {
    std::string key, pack;
    raw.scan(RawStore::kHistory, [&](std::string_view k, std::string_view v) {
      if (key.empty() && is_history_pack_key(k)) key = k, pack = v;
    });
    ASSERT_FALSE(key.empty()) << "a batch's history rows are packed";
    std::string buffer;
    std::string_view expanded;
    ASSERT_TRUE(expand_entry(pack, &buffer, &expanded)) << "the pack decompresses";
    pack = std::string(expanded);  // written back uncompressed, as format 4 stored it
    pack[9] = '\x7f';  // the first row's key length, now far past the pack's end
    raw.put(RawStore::kHistory, key, pack);
  });
  EXPECT_EQ(error_name(opened.open.code), "storage_error");
  EXPECT_NE(opened.open.message.find("is malformed"), std::string::npos) << opened.open.message;
  {
    std::unique_ptr<Store> store;
    ASSERT_TRUE(Store::open({dir_.path(), false}, &store).ok());
    RebuildStats stats;
    ASSERT_TRUE(rebuild_projections(*store, &stats).ok());
  }
  const Opened rebuilt = open_and_verify(dir_.path());
  ASSERT_TRUE(rebuilt.open.ok()) << rebuilt.open.message;
  EXPECT_TRUE(rebuilt.problems.empty()) << joined(rebuilt.problems);
}

TEST_F(Corruption, ForeignFormatRefusesTheOpen) {
  const Opened opened = alter([](RawStore& raw) { raw.put(RawStore::kState, "meta/format", "tally-log-99"); });
  EXPECT_EQ(error_name(opened.open.code), "storage_error");
  EXPECT_NE(opened.open.message.find("tally-log-99"), std::string::npos) << opened.open.message;
}

TEST(CorruptionOpen, NotAStoreIsACleanError) {
  ScratchDir dir("notastore");
  EngineOptions options;
  options.data_dir = dir.path() + "/missing";
  options.create_if_missing = false;
  std::unique_ptr<Engine> engine;
  const Status status = Engine::open(options, &engine);
  EXPECT_EQ(error_name(status.code), "storage_error");
  EXPECT_EQ(engine, nullptr);
}

}  // namespace
}  // namespace tally::test
