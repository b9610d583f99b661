#include "engine/log.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "engine/entry_compression.h"
#include "engine/test_storage.h"
#include "engine/test_util.h"

namespace tally {
namespace {

using testing::RawDb;
using testing::TempDir;
using testing::stored_history;

// ---- records -------------------------------------------------------------------------

TEST(LogRecord, DecodeReturnsTheEnvelopeEncodeWrapped) {
  for (const std::string& envelope : {std::string(), std::string("x"), std::string("hello, log"), std::string(1000, '\0')}) {
    const std::string record = encode_record(envelope);
    ASSERT_EQ(record.size(), envelope.size() + kRecordChecksumBytes);
    std::string_view back = "unset";
    ASSERT_TRUE(decode_record(record, &back));
    EXPECT_EQ(back, envelope);
    EXPECT_EQ(static_cast<const void*>(back.data()), static_cast<const void*>(record.data() + kRecordChecksumBytes));
  }
}

TEST(LogRecord, EveryFlippedBitFailsTheChecksum) {
  const std::string record = encode_record("an envelope of some length, 0123456789");
  for (size_t byte = 0; byte < record.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string corrupt = record;
      corrupt[byte] = static_cast<char>(corrupt[byte] ^ (1 << bit));
      std::string_view envelope;
      EXPECT_FALSE(decode_record(corrupt, &envelope)) << "byte " << byte << " bit " << bit;
    }
  }
}

TEST(LogRecord, TruncatedOrExtendedRecordsFail) {
  const std::string record = encode_record("payload");
  std::string_view envelope;
  for (size_t size = 0; size < record.size(); ++size) {
    EXPECT_FALSE(decode_record(std::string_view(record).substr(0, size), &envelope)) << size;
  }
  EXPECT_FALSE(decode_record(record + "x", &envelope));
}

// log.cc compiles XXH3 from xxhash.h (XXH_INLINE_ALL); the checksums it writes must be
// the library's, which is what every store written before was checked with. Lengths
// cover each of XXH3's code paths (0, 1-3, 4-8, 9-16, 17-128, 129-240, longer, and
// past one 1,024-byte block).
TEST(LogRecord, TheChecksumIsLibxxhashsXXH3OfTheEnvelope) {
  std::mt19937_64 random(7);
  std::string bytes(3000, '\0');
  for (char& c : bytes) c = static_cast<char>(random());
  for (size_t size = 0; size <= bytes.size(); size += size < 300 ? 1 : 97) {
    const std::string_view envelope = std::string_view(bytes).substr(bytes.size() - size);
    const uint64_t library = XXH3_64bits(envelope.data(), envelope.size());
    uint64_t ours;
    const RecordChecksum checksum = record_checksum(envelope);
    std::memcpy(&ours, checksum.data(), sizeof ours);
    ASSERT_EQ(ours, library) << size;
  }
}

// ---- segments ------------------------------------------------------------------------

TEST(LogSegment, FramesReadBackInOrderEachAtAMultipleOfEight) {
  std::string segment;
  std::vector<std::string> records;
  for (size_t size = 0; size <= 20; ++size) {
    records.push_back(std::string(size, static_cast<char>('a' + size)));
    append_frame(&segment, records.back().substr(0, size / 2), records.back().substr(size / 2));
  }
  SegmentReader reader(segment);
  std::string_view record;
  for (const std::string& expected : records) {
    ASSERT_TRUE(reader.next(&record));
    EXPECT_EQ(record, expected);
    EXPECT_EQ(static_cast<size_t>(record.data() - segment.data()) % 8, 0u) << "a record begins 8 bytes into its frame";
  }
  EXPECT_FALSE(reader.next(&record));
  EXPECT_FALSE(reader.malformed());
}

TEST(LogSegment, ABrokenFrameIsMalformed) {
  std::string segment;
  append_frame(&segment, "abc", "de");  // 8 bytes of header, 5 of record, 3 of padding
  ASSERT_EQ(segment.size(), 16u);
  const auto malformed = [](const std::string& bytes) {
    SegmentReader reader(bytes);
    std::string_view record;
    while (reader.next(&record)) {
    }
    return reader.malformed();
  };
  EXPECT_FALSE(malformed(segment));
  EXPECT_FALSE(malformed(""));
  for (size_t size = 1; size < segment.size(); ++size) EXPECT_TRUE(malformed(segment.substr(0, size))) << "cut at " << size;
  for (size_t at : {size_t{4}, size_t{7}, size_t{13}, size_t{15}}) {  // reserved and padding bytes
    std::string bad = segment;
    bad[at] = 1;
    EXPECT_TRUE(malformed(bad)) << "byte " << at;
  }
  std::string longer = segment;
  longer[0] = 9;  // a record of 9 bytes would need 8 + 16
  EXPECT_TRUE(malformed(longer));
}

// ---- compressed entries (format 5) ---------------------------------------------------

// A segment such as a batch of usage events makes: the same names again and again,
// and an id that differs in each.
std::string repetitive_segment(size_t records) {
  std::string segment;
  for (size_t i = 0; i < records; ++i) {
    append_frame(&segment, encode_record(fmt::format("org acme, user user-{:04}, tool chat, model small, usage id {:016x}", i % 50, i * 0x9e3779b97f4a7c15)), {});
  }
  return segment;
}

TEST(EntryCompression, ASegmentIsStoredSmallerAndExpandsToItsBytes) {
  for (size_t records : {size_t{8}, size_t{700}, size_t{5000}}) {
    const std::string segment = repetitive_segment(records);
    std::string buffer = "left over from an earlier, longer value, which must not show through";
    buffer.resize(200000, 'x');
    const std::string_view stored = compress_entry(segment, &buffer);
    ASSERT_TRUE(is_compressed_entry(stored)) << records;
    EXPECT_LT(stored.size(), segment.size() / 2) << records;
    uint32_t declared;
    std::memcpy(&declared, stored.data() + 8, sizeof declared);
    EXPECT_EQ(declared, segment.size());
    std::string expanded_buffer;
    std::string_view expanded;
    ASSERT_TRUE(expand_entry(stored, &expanded_buffer, &expanded)) << records;
    EXPECT_EQ(expanded, segment) << records;
  }
}

TEST(EntryCompression, WhatDoesNotShrinkOrIsTooSmallIsStoredAsItIs) {
  std::mt19937_64 random(11);
  std::string noise(70000, '\0');
  for (char& c : noise) c = static_cast<char>(random() | 1);  // never 8 zero bytes at the front
  const std::string small = repetitive_segment(40).substr(0, kCompressedValueBytesMin - 1);
  ASSERT_EQ(small.size(), kCompressedValueBytesMin - 1);
  for (const std::string& value : {noise, small, std::string("x")}) {
    std::string buffer;
    const std::string_view stored = compress_entry(value, &buffer);
    EXPECT_EQ(static_cast<const void*>(stored.data()), static_cast<const void*>(value.data())) << value.size();
    EXPECT_EQ(stored.size(), value.size());
    std::string_view expanded;
    ASSERT_TRUE(expand_entry(stored, &buffer, &expanded));
    EXPECT_EQ(static_cast<const void*>(expanded.data()), static_cast<const void*>(value.data())) << "read in place";
  }
  // Exactly the smallest size compressed.
  const std::string least = repetitive_segment(40).substr(0, kCompressedValueBytesMin);
  std::string buffer;
  EXPECT_TRUE(is_compressed_entry(compress_entry(least, &buffer)));
}

TEST(EntryCompression, ADamagedValueDoesNotExpand) {
  const std::string segment = repetitive_segment(300);
  std::string buffer;
  const std::string stored(compress_entry(segment, &buffer));
  ASSERT_TRUE(is_compressed_entry(stored));
  std::string out;
  std::string_view value;
  // Every truncation of the block.
  for (size_t size = 8; size < stored.size(); size += size < 64 ? 1 : 61) {
    EXPECT_FALSE(expand_entry(std::string_view(stored).substr(0, size), &out, &value)) << "cut at " << size;
  }
  // A declared size other than the block's.
  for (int64_t delta : {-1, 1, 4096}) {
    std::string wrong = stored;
    const auto size = static_cast<uint32_t>(static_cast<int64_t>(segment.size()) + delta);
    std::memcpy(wrong.data() + 8, &size, sizeof size);
    EXPECT_FALSE(expand_entry(wrong, &out, &value)) << delta;
  }
  // Past the limit: refused before anything is allocated for it.
  std::string huge = stored;
  const uint32_t too_large = kCompressedValueBytesMax + 1;
  std::memcpy(huge.data() + 8, &too_large, sizeof too_large);
  out = std::string();
  EXPECT_FALSE(expand_entry(huge, &out, &value));
  EXPECT_LT(out.capacity(), size_t{1} << 20);
  // Bytes after the block.
  EXPECT_FALSE(expand_entry(stored + "extra", &out, &value));
}

// ---- big-endian keys -----------------------------------------------------------------

TEST(Be64, RoundTripsAndSortsNumerically) {
  const std::vector<uint64_t> values = {0, 1, 255, 256, 65535, 1ull << 32, (1ull << 56) + 7, ~0ull};
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string key = be64(values[i]);
    ASSERT_EQ(key.size(), 8u);
    EXPECT_EQ(read_be64(key), values[i]);
    if (i > 0) {
      EXPECT_LT(be64(values[i - 1]), key);
    }
  }
  EXPECT_EQ(be64(0x0102030405060708ull), std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
}

// ---- chain hashing -------------------------------------------------------------------

Sha256 chain_hash(const Sha256& previous, const std::vector<std::pair<uint64_t, std::string>>& records) {
  ChainHasher hasher(previous);
  for (const auto& [seq, record] : records) hasher.add(seq, record);
  return hasher.finish();
}

// log.h: SHA-256(previous || for each record: seq (8 bytes BE) || length (4 bytes BE) || record).
TEST(ChainHasher, HashesTheDocumentedLayout) {
  Sha256 previous{};
  previous[0] = 0xab;
  previous[31] = 0xcd;
  std::string bytes(reinterpret_cast<const char*>(previous.data()), previous.size());
  const std::vector<std::pair<uint64_t, std::string>> records = {{7, "first"}, {8, std::string(300, 'r')}};
  for (const auto& [seq, record] : records) {
    bytes += be64(seq);
    const auto length = static_cast<uint32_t>(record.size());
    bytes += static_cast<char>(length >> 24);
    bytes += static_cast<char>(length >> 16);
    bytes += static_cast<char>(length >> 8);
    bytes += static_cast<char>(length);
    bytes += record;
  }
  EXPECT_EQ(chain_hash(previous, records), sha256(bytes));
}

TEST(ChainHasher, AnyChangeToHistoryChangesTheHash) {
  const Sha256 zero{};
  const std::vector<std::pair<uint64_t, std::string>> original = {{1, "a"}, {2, "bb"}, {3, "ccc"}};
  const Sha256 hash = chain_hash(zero, original);
  EXPECT_EQ(hash, chain_hash(zero, original)) << "hashing is deterministic";

  auto changed = original;
  changed[1].second = "bB";
  EXPECT_NE(chain_hash(zero, changed), hash) << "a changed record";
  changed = original;
  changed[1].first = 5;
  EXPECT_NE(chain_hash(zero, changed), hash) << "a changed sequence number";
  changed = original;
  std::swap(changed[0], changed[2]);
  EXPECT_NE(chain_hash(zero, changed), hash) << "reordered records";
  changed = original;
  changed.pop_back();
  EXPECT_NE(chain_hash(zero, changed), hash) << "a removed record";
  // Moving bytes across a record boundary keeps the concatenation but not the hash.
  changed = original;
  changed[0].second = "ab";
  changed[1].second = "b";
  EXPECT_NE(chain_hash(zero, changed), hash) << "a shifted record boundary";
  Sha256 other_previous{};
  other_previous[5] = 1;
  EXPECT_NE(chain_hash(other_previous, original), hash) << "a different previous batch";
}

TEST(Sha256, MatchesAKnownDigest) {
  EXPECT_EQ(to_hex(sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(to_hex(sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

// ---- the store -----------------------------------------------------------------------

std::unique_ptr<Store> open_store(const std::string& path, rocksdb::Env* env = nullptr) {
  StoreOptions options;
  options.path = path;
  options.env = env;
  std::unique_ptr<Store> store;
  const Status status = Store::open(options, &store);
  EXPECT_TRUE(status.ok()) << status.message;
  return store;
}

// Appends `envelopes` as the next records, plus the given state rows, in one commit.
Status commit(Store& store, const std::vector<std::string>& envelopes, const std::map<std::string, std::string>& rows = {}) {
  std::unique_ptr<LogBatch> batch = store.begin_batch();
  uint64_t seq = store.last_seq();
  for (const std::string& envelope : envelopes) batch->append(++seq, envelope);
  for (const auto& [key, value] : rows) batch->put(key, value);
  return store.commit(batch.get());
}

// The store's format row.
std::string stored_format(const Store& store) {
  std::string format;
  bool found = false;
  EXPECT_TRUE(store.get_row("meta/format", &format, &found).ok());
  EXPECT_TRUE(found);
  return format;
}

std::vector<std::pair<uint64_t, std::string>> read_all(const Store& store) {
  std::vector<std::pair<uint64_t, std::string>> records;
  const Status status = store.read_log(1, store.last_seq(), [&](uint64_t seq, std::string_view envelope) {
    records.emplace_back(seq, std::string(envelope));
    return true;
  });
  EXPECT_TRUE(status.ok()) << status.message;
  return records;
}

// The sequence numbers read_log(from, to) hands out, into `seen`, and its status.
Status read_seqs(const Store& store, uint64_t from, uint64_t to, std::vector<uint64_t>* seen) {
  return store.read_log(from, to, [seen](uint64_t seq, std::string_view) {
    seen->push_back(seq);
    return true;
  });
}

struct ChainRow {
  uint64_t first, last;
  Sha256 hash;
};

std::vector<ChainRow> read_chain(const Store& store) {
  std::vector<ChainRow> rows;
  const Status status = store.read_chain([&](uint64_t first, uint64_t last, const Sha256& hash) {
    rows.push_back({first, last, hash});
    return true;
  });
  EXPECT_TRUE(status.ok()) << status.message;
  return rows;
}

// The hash a batch of envelopes (appended from first_seq on) must have.
Sha256 expected_hash(const Sha256& previous, uint64_t first_seq, const std::vector<std::string>& envelopes) {
  ChainHasher hasher(previous);
  for (const std::string& envelope : envelopes) hasher.add(first_seq++, encode_record(envelope));
  return hasher.finish();
}

TEST(Store, AFreshStoreIsEmptyAndChainsFromZero) {
  TempDir dir;
  auto store = open_store(dir.sub("db"));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->last_seq(), 0u);
  EXPECT_EQ(store->head_hash(), Sha256{});
  EXPECT_TRUE(read_all(*store).empty());
  EXPECT_TRUE(read_chain(*store).empty());
  EXPECT_FALSE(store->failed());
}

TEST(Store, OpeningAMissingStoreWithoutCreateFails) {
  TempDir dir;
  StoreOptions options;
  options.path = dir.sub("missing");
  options.create_if_missing = false;
  std::unique_ptr<Store> store;
  const Status status = Store::open(options, &store);
  EXPECT_EQ(status.code, ErrorCode::kStorageError);
  EXPECT_EQ(store, nullptr);
}

TEST(Store, AGroupCommitWritesRecordsRowsAndOneChainRow) {
  TempDir dir;
  auto store = open_store(dir.sub("db"));
  const std::vector<std::string> first = {"one", "two", "three"};
  ASSERT_TRUE(commit(*store, first, {{"orgs/x", "row-x"}, {"checkpoint/orgs", be64(3)}}).ok());
  EXPECT_EQ(store->last_seq(), 3u);
  const Sha256 first_hash = expected_hash(Sha256{}, 1, first);
  EXPECT_EQ(store->head_hash(), first_hash);

  const std::vector<std::string> second = {"four", std::string(5000, '5')};
  ASSERT_TRUE(commit(*store, second).ok());
  EXPECT_EQ(store->last_seq(), 5u);
  const Sha256 second_hash = expected_hash(first_hash, 4, second);
  EXPECT_EQ(store->head_hash(), second_hash);

  const auto records = read_all(*store);
  ASSERT_EQ(records.size(), 5u);
  const std::vector<std::string> all = {"one", "two", "three", "four", std::string(5000, '5')};
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i].first, i + 1);
    EXPECT_EQ(records[i].second, all[i]);
  }
  const auto chain = read_chain(*store);
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_EQ(chain[0].first, 1u);
  EXPECT_EQ(chain[0].last, 3u);
  EXPECT_EQ(chain[0].hash, first_hash);
  EXPECT_EQ(chain[1].first, 4u);
  EXPECT_EQ(chain[1].last, 5u);
  EXPECT_EQ(chain[1].hash, second_hash);

  std::string value;
  bool found = false;
  ASSERT_TRUE(store->get_row("orgs/x", &value, &found).ok());
  EXPECT_TRUE(found);
  EXPECT_EQ(value, "row-x");
  ASSERT_TRUE(store->get_row("orgs/none", &value, &found).ok());
  EXPECT_FALSE(found);
}

TEST(Store, ReadLogVisitsARangeAndStopsWhenAsked) {
  TempDir dir;
  auto store = open_store(dir.sub("db"));
  ASSERT_TRUE(commit(*store, {"1", "2", "3"}).ok());
  ASSERT_TRUE(commit(*store, {"4", "5", "6", "7"}).ok());
  std::vector<uint64_t> seen;
  ASSERT_TRUE(store->read_log(3, 5, [&](uint64_t seq, std::string_view envelope) {
    EXPECT_EQ(envelope, std::to_string(seq));
    seen.push_back(seq);
    return true;
  }).ok());
  EXPECT_EQ(seen, (std::vector<uint64_t>{3, 4, 5}));
  seen.clear();
  ASSERT_TRUE(store->read_log(2, 100, [&](uint64_t seq, std::string_view) {
    seen.push_back(seq);
    return seq < 4;
  }).ok());
  EXPECT_EQ(seen, (std::vector<uint64_t>{2, 3, 4}));
  seen.clear();
  ASSERT_TRUE(store->read_log(6, 5, [&](uint64_t seq, std::string_view) {
    seen.push_back(seq);
    return true;
  }).ok());
  EXPECT_TRUE(seen.empty());
}

TEST(Store, ASmallBatchIsOneLogEntry) {
  TempDir dir;
  {
    auto store = open_store(dir.sub("db"));
    ASSERT_TRUE(commit(*store, {"1", "2", "3"}).ok());
    ASSERT_TRUE(commit(*store, {"4"}).ok());
    ASSERT_TRUE(commit(*store, {"5", "6"}).ok());
  }
  EXPECT_EQ(RawDb(dir.sub("db")).log_entry_count(), 3u);
}

// A larger batch is cut into segments: a new one begins before the record that finds
// the current one holding kSegmentBytesTarget bytes or more (each record framed: an
// 8-byte header, its 8-byte checksum and the envelope, padded to a multiple of 8).
TEST(Store, ABatchIsCutIntoSegmentsOfAboutSixtyFourKiB) {
  TempDir dir;
  std::vector<std::string> envelopes;
  for (int i = 0; i < 100; ++i) envelopes.push_back(std::string(1000 + 37 * i, static_cast<char>('a' + i % 26)));
  {
    auto store = open_store(dir.sub("db"));
    ASSERT_TRUE(commit(*store, envelopes).ok());
    ASSERT_TRUE(commit(*store, {"last"}).ok());
    const auto records = read_all(*store);
    ASSERT_EQ(records.size(), envelopes.size() + 1);
    for (size_t i = 0; i < envelopes.size(); ++i) EXPECT_EQ(records[i], std::make_pair(uint64_t{i + 1}, envelopes[i]));
  }
  // The segments the rule gives, as (first seq, records).
  std::vector<std::pair<uint64_t, size_t>> expected;
  size_t bytes = 0;
  for (size_t i = 0; i < envelopes.size(); ++i) {
    if (expected.empty() || bytes >= kSegmentBytesTarget) {
      expected.emplace_back(i + 1, 0);
      bytes = 0;
    }
    ++expected.back().second;
    const size_t record = kRecordChecksumBytes + envelopes[i].size();
    bytes += kFrameHeaderBytes + (record + 7) / 8 * 8;
  }
  expected.emplace_back(envelopes.size() + 1, 1);  // the second batch
  ASSERT_EQ(expected.size(), 6u);  // the batch (100 records, 278 KiB of frames) makes five
  RawDb raw(dir.sub("db"));
  const auto entries = raw.log_entries();
  ASSERT_EQ(entries.size(), expected.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(entries[i].first, expected[i].first) << "segment " << i;
    EXPECT_EQ(entries[i].records.size(), expected[i].second) << "segment " << i;
    EXPECT_EQ(entries[i].key, segment_key(expected[i].first, expected[i].first + expected[i].second - 1)) << "segment " << i;
  }
}

// A store of format 2 kept a log entry per record. It opens as format 5, reads those
// entries as they are, and adds its new batches as segments after them; reads that
// start in either kind of entry, or in the middle of a segment, see every record once.
TEST(Store, AFormat2LogIsReadAsItIsAndGrowsInSegments) {
  TempDir dir;
  Sha256 head;
  {
    auto store = open_store(dir.sub("db"));
    ASSERT_TRUE(commit(*store, {"1", "2", "3"}).ok());
    ASSERT_TRUE(commit(*store, {"4", "5"}).ok());
    head = store->head_hash();
  }
  {
    RawDb raw(dir.sub("db"));
    raw.unsegment();
    raw.put(RawDb::kState, "meta/format", "tally-log-2");
    EXPECT_EQ(raw.log_entry_count(), 5u);
  }
  {
    auto store = open_store(dir.sub("db"));
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->last_seq(), 5u);
    EXPECT_EQ(store->head_hash(), head);
    ASSERT_TRUE(commit(*store, {"6", "7", "8"}).ok());
    EXPECT_EQ(stored_format(*store), "tally-log-5");
  }
  EXPECT_EQ(RawDb(dir.sub("db")).log_entry_count(), 6u);
  auto store = open_store(dir.sub("db"));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->last_seq(), 8u);
  for (uint64_t from = 1; from <= 9; ++from) {
    for (uint64_t to = from; to <= 9; ++to) {
      std::vector<uint64_t> seen;
      ASSERT_TRUE(store->read_log(from, to, [&](uint64_t seq, std::string_view envelope) {
        EXPECT_EQ(envelope, std::to_string(seq));
        seen.push_back(seq);
        return true;
      }).ok());
      std::vector<uint64_t> expected;
      for (uint64_t seq = from; seq <= std::min<uint64_t>(to, 8); ++seq) expected.push_back(seq);
      EXPECT_EQ(seen, expected) << from << ".." << to;
    }
  }
}

