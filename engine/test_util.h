// Test helpers shared by the unit tests and the suites: a temporary directory that
// removes itself, and an engine on a fresh store driven by a manual clock.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "engine/clock.h"
#include "engine/command.h"
#include "engine/engine.h"
#include "engine/values.h"

namespace tally::testing {

// A fresh, empty directory under the system temporary directory, removed with
// everything in it when the object goes away.
class TempDir {
 public:
  TempDir() {
    static std::atomic<uint64_t> counter{0};
    std::random_device random;
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("tally-test-{}-{}-{:08x}", getpid(), counter.fetch_add(1), random());
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // A path inside the directory, e.g. for a store.
  std::string sub(std::string_view name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// 2026-11-23T10:00:00Z: engine time starts here in tests unless a test sets the clock.
inline constexpr int64_t kTestStartUs = 1'795'428'000'000'000;

// Decodes a JSON command line the test knows to be well-formed.
inline Command command_from_json(std::string_view json) {
  Command command;
  const Status status = decode_command(json, &command);
  EXPECT_TRUE(status.ok()) << "test command does not decode: " << json << ": " << status.message;
  return command;
}

// Every envelope of the store's log, in order.
inline std::vector<std::string> log_envelopes(const Store& store) {
  std::vector<std::string> envelopes;
  const Status status = store.read_log(1, store.last_seq(), [&](uint64_t, std::string_view envelope) {
    envelopes.emplace_back(envelope);
    return true;
  });
  EXPECT_TRUE(status.ok()) << status.message;
  return envelopes;
}

// Every history row of the store, as "seq:key=value", in Store::read_history's order.
inline std::vector<std::string> stored_history(const Store& store) {
  std::vector<std::string> rows;
  const Status status = store.read_history([&](uint64_t seq, std::string_view key, std::string_view value) {
    rows.push_back(fmt::format("{}:{}={}", seq, key, value));
  });
  EXPECT_TRUE(status.ok()) << status.message;
  return rows;
}

// An engine on its own temporary store, with a manual clock. With `env` (e.g. an
// in-memory RocksDB environment, which must outlive the engine) the store lives there.
class TestEngine {
 public:
  explicit TestEngine(std::string_view name = "data", rocksdb::Env* env = nullptr) : path_(dir_.sub(name)), env_(env) {
    reopen();
  }

  Engine& engine() { return *engine_; }
  ManualClock& clock() { return clock_; }
  const std::string& path() const { return path_; }

  // Closes and reopens the engine on the same store.
  void reopen() {
    engine_.reset();
    EngineOptions options;
    options.data_dir = path_;
    options.clock = &clock_;
    options.env = env_;
    options.row_lag_events = row_lag_events_;
    options.split_apply_commands = split_apply_commands_;
    const Status status = Engine::open(options, &engine_);
    if (!status.ok()) ADD_FAILURE() << "cannot open the engine at " << path_ << ": " << status.message;
  }
  void close() { engine_.reset(); }
  // Reopens the engine with EngineOptions::row_lag_events = events.
  void reopen_with_row_lag(uint64_t events) {
    row_lag_events_ = events;
    reopen();
  }
  // Reopens the engine with EngineOptions::split_apply_commands = commands.
  void reopen_with_split_apply(size_t commands) {
    split_apply_commands_ = commands;
    reopen();
  }

  // Executes one command (given as JSON) in a batch of its own.
  CommandResult run(std::string_view json) { return run(command_from_json(json)); }
  CommandResult run(const Command& command) {
    std::vector<CommandResult> results = engine_->execute(std::span(&command, 1));
    EXPECT_EQ(results.size(), 1u);
    return results.empty() ? CommandResult{} : std::move(results[0]);
  }
  // Executes the commands as one group commit.
  std::vector<CommandResult> run_batch(const std::vector<std::string>& lines) {
    std::vector<Command> commands;
    for (const std::string& line : lines) commands.push_back(command_from_json(line));
    return engine_->execute(commands);
  }

  std::string query(std::string_view json) { return engine_->query(json); }

 private:
  TempDir dir_;
  std::string path_;
  rocksdb::Env* env_;
  uint64_t row_lag_events_ = kRowLagEventsDefault;
  // Tests split every batch of two or more commands across two threads, so the suites
  // run both ways of applying events (one command alone is applied in turn).
  size_t split_apply_commands_ = 2;
  ManualClock clock_{kTestStartUs};
  std::unique_ptr<Engine> engine_;
};

// The names of this process's threads now alive (engine/thread_name.h), sorted.
inline std::vector<std::string> thread_names() {
  std::vector<std::string> names;
  std::error_code error;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", error)) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (std::getline(comm, name)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}
// Whether a thread of that name is alive; if not, the names found go into *found.
inline bool has_thread(std::string_view name, std::string* found) {
  const std::vector<std::string> names = thread_names();
  if (std::find(names.begin(), names.end(), name) != names.end()) return true;
  found->clear();
  for (const std::string& each : names) *found += each + ' ';
  return false;
}

// Makes gtest print a Status readably in failure messages.
inline std::string describe(const Status& status) {
  return status.ok() ? std::string("ok") : fmt::format("{}: {}", error_name(status.code), status.message);
}

}  // namespace tally::testing

namespace tally {
inline void PrintTo(const Status& status, std::ostream* out) { *out << testing::describe(status); }
inline void PrintTo(ErrorCode code, std::ostream* out) { *out << error_name(code); }
}  // namespace tally
