#include "projections/hash_index.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace tally {
namespace {

// Strings interned the way the usage projection interns member ids.
struct Interned {
  std::vector<std::string> names;
  HashIndex index;

  static uint64_t hash(const std::string& name) { return std::hash<std::string>{}(name); }
  uint32_t find(const std::string& name) const {
    return index.find(hash(name), [&](uint32_t i) { return names[i] == name; });
  }
  std::pair<uint32_t, bool> intern(const std::string& name) {
    const auto result = index.insert(hash(name), static_cast<uint32_t>(names.size()), [&](uint32_t i) { return names[i] == name; });
    if (result.second) names.push_back(name);
    return result;
  }
};

TEST(HashIndexTest, NumbersItemsInTheOrderTheyWereAddedAndFindsThemAgain) {
  Interned t;
  EXPECT_EQ(t.find("a"), HashIndex::kNone) << "an empty index finds nothing";
  EXPECT_EQ(t.intern("a"), std::make_pair(0u, true));
  EXPECT_EQ(t.intern("b"), std::make_pair(1u, true));
  EXPECT_EQ(t.intern("a"), std::make_pair(0u, false)) << "a second insert finds the first";
  EXPECT_EQ(t.find("b"), 1u);
  EXPECT_EQ(t.find("c"), HashIndex::kNone);
  EXPECT_EQ(t.index.size(), 2u);
  t.index.clear();
  t.names.clear();
  EXPECT_EQ(t.find("a"), HashIndex::kNone);
  EXPECT_EQ(t.intern("c"), std::make_pair(0u, true)) << "numbering starts again after clear()";
}

// candidate() reads the slot a lookup begins at, as the usage projection's prefetch
// does ahead of the lookup: the first item whose hash matches, compared with nothing
// else.
TEST(HashIndexTest, ACandidateIsTheFirstItemWithTheHash) {
  HashIndex index;
  EXPECT_EQ(index.candidate(7), HashIndex::kNone) << "an empty index has none";
  std::vector<int> items;
  for (int k = 0; k < 50; ++k) {
    index.insert(static_cast<uint64_t>(k % 10) * 1000003, static_cast<uint32_t>(items.size()), [&](uint32_t i) { return items[i] == k; });
    items.push_back(k);
  }
  for (int k = 0; k < 10; ++k) {
    const uint32_t candidate = index.candidate(static_cast<uint64_t>(k) * 1000003);
    ASSERT_LT(candidate, items.size()) << k;
    EXPECT_EQ(items[candidate] % 10, k) << "an item with that hash";
  }
  EXPECT_EQ(index.candidate(999), HashIndex::kNone);
  index.prefetch(999);  // a hint: nothing changes
  EXPECT_EQ(index.size(), 50u);
}

// Keys whose 64-bit hashes differ only in their high bits, or are equal outright, must
// still be told apart by `same`.
TEST(HashIndexTest, KeysWithEqualHashesAreToldApartBySame) {
  std::vector<int> items;
  HashIndex index;
  for (int k = 0; k < 100; ++k) {
    const uint64_t hash = k % 3 == 0 ? 42 : (uint64_t{1} << 63) | static_cast<uint64_t>(k % 2);
    const auto [number, added] = index.insert(hash, static_cast<uint32_t>(items.size()), [&](uint32_t i) { return items[i] == k; });
    ASSERT_TRUE(added) << k;
    ASSERT_EQ(number, items.size());
    items.push_back(k);
  }
  for (int k = 0; k < 100; ++k) {
    const uint64_t hash = k % 3 == 0 ? 42 : (uint64_t{1} << 63) | static_cast<uint64_t>(k % 2);
    EXPECT_EQ(index.find(hash, [&](uint32_t i) { return items[i] == k; }), static_cast<uint32_t>(k));
  }
  EXPECT_EQ(index.find(42, [&](uint32_t i) { return items[i] == 1000; }), HashIndex::kNone);
}

// Against std::unordered_map, through many growths of the table.
TEST(HashIndexTest, AgreesWithAnUnorderedMapThroughGrowth) {
  std::mt19937_64 random(7);
  Interned t;
  std::unordered_map<std::string, uint32_t> model;
  for (int step = 0; step < 50000; ++step) {
    const std::string name = fmt::format("user-{}@example.com", random() % 20000);
    const auto [number, added] = t.intern(name);
    const auto [it, model_added] = model.try_emplace(name, static_cast<uint32_t>(model.size()));
    ASSERT_EQ(added, model_added) << name;
    ASSERT_EQ(number, it->second) << name;
  }
  EXPECT_EQ(t.index.size(), model.size());
  for (const auto& [name, number] : model) ASSERT_EQ(t.find(name), number) << name;
  for (int k = 0; k < 1000; ++k) EXPECT_EQ(t.find(fmt::format("absent-{}", k)), HashIndex::kNone);
  // At most three quarters full, in a power-of-two table of 8-byte slots.
  const size_t slots = t.index.memory_bytes() / 8;
  EXPECT_EQ(slots & (slots - 1), 0u);
  EXPECT_LE(model.size() * 4, slots * 3);
}

}  // namespace
}  // namespace tally