TEST(Store, ASegmentWithBytesPastItsLastRecordIsReported) {
  TempDir dir;
  {
    auto store = open_store(dir.sub("db"));
    ASSERT_TRUE(commit(*store, {"1", "2"}).ok());
    ASSERT_TRUE(commit(*store, {"3"}).ok());
  }
  {
    RawDb raw(dir.sub("db"));
    std::string value = raw.get(RawDb::kLog, segment_key(1, 2));
    append_frame(&value, encode_record("stowaway"), {});
    raw.put(RawDb::kLog, segment_key(1, 2), value);
  }
  auto store = open_store(dir.sub("db"));
  ASSERT_NE(store, nullptr);
  std::vector<uint64_t> seen;
  const Status status = read_seqs(*store, 1, 3, &seen);
  EXPECT_EQ(status.code, ErrorCode::kStorageError);
  EXPECT_NE(status.message.find("records 1 to 2 has bytes past its last record"), std::string::npos) << status.message;
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2}));
}

TEST(Store, ASegmentShorterThanItsKeyIsReported) {
  TempDir dir;
  {
    auto store = open_store(dir.sub("db"));
    ASSERT_TRUE(commit(*store, {"1", "2", "3"}).ok());
  }
  {
    RawDb raw(dir.sub("db"));
    std::string value;
    append_frame(&value, encode_record("1"), {});
    append_frame(&value, encode_record("2"), {});
    raw.put(RawDb::kLog, segment_key(1, 3), value);  // record 3 is gone, the key still names it
  }
  auto store = open_store(dir.sub("db"));
  ASSERT_NE(store, nullptr);
  const Status status = store->read_log(1, 3, [](uint64_t, std::string_view) { return true; });
  EXPECT_EQ(status.code, ErrorCode::kStorageError);
  EXPECT_NE(status.message.find("log record 3 is missing from its segment"), std::string::npos) << status.message;
}

