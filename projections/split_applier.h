// SplitApplier: applies a run of events to a ProjectionSet on two threads.
//
// The projections do not read one another, so each may take the events on a thread of
// its own as long as it sees all of them, in order. The caller's thread applies its
// part as the events come; a helper thread applies the rest from copies of the
// envelopes, handed over in chunks through a queue of at most 8 chunks. Two splits:
//
//   kReplay  reading the log back (ProjectionSet::replay): the helper takes balances
//            and usage, in chunks of at most 4,096 envelopes or about 1 MiB, so about
//            10 MiB at most are in flight. The caller's thread also reads the log
//            (RocksDB's iterator, LZ4, the envelope's verifier), about 40 % of its
//            time, so it keeps the lighter statements: with usage instead, it was the
//            one the other waited for (a rebuild took 5 % longer).
//   kLive    large batches of commands (Engine::begin), one after another: the helper
//            takes usage and statements, the two projections that no command handler
//            reads, and appends each envelope to its batch's log records (checksum,
//            chain hash, write buffer), in chunks of at most 256 envelopes. At a
//            batch's end the caller does not wait: it marks the end (end_batch) and
//            goes on with the next batch, while the helper applies the batch's last
//            events, puts its projections' due rows into it, and passes it on
//            (LiveBatches::done: the engine seals it and hands it to be written). It
//            takes the next batch's chunks only then, so it chains each batch from
//            the one before (LiveBatches::chain). After each chunk it also puts its
//            projections' history rows for that chunk (statement entries) into the
//            batch, which the caller's ProjectionSet::flush_due() would otherwise
//            write at the batch's end; and, as it appends each usage event, that
//            event's row of the balances projection's usage ids, which follows from
//            the event alone (BalancesProjection::usage_history_elsewhere): on the
//            caller's thread those rows were a tenth of its instructions per usage
//            event. The caller's thread keeps orgs, balances, rates and tokens
//            current for the next command's checks.
//
// Like ProjectionSet::apply, a projection skips an event at or below its checkpoint,
// and the set's last_time_us() follows the events given. The helper calls its
// projections' prefetch stages 8, 4 and 2 events ahead of each event and applies it
// with apply_noted(), given what those stages noted (Projection::PrefetchNote).
//
// Contract: one thread calls start_batch(), apply(), end_batch(), wait_idle() and
// finish(). Until finish() returns, the helper's projections belong to it and must not
// be written by anyone else (but after wait_idle(), below), nor read except once the
// helper has passed on every batch ended (for kLive: LiveBatches::done has run for
// each, and the reader learnt of it through a lock, as the engine does through the
// Committer) and no event was applied since. A kLive batch belongs to the helper from
// start_batch() until its done has run, but for its deferred_rows(), which the caller
// may fill until end_batch(). The destructor calls finish().
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "projections/chunk_queue.h"
#include "projections/projection_set.h"

namespace tally {

class SplitApplier {
 public:
  enum class Split : uint8_t { kReplay, kLive };

  // What the helper does with kLive batches; both are called on the helper's thread.
  struct LiveBatches {
    // For the rows of the helper's projections at a batch's end (ProjectionSet::flush_due).
    uint64_t row_lag_events = 0;
    // Before the batch's first record is appended: chain it to the batches before
    // (Store::chain), which the helper has passed on by then.
    std::function<void(LogBatch*)> chain;
    // The batch is whole: every event appended and every row of the helper's
    // projections put. The engine seals it and hands it to be written.
    std::function<void(LogBatch*)> done;
  };

  // kReplay.
  SplitApplier(ProjectionSet* projections, Split split);
  // kLive: the batches are given with start_batch().
  SplitApplier(ProjectionSet* projections, LiveBatches live);
  SplitApplier(const SplitApplier&) = delete;
  SplitApplier& operator=(const SplitApplier&) = delete;
  ~SplitApplier();

  // kLive: the events applied from now on are `log`'s, a batch begun with
  // Store::Chain::kLater. A batch to which no event was applied needs no end_batch().
  void start_batch(LogBatch* log);
  // kLive: every event of the batch is given. Returns at once; the helper passes the
  // batch on (LiveBatches::done) once it has applied them. REQUIRES: an event was
  // applied since start_batch().
  void end_batch();
  // Applies `event`, which is `envelope` decoded (decode_envelope), to every projection
  // that has not seen it. The envelope's bytes are copied; they need not outlive the call.
  void apply(std::string_view envelope, const fb::Envelope& event);
  // kLive: returns once the helper has passed on every batch ended, and leaves it
  // waiting for the next: until the next start_batch(), every projection is the
  // caller's, to read and to apply events to (a small batch on the writer alone).
  // REQUIRES: the batch given last, if any event was given to it, has ended.
  void wait_idle();
  // Returns once the helper has applied every event given (and passed on every batch
  // ended); then stops it.
  void finish();
  // How long the caller has waited for the helper since the last call: for room in
  // the queue (apply(), end_batch()), for it to be idle (wait_idle()) and to stop
  // (finish()).
  int64_t take_wait_us() { return std::exchange(waited_us_, 0) + queue_.take_producer_wait_us(); }
  // The projections the caller's thread applies; the helper applies the others.
  std::span<Projection* const> own_part() const { return own_; }

 private:
  struct Chunk;

  SplitApplier(ProjectionSet* projections, Split split, const LiveBatches& live);
  void hand_over();
  void run_helper();

  ProjectionSet* const projections_;
  const std::vector<Projection*> own_;
  const std::vector<Projection*> helper_part_;
  const size_t chunk_envelopes_max_;
  const bool live_;
  const LiveBatches live_batches_;
  LogBatch* log_ = nullptr;  // kLive: the batch being given
  bool handed_ = false;      // kLive: a chunk of the batch was handed over
  const bool balances_usage_history_;  // kLive: the helper writes the balances usage-id rows
  int64_t waited_us_ = 0;              // in wait_idle() and finish(), since take_wait_us()
  std::unique_ptr<Chunk> chunk_;  // being filled by the caller's thread
  ChunkQueue<Chunk> queue_;
  std::thread helper_;  // last: it starts once the rest exists
};

}  // namespace tally
