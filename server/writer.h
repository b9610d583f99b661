// The single writer: one thread owns the Engine. Connections hand it work through two
// bounded queues. It runs consecutive command requests together as one execute() — one
// group commit of at most kBatchCommandsMax commands — and only then calls their
// completions, so nothing is answered before it is durable. Queries and tasks run on
// the same thread between batches, in queue order. Once a second it executes a `tick`
// from the platform, so lots expire and holds time out without traffic.
//
// The express lane is for small interactive requests (a reserve, a settle, a balance
// query) that would otherwise wait behind the bulk queue's tens of thousands of
// ingested events: while the express queue holds anything, the writer takes its work
// next, as batches of their own, so an express command waits for at most the one bulk
// batch in progress, not for the whole bulk queue; that batch even ends early, at the
// writer's next look (every kBetweenCommands commands: Engine::begin's hook). While
// express work keeps coming, bulk batches are also kept smaller
// (WriterOptions::express_batch_commands_max), since an express batch is written after
// them. To keep them so whatever the size of the requests, a bulk request may be split
// across consecutive group commits: its completion runs once, after the commit holding
// its last command. Within each lane order is kept; across lanes it is not, so a
// caller puts a request in the express lane only when nothing else of its own is still
// queued or running (the sessions ask lane_for).
//
// Batches of usage and holds alone (record_usage, reserve, settle, release_hold; see
// pipelined()) are pipelined (Engine::begin): the writer executes the next bulk batch
// while the last one is written, and answers a batch once it is durable, in begin
// order, once the next batch is executed. An express batch of them is begun on top of
// the bulk batch in flight and answered right after it, so express work does not stop
// the bulk ingest; while express work waits or is in flight, the writer looks every
// kBetweenCommands commands of the next batch for batches durable meanwhile and
// answers them there. Every other batch, queries,
// tasks and ticks first wait for the batches in flight to be answered, so they see
// durable state only, and the observer of such a batch sees the engine's state just
// after it.
#pragma once

#include <atomic>
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

// Requests of at most this many commands may use the express lane.
inline constexpr size_t kExpressCommandsMax = 16;

struct WriterOptions {
  // Commands waiting in the queue, at most; a request that would pass it is refused
  // (the connection retries or answers unavailable). Queries and tasks count as one.
  size_t queue_commands_max = 4 * kBatchCommandsMax;
  // The same for the express lane.
  size_t express_commands_max = kBatchCommandsMax;
  // Commands per group commit, at most.
  size_t batch_commands_max = kBatchCommandsMax;
  // While express work keeps coming (some taken within `express_recent`), bulk batches
  // are capped at this instead: an express request waits for the bulk batch in
  // progress, and a smaller one ends sooner. Without express work, bulk batches stay
  // large, spreading each commit's cost over more commands.
  size_t express_batch_commands_max = 512;
  std::chrono::milliseconds express_recent{1000};
  std::chrono::milliseconds tick_interval{1000};
  // Overlap a batch of usage and holds' write with the next batch's execution (see above).
  bool pipeline = true;
};

class Writer {
 public:
  // Completions run on the writer thread and must be quick (post to a connection).
  // CommandsDone also gets the request's commands back, to be destroyed elsewhere:
  // freeing a thousand decoded commands (two dozen strings each, written by a
  // connection's thread) took about 8 % of the daemon's writer thread during ingest.
  using CommandsDone = std::function<void(std::vector<CommandResult> results, std::vector<Command> commands)>;
  using QueryDone = std::function<void(std::string answer)>;
  using Task = std::function<void(Engine& engine)>;
  // Runs on the writer thread once a batch is durable (or has failed), before any
  // completion of it. The engine's state may already show the next batches, begun and
  // not yet durable, unless the observed batch holds a command pipelined() refuses.
  using BatchObserver = std::function<void(const Engine& engine, std::span<const Command* const> commands,
                                           std::span<const CommandResult> results)>;

  enum class Admission : uint8_t { kQueued, kFull, kStopped };
  enum class Lane : uint8_t { kBulk, kExpress };
  // The lane for a request of `commands` commands (a query counts as 1): express when
  // it is small and nothing else of its connection is with the writer.
  static constexpr Lane lane_for(size_t commands, bool connection_idle) {
    return connection_idle && commands <= kExpressCommandsMax ? Lane::kExpress : Lane::kBulk;
  }