TEST(Store, ReopeningFindsTheHeadAndItsHash) {
  TempDir dir;
  Sha256 head;
  {
    auto store = open_store(dir.sub("db"));
    ASSERT_TRUE(commit(*store, {"a", "b"}).ok());
    ASSERT_TRUE(commit(*store, {"c"}).ok());
    head = store->head_hash();
  }
  auto store = open_store(dir.sub("db"));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->last_seq(), 3u);
  EXPECT_EQ(store->head_hash(), head);
  // The next batch chains from the recovered head.
  ASSERT_TRUE(commit(*store, {"d"}).ok());
  EXPECT_EQ(store->head_hash(), expected_hash(head, 4, {"d"}));
  EXPECT_EQ(read_all(*store).size(), 4u);
}

// A clean close writes the memtables out: the WAL files left hold nothing, so the next
// open replays nothing, and still finds every record.
TEST(Store, ACleanCloseLeavesNoWalToReplay) {
  TempDir dir;
  const auto wal_bytes = [&] {
    uint64_t bytes = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir.sub("db"))) {
      if (entry.path().extension() == ".log") bytes += entry.file_size();
    }
    return bytes;
  };
  {
    auto store = open_store(dir.sub("db"));
    ASSERT_TRUE(commit(*store, {"a", "b"}, {{"orgs/x", "row-x"}}).ok());
    ASSERT_TRUE(commit(*store, {"c"}).ok());
    ASSERT_GT(wal_bytes(), 0u) << "the commits are in the WAL while the store is open";
  }
  EXPECT_EQ(wal_bytes(), 0u);
  auto store = open_store(dir.sub("db"));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->last_seq(), 3u);
  EXPECT_EQ(read_all(*store).size(), 3u);
  std::string value;
  bool found = false;
  ASSERT_TRUE(store->get_row("orgs/x", &value, &found).ok());
  EXPECT_TRUE(found);
  EXPECT_EQ(value, "row-x");
}

