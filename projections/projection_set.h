// All projections together, in the order events are applied to them. The engine reads
// them to validate commands; queries read them to answer.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "engine/error.h"
#include "engine/log.h"
#include "projections/balances.h"
#include "projections/orgs.h"
#include "projections/rates.h"
#include "projections/statements.h"
#include "projections/tokens.h"
#include "projections/usage.h"

namespace tally {

class ProjectionSet {
 public:
  ProjectionSet() = default;
  ProjectionSet(const ProjectionSet&) = delete;
  ProjectionSet& operator=(const ProjectionSet&) = delete;

  OrgsProjection orgs;
  BalancesProjection balances;
  RatesProjection rates;
  UsageProjection usage;
  StatementsProjection statements;
  TokensProjection tokens;

  // Applies the event to every projection that has not yet seen it.
  void apply(const fb::Envelope& event);
  // The same for some of the projections (SplitApplier gives each thread its part);
  // with `notes`, each projection gets apply_noted() with its note (notes[i] for
  // projections[i]) instead of apply().
  static void apply_unseen(std::span<Projection* const> projections, const fb::Envelope& event,
                           const Projection::PrefetchNote* notes = nullptr);
  // Writes the changed rows and the checkpoint of every projection into the batch.
  void flush(RowSink* sink);
  // The same for the projections that are due, so that a projection's rows are
  // written about once every `lag_events` events instead of with every batch: a row
  // changed many times in between (a member's balance, a usage cell) is written once.
  // The projections take turns (projection i is due when its checkpoint passes a
  // multiple of lag_events, shifted by i * lag_events / kCount), so no one batch
  // carries all of them. A projection's stored rows are never more than lag_events
  // plus one batch behind its checkpoint; load() replays the log past them. History
  // rows (RowSink::put_history) are written every time, due or not, so that they reach
  // the store in sequence order. lag_events 0 or 1 flushes every projection, as
  // flush() does.
  void flush_due(RowSink* sink, uint64_t lag_events);
  // The same for the projections in `part` only: each thread of a split batch
  // (SplitApplier, kLive) flushes its own.
  void flush_due(RowSink* sink, uint64_t lag_events, std::span<Projection* const> part);
  // The lowest checkpoint among the rows in the store, as of the last load() and of
  // the flushes since (assuming the batches they went into were committed; after a
  // failed commit, load() again).
  uint64_t stored_seq() const;
  // Writes every row of every projection.
  void dump(RowSink* sink) const;
  // For a set that is only read and dumped, never flushed (a rebuild, verify, a query
  // in the past): its projections keep no history rows for a flush
  // (Projection::drop_history_rows). flush() and flush_due() must not be called after.
  void drop_history_rows();
  void clear();
  // Sequence number every projection has reached.
  uint64_t applied_seq() const;
  // Events that referred to unknown entities, over all projections.
  uint64_t anomalies() const;
  // Engine time of the last event applied (0 before any).
  int64_t last_time_us() const { return last_time_us_; }

  // Restores every projection from its stored rows and its history rows up to its
  // checkpoint, then applies the log from its checkpoint to the store's last record. A
  // projection with a malformed row is rebuilt from the log instead; history rows of
  // no projection are ignored.
  Status load(const Store& store);
  // Applies log records (applied_seq(), to_seq] whose engine time is <= to_time_us.
  // From kSplitReplayEventsMin records on, on two threads (SplitApplier). `progress`,
  // if given, is called now and then with (sequence number reached, to_seq).
  Status replay(const Store& store, uint64_t to_seq, int64_t to_time_us,
                const std::function<void(uint64_t done, uint64_t total)>& progress = {});
  static constexpr uint64_t kSplitReplayEventsMin = 16384;

  static constexpr size_t kCount = 6;
  std::array<Projection*, kCount> all() { return {&orgs, &balances, &rates, &usage, &statements, &tokens}; }
  std::array<const Projection*, kCount> all() const { return {&orgs, &balances, &rates, &usage, &statements, &tokens}; }
  // Where each projection of all() keeps its rows in the store: 2i is the prefix of
  // projection i's rows, 2i + 1 its checkpoint key. Read them with one
  // Store::read_rows call.
  std::vector<std::string> stored_prefixes() const;
  // The index in all() of the projection a row key belongs to (the key starts with
  // its row_prefix()), or kCount if none.
  size_t owner_of(std::string_view key) const;

 private:
  friend class SplitApplier;  // keeps last_time_us_ as it applies
  int64_t last_time_us_ = 0;
  // The checkpoint of each projection's rows in the store, in the order of all().
  std::array<uint64_t, kCount> stored_{};
};

}  // namespace tally