  Writer(std::unique_ptr<Engine> engine, WriterOptions options, BatchObserver observer);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void start();
  // REQUIRES: 1 <= commands.size() <= kBatchCommandsMax. When the answer is kQueued,
  // the commands and `done` are taken, and `done` is later called once with one result
  // per command, in order, and the commands; otherwise both are left untouched, to retry.
  // REQUIRES for kExpress: commands.size() <= kExpressCommandsMax.
  Admission submit(std::vector<Command>& commands, CommandsDone& done, Lane lane = Lane::kBulk);
  Admission submit(Query& query, QueryDone& done, Lane lane = Lane::kBulk);
  Admission submit(Task task);
  // Whether a batch of commands of this type may stay in flight while the next one is
  // executed: those that move only balances, usage and holds. The rest (credentials,
  // members, organizations) are answered before anything else begins, so the observer
  // sees the state just after them.
  static bool pipelined(CommandType type);
  // Refuses further work, runs everything already queued, and joins the thread.
  void stop();
  // After stop(): the engine, so its owner decides when the store closes.
  std::unique_ptr<Engine> release_engine();

  // Commands waiting in both lanes (not counting those the writer has taken).
  size_t queued_commands() const;

 private:
  struct Item {
    std::vector<Command> commands;
    CommandsDone commands_done;
    std::optional<Query> query;
    QueryDone query_done;
    Task task;
    // For a command request being run (writer thread only): how many of its commands
    // have begun, and their results so far.
    size_t ran = 0;
    std::vector<CommandResult> results;
  };
  // A batch begun and not yet answered: the queue its commands came from (whose front
  // requests get its results) and the commands, for the observer. They stay in their
  // requests, which stay in the queue until answered (a deque does not move them):
  // moving a Command of about 900 bytes into a batch, then destroying both, took about
  // 6 % of the daemon's time during ingest.
  struct Part {
    std::deque<Item>* items = nullptr;
    std::vector<const Command*> commands;
  };

  template <typename Fill>
  Admission push(size_t weight, Lane lane, Fill fill);
  // Moves a run of requests from the front of `queue` into `taken`: consecutive
  // command requests of at most `max` commands in all (the first one whole, whatever
  // its size), or one query or task.
  static void take_run(std::deque<Item>& queue, size_t& queued, size_t max, std::deque<Item>& taken);
  // Moves consecutive bulk command requests from the front of the bulk queue into
  // started_ until started_ holds at least `max` commands yet to run. Call with the
  // mutex held.
  void take_bulk(size_t max);
  void run();
  // Begins up to `max` commands of the command requests in `items`, from the first one
  // not yet begun, as one batch (Engine::begin), first answering the oldest part when
  // kPipelineDepthMax are in flight. Returns how many commands it took: fewer when a
  // bulk part ends early for express work (between_commands()). The requests stay in
  // `items` until finish_part() answers them.
  size_t begin_part(std::deque<Item>& items, size_t max);
  // Finishes the oldest part begun: gives each request its results, and completes and
  // removes each request whose last result it holds.
  void finish_part();
  void finish_parts();  // every part in flight
  // Called by Engine::begin while it executes the newest part: when express work is
  // waiting or in flight, finishes the parts before it whose writes are durable
  // already, and tells it to end a bulk part there when express work is waiting.
  bool between_commands();
  void run_tick();

  std::unique_ptr<Engine> engine_;
  const WriterOptions options_;
  BatchObserver observer_;

  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Item> queue_;    // the bulk lane
  size_t queued_commands_ = 0;
  std::deque<Item> express_;  // the express lane
  size_t express_commands_ = 0;
  bool stopping_ = false;
  // Whether express_ holds anything: set with it under mutex_, read without it by
  // between_commands() (a stale answer only delays or hastens one cut).
  std::atomic<bool> express_waiting_{false};
  std::thread thread_;
  std::deque<Part> parts_;      // writer thread only: in begin order
  const Engine::Between between_ = [this] { return between_commands(); };  // Engine::begin's hook
  std::vector<const Command*> spare_commands_;  // writer thread only: a finished part's vector, for reuse
  std::deque<Item> started_;    // writer thread only: bulk command requests taken, not yet answered
  std::deque<Item> express_started_;  // writer thread only: the same for pipelined express requests
  size_t started_commands_ = 0;  // writer thread only: commands of started_ not yet begun
  std::chrono::steady_clock::time_point last_express_;  // writer thread only: when express work was last taken
};

}  // namespace tally::server