// RocksDB checks each WAL record's CRC32C as it recovers, with the CRC32C of
// engine/crc32c.h. Copies of a store taken while it is open (as a power cut would leave
// it, every batch synced) recover every batch; in a copy whose WAL has one byte of the
// last batch flipped, recovery stops before that batch and keeps the two before it.
TEST(Store, RecoveryChecksEveryWalRecord) {
  TempDir dir;
  auto store = open_store(dir.sub("db"));
  ASSERT_TRUE(commit(*store, {"first batch"}).ok());
  ASSERT_TRUE(commit(*store, {"second batch"}).ok());
  ASSERT_TRUE(commit(*store, {"third batch, the last"}).ok());
  std::filesystem::copy(dir.sub("db"), dir.sub("intact"));
  std::filesystem::copy(dir.sub("db"), dir.sub("flipped"));
  int flipped = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.sub("flipped"))) {
    if (entry.path().extension() != ".log") continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    in.close();
    const size_t at = bytes.find("third batch, the last");
    if (at == std::string::npos) continue;
    bytes[at + 6] = static_cast<char>(bytes[at + 6] ^ 0x01);
    std::ofstream(entry.path(), std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ++flipped;
  }
  ASSERT_EQ(flipped, 1) << "the third batch is in the WAL, once";
  store.reset();

  auto intact = open_store(dir.sub("intact"));
  ASSERT_NE(intact, nullptr);
  EXPECT_EQ(read_all(*intact),
            (std::vector<std::pair<uint64_t, std::string>>{{1, "first batch"}, {2, "second batch"}, {3, "third batch, the last"}}));
  auto damaged = open_store(dir.sub("flipped"));
  ASSERT_NE(damaged, nullptr);
  EXPECT_EQ(read_all(*damaged), (std::vector<std::pair<uint64_t, std::string>>{{1, "first batch"}, {2, "second batch"}}));
}

TEST(Store, ABatchWithoutRecordsWritesRowsButNoChainRow) {
  TempDir dir;
  auto store = open_store(dir.sub("db"));
  ASSERT_TRUE(commit(*store, {"a"}).ok());
  const Sha256 head = store->head_hash();
  ASSERT_TRUE(commit(*store, {}, {{"orgs/y", "v"}}).ok());
  EXPECT_EQ(store->last_seq(), 1u);
  EXPECT_EQ(store->head_hash(), head);
  EXPECT_EQ(read_chain(*store).size(), 1u);
  std::string value;
  bool found = false;
  ASSERT_TRUE(store->get_row("orgs/y", &value, &found).ok());
  EXPECT_TRUE(found);
}

