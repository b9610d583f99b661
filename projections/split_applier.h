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
//   kLive    a large batch of commands (Engine::execute): the helper takes usage and
//            statements, the two projections that no command handler reads, and
//            appends each envelope to the batch's log records (checksum, chain hash,
//            write buffer), in chunks of at most 256 envelopes, so the caller waits
//            little in finish(). After each chunk it also puts its projections'
//            history rows for that chunk (statement entries) into the batch, which
//            the caller's ProjectionSet::flush_due() would otherwise write at the
//            batch's end; and, as it appends each usage event, that event's row of
//            the balances projection's usage ids, which follows from the event alone
//            (BalancesProjection::usage_history_elsewhere): on the caller's thread
//            those rows were a tenth of its instructions per usage event. The
//            caller's thread keeps orgs, balances, rates and tokens current for the
//            next command's checks.
//
// Like ProjectionSet::apply, a projection skips an event at or below its checkpoint,
// and the set's last_time_us() follows the events given. The helper calls its
// projections' prefetch stages 8, 4 and 2 events ahead of each event and applies it
// with apply_noted(), given what those stages noted (Projection::PrefetchNote).
//
// Contract: one thread calls apply() and finish(). Until finish() returns, the helper's
// projections (and, for kLive, the LogBatch) belong to it and must not be read or
// written by anyone else. The destructor calls finish().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "projections/chunk_queue.h"
#include "projections/projection_set.h"

namespace tally {

class SplitApplier {
 public:
  enum class Split : uint8_t { kReplay, kLive };

  // `log`: the batch that kLive appends the envelopes and history rows to (null for kReplay).
  SplitApplier(ProjectionSet* projections, Split split, LogBatch* log = nullptr);
  SplitApplier(const SplitApplier&) = delete;
  SplitApplier& operator=(const SplitApplier&) = delete;
  ~SplitApplier();

  // Applies `event`, which is `envelope` decoded (decode_envelope), to every projection
  // that has not seen it. The envelope's bytes are copied; they need not outlive the call.
  void apply(std::string_view envelope, const fb::Envelope& event);
  // Returns once the helper has applied every event given; then stops it.
  void finish();

 private:
  struct Chunk;

  void hand_over();
  void run_helper();

  ProjectionSet* const projections_;
  const std::vector<Projection*> own_;
  const std::vector<Projection*> helper_part_;
  const size_t chunk_envelopes_max_;
  LogBatch* const log_;
  const bool balances_usage_history_;  // kLive: the helper writes the balances usage-id rows
  std::unique_ptr<Chunk> chunk_;  // being filled by the caller's thread
  ChunkQueue<Chunk> queue_;
  std::thread helper_;  // last: it starts once the rest exists
};

}  // namespace tally
