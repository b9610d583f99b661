#include "engine/memtable.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/log.h"
#include "engine/test_util.h"

namespace tally {
namespace {

using testing::TempDir;

// ---- the comparator against a reference ----------------------------------------------

std::string varint32(uint32_t value) {
  std::string out;
  while (value >= 0x80) {
    out += static_cast<char>((value & 0x7f) | 0x80);
    value >>= 7;
  }
  out += static_cast<char>(value);
  return out;
}

// An internal key: the user key, then the trailer (sequence << 8 | type), little-endian.
std::string internal_key(const std::string& user_key, uint64_t sequence) {
  std::string key = user_key;
  const uint64_t trailer = sequence << 8 | 1;
  for (int i = 0; i < 8; ++i) key += static_cast<char>(trailer >> (8 * i));
  return key;
}

// A memtable entry as RocksDB lays it out: varint32 length, the internal key, a value.
std::string entry(const std::string& user_key, uint64_t sequence) {
  const std::string key = internal_key(user_key, sequence);
  return varint32(static_cast<uint32_t>(key.size())) + key + "\x01v";
}

// What RocksDB's comparator does for a bytewise column family, written out: user keys
// bytewise, then the higher sequence number first.
class ReferenceComparator final : public rocksdb::MemTableRep::KeyComparator {
 public:
  int operator()(const char* a, const char* b) const override { return compare(decode(a), decode(b)); }
  int operator()(const char* a, const rocksdb::Slice& key) const override { return compare(decode(a), std::string(key.data(), key.size())); }
  mutable uint64_t calls = 0;