TEST(Store, ErasedRowsAreGone) {
  TempDir dir;
  auto store = open_store(dir.sub("db"));
  ASSERT_TRUE(commit(*store, {"a"}, {{"orgs/y", "v"}}).ok());
  std::unique_ptr<LogBatch> batch = store->begin_batch();
  batch->erase("orgs/y");
  ASSERT_TRUE(store->commit(batch.get()).ok());
  std::string value;
  bool found = true;
  ASSERT_TRUE(store->get_row("orgs/y", &value, &found).ok());
  EXPECT_FALSE(found);
}

TEST(Store, ReadRowsVisitsExactlyThePrefixInKeyOrder) {
  TempDir dir;
  auto store = open_store(dir.sub("db"));
  ASSERT_TRUE(commit(*store, {"a"}, {{"orgs/b", "2"}, {"orgs/a", "1"}, {"orgt/c", "x"}, {"org", "y"}}).ok());
  std::vector<std::string> keys;
  ASSERT_TRUE(store->read_rows("orgs/", [&](std::string_view key, std::string_view) { keys.emplace_back(key); }).ok());
  EXPECT_EQ(keys, (std::vector<std::string>{"orgs/a", "orgs/b"}));
}

TEST(Store, ReadRowsOfSeveralPrefixesVisitsEachInTheOrderGiven) {
  TempDir dir;
  auto store = open_store(dir.sub("db"));
  ASSERT_TRUE(commit(*store, {"a"}, {{"orgs/b", "2"}, {"orgs/a", "1"}, {"usage/z", "9"}, {"checkpoint/orgs", "c"}, {"org", "y"}}).ok());
  const std::string_view prefixes[] = {"usage/", "orgs/", "none/", "checkpoint/orgs"};
  std::vector<std::string> seen;
  ASSERT_TRUE(store->read_rows(prefixes, [&](size_t prefix, std::string_view key, std::string_view value) {
                      seen.push_back(fmt::format("{}:{}={}", prefix, key, value));
                    }).ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"0:usage/z=9", "1:orgs/a=1", "1:orgs/b=2", "3:checkpoint/orgs=c"}));
}

TEST(Store, ReplaceRowsReplacesEveryProjectionRowButKeepsMetaRows) {
  TempDir dir;
  auto store = open_store(dir.sub("db"));
  ASSERT_TRUE(commit(*store, {"a"}, {{"orgs/old", "1"}, {"checkpoint/orgs", be64(1)}}).ok());
  ASSERT_TRUE(store->replace_rows([](RowSink* sink) { sink->put("orgs/new", "2"); }).ok());
  std::vector<std::string> keys;
  ASSERT_TRUE(store->read_rows("", [&](std::string_view key, std::string_view) { keys.emplace_back(key); }).ok());
  EXPECT_EQ(keys, (std::vector<std::string>{"meta/format", "orgs/new"}));
  EXPECT_EQ(store->last_seq(), 1u);
  EXPECT_EQ(read_all(*store).size(), 1u) << "replacing rows never touches the log";
}

struct HistoryRow {
  uint64_t seq;
  std::string key, value;
};

// Commits a batch of `events` records from the store's next sequence number, with
// these history rows, put in the order given.
Status commit_history(Store& store, size_t events, const std::vector<HistoryRow>& rows) {
  std::unique_ptr<LogBatch> batch = store.begin_batch();
  uint64_t seq = store.last_seq();
  for (size_t i = 0; i < events; ++i) batch->append(++seq, "e");
  for (const HistoryRow& row : rows) batch->put_history(row.seq, row.key, row.value);
  return store.commit(batch.get());
}

TEST(Store, HistoryRowsReadBackInSequenceOrderApartFromTheStateRows) {
  TempDir dir;
  auto store = open_store(dir.sub("db"));
  // Put out of order, and one key under two sequence numbers: two rows.
  ASSERT_TRUE(commit_history(*store, 2, {{2, "statements/x", "late"}, {1, "statements/y", "first"}, {1, "balances/u/x", "usage"}, {300, "statements/x", "far"}}).ok());
  store.reset();
  store = open_store(dir.sub("db"));
  EXPECT_EQ(stored_history(*store),
            (std::vector<std::string>{"1:balances/u/x=usage", "1:statements/y=first", "2:statements/x=late", "300:statements/x=far"}));
  std::vector<std::string> state;
  ASSERT_TRUE(store->read_rows("", [&](std::string_view key, std::string_view) { state.emplace_back(key); }).ok());
  EXPECT_EQ(state, std::vector<std::string>{"meta/format"}) << "history rows are not state rows";
  store.reset();
  // The rows of the batch's own events are in a pack under the first one's sequence
  // number; a row of another event is an entry of its own, as in format 3.
  RawDb raw(dir.sub("db"));
  std::vector<std::string> keys;
  raw.scan(RawDb::kHistory, [&](std::string_view key, std::string_view) { keys.emplace_back(key); });
  EXPECT_EQ(keys, (std::vector<std::string>{history_pack_key(1), history_key(300, "statements/x")}));
}

// A batch's history rows are put one projection's after another's, each in sequence
// order. They are stored sorted by (seq, key) in packs of about
// kHistoryPackBytesTarget, cut only between two sequence numbers.
TEST(Store, HistoryRowsArePackedInOrderAndCutBetweenSequenceNumbers) {
  TempDir dir;
  auto store = open_store(dir.sub("db"));
  std::unique_ptr<LogBatch> batch = store->begin_batch();
  constexpr uint64_t kEvents = 3000;
  for (uint64_t seq = 1; seq <= kEvents; ++seq) batch->append(seq, "e");
  const std::string value(40, 'v');
  for (uint64_t seq = 1; seq <= kEvents; ++seq) batch->put_history(seq, fmt::format("statements/{}", seq % 7), value);
  for (uint64_t seq = 1; seq <= kEvents; ++seq) batch->put_history(seq, "balances/u/" + std::to_string(seq), value);
  for (uint64_t seq = 1; seq <= kEvents; seq += 2) batch->put_history(seq, "statements/~", value);  // a third for some
  ASSERT_TRUE(store->commit(batch.get()).ok());
  store.reset();
  store = open_store(dir.sub("db"));
  std::vector<std::string> expected;
  for (uint64_t seq = 1; seq <= kEvents; ++seq) {
    expected.push_back(fmt::format("{}:balances/u/{}={}", seq, seq, value));
    expected.push_back(fmt::format("{}:statements/{}={}", seq, seq % 7, value));
    if (seq % 2 == 1) expected.push_back(fmt::format("{}:statements/~={}", seq, value));
  }
  EXPECT_EQ(stored_history(*store), expected);
  store.reset();

  RawDb raw(dir.sub("db"));
  struct Pack {
    uint64_t key_seq, first, last;
    size_t bytes;
  };
  std::vector<Pack> packs;
  raw.scan(RawDb::kHistory, [&](std::string_view key, std::string_view value) {
    ASSERT_TRUE(is_history_pack_key(key));
    std::string buffer;
    std::string_view expanded;
    ASSERT_TRUE(expand_entry(value, &buffer, &expanded));
    HistoryPackReader reader(expanded);
    uint64_t seq = 0, first = 0;
    std::string_view k, v;
    while (reader.next(&seq, &k, &v)) first = first == 0 ? seq : first;
    EXPECT_FALSE(reader.malformed());
    packs.push_back({read_be64(key), first, seq, expanded.size()});
  });
  const size_t rows = expected.size();
  ASSERT_GE(packs.size(), 3u) << "about " << rows * 60 / kHistoryPackBytesTarget << " packs' worth";
  for (size_t i = 0; i < packs.size(); ++i) {
    EXPECT_EQ(packs[i].key_seq, packs[i].first) << "pack " << i;
    if (i + 1 < packs.size()) {
      EXPECT_LT(packs[i].last, packs[i + 1].first) << "an event's rows are never split between packs";
      EXPECT_GE(packs[i].bytes, kHistoryPackBytesTarget) << "only a full pack is cut";
      EXPECT_LT(packs[i].bytes, kHistoryPackBytesTarget + 300) << "cut at the first event boundary once full";
    }
  }
}

