// The engine: commands in, events out. One writer validates each command against the
// projections, turns it into events, applies them, and appends them to the log. A
// batch of commands is one group commit: one WriteBatch, one fsync, and no result is
// returned before that write is durable.
//
// Batches may also be pipelined: begin() executes a batch and hands its write to the
// commit thread (Committer), and returns; the caller may begin the next batch while
// that write runs, and collects each batch's results with finish(), which returns them
// only once the batch is durable. Executing batch N+1 thus overlaps writing batch N.
// N+1 is executed on top of N's effects, so if N's write fails, N+1 is not written
// and its accepted commands are answered with N's failure too.
//
// Not thread-safe: exactly one thread calls execute(), begin() and finish() (the single
// writer). Queries may run on that same thread between batches, when no batch is in
// flight: they see durable state only.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/clock.h"
#include "engine/command.h"
#include "engine/command_lookups.h"
#include "engine/error.h"
#include "engine/log.h"
#include "projections/projection_set.h"

namespace flatbuffers {
class FlatBufferBuilder;
}

namespace tally {

inline constexpr uint64_t kRowLagEventsDefault = 262144;
inline constexpr size_t kSplitApplyCommandsDefault = 1024;

struct EngineOptions {
  std::string data_dir;
  bool create_if_missing = true;
  // Null means the system clock. Not owned; must outlive the engine.
  Clock* clock = nullptr;
  // For fault-injection tests; null means the default RocksDB environment.
  rocksdb::Env* env = nullptr;
  // How many events a projection's rows in the store may fall behind the log (see
  // ProjectionSet::flush_due). Fewer row writes make ingest faster; a start after a
  // crash replays up to this many events more. 0 or 1 writes them with every batch.
  uint64_t row_lag_events = kRowLagEventsDefault;
  // A batch of at least this many commands applies the usage and statements
  // projections, and appends its log records, on a helper thread while the writer goes
  // on (SplitApplier, kLive): worth it only for a long batch. The helper stays for the
  // next such batch, and finishes each batch's work (its last events, its rows, the
  // seal) while the writer executes the next one. 0: never.
  size_t split_apply_commands = kSplitApplyCommandsDefault;
};

// Where event times come from.
enum class TimeSource : uint8_t {
  kClock,    // the engine's clock (normal operation)
  kCommand,  // the command's "at" field when present (tally import replays history)
};

// The answer to one command. Past ok, seq and id, an answer may carry members: in this
// order "duplicate":true (a retry answered with the first answer), one amount in
// credits, then any others, already encoded. The amount is kept as an integer and only
// written out when the answer is (the usage answer's "credits" is on every usage
// event's path; an embedding program reads `amount_micro` and formats nothing).
struct CommandResult {
  Status status;
  uint64_t seq = 0;     // sequence number of the command's first event
  uint32_t events = 0;  // how many events it produced
  std::string id;       // the command's client id, echoed
  bool duplicate = false;          // answers "duplicate":true
  std::string_view amount_key;     // if not empty: answers "<amount_key>":"<amount_micro as credits>";
                                   // points at a string that outlives the result (a literal)
  int64_t amount_micro = 0;
  std::string extra;  // further encoded JSON members, e.g. "\"secret\":\"...\""

  // Appends the members above, comma-separated, without a leading or trailing comma
  // (nothing when there are none).
  void append_members(std::string* out) const;
  std::string members() const;
  void clear_members();