 private:
  static std::string decode(const char* entry) {
    uint32_t length = 0;
    int shift = 0;
    while ((*entry & 0x80) != 0) {
      length |= static_cast<uint32_t>(*entry++ & 0x7f) << shift;
      shift += 7;
    }
    length |= static_cast<uint32_t>(*entry++) << shift;
    return std::string(entry, length);
  }
  int compare(const std::string& a, const std::string& b) const {
    ++calls;
    const std::string user_a = a.substr(0, a.size() - 8), user_b = b.substr(0, b.size() - 8);
    if (const int order = user_a.compare(user_b); order != 0) return order < 0 ? -1 : 1;
    uint64_t trailer_a, trailer_b;
    std::memcpy(&trailer_a, a.data() + a.size() - 8, 8);
    std::memcpy(&trailer_b, b.data() + b.size() - 8, 8);
    return trailer_a > trailer_b ? -1 : (trailer_a < trailer_b ? 1 : 0);
  }
};

int sign(int value) { return (value > 0) - (value < 0); }

// Keys of the shapes the store writes (8-byte big-endian log keys, text rows) and of
// awkward ones: empty, sharing long prefixes, bytes >= 0x80, longer than 127 bytes (a
// two-byte length).
std::string random_user_key(std::mt19937_64& random) {
  switch (random() % 4) {
    case 0:
      return be64(random() % 1000);
    case 1:
      return "usage/" + std::to_string(random() % 50);
    case 2: {
      std::string key(random() % 12, '\0');
      for (char& c : key) c = static_cast<char>(random() % 3 == 0 ? 0xff : random() % 4);
      return key;
    }
    default:
      return std::string(120 + random() % 20, 'k') + static_cast<char>(random() % 256);
  }
}

TEST(BytewiseEntryComparator, OrdersEntriesAsRocksDBsComparatorDoes) {
  ReferenceComparator reference;
  const BytewiseEntryComparator comparator(reference);
  std::mt19937_64 random(20261203);
  uint64_t equal_user_keys = 0;
  for (int i = 0; i < 200000; ++i) {
    const std::string user_a = random_user_key(random);
    const std::string user_b = random() % 8 == 0 ? user_a : random_user_key(random);
    const uint64_t sequence_a = random() % 4, sequence_b = random() % 4;
    const std::string a = entry(user_a, sequence_a), b = entry(user_b, sequence_b);
    const std::string key_b = internal_key(user_b, sequence_b);
    ASSERT_EQ(sign(comparator(a.data(), b.data())), sign(reference(a.data(), b.data()))) << i;
    ASSERT_EQ(sign(comparator(a.data(), rocksdb::Slice(key_b))), sign(reference(a.data(), rocksdb::Slice(key_b)))) << i;
    if (user_a == user_b) ++equal_user_keys;
  }
  EXPECT_GT(equal_user_keys, 10000u);  // the fallback was exercised
}

TEST(BytewiseEntryComparator, AsksTheFallbackOnlyForEqualUserKeys) {
  ReferenceComparator reference;
  const BytewiseEntryComparator comparator(reference);
  const std::string one = entry(be64(1), 7), two = entry(be64(2), 3), two_later = entry(be64(2), 9);
  EXPECT_LT(comparator(one.data(), two.data()), 0);
  EXPECT_GT(comparator(two.data(), one.data()), 0);
  EXPECT_EQ(reference.calls, 0u);
  EXPECT_GT(comparator(two.data(), two_later.data()), 0);  // the later write sorts first
  EXPECT_EQ(reference.calls, 1u);
}

// ---- the memtable on its own ---------------------------------------------------------

// Entries inserted in one of the orders the store writes in, or in none.
enum class InsertOrder { kAscending, kRuns, kManyRuns, kRandom };

// The internal keys, in insertion order.
std::vector<std::string> keys_in(InsertOrder order, std::mt19937_64& random) {
  std::vector<std::string> keys;
  switch (order) {
    case InsertOrder::kAscending:  // the log: one run of increasing sequence numbers
      for (uint64_t seq = 1; seq <= 3000; ++seq) keys.push_back(internal_key(be64(seq), seq));
      break;
    case InsertOrder::kRuns:  // the history family: per batch, one run per projection
    case InsertOrder::kManyRuns: {
      // n batches make n + 1 runs: 8 (merged in 3 rounds) or 41 (in 6).
      const uint64_t batches = order == InsertOrder::kRuns ? 7 : 40;
      for (uint64_t batch = 0, seq = 1; batch < batches; ++batch) {
        const uint64_t first = batch * 100;
        for (const char* projection : {"balances", "statements"}) {
          for (uint64_t i = first; i < first + 100; i += 1 + random() % 3) keys.push_back(internal_key(be64(i) + projection, seq++));
        }
      }
      break;
    }
    case InsertOrder::kRandom:
      for (uint64_t seq = 1; seq <= 3000; ++seq) keys.push_back(internal_key(random_user_key(random), seq));
      break;
  }
  return keys;
}

// A read-only memtable iterates, seeks and steps back in the order RocksDB's comparator
// gives, whatever order the entries were inserted in; so does one still being written.
TEST(VectorMemTable, IteratesInKeyOrderWhateverTheInsertOrder) {
  ReferenceComparator reference;
  std::mt19937_64 random(11);
  for (const InsertOrder order : {InsertOrder::kAscending, InsertOrder::kRuns, InsertOrder::kManyRuns, InsertOrder::kRandom}) {
    for (const bool read_only : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "order " << static_cast<int>(order) << (read_only ? ", read-only" : ", being written"));
      const std::vector<std::string> keys = keys_in(order, random);
      std::vector<std::string> entries;
      for (const std::string& key : keys) entries.push_back(varint32(static_cast<uint32_t>(key.size())) + key + "\x01v");
      std::unique_ptr<rocksdb::MemTableRep> rep(vector_memtable_factory()->CreateMemTableRep(reference, nullptr, nullptr, nullptr));
      // A memtable being written is read from a copy made as the iterator is: an
      // iterator taken before the last tenth of the inserts sees none of them.
      const size_t early = entries.size() - entries.size() / 10;
      for (size_t i = 0; i < early; ++i) ASSERT_TRUE(rep->InsertKey(const_cast<char*>(entries[i].data())));
      std::unique_ptr<rocksdb::MemTableRep::Iterator> before_the_rest(rep->GetIterator(nullptr));
      for (size_t i = early; i < entries.size(); ++i) ASSERT_TRUE(rep->InsertKey(const_cast<char*>(entries[i].data())));
      if (read_only) {
        rep->MarkReadOnly();
      } else {
        size_t seen = 0;
        for (before_the_rest->SeekToFirst(); before_the_rest->Valid(); before_the_rest->Next()) ++seen;
        EXPECT_EQ(seen, early);
      }
      std::vector<const char*> expected;
      for (const std::string& e : entries) expected.push_back(e.data());
      std::sort(expected.begin(), expected.end(), [&](const char* a, const char* b) { return reference(a, b) < 0; });

      std::unique_ptr<rocksdb::MemTableRep::Iterator> it(rep->GetIterator(nullptr));
      size_t n = 0;
      for (it->SeekToFirst(); it->Valid(); it->Next(), ++n) {
        ASSERT_LT(n, expected.size());
        ASSERT_EQ(it->key(), expected[n]) << n;
      }
      EXPECT_EQ(n, expected.size());
      it->SeekToLast();
      for (n = expected.size(); n-- > 0; it->Prev()) {
        ASSERT_TRUE(it->Valid());
        ASSERT_EQ(it->key(), expected[n]) << n;
      }
      EXPECT_FALSE(it->Valid()) << "stepping back from the first entry leaves the iterator invalid";

      // Seeks to inserted keys (every other target) and to keys between them, by
      // internal key and by memtable entry.
      for (int i = 0; i < 400; ++i) {
        const std::string target = i % 2 == 0 ? keys[random() % keys.size()]
                                              : internal_key(order == InsertOrder::kRandom ? random_user_key(random) : be64(random() % 4200), random() % 4000);
        const std::string target_entry = varint32(static_cast<uint32_t>(target.size())) + target;
        const auto at_or_after = std::partition_point(expected.begin(), expected.end(), [&](const char* e) {
          return reference(e, rocksdb::Slice(target)) < 0;
        });
        const auto after = std::partition_point(expected.begin(), expected.end(), [&](const char* e) {
          return reference(e, rocksdb::Slice(target)) <= 0;
        });
        for (const bool by_entry : {false, true}) {
          it->Seek(rocksdb::Slice(target), by_entry ? target_entry.data() : nullptr);
          ASSERT_EQ(it->Valid(), at_or_after != expected.end());
          if (it->Valid()) {
            ASSERT_EQ(it->key(), *at_or_after);
          }
          if (!read_only) continue;  // RocksDB's vector memtable does not seek backwards
          it->SeekForPrev(rocksdb::Slice(target), by_entry ? target_entry.data() : nullptr);
          ASSERT_EQ(it->Valid(), after != expected.begin());
          if (it->Valid()) {
            ASSERT_EQ(it->key(), *(after - 1));
          }
        }
      }
    }
  }
}

// Entries of every size keep their bytes: small ones packed into shared blocks, each
// block filled to its end and no further, large ones in memory of their own. A freed
// memtable's blocks serve the next one, pages and all.
TEST(VectorMemTable, EntriesKeepTheirBytesAndTheBlocksServeTheNextMemtable) {
  ReferenceComparator reference;
  std::mt19937_64 random(5);
  const auto byte_of = [](size_t entry, size_t at) { return static_cast<char>((entry * 31 + at) % 251 + 1); };
  std::map<uintptr_t, size_t> block_openers;  // a block's start -> the entry written there
  {
    std::unique_ptr<rocksdb::MemTableRep> rep(vector_memtable_factory()->CreateMemTableRep(reference, nullptr, nullptr, nullptr));
    std::vector<std::pair<char*, size_t>> entries;
    size_t total = 0;
    for (size_t i = 0; total < (size_t{24} << 20); ++i) {
      // Mostly small, some just under a quarter block (512 KiB), some over it.
      const size_t size = i % 97 == 0 ? (700 << 10) : i % 41 == 0 ? (500 << 10) : 1 + random() % 3000;
      char* buf = nullptr;
      const rocksdb::KeyHandle handle = rep->Allocate(size, &buf);
      ASSERT_NE(buf, nullptr);
      ASSERT_EQ(handle, static_cast<rocksdb::KeyHandle>(buf));
      for (size_t j = 0; j < size; ++j) buf[j] = byte_of(i, j);
      entries.emplace_back(buf, size);
      total += size;
      const auto address = reinterpret_cast<uintptr_t>(buf);
      if (size <= (512 << 10) && address % (2 << 20) == 0) block_openers[address] = i;
    }
    EXPECT_GE(rep->ApproximateMemoryUsage(), total) << "RocksDB decides when a memtable is full by this";
    EXPECT_GE(block_openers.size(), 4u);
    for (size_t i = 0; i < entries.size(); ++i) {
      const auto [buf, size] = entries[i];
      for (size_t j = 0; j < size; ++j) ASSERT_EQ(buf[j], byte_of(i, j)) << "entry " << i << ", byte " << j;
    }
  }
  // The new memtable's first entry lands where one of the old opened a block, and the
  // old bytes are still there: the block was kept, not unmapped and mapped afresh.
  std::unique_ptr<rocksdb::MemTableRep> next(vector_memtable_factory()->CreateMemTableRep(reference, nullptr, nullptr, nullptr));
  char* buf = nullptr;
  next->Allocate(16, &buf);
  const auto opener = block_openers.find(reinterpret_cast<uintptr_t>(buf));
  ASSERT_NE(opener, block_openers.end()) << "a new memtable starts in a block the last one gave back";
  for (size_t j = 0; j < 16; ++j) EXPECT_EQ(buf[j], byte_of(opener->second, j)) << j;
}

// ---- the memtable in a database ------------------------------------------------------

// A database whose memtables are ours; write_buffer_size 0 keeps RocksDB's default.
std::unique_ptr<rocksdb::DB> open_with_vector_memtables(const std::string& path, size_t write_buffer_size = 0) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.allow_concurrent_memtable_write = false;
  options.memtable_factory = vector_memtable_factory();
  if (write_buffer_size != 0) options.write_buffer_size = write_buffer_size;
  rocksdb::DB* raw = nullptr;
  const rocksdb::Status opened = rocksdb::DB::Open(options, path, &raw);
  EXPECT_TRUE(opened.ok()) << opened.ToString();
  return std::unique_ptr<rocksdb::DB>(raw);
}

