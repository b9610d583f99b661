// The single writer: one thread owns the Engine. Connections hand it work through a
// bounded queue. It runs consecutive command requests together as one execute() — one
// group commit of at most kBatchCommandsMax commands — and only then calls their
// completions, so nothing is answered before it is durable. Queries and tasks run on
// the same thread between batches, in queue order. Once a second it executes a `tick`
// from the platform, so lots expire and holds time out without traffic.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/query.h"

namespace tally::server {

struct WriterOptions {
  // Commands waiting in the queue, at most; a request that would pass it is refused
  // (the connection retries or answers unavailable). Queries and tasks count as one.
  size_t queue_commands_max = 4 * kBatchCommandsMax;
  std::chrono::milliseconds tick_interval{1000};
};

class Writer {
 public:
  // Completions run on the writer thread and must be quick (post to a connection).
  using CommandsDone = std::function<void(std::vector<CommandResult> results)>;
  using QueryDone = std::function<void(std::string answer)>;
  using Task = std::function<void(Engine& engine)>;
  // Runs on the writer thread after each execute(), before any completion of it.
  using BatchObserver = std::function<void(const Engine& engine, std::span<const Command> commands,
                                           std::span<const CommandResult> results)>;

  enum class Admission : uint8_t { kQueued, kFull, kStopped };

  Writer(std::unique_ptr<Engine> engine, WriterOptions options, BatchObserver observer);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void start();
  // REQUIRES: 1 <= commands.size() <= kBatchCommandsMax. When the answer is kQueued,
  // the commands and `done` are taken, and `done` is later called once with one result
  // per command, in order; otherwise both are left untouched, to retry.
  Admission submit(std::vector<Command>& commands, CommandsDone& done);
  Admission submit(Query& query, QueryDone& done);
  Admission submit(Task task);
  // Refuses further work, runs everything already queued, and joins the thread.
  void stop();
  // After stop(): the engine, so its owner decides when the store closes.
  std::unique_ptr<Engine> release_engine();

  size_t queued_commands() const;

 private:
  struct Item {
    std::vector<Command> commands;
    CommandsDone commands_done;
    std::optional<Query> query;
    QueryDone query_done;
    Task task;
  };

  template <typename Fill>
  Admission push(size_t weight, Fill fill);
  void run();
  void run_commands(std::vector<Item>& items);
  void run_tick();

  std::unique_ptr<Engine> engine_;
  const WriterOptions options_;
  BatchObserver observer_;

  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Item> queue_;
  size_t queued_commands_ = 0;
  bool stopping_ = false;
  std::thread thread_;
  std::vector<Command> batch_;  // writer thread only
};

}  // namespace tally::server