  // {"ok":true,"seq":N,...} or {"ok":false,"error":"<code>","message":"..."}.
  std::string to_json() const;
};

inline constexpr size_t kBatchCommandsMax = 16384;
inline constexpr size_t kEventTypeCount = static_cast<size_t>(fb::Event::MAX) + 1;

// Counters for monitoring. execute() updates them; read them on the thread that calls
// execute().
struct EngineStats {
  std::array<uint64_t, kEventTypeCount> events_by_type{};  // events appended, by fb::Event
  uint64_t commits = 0;               // batches written and durable (a group sync counts each of its batches)
  int64_t last_commit_duration_us = 0;  // from the last batch's end on the writer (its seal may follow on the
                                        // split-apply helper) to its write's end
  // Batches applied on two threads (EngineOptions::split_apply_commands), and how long
  // the writer waited for the helper: for room in its queue, and for it to be done
  // before a small batch, a row flush or a reload, which need every projection whole.
  uint64_t split_batches = 0;
  int64_t split_wait_us = 0;
};

// Batches begun and not yet finished, at most (Engine::begin). tally serve's writer
// keeps one bulk batch in flight while it executes the next, and may begin a small
// express batch between them.
inline constexpr size_t kPipelineDepthMax = 3;

// Engine::begin calls its `between` after every this many commands: often enough that
// a batch durable meanwhile is answered within about 0.2 ms of executing (a usage
// event takes about 3.5 µs), seldom enough to cost nothing measurable.
inline constexpr size_t kBetweenCommands = 64;

struct Query;
class SplitApplier;
class Committer;

class Engine {
 public:
  // Opens the store in options.data_dir and restores the projections.
  static Status open(const EngineOptions& options, std::unique_ptr<Engine>* engine);
  // Writes the rows still behind the log (flush_rows), unless the engine is read-only.
  ~Engine();

  // Writes every projection's changed rows and checkpoint in one synced write, so the
  // next open replays nothing. Nothing to write, or a read-only engine: Ok, no write.
  // REQUIRES: in_flight() == 0.
  Status flush_rows();

  // Executes up to kBatchCommandsMax commands as one group commit. Results come back
  // in order. A refused command changes nothing. If the write fails, every command of
  // the batch that was accepted is answered storage_error instead, and the engine
  // turns read-only; refused commands keep their own error.
  // REQUIRES: in_flight() == 0. The same as begin() then finish().
  std::vector<CommandResult> execute(std::span<const Command> commands, TimeSource time = TimeSource::kClock);

  // Pipelined execute(): executes the commands against the projections (which then
  // show their effects, not yet durable) and hands the batch's write to the commit
  // thread without waiting for it. The commands are only read during the call.
  //
  // `between`, if set, is called after every kBetweenCommands commands executed (not
  // after the last one), so the caller can answer batches begun before this one as
  // soon as they are durable rather than once this one is executed: from inside
  // `between` it may call durable_in_flight() and, while that is above 0, finish(),
  // and read the engine through its const members; nothing else. If it returns true, the batch ends there: the
  // commands after those executed are not, and the caller begins them later.
  // Returns how many commands, from the first, the batch executed.
  // REQUIRES: in_flight() < kPipelineDepthMax.
  using Between = std::function<bool()>;
  size_t begin(std::span<const Command> commands, TimeSource time = TimeSource::kClock, const Between& between = {});
  // The same for commands that lie in several places (the server's writer runs a batch
  // out of several requests' vectors, and a Command is large to move): one pointer per
  // command, none null.
  size_t begin(std::span<const Command* const> commands, TimeSource time = TimeSource::kClock, const Between& between = {});
  // Waits for the oldest batch begun and not finished to be durable, and returns its
  // results, as execute() would have. If the write of that batch or of one begun before
  // it failed, its accepted commands are answered with that failure, and once no batch
  // is in flight the projections are reloaded from the store. REQUIRES: in_flight() > 0
  // and, from inside begin()'s `between`, durable_in_flight() > 0.
  std::vector<CommandResult> finish();
  // Batches begun and not yet finished.
  size_t in_flight() const { return in_flight_.size(); }
  // How many of them, from the oldest, finish() would return at once with results
  // that are final: each one's write has succeeded, or it had nothing to write. Never
  // waits for a write; the batch begin() is executing, if any, is not counted.
  size_t durable_in_flight() const;

  // Answers one JSON query (SPEC §4) with one JSON line. REQUIRES: in_flight() == 0.
  std::string query(std::string_view json);
  // Answers a decoded query (engine/query.h). REQUIRES: in_flight() == 0.
  std::string query(const Query& query);

  // The projections. While a batch is in flight (begin() without finish()), usage and
  // statements may not show all of its events yet: read them, from another thread
  // than the writer or between begin() and finish(), only when in_flight() == 0.
  const ProjectionSet& state() const { return state_; }
  const Store& store() const { return *store_; }
  bool read_only() const { return read_only_; }
  int64_t last_time_us() const { return last_time_us_; }
  const EngineStats& stats() const { return stats_; }