// Of two rows put under one seq and key in a batch, the later one is kept, as it was
// when each row was an entry of its own.
TEST(Store, AHistoryRowPutTwiceInABatchKeepsTheLaterValue) {
  TempDir dir;
  auto store = open_store(dir.sub("db"));
  ASSERT_TRUE(commit_history(*store, 2, {{2, "statements/x", "first"}, {1, "statements/x", "one"}, {2, "statements/x", "second"}}).ok());
  EXPECT_EQ(stored_history(*store), (std::vector<std::string>{"1:statements/x=one", "2:statements/x=second"}));
}

// A row of an earlier batch's event, put again (an open replaying past the rows, a
// repair), is an entry of its own; read_history gives it in place of the packed row it
// repeats, and in (seq, key) order among the pack's rows when it adds one.
TEST(Store, AHistoryRowPutAgainLaterReplacesThePackedOne) {
  TempDir dir;
  auto store = open_store(dir.sub("db"));
  ASSERT_TRUE(commit_history(*store, 3, {{1, "statements/b", "1b"}, {2, "statements/b", "2b"}, {3, "statements/b", "3b"}}).ok());
  ASSERT_TRUE(commit_history(*store, 1,
                             {{4, "statements/b", "4b"},
                              {2, "statements/b", "2b again"},  // repeats a packed row
                              {1, "statements/a", "1a"},        // before the pack's first row
                              {3, "statements/c", "3c"}})       // after the pack's last row
                  .ok());
  store.reset();
  store = open_store(dir.sub("db"));
  EXPECT_EQ(stored_history(*store), (std::vector<std::string>{"1:statements/a=1a", "1:statements/b=1b", "2:statements/b=2b again",
                                                            "3:statements/b=3b", "3:statements/c=3c", "4:statements/b=4b"}));
  store.reset();
  std::vector<std::string> keys;
  RawDb(dir.sub("db")).scan(RawDb::kHistory, [&](std::string_view key, std::string_view) { keys.emplace_back(key); });
  EXPECT_EQ(keys, (std::vector<std::string>{history_pack_key(1), history_key(1, "statements/a"), history_key(2, "statements/b"),
                                            history_key(3, "statements/c"), history_pack_key(4)}));
}

TEST(HistoryPackReader, ReadsBackWhatWasAppendedAndRejectsEveryTruncation) {
  std::string pack;
  append_history_row(&pack, 7, "statements/a", "value one");
  append_history_row(&pack, 7, "statements/b", "");
  append_history_row(&pack, uint64_t{1} << 40, "", std::string(300, '\0'));
  std::vector<std::string> rows;
  HistoryPackReader reader(pack);
  uint64_t seq = 0;
  std::string_view key, value;
  while (reader.next(&seq, &key, &value)) rows.push_back(fmt::format("{}:{}={}", seq, key, value.size()));
  EXPECT_FALSE(reader.malformed());
  EXPECT_EQ(rows, (std::vector<std::string>{"7:statements/a=9", "7:statements/b=0", "1099511627776:=300"}));
  // Every shorter prefix ends inside a row (the three rows end at three lengths only).
  const size_t ends[] = {12 + 12 + 4 + 9, 12 + 12 + 4 + 9 + 12 + 12 + 4};
  for (size_t size = 0; size < pack.size(); ++size) {
    HistoryPackReader cut(std::string_view(pack).substr(0, size));
    size_t read = 0;
    while (cut.next(&seq, &key, &value)) ++read;
    const bool at_end = size == 0 || size == ends[0] || size == ends[1];
    EXPECT_EQ(cut.malformed(), !at_end) << "at " << size << " bytes";
    EXPECT_EQ(read, size < ends[0] ? 0u : size < ends[1] ? 1u : 2u) << "at " << size << " bytes";
  }
  // A length of nearly 4 GiB is refused, not added to a position.
  std::string huge = be64(1);
  huge += std::string("\xff\xff\xff\xff", 4);
  huge += "key";
  HistoryPackReader wrapped(huge);
  EXPECT_FALSE(wrapped.next(&seq, &key, &value));
  EXPECT_TRUE(wrapped.malformed());
}

// A pack that does not decode, or whose rows do not begin at the seq its key names, is
// a storage error that names it.
TEST(Store, AMalformedOrMisplacedHistoryPackIsAStorageError) {
  TempDir dir;
  open_store(dir.sub("db"));
  std::string wrong_seq;
  append_history_row(&wrong_seq, 8, "statements/x", "v");
  for (const auto& [key, value, message] : {std::tuple{history_pack_key(7), std::string("short"), "malformed"},
                                            std::tuple{history_pack_key(7), std::string(), "malformed"},
                                            std::tuple{history_pack_key(7), wrong_seq, "out of order"}}) {
    RawDb(dir.sub("db")).put(RawDb::kHistory, key, value);
    auto store = open_store(dir.sub("db"));
    const Status status = store->read_history([](uint64_t, std::string_view, std::string_view) {});
    EXPECT_EQ(status.code, ErrorCode::kStorageError) << message;
    EXPECT_NE(status.message.find("pack at sequence 7"), std::string::npos) << status.message;
    EXPECT_NE(status.message.find(message), std::string::npos) << status.message;
  }
}

// A batch's segments and packs are stored compressed, and read back as they were put.
TEST(Store, SegmentsAndPacksOfABatchAreStoredCompressed) {
  TempDir dir;
  std::vector<std::string> envelopes;
  for (int i = 0; i < 2000; ++i) envelopes.push_back(fmt::format("usage {} of user-{:03} with chat/small", i, i % 40));
  auto store = open_store(dir.sub("db"));
  std::unique_ptr<LogBatch> batch = store->begin_batch();
  for (size_t i = 0; i < envelopes.size(); ++i) batch->append(i + 1, envelopes[i]);
  for (size_t i = 0; i < envelopes.size(); ++i) batch->put_history(i + 1, fmt::format("statements/w{}", i % 3), "a statement entry of 40 bytes or so....");
  ASSERT_TRUE(store->commit(batch.get()).ok());
  store.reset();
  {
    RawDb raw(dir.sub("db"));
    EXPECT_EQ(raw.compressed_entry_count(RawDb::kLog), raw.log_entry_count());
    EXPECT_GE(raw.log_entry_count(), 1u);
    EXPECT_EQ(raw.compressed_entry_count(RawDb::kHistory), raw.history_entry_count());
    size_t stored_bytes = 0;
    raw.scan(RawDb::kLog, [&](std::string_view, std::string_view value) { stored_bytes += value.size(); });
    size_t framed_bytes = 0;
    for (const std::string& envelope : envelopes) framed_bytes += kFrameHeaderBytes + (kRecordChecksumBytes + envelope.size() + 7) / 8 * 8;
    EXPECT_LT(stored_bytes, framed_bytes / 2);
  }
  store = open_store(dir.sub("db"));
  const auto records = read_all(*store);
  ASSERT_EQ(records.size(), envelopes.size());
  for (size_t i = 0; i < envelopes.size(); ++i) ASSERT_EQ(records[i], std::make_pair(uint64_t{i + 1}, envelopes[i]));
  const std::vector<std::string> history = stored_history(*store);
  ASSERT_EQ(history.size(), envelopes.size());
  EXPECT_EQ(history.back(), "2000:statements/w1=a statement entry of 40 bytes or so....");
}

