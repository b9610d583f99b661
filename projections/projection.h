// The contract every projection keeps. A projection is state built only from events:
// apply() is a pure function of (state, event) — no I/O, no clock — so live apply and
// replay are the same code.
//
// Persistence: a projection keeps its rows in the store's state family under
// "<name>/", and its checkpoint (the last sequence number applied) at
// "checkpoint/<name>". flush() writes the rows changed since the last flush and the
// checkpoint into one batch, so the stored rows are always those of the checkpoint
// they are stored with. The engine flushes a projection only every so many events
// (ProjectionSet::flush_due): rows may lag the log, never disagree with it.
//
// History rows (RowSink::put_history: rows an event makes once and nothing changes)
// are the exception: flush_history() writes them with every batch (the helper
// thread's projections, in a batch split across two threads, after each chunk of it),
// ahead of the checkpoint, so that they reach the store in sequence order. Loading
// skips those past the checkpoint; the replay from the checkpoint makes them again,
// the same.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "engine/error.h"
#include "engine/log.h"

namespace tally {
namespace fb {
struct Envelope;
}

class Projection {
 public:
  virtual ~Projection() = default;
  // Names the projection; also its row-key prefix.
  virtual std::string_view name() const = 0;
  // REQUIRES: event.seq() == checkpoint() + 1.
  virtual void apply(const fb::Envelope& event) = 0;
  // Hints that `event` is applied soon: each may start loading memory its apply()
  // reads. Changes nothing. A replay calls all three for every event, a few events
  // apart, in the order below, so each can read what the one before started loading:
  // the slot of a hash index (kSlot), the entry that slot points to (kEntry), and that
  // entry's key where it is stored apart from the entry (kKey).
  enum class PrefetchStage : uint8_t { kSlot, kEntry, kKey };
  // What the stages found for an event, handed on to its later stages and to its
  // apply_noted(), so they need not look it up again (an organization or a member is a
  // hash and a comparison of its name, a member's cell is three lookups). The caller
  // keeps one note per event and projection, zeroed before the event's kSlot, and
  // passes it to all three stages, then to apply_noted(). What a note holds is the
  // projection's own (its header says); a note holds only what was there when it was
  // found and stays there: entries never move, and numbers name items never removed.
  struct PrefetchNote {
    const void* entry = nullptr;
    uint64_t hashes[2] = {};
    uint32_t numbers[2] = {};
  };
  virtual void prefetch(const fb::Envelope& /*event*/, PrefetchStage /*stage*/, PrefetchNote* /*note*/) const {}
  // apply() for an event whose prefetch stages were given `note`, kSlot first (or that
  // had no kSlot: a zeroed note, which the later stages leave as it is). Leaves the
  // state apply() would. REQUIRES: as apply().
  virtual void apply_noted(const fb::Envelope& event, const PrefetchNote& /*note*/) { apply(event); }
  // Writes every row changed since the last flush, and the checkpoint.
  virtual void flush(RowSink* sink) = 0;
  // Writes only the history rows made since the last flush (flush writes them too).
  virtual void flush_history(RowSink*) {}
  // Writes every row and the checkpoint (for verify and rebuilds).
  virtual void dump(RowSink* sink) const = 0;
  // Restores one row written by flush or dump; false if the row is malformed.
  virtual bool load_row(std::string_view key, std::string_view value) = 0;
  // Restores one history row, given after every load_row, in sequence order, and only
  // for seq <= checkpoint(); false if the row is malformed.
  virtual bool load_history_row(uint64_t /*seq*/, std::string_view /*key*/, std::string_view /*value*/) { return false; }
  // Called once after the last load_history_row (whether or not there was any): a
  // projection may hold rows back to restore them together (balances does, to overlap
  // their cache misses). False if a row held back turns out malformed.
  virtual bool finish_history() { return true; }
  // Forgets everything (state and pending changes), as if no event was applied.
  virtual void clear() = 0;

  // For a projection that is only read and dumped, never flushed (a rebuild, verify, a
  // query in the past): from now on it keeps no history rows for the next flush. A
  // replay of the whole log would otherwise hold one or two per event in memory until
  // the projection is destroyed. A flush() or flush_history() after it would leave
  // the store without those rows (ProjectionSet::flush_due asserts against it); dump()
  // still writes every row.
  void drop_history_rows() { history_rows_kept_ = false; }
  bool history_rows_kept() const { return history_rows_kept_; }

  uint64_t checkpoint() const { return checkpoint_; }
  void set_checkpoint(uint64_t seq) { checkpoint_ = seq; }

  std::string checkpoint_key() const { return "checkpoint/" + std::string(name()); }
  std::string row_prefix() const { return std::string(name()) + "/"; }

 protected:
  uint64_t checkpoint_ = 0;
  bool history_rows_kept_ = true;
};

}  // namespace tally
