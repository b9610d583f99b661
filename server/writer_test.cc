#include "server/writer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "engine/test_storage.h"
#include "engine/values.h"
#include "server/auth.h"

namespace tally::server {
namespace {

class WriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / fmt::format("tally-writer-test-{}-{}", ::getpid(), counter_++);
    open_empty(EngineOptions());
  }
  void TearDown() override {
    writer_.reset();
    engine_.reset();
    fault_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Replaces the engine, if any, with one on an empty store opened with `options` (its
  // data directory set here). Call it through ASSERT_NO_FATAL_FAILURE.
  void open_empty(EngineOptions options) {
    engine_.reset();
    std::filesystem::remove_all(dir_);
    options.data_dir = dir_.string();
    ASSERT_TRUE(Engine::open(options, &engine_).ok());
  }

  static Command create_org(int i) {
    Command command;
    EXPECT_TRUE(decode_command(fmt::format(R"({{"cmd":"create_org","actor":"u{}@x.io","org":"org{}"}})", i, i), &command).ok());
    return command;
  }

  // Queues an "org" query for `org`; its answer goes to *answer, and "query" to *order
  // (both written on the writer thread: read them after stop()).
  void submit_org_query(std::string_view org, Writer::Lane lane, std::string* answer, std::vector<std::string>* order) {
    Query query;
    ASSERT_TRUE(decode_query(fmt::format(R"({{"query":"org","actor":"platform","org":"{}"}})", org), &query).ok());
    Writer::QueryDone done = [answer, order](std::string text) {
      *answer = std::move(text);
      order->push_back("query");
    };
    ASSERT_EQ(writer_->submit(query, done, lane), Writer::Admission::kQueued);
  }

  static inline int counter_ = 0;
  std::filesystem::path dir_;
  // A test that fails the disk keeps its FaultEnv here, not on its stack: an ASSERT that
  // returns early would destroy the env while writer_ or engine_ still use it.
  std::unique_ptr<testing::FaultEnv> fault_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Writer> writer_;
};

// Requests queued together run as one execute (one group commit), answered in order.
TEST_F(WriterTest, GroupsQueuedRequestsIntoOneCommit) {
  std::vector<size_t> batch_sizes;
  writer_ = std::make_unique<Writer>(std::move(engine_), WriterOptions{},
                                     [&](const Engine&, std::span<const Command* const> commands, std::span<const CommandResult>) {
                                       if (commands.front()->type != CommandType::kTick) batch_sizes.push_back(commands.size());
                                     });
  std::vector<std::promise<std::vector<CommandResult>>> answers(50);
  for (int i = 0; i < 50; ++i) {
    std::vector<Command> commands = {create_org(2 * i), create_org(2 * i + 1)};
    Writer::CommandsDone done = [&answers, i](std::vector<CommandResult> results, std::vector<Command>) { answers[i].set_value(std::move(results)); };
    ASSERT_EQ(writer_->submit(commands, done), Writer::Admission::kQueued);
  }
  Query query;
  ASSERT_TRUE(decode_query(R"({"query":"org","actor":"platform","org":"org99"})", &query).ok());
  std::promise<std::string> answer;
  Writer::QueryDone query_done = [&](std::string text) { answer.set_value(std::move(text)); };
  ASSERT_EQ(writer_->submit(query, query_done), Writer::Admission::kQueued);
  writer_->start();
  uint64_t previous = 0;
  for (int i = 0; i < 50; ++i) {
    const std::vector<CommandResult> results = answers[i].get_future().get();
    ASSERT_EQ(results.size(), 2u);
    for (const CommandResult& result : results) {
      EXPECT_TRUE(result.status.ok());
      EXPECT_EQ(result.seq, previous + 1);
      previous = result.seq;
    }
  }
  // The query, queued after every command, sees them all.
  EXPECT_NE(answer.get_future().get().find("\"as_of_seq\":100"), std::string::npos);
  writer_->stop();
  ASSERT_EQ(batch_sizes.size(), 1u);
  EXPECT_EQ(batch_sizes.front(), 100u);
}

TEST_F(WriterTest, StopRunsWhatIsQueuedThenRefuses) {
  writer_ = std::make_unique<Writer>(std::move(engine_), WriterOptions{}, [](const Engine&, std::span<const Command* const>, std::span<const CommandResult>) {});
  std::atomic<int> answered{0};
  for (int i = 0; i < 10; ++i) {
    std::vector<Command> commands = {create_org(i)};
    Writer::CommandsDone done = [&](std::vector<CommandResult> results, std::vector<Command>) { answered += results.front().status.ok(); };
    ASSERT_EQ(writer_->submit(commands, done), Writer::Admission::kQueued);
  }
  writer_->start();
  writer_->stop();
  EXPECT_EQ(answered, 10);
  std::vector<Command> late = {create_org(99)};
  Writer::CommandsDone never = [](std::vector<CommandResult>, std::vector<Command>) { FAIL(); };
  EXPECT_EQ(writer_->submit(late, never), Writer::Admission::kStopped);
  EXPECT_EQ(late.size(), 1u);  // left untouched, as promised
  EXPECT_EQ(writer_->release_engine()->store().last_seq(), 10u);
}

TEST_F(WriterTest, AFullQueueRefusesWithoutTakingTheRequest) {
  WriterOptions options;
  options.queue_commands_max = kBatchCommandsMax;
  writer_ = std::make_unique<Writer>(std::move(engine_), options, [](const Engine&, std::span<const Command* const>, std::span<const CommandResult>) {});
  std::vector<Command> first(kBatchCommandsMax, create_org(1));
  Writer::CommandsDone ignore = [](std::vector<CommandResult>, std::vector<Command>) {};
  ASSERT_EQ(writer_->submit(first, ignore), Writer::Admission::kQueued);
  std::vector<Command> second = {create_org(2)};
  Writer::CommandsDone done = [](std::vector<CommandResult>, std::vector<Command>) {};
  EXPECT_EQ(writer_->submit(second, done), Writer::Admission::kFull);
  EXPECT_EQ(second.size(), 1u);
  EXPECT_NE(done, nullptr);
  writer_->start();
  writer_->stop();
}

// Small express requests queued after bulk work run first, in batches of their own;
// each lane keeps its own order; bulk batches are smaller while express work is recent.
TEST_F(WriterTest, ExpressRequestsOvertakeTheBulkQueue) {
  std::vector<size_t> batch_sizes;
  WriterOptions options;
  options.express_batch_commands_max = 150;
  writer_ = std::make_unique<Writer>(std::move(engine_), options,
                                     [&](const Engine&, std::span<const Command* const> commands, std::span<const CommandResult>) {
                                       if (commands.front()->type != CommandType::kTick) batch_sizes.push_back(commands.size());
                                     });
  std::vector<std::string> order;  // writer thread only, read after stop()
  auto submit = [&](std::vector<Command> commands, std::string name, Writer::Lane lane) {
    Writer::CommandsDone done = [&order, name](std::vector<CommandResult> results, std::vector<Command>) {
      for (const CommandResult& result : results) EXPECT_TRUE(result.status.ok()) << name;
      order.push_back(name);
    };
    ASSERT_EQ(writer_->submit(commands, done, lane), Writer::Admission::kQueued);
  };
  std::vector<Command> bulk_a, bulk_b;
  for (int i = 0; i < 100; ++i) bulk_a.push_back(create_org(i));
  for (int i = 100; i < 200; ++i) bulk_b.push_back(create_org(i));
  submit(bulk_a, "bulk a", Writer::Lane::kBulk);
  submit(bulk_b, "bulk b", Writer::Lane::kBulk);
  submit({create_org(500)}, "express 1", Writer::Lane::kExpress);
  submit({create_org(501), create_org(502)}, "express 2", Writer::Lane::kExpress);
  // A query in the express lane runs before the bulk commands queued ahead of it.
  std::string answer;
  submit_org_query("org500", Writer::Lane::kExpress, &answer, &order);
  EXPECT_EQ(writer_->queued_commands(), 204u);
  writer_->start();
  writer_->stop();
  EXPECT_EQ(order, (std::vector<std::string>{"express 1", "express 2", "query", "bulk a", "bulk b"}));
  // The express commands made one group commit and the query (behind them in its lane)
  // saw their work. Express work being recent, the bulk requests then went in batches
  // of at most 150 commands, bulk b split across two (without express work they make
  // one batch, as GroupsQueuedRequestsIntoOneCommit shows).
  EXPECT_EQ(batch_sizes, (std::vector<size_t>{3, 150, 50}));
  EXPECT_NE(answer.find("\"ok\":true"), std::string::npos) << answer;
}

// A bulk request larger than the batch runs in parts, one group commit each, and is
// answered once, after its last part, with every result in order; express work that
// arrives meanwhile runs between the parts; a bulk query behind the request waits for
// its answer.
TEST_F(WriterTest, ALargeBulkRequestIsSplitAcrossCommitsAndLetsExpressWorkIn) {
  std::vector<std::string> batches;  // writer thread only, read after stop()
  WriterOptions options;
  options.express_batch_commands_max = 40;
  options.express_recent = std::chrono::hours(1);
  std::vector<std::string> order;  // writer thread only, read after stop()
  auto answer = [&order](std::string name) {
    return Writer::CommandsDone([&order, name](std::vector<CommandResult> results, std::vector<Command>) {
      order.push_back(fmt::format("{} ({} results)", name, results.size()));
    });
  };
  writer_ = std::make_unique<Writer>(std::move(engine_), options,
                                     [&](const Engine&, std::span<const Command* const> commands, std::span<const CommandResult>) {
                                       if (commands.front()->type == CommandType::kTick) return;
                                       batches.push_back(fmt::format("{}..{}", commands.front()->org, commands.back()->org));
                                       // While big's first part runs, an express request arrives.
                                       if (commands.front()->org == "org0") {
                                         std::vector<Command> express = {create_org(900)};
                                         Writer::CommandsDone done = answer("express");
                                         EXPECT_EQ(writer_->submit(express, done, Writer::Lane::kExpress), Writer::Admission::kQueued);
                                       }
                                     });
  // Express work is recent from the start, so bulk batches are capped at 40.
  std::vector<Command> warm = {create_org(800)};
  Writer::CommandsDone warm_done = answer("warm");
  ASSERT_EQ(writer_->submit(warm, warm_done, Writer::Lane::kExpress), Writer::Admission::kQueued);
  std::vector<Command> big, small;
  for (int i = 0; i < 100; ++i) big.push_back(create_org(i));
  for (int i = 100; i < 110; ++i) small.push_back(create_org(i));
  std::promise<std::vector<CommandResult>> big_results;
  std::vector<std::string> big_returned;  // the orgs of the commands big gets back
  Writer::CommandsDone big_done = [&](std::vector<CommandResult> results, std::vector<Command> commands) {
    order.push_back(fmt::format("big ({} results)", results.size()));
    for (const Command& command : commands) big_returned.push_back(command.org);
    big_results.set_value(std::move(results));
  };
  ASSERT_EQ(writer_->submit(big, big_done), Writer::Admission::kQueued);
  Writer::CommandsDone small_done = answer("small");
  ASSERT_EQ(writer_->submit(small, small_done), Writer::Admission::kQueued);
  std::string query_answer;
  submit_org_query("org109", Writer::Lane::kBulk, &query_answer, &order);
  writer_->start();
  const std::vector<CommandResult> results = big_results.get_future().get();
  writer_->stop();
  // warm; big's first 40; the express request; big's next 40; big's last 20 with small.
  EXPECT_EQ(batches, (std::vector<std::string>{"org800..org800", "org0..org39", "org900..org900", "org40..org79", "org80..org109"}));
  EXPECT_EQ(order, (std::vector<std::string>{"warm (1 results)", "express (1 results)", "big (100 results)", "small (10 results)", "query"}));
  ASSERT_EQ(results.size(), 100u);
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_TRUE(results[i].status.ok()) << i;
    // Sequence numbers: warm is 1, big's first part 2..41, express 42, then 43 on.
    EXPECT_EQ(results[i].seq, i < 40 ? i + 2 : i + 3) << i;
  }
  EXPECT_NE(query_answer.find("\"ok\":true"), std::string::npos) << query_answer;
  // Its completion got all its commands back, in order, to free off the writer thread.
  ASSERT_EQ(big_returned.size(), 100u);
  for (size_t i = 0; i < big_returned.size(); ++i) EXPECT_EQ(big_returned[i], fmt::format("org{}", i)) << i;
}

// Sets up org "acme" with credits on the engine, for usage commands.
void fund(Engine& engine) {
  std::vector<Command> setup;
  for (const char* line : {R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})",
                           R"({"cmd":"grant_credits","actor":"platform","org":"acme","grant":"g1","kind":"plan","credits":"100000"})"}) {
    Command command;
    EXPECT_TRUE(decode_command(line, &command).ok());
    setup.push_back(command);
  }
  for (const CommandResult& result : engine.execute(setup)) EXPECT_TRUE(result.status.ok()) << result.to_json();
}

