#include "projections/indexed_map.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace tally {
namespace {

// The keys of `m` in iteration order, each found again through the index.
std::vector<std::string> keys_checked(const IndexedMap<int>& m) {
  std::vector<std::string> keys;
  for (auto it = m.begin(); it != m.end(); ++it) {
    EXPECT_EQ(m.find(it->first), it) << it->first;
    keys.push_back(it->first);
  }
  return keys;
}

TEST(IndexedMapTest, FindsAddsAndIteratesInKeyOrder) {
  IndexedMap<int> m;
  EXPECT_EQ(m.find("b"), m.end());
  EXPECT_TRUE(m.emplace("b", 2).second);
  EXPECT_TRUE(m.emplace(std::string("a"), 1).second);
  const auto [again, added] = m.emplace("b", 20);
  EXPECT_FALSE(added);
  EXPECT_EQ(again->second, 2) << "emplace keeps the first value";
  m["c"] = 3;
  m["a"] += 10;
  EXPECT_EQ(m.at("a"), 11);
  EXPECT_THROW((void)m.at("z"), std::out_of_range);
  EXPECT_TRUE(m.contains("c"));
  EXPECT_EQ(m.count("d"), 0u);
  EXPECT_EQ(m.find("user-1"), m.end());
  EXPECT_EQ(keys_checked(m), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(m.erase("b"), 1u);
  EXPECT_EQ(m.erase("b"), 0u);
  EXPECT_EQ(m.find("b"), m.end());
  EXPECT_EQ(keys_checked(m), (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(m.size(), 2u);
}

// A caller that hashed a key once (a prefetch note) finds it with that hash, and the
// hints given the hash change nothing.
TEST(IndexedMapTest, AKeysHashFindsItAsTheKeyDoes) {
  IndexedMap<int> m;
  for (int k = 0; k < 40; ++k) m.emplace(fmt::format("member{}@example.com", k), k);
  for (int k = 0; k < 42; ++k) {
    const std::string key = fmt::format("member{}@example.com", k);
    const size_t hash = key_hash(key);
    m.prefetch(hash);
    m.prefetch_entry(hash);
    m.prefetch_key(hash);
    EXPECT_EQ(m.find(key, hash), m.find(key)) << key;
    if (k < 40) {
      EXPECT_EQ(m.find(key, hash)->second, k);
    }
  }
  EXPECT_NE(key_hash(""), 0u) << "0 marks an empty slot";
  EXPECT_EQ(m.size(), 40u);
}

TEST(IndexedMapTest, CopiesAndMovesKeepAWorkingIndex) {
  IndexedMap<int> m;
  for (int i = 0; i < 100; ++i) m[fmt::format("user-{}@acme.io", i)] = i;
  IndexedMap<int> copy = m;
  m["user-0@acme.io"] = -1;  // the copy is its own
  EXPECT_EQ(copy.at("user-0@acme.io"), 0);
  EXPECT_EQ(copy.at("user-99@acme.io"), 99);
  EXPECT_EQ(keys_checked(copy), keys_checked(m));

  IndexedMap<int> moved = std::move(copy);
  EXPECT_EQ(moved.at("user-42@acme.io"), 42);
  EXPECT_EQ(keys_checked(moved).size(), 100u);
  moved["user-100@acme.io"] = 100;  // the moved map goes on growing
  EXPECT_EQ(moved.find("user-100@acme.io")->second, 100);

  IndexedMap<int> assigned;
  assigned["x"] = 1;
  assigned = moved;
  EXPECT_EQ(assigned.find("x"), assigned.end());
  EXPECT_EQ(assigned.at("user-100@acme.io"), 100);
  assigned = std::move(moved);
  EXPECT_EQ(assigned.size(), 101u);
  EXPECT_EQ(keys_checked(assigned).size(), 101u);
}

// Against std::map, through random adds, overwrites and erases.
TEST(IndexedMapTest, MatchesAMap) {
  std::mt19937_64 random(7);
  IndexedMap<int> m;
  std::map<std::string, int> expected;
  for (int step = 0; step < 20'000; ++step) {
    const std::string key = fmt::format("member-{}", random() % 2'000);
    const int value = static_cast<int>(random() % 1'000);
    switch (random() % 4) {
      case 0: EXPECT_EQ(m.emplace(key, value).second, expected.emplace(key, value).second); break;
      case 1:
        m[key] = value;
        expected[key] = value;
        break;
      case 2: EXPECT_EQ(m.erase(key), expected.erase(key)); break;
      default: {
        const auto it = m.find(key);
        const auto want = expected.find(key);
        ASSERT_EQ(it == m.end(), want == expected.end()) << key;
        if (it != m.end()) {
          EXPECT_EQ(it->second, want->second) << key;
        }
      }
    }
    // Now and then, every key must still be found: an erase moves later keys of its
    // probe run back, and one moved wrongly would be lost to lookups.
    if (step % 1'000 == 999) {
      for (const auto& [present, value] : expected) ASSERT_TRUE(m.contains(present)) << present << " at step " << step;
    }
  }
  ASSERT_EQ(m.size(), expected.size());
  auto it = m.begin();
  for (const auto& [key, value] : expected) {
    EXPECT_EQ(it->first, key);
    EXPECT_EQ(it->second, value);
    EXPECT_EQ(m.find(key), it);
    ++it;
  }
}

}  // namespace
}  // namespace tally

// The projections' indexes find a name by its hash first: names alike but for a
// character or two (member ids, workspace names, tools) must not hash alike. About
// 200,000 such names of 2 to 42 bytes, and every one-byte change of one, give 64-bit
// hashes with no two equal; the same bytes give the same hash wherever they lie in
// memory.
TEST(NameHashTest, SimilarNamesHashApartAndTheSameBytesAlike) {
  std::vector<std::string> names;
  for (int i = 0; i < 100'000; ++i) names.push_back(fmt::format("m{}@example.com", i));
  for (int i = 0; i < 50'000; ++i) names.push_back(fmt::format("ws-{}", i));
  for (int i = 0; i < 50'000; ++i) names.push_back(std::string(1 + i % 40, static_cast<char>('a' + i / 40 % 26)) + std::to_string(i / 1040));
  std::string base = "user-0042@acme.io";
  for (size_t at = 0; at < base.size(); ++at) {
    for (int c = 0; c < 256; ++c) {
      std::string changed = base;
      changed[at] = static_cast<char>(c);
      if (changed != base) names.push_back(changed);
    }
  }
  names.push_back(base);
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::map<uint64_t, std::string> seen;
  for (const std::string& name : names) {
    const auto [it, added] = seen.emplace(tally::name_hash(name), name);
    EXPECT_TRUE(added) << "\"" << name << "\" and \"" << it->second << "\" hash alike";
  }
  const std::string copy = std::string("xx") + base;
  EXPECT_EQ(tally::name_hash(std::string_view(copy).substr(2)), tally::name_hash(base));
}