 private:
  // A batch begun and not finished.
  struct InFlight {
    std::vector<CommandResult> results;  // as executed, before the write
    std::unique_ptr<LogBatch> batch;     // null: nothing to write
    bool executed = false;               // ran against the projections (not refused read-only)
    std::chrono::steady_clock::time_point handed_over;
  };

  Engine();
  // A hint that `command` is executed soon; changes nothing. Each stage starts loading
  // what the command's execution reads, and reads only what the stage before loaded:
  // the command's own bytes (kCommand, any command), then for usage its user and id
  // strings (kStrings), the hash slots of its member in the organization and balance
  // maps and of its usage id in the idempotency index (kSlot), the member entries
  // those slots point to (kEntry), and those entries' keys when they are stored apart
  // from the entry (kKey). begin() calls them in this order, a few commands apart.
  enum class PrefetchStage : uint8_t { kCommand, kStrings, kSlot, kEntry, kKey };
  // The organization a usage command names, in the organizations and the balances
  // projections (null where it is not there yet), and the hashes of its member and
  // workspace names (key_hash), found for the command's first stage that
  // needs them and kept for its later ones and for its handler (CommandLookups):
  // entries of prefetch_orgs_ are indexed by the command's place in the batch, modulo
  // their count, which is more than the farthest stage's 8 so that a command's entry
  // is still there when it runs. Organizations are never erased while a batch
  // executes (only ProjectionSet::load clears them), so a pointer found stays valid to
  // the batch's end.
  struct PrefetchOrgs : CommandLookups {
    size_t index = SIZE_MAX;  // the command's place in the batch; SIZE_MAX: none yet
  };
  const PrefetchOrgs& prefetch_orgs(const Command& command, size_t index);
  void prefetch(const Command& command, PrefetchStage stage, const PrefetchOrgs& orgs) const;
  // `lookups`: what prefetch_orgs() found for this command, if it ran for it.
  CommandResult execute_one(const Command& command, TimeSource time, LogBatch* batch, SplitApplier* split,
                            const CommandLookups* lookups = nullptr);
  // Expires lots and times out holds that are due by the time the next command runs.
  void run_due_timers(int64_t now_us, LogBatch* batch, SplitApplier* split);
  // Waits for the split-apply helper to pass on every batch given to it, and stops
  // it, so that every projection is whole and the writer's alone, for good: before a
  // row flush, a reload or the end. (A small batch only waits for it to be idle,
  // SplitApplier::wait_idle.) No-op without one.
  void settle_split();
  // The sequence number the next event executed gets.
  uint64_t next_seq() const { return executed_seq_ + batch_events_ + 1; }

  std::unique_ptr<Store> store_;
  ProjectionSet state_;
  std::array<PrefetchOrgs, 16> prefetch_orgs_;  // see PrefetchOrgs; begin() resets them
  Clock* clock_ = nullptr;
  std::unique_ptr<Clock> owned_clock_;
  int64_t last_time_us_ = 0;
  bool read_only_ = false;
  bool opened_ = false;  // open() finished: the projections are whole
  uint64_t row_lag_events_ = kRowLagEventsDefault;
  size_t split_apply_commands_ = kSplitApplyCommandsDefault;
  uint64_t batch_events_ = 0;  // events emitted so far in the batch begin() runs
  uint64_t executed_seq_ = 0;  // the last event of the batches executed before it (sealed or not)
  EngineStats stats_;
  std::deque<InFlight> in_flight_;
  std::vector<const Command*> command_pointers_;  // begin(span<const Command>)'s, reused
  Status failure_;              // the first failed write, once finish() has seen it
  bool reload_pending_ = false;  // a write failed; reload the projections once nothing is in flight
  bool beginning_ = false;       // begin() is executing the newest batch in flight
  std::unique_ptr<Committer> committer_;
  // The split-apply helper of large batches, kept from one to the next (EngineOptions::
  // split_apply_commands); declared after what its batches' `done` uses.
  std::unique_ptr<SplitApplier> split_;
  std::unique_ptr<flatbuffers::FlatBufferBuilder> event_builder_;  // lent to each command's context in turn
};

}  // namespace tally