// A store of format 4 kept its segments and packs uncompressed. It opens as format 5,
// reads them as they are, and compresses those of its new batches.
TEST(Store, AFormat4StoreIsReadAsItIsAndItsNewEntriesCompressed) {
  TempDir dir;
  const auto batch_of = [](uint64_t first) {
    std::vector<std::string> envelopes;
    for (uint64_t seq = first; seq < first + 100; ++seq) envelopes.push_back(fmt::format("event {} of a repetitive kind", seq));
    return envelopes;
  };
  const auto commit_with_history = [](Store& store, const std::vector<std::string>& envelopes) {
    std::unique_ptr<LogBatch> batch = store.begin_batch();
    const uint64_t first = store.last_seq() + 1;
    for (size_t i = 0; i < envelopes.size(); ++i) batch->append(first + i, envelopes[i]);
    for (size_t i = 0; i < envelopes.size(); ++i) batch->put_history(first + i, "statements/x", "a row that repeats itself, a row that repeats");
    return store.commit(batch.get());
  };
  Sha256 head;
  {
    auto store = open_store(dir.sub("db"));
    ASSERT_TRUE(commit_with_history(*store, batch_of(1)).ok());
    head = store->head_hash();
  }
  {
    RawDb raw(dir.sub("db"));
    EXPECT_EQ(raw.expand_entries(), 2u) << "one segment and one pack";
    raw.put(RawDb::kState, "meta/format", "tally-log-4");
    EXPECT_EQ(raw.compressed_entry_count(RawDb::kLog) + raw.compressed_entry_count(RawDb::kHistory), 0u);
  }
  {
    auto store = open_store(dir.sub("db"));
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->head_hash(), head);
    EXPECT_EQ(stored_format(*store), "tally-log-5");
    ASSERT_TRUE(commit_with_history(*store, batch_of(101)).ok());
  }
  {
    RawDb raw(dir.sub("db"));
    EXPECT_EQ(raw.log_entry_count(), 2u);
    EXPECT_EQ(raw.compressed_entry_count(RawDb::kLog), 1u) << "the new batch's segment only";
    EXPECT_EQ(raw.compressed_entry_count(RawDb::kHistory), 1u) << "the new batch's pack only";
  }
  auto store = open_store(dir.sub("db"));
  std::vector<std::string> expected = batch_of(1);
  for (const std::string& envelope : batch_of(101)) expected.push_back(envelope);
  const auto records = read_all(*store);
  ASSERT_EQ(records.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(records[i].second, expected[i]) << i;
  EXPECT_EQ(stored_history(*store).size(), 200u);
}

// A compressed segment or pack whose block is damaged is a storage error naming it,
// not a crash; LZ4 checks nothing else, so a block that still decompresses is caught
// by the records' checksums or the pack's framing.
TEST(Store, ACompressedEntryThatDoesNotDecompressIsAStorageError) {
  TempDir dir;
  std::vector<std::string> envelopes;
  for (int i = 0; i < 100; ++i) envelopes.push_back(fmt::format("event {} of a repetitive kind", i + 1));
  {
    auto store = open_store(dir.sub("db"));
    std::unique_ptr<LogBatch> batch = store->begin_batch();
    for (size_t i = 0; i < envelopes.size(); ++i) batch->append(i + 1, envelopes[i]);
    for (size_t i = 0; i < envelopes.size(); ++i) batch->put_history(i + 1, "statements/x", "a row that repeats itself, a row that repeats");
    ASSERT_TRUE(store->commit(batch.get()).ok());
  }
  {
    RawDb raw(dir.sub("db"));
    ASSERT_EQ(raw.compressed_entry_count(RawDb::kLog), 1u);
    ASSERT_EQ(raw.compressed_entry_count(RawDb::kHistory), 1u);
    const std::string segment = raw.get(RawDb::kLog, segment_key(1, 100));
    raw.put(RawDb::kLog, segment_key(1, 100), segment.substr(0, segment.size() - 3));
    const std::string pack = raw.get(RawDb::kHistory, history_pack_key(1));
    raw.put(RawDb::kHistory, history_pack_key(1), pack.substr(0, pack.size() - 3));
  }
  auto store = open_store(dir.sub("db"));
  ASSERT_NE(store, nullptr);
  std::vector<uint64_t> seen;
  const Status log = read_seqs(*store, 1, 100, &seen);
  EXPECT_EQ(log.code, ErrorCode::kStorageError);
  EXPECT_NE(log.message.find("segment of records 1 to 100 does not decompress"), std::string::npos) << log.message;
  EXPECT_TRUE(seen.empty());
  const Status history = store->read_history([](uint64_t, std::string_view, std::string_view) {});
  EXPECT_EQ(history.code, ErrorCode::kStorageError);
  EXPECT_NE(history.message.find("history pack at sequence 1 does not decompress"), std::string::npos) << history.message;
}

// A store of format 3 kept a history entry per row. It opens as format 5, reads those
// rows as they are, and packs the rows of its new batches after them.
TEST(Store, AFormat3StoresHistoryRowsAreReadAsTheyAreAndNewOnesPacked) {
  TempDir dir;
  {
    auto store = open_store(dir.sub("db"));
    ASSERT_TRUE(commit_history(*store, 2, {{2, "statements/x", "two"}, {1, "statements/x", "one"}}).ok());
  }
  {
    RawDb raw(dir.sub("db"));
    raw.unpack_history();
    raw.put(RawDb::kState, "meta/format", "tally-log-3");
    EXPECT_EQ(raw.history_entry_count(), 2u);
  }
  {
    auto store = open_store(dir.sub("db"));
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(commit_history(*store, 1, {{3, "statements/y", "three"}, {3, "statements/x", "three"}}).ok());
    EXPECT_EQ(stored_history(*store), (std::vector<std::string>{"1:statements/x=one", "2:statements/x=two", "3:statements/x=three", "3:statements/y=three"}));
    EXPECT_EQ(stored_format(*store), "tally-log-5");
  }
  EXPECT_EQ(RawDb(dir.sub("db")).history_entry_count(), 3u) << "two rows of format 3, one pack";
}

TEST(Store, ReplaceRowsReplacesTheHistoryRowsToo) {
  TempDir dir;
  auto store = open_store(dir.sub("db"));
  ASSERT_TRUE(commit_history(*store, 1, {{1, "statements/old", "1"}, {1, "statements/kept", "old value"}}).ok());
  ASSERT_TRUE(store->replace_rows([](RowSink* sink) { sink->put_history(1, "statements/kept", "new value"); }).ok());
  EXPECT_EQ(stored_history(*store), std::vector<std::string>{"1:statements/kept=new value"});
}

TEST(Store, AHistoryKeyTooShortForASequenceNumberIsAStorageError) {
  TempDir dir;
  open_store(dir.sub("db"));
  RawDb(dir.sub("db")).put(RawDb::kHistory, "short", "x");
  auto store = open_store(dir.sub("db"));
  const Status status = store->read_history([](uint64_t, std::string_view, std::string_view) {});
  EXPECT_EQ(status.code, ErrorCode::kStorageError);
}

