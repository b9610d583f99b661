#include "projections/rates.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <limits>

#include <fmt/format.h>

#include "engine/engine.h"

namespace tally {
namespace {

constexpr int64_t kLater = std::numeric_limits<int64_t>::max();

std::filesystem::path fresh_dir(std::string_view name) {
  auto dir = std::filesystem::temp_directory_path() / fmt::format("tally-rates-test-{}-{}", ::getpid(), name);
  std::filesystem::remove_all(dir);
  return dir;
}

std::unique_ptr<Engine> open(const std::filesystem::path& dir) {
  EngineOptions options;
  options.data_dir = dir.string();
  std::unique_ptr<Engine> engine;
  EXPECT_TRUE(Engine::open(options, &engine).ok());
  return engine;
}

void set_price(Engine& engine, std::string_view tool, std::string_view model, std::string_view unit, std::string_view credits) {
  Command command;
  const std::string line = fmt::format(R"({{"cmd":"set_price","actor":"platform","tool":"{}","model":"{}","unit":"{}","credits_per_unit":"{}"}})",
                                       tool, model, unit, credits);
  ASSERT_TRUE(decode_command(line, &command).ok()) << line;
  const std::vector<CommandResult> results = engine.execute(std::span(&command, 1));
  ASSERT_TRUE(results.at(0).status.ok()) << results[0].status.message;
}

// The price per unit in micro-credits, or -1 for none.
int64_t price(const Engine& engine, std::string_view tool, std::string_view model, int64_t at = kLater) {
  const Rate* rate = engine.state().rates.find(tool, model, at);
  return rate == nullptr ? -1 : rate->price;
}

// Each product is found by its own two names, however alike the names of others, before
// and after a reopen (the rows loaded back) and after a later price replaces one.
TEST(Rates, FindsEachProductByBothNames) {
  const auto dir = fresh_dir("find");
  {
    auto engine = open(dir);
    EXPECT_EQ(price(*engine, "chat", "m1"), -1);  // no product yet
    set_price(*engine, "chat", "m1", "tokens", "1");
    set_price(*engine, "chat", "m2", "tokens", "2");
    set_price(*engine, "image", "flux", "image", "0.5");
    set_price(*engine, "flux", "image", "image", "0.25");  // the same names, swapped
    set_price(*engine, "chatm", "1", "tokens", "3");        // the same letters, cut elsewhere
    EXPECT_EQ(price(*engine, "chat", "m1"), 1'000'000);
    EXPECT_EQ(price(*engine, "chat", "m2"), 2'000'000);
    EXPECT_EQ(price(*engine, "image", "flux"), 500'000);
    EXPECT_EQ(price(*engine, "flux", "image"), 250'000);
    EXPECT_EQ(price(*engine, "chatm", "1"), 3'000'000);
    EXPECT_EQ(price(*engine, "chat", "m3"), -1);
    EXPECT_EQ(price(*engine, "chatm1", ""), -1);
    EXPECT_EQ(price(*engine, "m1", "chat"), -1);
    EXPECT_EQ(price(*engine, "chat", "m1", 0), -1);  // before the price took effect

    set_price(*engine, "chat", "m1", "tokens", "1.5");
    EXPECT_EQ(price(*engine, "chat", "m1"), 1'500'000);
    EXPECT_EQ(engine->state().rates.entries().size(), 5u);
  }
  auto engine = open(dir);
  EXPECT_EQ(price(*engine, "chat", "m1"), 1'500'000);
  EXPECT_EQ(price(*engine, "chat", "m2"), 2'000'000);
  EXPECT_EQ(price(*engine, "image", "flux"), 500'000);
  EXPECT_EQ(price(*engine, "flux", "image"), 250'000);
  EXPECT_EQ(price(*engine, "chatm", "1"), 3'000'000);
  EXPECT_EQ(price(*engine, "m2", "chat"), -1);
  engine.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tally