// The memtable counts the memory it holds, so RocksDB still flushes it once full.
TEST(VectorMemTable, ADatabaseFlushesItsMemtableWhenFull) {
  TempDir dir;
  const std::unique_ptr<rocksdb::DB> db = open_with_vector_memtables(dir.sub("db"), 1 << 20);
  ASSERT_NE(db, nullptr);
  const std::string value(64 << 10, 'v');
  constexpr int kPuts = 128;  // 8 MiB
  for (int i = 0; i < kPuts; ++i) ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), be64(static_cast<uint64_t>(i)), value).ok());
  uint64_t in_active = 0;
  ASSERT_TRUE(db->GetIntProperty("rocksdb.num-entries-active-mem-table", &in_active));
  EXPECT_LE(in_active, 20u) << "a 1 MiB memtable holds about 16 values of 64 KiB";
  for (int i = 0; i < kPuts; i += 9) {
    std::string got;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), be64(static_cast<uint64_t>(i)), &got).ok());
    EXPECT_EQ(got, value);
  }
}

TEST(VectorMemTable, ReadsBackInKeyOrderBeforeAndAfterAFlush) {
  TempDir dir;
  const std::unique_ptr<rocksdb::DB> db = open_with_vector_memtables(dir.sub("db"));
  ASSERT_NE(db, nullptr);

  // Keys written out of order, some twice: the later value wins.
  std::mt19937_64 random(7);
  std::map<std::string, std::string> expected;
  for (int i = 0; i < 5000; ++i) {
    const std::string key = random_user_key(random);
    const std::string value = std::to_string(i);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, value).ok());
    expected[key] = value;
  }
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round == 0 ? "from the memtable" : "from a table file");
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    auto want = expected.begin();
    for (it->SeekToFirst(); it->Valid(); it->Next(), ++want) {
      ASSERT_NE(want, expected.end());
      ASSERT_EQ(it->key().ToString(), want->first);
      ASSERT_EQ(it->value().ToString(), want->second);
    }
    ASSERT_TRUE(it->status().ok());
    EXPECT_EQ(want, expected.end());
    // Seeks land on the first key at or after the target.
    for (int i = 0; i < 200; ++i) {
      const std::string target = random_user_key(random);
      it->Seek(target);
      const auto at_or_after = expected.lower_bound(target);
      ASSERT_EQ(it->Valid(), at_or_after != expected.end());
      if (it->Valid()) {
        EXPECT_EQ(it->key().ToString(), at_or_after->first);
      }
    }
    // A read from a vector memtable sorts a copy of it, so only some keys are read.
    size_t n = 0;
    for (const auto& [key, value] : expected) {
      if (n++ % 16 != 0) continue;
      std::string got;
      ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), key, &got).ok());
      EXPECT_EQ(got, value);
    }
    ASSERT_TRUE(db->Flush(rocksdb::FlushOptions()).ok());
  }
}

}  // namespace
}  // namespace tally