// A format-1 store kept history rows in the state family. It opens as format 5 with
// every projection row gone (to be rebuilt from the log); its log and chain are kept.
TEST(Store, AFormat1StoreOpensUpgradedWithoutItsProjectionRows) {
  TempDir dir;
  {
    auto store = open_store(dir.sub("db"));
    ASSERT_TRUE(commit(*store, {"a", "b"}, {{std::string("statements/acme\0\0\0\0\0", 20) + be64(1), "a format-1 entry"}, {"checkpoint/statements", be64(2)}}).ok());
  }
  RawDb(dir.sub("db")).put(RawDb::kState, "meta/format", "tally-log-1");
  RawDb(dir.sub("db")).put(RawDb::kState, "zzz/after-meta", "x");
  auto store = open_store(dir.sub("db"));
  ASSERT_NE(store, nullptr);
  std::vector<std::string> state;
  ASSERT_TRUE(store->read_rows("", [&](std::string_view key, std::string_view value) { state.push_back(fmt::format("{}={}", key, value)); })
                  .ok());
  EXPECT_EQ(state, std::vector<std::string>{"meta/format=tally-log-5"});
  EXPECT_EQ(read_all(*store), (std::vector<std::pair<uint64_t, std::string>>{{1, "a"}, {2, "b"}}));
  EXPECT_EQ(read_chain(*store).size(), 1u);
  EXPECT_EQ(store->head_hash(), expected_hash(Sha256{}, 1, {"a", "b"}));
}

TEST(Store, ACorruptRecordIsReportedWithItsSequenceNumber) {
  TempDir dir;
  {
    auto store = open_store(dir.sub("db"));
    ASSERT_TRUE(commit(*store, {"first record", "second record", "third record"}).ok());
  }
  {
    RawDb raw(dir.sub("db"));
    std::string record = raw.record(2);
    ASSERT_EQ(record.size(), kRecordChecksumBytes + 13);
    record[kRecordChecksumBytes + 3] ^= 0x20;  // "secOnd record"
    raw.set_record(2, record);
  }
  auto store = open_store(dir.sub("db"));
  ASSERT_NE(store, nullptr);
  std::vector<uint64_t> seen;
  const Status status = read_seqs(*store, 1, 3, &seen);
  EXPECT_EQ(status.code, ErrorCode::kStorageError);
  EXPECT_NE(status.message.find("record 2"), std::string::npos) << status.message;
  EXPECT_EQ(seen, (std::vector<uint64_t>{1})) << "nothing at or after the corrupt record is handed out";
}

TEST(Store, AFlippedChecksumByteIsDetectedToo) {
  TempDir dir;
  {
    auto store = open_store(dir.sub("db"));
    ASSERT_TRUE(commit(*store, {"only"}).ok());
  }
  {
    RawDb raw(dir.sub("db"));
    std::string record = raw.record(1);
    record[0] ^= 0x01;
    raw.set_record(1, record);
  }
  auto store = open_store(dir.sub("db"));
  const Status status = store->read_log(1, 1, [](uint64_t, std::string_view) { return true; });
  EXPECT_EQ(status.code, ErrorCode::kStorageError);
}

TEST(Store, AMissingRecordIsAGap) {
  TempDir dir;
  {
    auto store = open_store(dir.sub("db"));
    ASSERT_TRUE(commit(*store, {"1", "2", "3"}).ok());
  }
  RawDb(dir.sub("db")).erase_record(2);
  auto store = open_store(dir.sub("db"));
  ASSERT_NE(store, nullptr);
  const Status status = store->read_log(1, 3, [](uint64_t, std::string_view) { return true; });
  EXPECT_EQ(status.code, ErrorCode::kStorageError);
  EXPECT_NE(status.message.find("gap"), std::string::npos) << status.message;
}

TEST(Store, ALogThatDisagreesWithItsChainDoesNotOpen) {
  TempDir dir;
  {
    auto store = open_store(dir.sub("db"));
    ASSERT_TRUE(commit(*store, {"1", "2"}).ok());
  }
  RawDb(dir.sub("db")).erase_record(2);  // the last record vanished
  StoreOptions options;
  options.path = dir.sub("db");
  std::unique_ptr<Store> store;
  const Status status = Store::open(options, &store);
  EXPECT_EQ(status.code, ErrorCode::kStorageError);
  EXPECT_NE(status.message.find("altered"), std::string::npos) << status.message;
}

TEST(Store, AStoreOfAnotherFormatDoesNotOpen) {
  TempDir dir;
  open_store(dir.sub("db"));
  RawDb(dir.sub("db")).put(RawDb::kState, "meta/format", "tally-log-999");
  StoreOptions options;
  options.path = dir.sub("db");
  std::unique_ptr<Store> store;
  const Status status = Store::open(options, &store);
  EXPECT_EQ(status.code, ErrorCode::kStorageError);
  EXPECT_NE(status.message.find("tally-log-999"), std::string::npos) << status.message;
}

TEST(Store, AFailedWriteIsNotAcknowledgedAndTheStoreRefusesLaterWrites) {
  TempDir dir;
  testing::FaultEnv fault;
  auto store = open_store(dir.sub("db"), fault.env.get());
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(commit(*store, {"kept"}).ok());
  const Sha256 head = store->head_hash();

  fault.file_system->fail_writes(true);
  const Status failed = commit(*store, {"lost"});
  EXPECT_EQ(failed.code, ErrorCode::kStorageError);
  EXPECT_TRUE(store->failed());
  EXPECT_EQ(store->last_seq(), 1u) << "the head does not move past an unacknowledged batch";
  EXPECT_EQ(store->head_hash(), head);

  fault.file_system->fail_writes(false);
  EXPECT_EQ(commit(*store, {"after"}).code, ErrorCode::kReadOnly) << "no write is accepted after a failure, even once the disk heals";
  EXPECT_EQ(store->replace_rows([](RowSink*) {}).code, ErrorCode::kReadOnly);
  store.reset();

  auto reopened = open_store(dir.sub("db"));
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->last_seq(), 1u);
  EXPECT_EQ(reopened->head_hash(), head);
  const auto records = read_all(*reopened);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].second, "kept");
}

// Regression: read_log handed out envelopes wherever RocksDB kept the value, at any
// address, and FlatBuffers reads scalars in place: every log read (replay, verify,
// export, as-of queries) did misaligned loads, undefined behaviour that UBSan stops on.
TEST(StoreRegression, ReadLogHandedOutMisalignedEnvelopes) {
  TempDir dir;
  auto store = open_store(dir.sub("db"));
  std::vector<std::string> envelopes;
  for (size_t size = 1; size <= 64; ++size) envelopes.push_back(std::string(size, static_cast<char>('a' + size % 26)));
  ASSERT_TRUE(commit(*store, envelopes).ok());
  for (int round = 0; round < 2; ++round) {  // from the memtable, then from a reopened store
    size_t seen = 0;
    ASSERT_TRUE(store->read_log(1, store->last_seq(), [&](uint64_t seq, std::string_view envelope) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(envelope.data()) % 8, 0u) << "record " << seq;
      EXPECT_EQ(envelope, envelopes[seq - 1]);
      ++seen;
      return true;
    }).ok());
    EXPECT_EQ(seen, envelopes.size());
    store.reset();
    store = open_store(dir.sub("db"));
  }
}

}  // namespace
}  // namespace tally