std::vector<Command> usage_commands(int first, int count) {
  std::vector<Command> commands;
  const std::string now = format_time(SystemClock().now_us());
  for (int i = first; i < first + count; ++i) {
    Command command;
    EXPECT_TRUE(decode_command(fmt::format(R"({{"cmd":"record_usage","actor":"alice@acme.io","id":"u{}","org":"acme","workspace":"primary",)"
                                           R"("tool":"chat","model":"m","quantity":1,"unit":"u","credits":"0.01","occurred_at":"{}"}})", i, now),
                               &command)
                    .ok());
    commands.push_back(command);
  }
  return commands;
}

// Bulk usage batches are pipelined: each is answered after the next one has begun,
// once durable, every request once and in order; a batch of anything else is answered
// before the next begins, and a query behind them sees them all.
TEST_F(WriterTest, BulkUsageBatchesArePipelinedAndAnsweredOnceDurable) {
  fund(*engine_);
  WriterOptions options;
  options.batch_commands_max = 100;
  std::vector<size_t> in_flight;  // writer thread only, read after stop()
  writer_ = std::make_unique<Writer>(std::move(engine_), options,
                                     [&](const Engine& engine, std::span<const Command* const> commands, std::span<const CommandResult> results) {
                                       if (commands.front()->type == CommandType::kTick) return;
                                       in_flight.push_back(engine.in_flight());
                                       // Whatever is answered ok is durable by now.
                                       for (const CommandResult& result : results) {
                                         if (result.status.ok()) {
                                           EXPECT_LE(result.seq, engine.store().last_seq());
                                         }
                                       }
                                     });
  std::vector<std::string> order;  // writer thread only, read after stop()
  std::vector<std::vector<CommandResult>> answers(10);
  for (int r = 0; r < 10; ++r) {
    std::vector<Command> commands = r == 5 ? std::vector<Command>{create_org(1)} : usage_commands(r * 100, 100);
    Writer::CommandsDone done = [&, r](std::vector<CommandResult> results, std::vector<Command>) {
      order.push_back(fmt::format("r{}", r));
      answers[r] = std::move(results);
    };
    ASSERT_EQ(writer_->submit(commands, done), Writer::Admission::kQueued);
  }
  std::string balance;
  submit_org_query("acme", Writer::Lane::kBulk, &balance, &order);
  writer_->start();
  writer_->stop();
  EXPECT_EQ(order, (std::vector<std::string>{"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "query"}));
  // r0..r3 are answered with the next batch begun; r4 too, though r5 (create_org) is
  // not pipelined: it is answered before anything else begins, and so is the last, r9.
  EXPECT_EQ(in_flight, (std::vector<size_t>{1, 1, 1, 1, 1, 0, 1, 1, 1, 0}));
  uint64_t previous = 0;
  for (int r = 0; r < 10; ++r) {
    ASSERT_EQ(answers[r].size(), r == 5 ? 1u : 100u) << r;
    for (const CommandResult& result : answers[r]) {
      ASSERT_TRUE(result.status.ok()) << result.to_json();
      EXPECT_GT(result.seq, previous);
      previous = result.seq;
    }
  }
  EXPECT_NE(balance.find(fmt::format("\"as_of_seq\":{}", previous)), std::string::npos) << balance;  // r9's last event is the log's last
}

// An express reserve, and the settle sent on its answer, are begun on top of the bulk
// batch in flight rather than after it is answered: each is answered with the bulk
// batch after it already begun, in lane order, its event between the bulk batches'.
// The batches are shorter than kBetweenCommands, so the writer looks for durable
// batches and express work only between them, whatever the disk's speed.
TEST_F(WriterTest, ExpressHoldsArePipelinedBetweenBulkBatches) {
  fund(*engine_);
  WriterOptions options;
  options.batch_commands_max = 50;
  options.express_batch_commands_max = 50;
  static_assert(50 < kBetweenCommands);
  std::vector<std::string> order;            // writer thread only, read after stop()
  std::map<std::string, size_t> in_flight;   // the same: engine.in_flight() when each request's batch was observed
  std::map<std::string, std::vector<CommandResult>> answers;
  int bulk_batches = 0;
  std::function<void(const std::string&, const std::string&)> express = [&](const std::string& line, const std::string& name) {
    std::vector<Command> commands(1);
    ASSERT_TRUE(decode_command(line, &commands.front()).ok());
    Writer::CommandsDone done = [&, name](std::vector<CommandResult> results, std::vector<Command>) {
      order.push_back(name);
      answers[name] = std::move(results);
      if (name == "reserve") {
        express(R"({"cmd":"settle","actor":"alice@acme.io","org":"acme","hold":"h1","credits":"3"})", "settle");
      }
    };
    ASSERT_EQ(writer_->submit(commands, done, Writer::Lane::kExpress), Writer::Admission::kQueued);
  };
  writer_ = std::make_unique<Writer>(
      std::move(engine_), options, [&](const Engine& engine, std::span<const Command* const> commands, std::span<const CommandResult>) {
        switch (commands.front()->type) {
          case CommandType::kRecordUsage:
            // Once the first bulk batch is answered (the second is in flight), a reserve arrives.
            if (++bulk_batches == 1) {
              express(R"({"cmd":"reserve","actor":"alice@acme.io","org":"acme","workspace":"primary","hold":"h1","credits":"5","timeout_s":60})",
                      "reserve");
            }
            break;
          case CommandType::kReserve:
            in_flight["reserve"] = engine.in_flight();
            break;
          case CommandType::kSettle:
            in_flight["settle"] = engine.in_flight();
            break;
          default:
            break;
        }
      });
  std::promise<void> last_answered;  // stop() refuses new work: wait for the express requests' turn
  for (int r = 0; r < 6; ++r) {
    std::vector<Command> commands = usage_commands(r * 50, 50);
    const std::string name = fmt::format("r{}", r);
    Writer::CommandsDone done = [&, name, r](std::vector<CommandResult> results, std::vector<Command>) {
      order.push_back(name);
      answers[name] = std::move(results);
      if (r == 5) last_answered.set_value();
    };
    ASSERT_EQ(writer_->submit(commands, done), Writer::Admission::kQueued);
  }
  writer_->start();
  last_answered.get_future().wait();
  writer_->stop();
  // The reserve is begun on top of r1, in flight, and answered right after it, once r2
  // has begun; the settle likewise between r2 and r3.
  EXPECT_EQ(order, (std::vector<std::string>{"r0", "r1", "reserve", "r2", "settle", "r3", "r4", "r5"}));
  EXPECT_EQ(in_flight["reserve"], 1u);
  EXPECT_EQ(in_flight["settle"], 1u);
  for (const auto& [name, results] : answers) {
    for (const CommandResult& result : results) ASSERT_TRUE(result.status.ok()) << name << ": " << result.to_json();
  }
  ASSERT_EQ(answers["reserve"].size(), 1u);
  ASSERT_EQ(answers["settle"].size(), 1u);
  EXPECT_GT(answers["reserve"].front().seq, answers["r1"].back().seq);
  EXPECT_LT(answers["reserve"].front().seq, answers["r2"].front().seq);
  EXPECT_GT(answers["settle"].front().seq, answers["r2"].back().seq);
  EXPECT_LT(answers["settle"].front().seq, answers["r3"].front().seq);
}

// A system clock that, once armed, holds each command the engine executes until every
// batch begun before the one executing is durable (for at most 10 s), counts those
// commands, and runs `at_command` when the given one begins. The engine calls it on
// the writer thread, inside Engine::begin.
class DurableGateClock final : public Clock {
 public:
  // Call before the writer starts; the engine must outlive the clock's use.
  void arm(const Engine* engine, size_t command, std::function<void()> at_command) {
    engine_ = engine;
    command_ = command;
    at_command_ = std::move(at_command);
  }
  int64_t now_us() override {
    if (engine_ != nullptr) {
      if (++commands_ == command_) at_command_();
      for (int ms = 0; ms < 10'000 && engine_->durable_in_flight() + 1 < engine_->in_flight(); ++ms) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    return SystemClock().now_us();
  }
  size_t commands() const { return commands_; }

 private:
  const Engine* engine_ = nullptr;
  size_t commands_ = 0;
  size_t command_ = 0;
  std::function<void()> at_command_;
};

// Express work that comes while a bulk batch is executed ends that batch at the
// writer's next look (every kBetweenCommands commands), and the batches before it are
// answered there as soon as they are durable, while the writer executes the next one.
// The clock makes it deterministic: each command waits until the batches before it are
// durable. A reserve arrives during r1 (its 20th command); at r1's first look the
// writer answers r0 and ends r1, after 64 commands; the reserve is begun on top of it,
// then r1's other 36 commands and r2's first 64 as one batch, whose first look answers
// the reserve.
TEST_F(WriterTest, ExpressWorkEndsTheBulkBatchAndIsAnsweredOnceDurable) {
  DurableGateClock clock;
  EngineOptions engine_options;
  engine_options.clock = &clock;
  ASSERT_NO_FATAL_FAILURE(open_empty(engine_options));
  fund(*engine_);
  WriterOptions options;
  options.batch_commands_max = 100;
  options.express_batch_commands_max = 100;
  options.tick_interval = std::chrono::hours(1);  // no tick among the counted commands
  std::vector<std::string> order;         // writer thread only, read after stop()
  std::map<std::string, size_t> answered;  // the same: commands executed when each request was answered
  std::map<std::string, std::vector<CommandResult>> answers;
  auto done_for = [&](const std::string& name) {
    return [&, name](std::vector<CommandResult> results, std::vector<Command>) {
      order.push_back(name);
      answered[name] = clock.commands();
      answers[name] = std::move(results);
    };
  };
  clock.arm(engine_.get(), 100 + 20, [&] {
    std::vector<Command> reserve(1);
    ASSERT_TRUE(decode_command(R"({"cmd":"reserve","actor":"alice@acme.io","org":"acme","workspace":"primary","hold":"h1","credits":"5","timeout_s":60})",
                               &reserve.front())
                    .ok());
    Writer::CommandsDone done = done_for("reserve");
    ASSERT_EQ(writer_->submit(reserve, done, Writer::Lane::kExpress), Writer::Admission::kQueued);
  });
  writer_ = std::make_unique<Writer>(std::move(engine_), options, [](const Engine&, std::span<const Command* const>, std::span<const CommandResult>) {});
  std::promise<void> last_answered;
  for (int r = 0; r < 3; ++r) {
    std::vector<Command> commands = usage_commands(r * 100, 100);
    const std::string name = fmt::format("r{}", r);
    Writer::CommandsDone done = [&, name, r, answer = done_for(name)](std::vector<CommandResult> results, std::vector<Command>) {
      answer(std::move(results), {});
      if (r == 2) last_answered.set_value();
    };
    ASSERT_EQ(writer_->submit(commands, done), Writer::Admission::kQueued);
  }
  writer_->start();
  last_answered.get_future().wait();
  writer_->stop();
  EXPECT_EQ(order, (std::vector<std::string>{"r0", "reserve", "r1", "r2"}));
  // Commands executed when each was answered: r0, then r1 up to the first look.
  EXPECT_EQ(answered["r0"], 100 + kBetweenCommands);
  // Then the reserve, and the next batch up to its first look.
  EXPECT_EQ(answered["reserve"], 100 + kBetweenCommands + 1 + kBetweenCommands);
  // r1 and r2 once all is executed.
  EXPECT_EQ(answered["r1"], 100 + 1 + 100 + 100u);
  EXPECT_EQ(answered["r2"], answered["r1"]);
  for (const auto& [name, results] : answers) {
    ASSERT_EQ(results.size(), name == "reserve" ? 1u : 100u) << name;
    for (const CommandResult& result : results) ASSERT_TRUE(result.status.ok()) << name << ": " << result.to_json();
  }
  // The reserve's event lies between r1's 64th command's and its 65th's.
  EXPECT_GT(answers["reserve"].front().seq, answers["r1"][kBetweenCommands - 1].seq);
  EXPECT_LT(answers["reserve"].front().seq, answers["r1"][kBetweenCommands].seq);
  writer_.reset();  // the engine goes before the clock it uses
}

// A write that fails while bulk batches are pipelined: every request is answered once;
// none of the failed batch or of a batch begun on top of it is answered ok.
TEST_F(WriterTest, AFailedWriteWhilePipelinedAnswersEveryRequestOnceAndNoneOk) {
  fault_ = std::make_unique<testing::FaultEnv>();
  testing::FaultEnv& fault = *fault_;
  EngineOptions engine_options;
  engine_options.env = fault.env.get();
  ASSERT_NO_FATAL_FAILURE(open_empty(engine_options));
  fund(*engine_);
  const uint64_t setup_seq = engine_->store().last_seq();
  WriterOptions options;
  options.batch_commands_max = 100;
  int batches = 0;  // writer thread only
  writer_ = std::make_unique<Writer>(std::move(engine_), options, [&](const Engine&, std::span<const Command* const> commands, std::span<const CommandResult>) {
    if (commands.front()->type != CommandType::kTick && ++batches == 3) fault.file_system->fail_writes(true);
  });
  std::vector<int> answered(12, 0);  // writer thread only
  std::vector<std::vector<CommandResult>> answers(12);
  for (int r = 0; r < 12; ++r) {
    std::vector<Command> commands = usage_commands(r * 100, 100);
    Writer::CommandsDone done = [&, r](std::vector<CommandResult> results, std::vector<Command>) {
      ++answered[r];
      answers[r] = std::move(results);
    };
    ASSERT_EQ(writer_->submit(commands, done), Writer::Admission::kQueued);
  }
  writer_->start();
  writer_->stop();
  std::unique_ptr<Engine> engine = writer_->release_engine();
  EXPECT_TRUE(engine->read_only());
  const uint64_t durable = engine->store().last_seq();
  bool failed = false;
  uint64_t ok = 0;
  for (int r = 0; r < 12; ++r) {
    EXPECT_EQ(answered[r], 1) << r;
    ASSERT_EQ(answers[r].size(), 100u);
    for (const CommandResult& result : answers[r]) {
      if (result.status.ok()) {
        EXPECT_FALSE(failed) << "request " << r << " answered ok after a failed one";
        EXPECT_LE(result.seq, durable);
        ++ok;
      } else {
        failed = true;
        EXPECT_TRUE(result.status.code == ErrorCode::kStorageError || result.status.code == ErrorCode::kReadOnly) << result.to_json();
      }
    }
  }
  EXPECT_TRUE(failed);
  // The disk failed once three batches were answered; the fourth, begun by then, may
  // have been written before. Every usage event written (one per command, after the
  // set-up's) was answered ok, and nothing else; the engine holds what the store holds.
  EXPECT_TRUE(durable == setup_seq + 300 || durable == setup_seq + 400) << durable;
  EXPECT_EQ(ok, durable - setup_seq);
  EXPECT_EQ(engine->state().applied_seq(), durable);
}

// The auth index follows key and token commands.
TEST_F(WriterTest, AuthIndexFollowsCredentials) {
  AuthIndex auth;
  auth.set_admin_secret("the-admin-secret-0123");
  Command command;
  std::vector<Command> commands;
  for (const char* line : {R"({"cmd":"create_org","actor":"platform","org":"acme","owner":"alice@acme.io"})",
                           R"({"cmd":"create_service_key","actor":"platform","org":"acme","key":"k1"})",
                           R"({"cmd":"create_user_token","actor":"platform","user":"bob@acme.io","token":"t1"})"}) {
    ASSERT_TRUE(decode_command(line, &command).ok());
    commands.push_back(command);
  }
  std::vector<CommandResult> results = engine_->execute(commands);
  std::vector<const Command*> pointers;
  for (const Command& c : commands) pointers.push_back(&c);
  ASSERT_TRUE(AuthIndex::affects_credentials(pointers, results));
  ASSERT_FALSE(AuthIndex::affects_credentials(std::span(pointers).first(1), results));
  auth.rebuild(engine_->state());
  auto secret = [](const CommandResult& result) {
    const size_t at = result.extra.find("\"secret\":\"") + 10;
    return result.extra.substr(at, result.extra.find('"', at) - at);
  };
  const std::optional<Identity> key = auth.authenticate(secret(results[1]));
  ASSERT_TRUE(key.has_value());
  EXPECT_EQ(key->actor, "key:k1");
  EXPECT_EQ(key->org, "acme");
  const std::string bob_secret = secret(results[2]);
  const std::optional<Identity> user = auth.authenticate(bob_secret);
  ASSERT_TRUE(user.has_value());
  EXPECT_EQ(user->actor, "bob@acme.io");
  EXPECT_EQ(auth.authenticate("the-admin-secret-0123")->actor, "platform");
  EXPECT_FALSE(auth.authenticate("").has_value());
  EXPECT_FALSE(auth.authenticate("tsk_nope").has_value());

  ASSERT_TRUE(decode_command(R"({"cmd":"revoke_user_token","actor":"bob@acme.io","token":"t1"})", &command).ok());
  std::vector<Command> revoke = {command};
  results = engine_->execute(revoke);
  ASSERT_TRUE(results[0].status.ok());
  auth.rebuild(engine_->state());
  EXPECT_FALSE(auth.authenticate(bob_secret).has_value());

  // Two credentials with the same secret hash authenticate neither.
  const std::string hash(64, 'a');
  for (const char* org : {"acme", "beta"}) {
    if (std::string(org) == "beta") {
      ASSERT_TRUE(decode_command(R"({"cmd":"create_org","actor":"platform","org":"beta","owner":"zed@beta.io"})", &command).ok());
      engine_->execute(std::span<const Command>(&command, 1));
    }
    ASSERT_TRUE(decode_command(fmt::format(R"({{"cmd":"create_service_key","actor":"platform","org":"{}","key":"same","secret_sha256":"{}"}})", org, hash), &command).ok());
    ASSERT_TRUE(engine_->execute(std::span<const Command>(&command, 1))[0].status.ok());
  }
  auth.rebuild(engine_->state());
  EXPECT_EQ(auth.size(), 3u);  // admin, k1, and one ambiguous entry
}

}  // namespace
}  // namespace tally::server
