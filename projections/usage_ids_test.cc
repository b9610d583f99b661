#include "projections/usage_ids.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <xxhash.h>

#include <limits>
#include <map>
#include <random>
#include <string>

namespace tally {

// What the tests may see of the table: its slots and where each one's probe begins.
struct UsageIdsPeer {
  static const auto& slots(const UsageIds& ids) { return ids.slots_; }
  static size_t home(const UsageIds& ids, uint64_t slot, unsigned bits) { return ids.home(slot, bits); }
  static UsageIds::Handle handle(uint64_t slot) { return (slot & UsageIds::kHandleMask) - 1; }
};

namespace {

UsageRef ref_for(uint64_t n) { return UsageRef{n, n * 0x9e3779b97f4a7c15ull, static_cast<int64_t>(n % 1000) - 500}; }

TEST(UsageIdsTest, FindsWhatWasInsertedAndNothingElse) {
  UsageIds ids;
  EXPECT_FALSE(ids.find("u1").has_value());
  auto [first, added] = ids.insert("u1", ref_for(1));
  EXPECT_TRUE(added);
  EXPECT_EQ(ids.id_at(first), "u1");
  EXPECT_EQ(ids.ref_at(first), ref_for(1));
  EXPECT_EQ(ids.find("u1"), ref_for(1));
  EXPECT_FALSE(ids.find("u").has_value());
  EXPECT_FALSE(ids.find("u10").has_value());
  EXPECT_FALSE(ids.find("U1").has_value());
  EXPECT_EQ(ids.size(), 1u);
}

TEST(UsageIdsTest, ASecondInsertKeepsTheFirstEntry) {
  UsageIds ids;
  const auto [handle, added] = ids.insert("job-7", ref_for(7));
  ASSERT_TRUE(added);
  const auto [again, added_again] = ids.insert("job-7", ref_for(8));
  EXPECT_FALSE(added_again);
  EXPECT_EQ(again, handle);
  EXPECT_EQ(ids.find("job-7"), ref_for(7));
  EXPECT_EQ(ids.size(), 1u);
}

TEST(UsageIdsTest, ExtremeNumbersReadBack) {
  UsageIds ids;
  const UsageRef largest{~uint64_t{0}, ~uint64_t{0}, std::numeric_limits<int64_t>::max()};
  const UsageRef smallest{0, 0, std::numeric_limits<int64_t>::min()};
  ids.insert("a", largest);
  ids.insert("b", smallest);
  EXPECT_EQ(ids.find("a"), largest);
  EXPECT_EQ(ids.find("b"), smallest);
}

TEST(UsageIdsTest, EmptyAndLongestIdsAndEveryByteValue) {
  UsageIds ids;
  const std::string longest(UsageIds::kIdBytesMax, 'x');
  std::string bytes;
  for (int c = 0; c < 256; ++c) bytes += static_cast<char>(c);
  // A default string_view has a null data(): the insert must not hand it to memcpy.
  ids.insert(std::string_view{}, ref_for(1));
  ids.insert(longest, ref_for(2));
  ids.insert(bytes.substr(0, 200), ref_for(3));
  EXPECT_EQ(ids.find(""), ref_for(1));
  EXPECT_EQ(ids.find(longest), ref_for(2));
  EXPECT_EQ(ids.find(bytes.substr(0, 200)), ref_for(3));
  EXPECT_FALSE(ids.find(longest.substr(1)).has_value());
}

// Against std::map through many growths of the table and many arena chunks (the arena
// starts with 4 KiB chunks and reaches its 4 MiB ones after about 170,000 short ids).
TEST(UsageIdsTest, MatchesAMapThroughGrowthAndVisitsInInsertionOrder) {
  UsageIds ids;
  std::map<std::string, UsageRef> expected;
  std::vector<std::string> order;
  std::mt19937_64 random(42);
  for (uint64_t n = 0; n < 300'000; ++n) {
    // Mostly new ids of varied length, some repeats.
    std::string id;
    if (random() % 8 == 0 && !order.empty()) {
      id = order[random() % order.size()];
    } else {
      id = fmt::format("u{}{}", random() % 2'000'000, std::string(random() % 40, 'z'));
    }
    const bool fresh = !expected.contains(id);
    const auto [handle, added] = ids.insert(id, ref_for(n));
    ASSERT_EQ(added, fresh) << id;
    if (fresh) {
      expected.emplace(id, ref_for(n));
      order.push_back(id);
    }
    ASSERT_EQ(ids.id_at(handle), id);
  }
  ASSERT_EQ(ids.size(), expected.size());
  for (const auto& [id, ref] : expected) ASSERT_EQ(ids.find(id), ref) << id;
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(ids.find(fmt::format("absent{}", i)).has_value());

  size_t visited = 0;
  ids.for_each([&](UsageIds::Handle handle) {
    ASSERT_LT(visited, order.size());
    EXPECT_EQ(ids.id_at(handle), order[visited]);
    EXPECT_EQ(ids.ref_at(handle), expected.at(order[visited]));
    ++visited;
  });
  EXPECT_EQ(visited, order.size());
  // The memory is the packed records, the table (at least 7/16 full, so at most
  // 8 x 16/7 = 18.3 bytes per id) and the unused tail of the last 4 MiB chunk.
  // A record: length byte, id, 8-byte fingerprint, seq and zigzagged amount as varints.
  auto varint_size = [](uint64_t v) {
    size_t n = 1;
    for (; v >= 0x80; v >>= 7) ++n;
    return n;
  };
  size_t record_bytes = 0;
  for (const std::string& id : order) {
    const UsageRef ref = expected.at(id);
    const uint64_t amount = (static_cast<uint64_t>(ref.amount) << 1) ^ static_cast<uint64_t>(ref.amount >> 63);
    record_bytes += 1 + id.size() + 8 + varint_size(ref.seq) + varint_size(amount);
  }
  EXPECT_LE(ids.memory_bytes(), record_bytes + 19 * ids.size() + (size_t{4} << 20));

  ids.clear();
  EXPECT_EQ(ids.size(), 0u);
  EXPECT_FALSE(ids.find(order.front()).has_value());
}

}  // namespace
}  // namespace tally

namespace tally {
namespace {

// Growing reads a slot's home from the hash bits the slot keeps, and past them hashes
// the id again (tables of more than 2^28 slots, too large to build here): both must
// give the top bits of the id's hash, the same place a lookup begins.
TEST(UsageIdsTest, ASlotsHomeIsTheTopOfItsIdsHashFromTheSlotOrTheId) {
  UsageIds ids;
  std::map<uint64_t, std::string> id_by_handle;
  for (uint64_t n = 0; n < 5'000; ++n) {
    const std::string id = fmt::format("usage-{}", n * 7919);
    const auto [handle, added] = ids.insert(id, ref_for(n));
    ASSERT_TRUE(added);
    id_by_handle[handle] = id;
  }
  size_t checked = 0;
  for (const uint64_t slot : UsageIdsPeer::slots(ids)) {
    if (slot == 0) continue;
    const std::string& id = id_by_handle.at(UsageIdsPeer::handle(slot));
    const uint64_t hash = XXH3_64bits(id.data(), id.size());
    for (const unsigned bits : {6u, 13u, 28u, 29u, 40u, 63u}) {
      ASSERT_EQ(UsageIdsPeer::home(ids, slot, bits), hash >> (64 - bits)) << id << " in a table of 2^" << bits;
    }
    ++checked;
  }
  EXPECT_EQ(checked, ids.size());
}

}  // namespace
}  // namespace tally
