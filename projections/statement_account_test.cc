#include "projections/statement_account.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <limits>
#include <random>
#include <string>
#include <vector>

namespace tally {
namespace {

struct Want {
  uint64_t seq;
  int64_t time_us;
  EntryKind kind;
  int64_t amount;
  int64_t balance;
  std::string ref;
  uint32_t other;
};

void expect_entry(const StatementEntry& got, const Want& want, size_t index) {
  EXPECT_EQ(got.seq, want.seq) << index;
  EXPECT_EQ(got.time_us, want.time_us) << index;
  EXPECT_EQ(got.kind, want.kind) << index;
  EXPECT_EQ(got.amount, want.amount) << index;
  EXPECT_EQ(got.balance, want.balance) << index;
  EXPECT_EQ(got.ref, want.ref) << index;
  EXPECT_EQ(got.other_workspace, want.other) << index;
}

TEST(StatementAccountTest, AnEmptyAccount) {
  StatementAccount account;
  EXPECT_TRUE(account.empty());
  EXPECT_EQ(account.balance(), 0);
  EXPECT_EQ(account.first_after(0), 0u);
  bool visited = false;
  account.for_each_from(0, [&](const StatementEntry&) { return visited = true; });
  EXPECT_FALSE(visited);
}

TEST(StatementAccountTest, RefusesAFallingSeqAndALongRefAndStaysAsItWas) {
  StatementAccount account;
  ASSERT_TRUE(account.append(10, 1000, EntryKind::kGrant, 500, "g1", 0));
  EXPECT_FALSE(account.append(9, 1001, EntryKind::kUsage, -1, "u1", 0));
  EXPECT_FALSE(account.append(11, 1001, EntryKind::kUsage, -1, std::string(StatementAccount::kRefBytesMax + 1, 'x'), 0));
  EXPECT_TRUE(account.append(10, 1000, EntryKind::kTransferOut, -100, "", 2));  // one event, two entries
  EXPECT_TRUE(account.append(11, 1001, EntryKind::kUsage, -1, std::string(StatementAccount::kRefBytesMax, 'x'), 0));
  ASSERT_EQ(account.size(), 3u);
  EXPECT_EQ(account.balance(), 399);
  expect_entry(account[1], {10, 1000, EntryKind::kTransferOut, -100, 400, "", 2}, 1);
  EXPECT_EQ(account.back().ref.size(), StatementAccount::kRefBytesMax);
  EXPECT_EQ(account.first_after(9), 0u);
  EXPECT_EQ(account.first_after(10), 2u);
  EXPECT_EQ(account.first_after(11), 3u);
}

// Against a plain vector, across many groups, with extreme values: every entry reads
// back, from any starting point, and first_after finds the same index as a search.
TEST(StatementAccountTest, MatchesAPlainVector) {
  std::mt19937_64 random(7);
  StatementAccount account;
  std::vector<Want> want;
  uint64_t seq = 1;
  int64_t time = 1'795'428'000'000'000;
  int64_t balance = 0;
  const std::vector<int64_t> extremes = {0, 1, -1, std::numeric_limits<int64_t>::max() / 4, std::numeric_limits<int64_t>::min() / 4};
  for (int i = 0; i < 5000; ++i) {
    seq += random() % 3 == 0 ? 0 : random() % 5000;  // sometimes two entries of one event
    time += static_cast<int64_t>(random() % 2'000'000) - (random() % 50 == 0 ? 10'000'000 : 0);  // times may even fall
    int64_t amount = static_cast<int64_t>(random() % 2'000'000'000) - 1'000'000'000;
    if (random() % 40 == 0) amount = extremes[random() % extremes.size()] - balance;  // land the balance on an extreme
    const std::string ref = random() % 4 == 0 ? "" : fmt::format("u{}", random() % 100'000'000);
    const auto kind = static_cast<EntryKind>(random() % kEntryKinds);
    const auto other = static_cast<uint32_t>(random() % 3 == 0 ? random() : random() % 1000);
    ASSERT_TRUE(account.append(seq, time, kind, amount, ref, other));
    balance += amount;
    want.push_back({seq, time, kind, amount, balance, ref, other});
  }
  ASSERT_EQ(account.size(), want.size());
  EXPECT_EQ(account.balance(), balance);
  for (size_t i = 0; i < want.size(); ++i) expect_entry(account[i], want[i], i);
  for (size_t start : {size_t{0}, size_t{1}, size_t{31}, size_t{32}, size_t{33}, size_t{4999}, size_t{5000}, size_t{2500}}) {
    size_t i = start;
    account.for_each_from(start, [&](const StatementEntry& entry) {
      expect_entry(entry, want[i], i);
      ++i;
      return i < start + 100;
    });
    EXPECT_EQ(i, std::min(want.size(), start + 100));
  }
  for (int probe = 0; probe < 2000; ++probe) {
    const uint64_t after = probe == 0 ? 0 : random() % (seq + 10);
    size_t expected = 0;
    while (expected < want.size() && want[expected].seq <= after) ++expected;
    ASSERT_EQ(account.first_after(after), expected) << after;
  }
}

// The point of the encoding: a usage entry takes a fraction of the 80 bytes of a
// struct with a std::string.
TEST(StatementAccountTest, AUsageEntryTakesAboutTwentyBytes) {
  StatementAccount account;
  uint64_t seq = 5'000'000;
  int64_t time = 1'795'428'000'000'000;
  for (int i = 0; i < 10'000; ++i) {
    seq += 1000;   // a workspace sees one event in 1,000 of the log
    time += 9000;  // at 110,000 events/s
    ASSERT_TRUE(account.append(seq, time, EntryKind::kUsage, -1500, fmt::format("u{}", seq), 417));
  }
  EXPECT_LT(account.memory_bytes() / account.size(), 24u) << account.memory_bytes();
}

}  // namespace
}  // namespace tally
