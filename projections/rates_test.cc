#include "projections/rates.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <tuple>

#include <fmt/format.h>

#include "engine/test_util.h"

namespace tally {
namespace {

constexpr int64_t kLater = std::numeric_limits<int64_t>::max();

void set_price(testing::TestEngine& t, std::string_view tool, std::string_view model, std::string_view credits) {
  const CommandResult result = t.run(fmt::format(
      R"({{"cmd":"set_price","actor":"platform","tool":"{}","model":"{}","unit":"tokens","credits_per_unit":"{}"}})", tool, model, credits));
  ASSERT_TRUE(result.status.ok()) << result.status.message;
}

// The price per unit in micro-credits, or -1 for none.
int64_t price(testing::TestEngine& t, std::string_view tool, std::string_view model, int64_t at = kLater) {
  const Rate* rate = t.engine().state().rates.find(tool, model, at);
  return rate == nullptr ? -1 : rate->price;
}

// Each product is found by its own two names, however alike the names of others, before
// and after a reopen (the rows loaded back) and after a later price replaces one.
TEST(Rates, FindsEachProductByBothNames) {
  testing::TestEngine t;
  EXPECT_EQ(price(t, "chat", "m1"), -1);  // no product yet
  set_price(t, "chat", "m1", "1");
  set_price(t, "chat", "m2", "2");
  set_price(t, "image", "flux", "0.5");
  set_price(t, "flux", "image", "0.25");  // the same names, swapped
  set_price(t, "chatm", "1", "3");        // the same letters, cut elsewhere
  t.clock().advance(1'000'000);
  set_price(t, "chat", "m1", "1.5");  // from a second later on
  // (tool, model, the price now, or -1 for none)
  const std::tuple<std::string, std::string, int64_t> expected[] = {
      {"chat", "m1", 1'500'000}, {"chat", "m2", 2'000'000}, {"image", "flux", 500'000}, {"flux", "image", 250'000},
      {"chatm", "1", 3'000'000}, {"chat", "m3", -1},        {"chatm1", "", -1},         {"m1", "chat", -1},
  };
  for (int round = 0; round < 2; ++round) {
    for (const auto& [tool, model, now] : expected) EXPECT_EQ(price(t, tool, model), now) << tool << " / " << model << ", round " << round;
    EXPECT_EQ(price(t, "chat", "m1", testing::kTestStartUs), 1'000'000);  // the first price, in its time
    EXPECT_EQ(price(t, "chat", "m1", 0), -1);                            // before any took effect
    EXPECT_EQ(t.engine().state().rates.entries().size(), 5u);
    t.reopen();
  }
}

}  // namespace
}  // namespace tally
