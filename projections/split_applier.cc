#include "projections/split_applier.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "engine/assert.h"
#include "engine/event_format.h"
#include "engine/thread_name.h"

namespace tally {
namespace {

constexpr size_t kChunksQueuedMax = 8;
constexpr size_t kReplayChunkEnvelopesMax = 4096;
constexpr size_t kLiveChunkEnvelopesMax = 256;
// How many events ahead the helper starts loading an envelope's bytes (the other
// thread copied them into the chunk), then calls each stage of Projection::prefetch.
constexpr size_t kBytesAhead = 16;
constexpr size_t kSlotAhead = 8;
constexpr size_t kEntryAhead = 4;
constexpr size_t kKeyAhead = 2;

std::vector<Projection*> caller_part(ProjectionSet* p, SplitApplier::Split split) {
  if (split == SplitApplier::Split::kReplay) return {&p->orgs, &p->rates, &p->statements, &p->tokens};
  return {&p->orgs, &p->balances, &p->rates, &p->tokens};
}

std::vector<Projection*> helper_part(ProjectionSet* p, SplitApplier::Split split) {
  if (split == SplitApplier::Split::kReplay) return {&p->balances, &p->usage};
  return {&p->usage, &p->statements};
}

}  // namespace

// Envelopes copied end to end, each starting on an 8-byte boundary, as FlatBuffers
// needs to read them in place. The words are kept from one use of the chunk to the
// next (the queue hands chunks back): only the first `used` hold this use's envelopes,
// and the vector grows, zero-filling the new words, only past the most the chunk ever
// held. Growing it from empty for every envelope zero-filled each word before the copy
// wrote it: 3 % of a rebuild's reading thread.
struct SplitApplier::Chunk {
  static constexpr size_t kWordsMax = size_t{1} << 17;  // 1 MiB
  explicit Chunk(size_t envelopes_max) : envelopes_max(envelopes_max) {}
  const size_t envelopes_max;
  std::vector<uint64_t> words;
  size_t used = 0;                                   // words in use
  std::vector<std::pair<size_t, size_t>> envelopes;  // (first word, bytes)
  LogBatch* log = nullptr;    // kLive: the batch the envelopes belong to
  bool starts_batch = false;  // kLive: the batch's first chunk
  bool ends_batch = false;    // kLive: the batch's last chunk

  void clear() {
    used = 0;
    envelopes.clear();
    log = nullptr;
    starts_batch = false;
    ends_batch = false;
  }
  void add(std::string_view envelope) {
    const size_t first = used;
    used += (envelope.size() + 7) / 8;
    if (used > words.size()) words.resize(used);
    if (!envelope.empty()) std::memcpy(words.data() + first, envelope.data(), envelope.size());
    envelopes.emplace_back(first, envelope.size());
  }
  bool full() const { return envelopes.size() >= envelopes_max || used >= kWordsMax; }
  std::string_view at(size_t i) const { return {reinterpret_cast<const char*>(words.data() + envelopes[i].first), envelopes[i].second}; }
};

SplitApplier::SplitApplier(ProjectionSet* projections, Split split, const LiveBatches& live)
    : projections_(projections),
      own_(caller_part(projections, split)),
      helper_part_(helper_part(projections, split)),
      chunk_envelopes_max_(split == Split::kReplay ? kReplayChunkEnvelopesMax : kLiveChunkEnvelopesMax),
      live_(split == Split::kLive),
      live_batches_(live),
      balances_usage_history_(live_ && projections->balances.history_rows_kept()),
      chunk_(std::make_unique<Chunk>(chunk_envelopes_max_)),
      queue_(kChunksQueuedMax),
      helper_([this] { run_helper(); }) {
  // A projection added to the set must be given to one of the two threads.
  TALLY_ASSERT(own_.size() + helper_part_.size() == projections->all().size());
  TALLY_ASSERT(!live_ || (live_batches_.chain && live_batches_.done));
  name_thread(helper_, kSplitThreadName);
}

SplitApplier::SplitApplier(ProjectionSet* projections, Split split) : SplitApplier(projections, split, LiveBatches{}) {
  TALLY_ASSERT(split == Split::kReplay);
}

SplitApplier::SplitApplier(ProjectionSet* projections, LiveBatches live) : SplitApplier(projections, Split::kLive, live) {}

SplitApplier::~SplitApplier() { finish(); }

void SplitApplier::start_batch(LogBatch* log) {
  TALLY_ASSERT(live_ && chunk_->envelopes.empty());  // the batch before ended, or had no event
  log_ = log;
  handed_ = false;
  // The helper writes the balances usage-id rows of the batch's events (the writer's
  // balances projection keeps none), until wait_idle() or finish().
  if (balances_usage_history_) projections_->balances.usage_history_elsewhere(true);
}

void SplitApplier::wait_idle() {
  TALLY_ASSERT(live_ && chunk_->envelopes.empty());
  const auto waiting = std::chrono::steady_clock::now();
  queue_.wait_idle();
  waited_us_ += std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - waiting).count();
  projections_->balances.usage_history_elsewhere(false);
}

void SplitApplier::end_batch() {
  TALLY_ASSERT(live_ && (handed_ || !chunk_->envelopes.empty()));  // an event was given
  chunk_->ends_batch = true;
  hand_over();
  log_ = nullptr;
}

void SplitApplier::apply(std::string_view envelope, const fb::Envelope& event) {
  TALLY_ASSERT(!live_ || log_ != nullptr);
  projections_->last_time_us_ = event.time_us();
  ProjectionSet::apply_unseen(own_, event);
  chunk_->add(envelope);
  if (chunk_->full()) hand_over();
}

void SplitApplier::finish() {
  if (!helper_.joinable()) return;
  // A kLive batch is passed on only once ended; events given without an end would
  // never reach the log.
  TALLY_ASSERT(!live_ || chunk_->envelopes.empty());
  const auto waiting = std::chrono::steady_clock::now();
  hand_over();
  queue_.close();
  helper_.join();
  waited_us_ += std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - waiting).count();
  projections_->balances.usage_history_elsewhere(false);
}

void SplitApplier::hand_over() {
  if (chunk_->envelopes.empty() && !chunk_->ends_batch) return;
  chunk_->log = log_;
  chunk_->starts_batch = !handed_;
  handed_ = true;
  chunk_ = queue_.fill_next(std::move(chunk_), [&] { return std::make_unique<Chunk>(chunk_envelopes_max_); });
}

void SplitApplier::run_helper() {
  // The prefetch notes of the events from i to i + kSlotAhead, by event modulo
  // kNotedEvents, then by projection.
  constexpr size_t kNotedEvents = 16;
  static_assert(kNotedEvents > kSlotAhead);
  const size_t parts = helper_part_.size();
  std::vector<Projection::PrefetchNote> notes(kNotedEvents * parts);
  // Until the queue is closed and every chunk applied.
  while (std::unique_ptr<Chunk> chunk = queue_.take()) {
    LogBatch* const log = chunk->log;
    const size_t count = chunk->envelopes.size();
    if (live_ && chunk->starts_batch) {
      // The batch before is passed on (a chunk never holds two batches' events), so
      // its hash is the sealed head's now.
      live_batches_.chain(log);
    }
    // The first events of a chunk had no kSlot: their notes must not be the last chunk's.
    std::fill(notes.begin(), notes.end(), Projection::PrefetchNote{});
    for (size_t i = 0; i < count; ++i) {
      // Events a few places on: their cache misses overlap this one's work.
      const auto hint = [&](size_t ahead, Projection::PrefetchStage stage) {
        if (i + ahead >= count) return;
        const fb::Envelope* event = fb::GetEnvelope(chunk->at(i + ahead).data());
        Projection::PrefetchNote* note = &notes[((i + ahead) % kNotedEvents) * parts];
        for (size_t p = 0; p < parts; ++p) {
          if (stage == Projection::PrefetchStage::kSlot) note[p] = {};
          helper_part_[p]->prefetch(*event, stage, &note[p]);
        }
      };
      if (i + kBytesAhead < count) {
        const std::string_view bytes = chunk->at(i + kBytesAhead);
        for (size_t at = 0; at < bytes.size(); at += 64) __builtin_prefetch(bytes.data() + at);
      }
      hint(kSlotAhead, Projection::PrefetchStage::kSlot);
      hint(kEntryAhead, Projection::PrefetchStage::kEntry);
      hint(kKeyAhead, Projection::PrefetchStage::kKey);
      // These bytes are a copy of an envelope the caller decoded (apply's contract: it
      // passed decode_envelope, or the engine built it), now 8-byte aligned in the
      // chunk, so the helper reads it in place without running FlatBuffers' verifier a
      // second time.
      const fb::Envelope* event = fb::GetEnvelope(chunk->at(i).data());
      ProjectionSet::apply_unseen(helper_part_, *event, &notes[(i % kNotedEvents) * parts]);
      if (live_) {
        log->append(event->seq(), chunk->at(i));
        if (balances_usage_history_) BalancesProjection::put_usage_history(*event, log);
      }
    }
    // The history rows of the chunk's events (statement entries) go into the batch here,
    // while the caller's thread goes on with the commands, rather than all at once in
    // its flush_due() at the end of the batch.
    if (live_ && !chunk->ends_batch) {
      for (Projection* projection : helper_part_) projection->flush_history(log);
    }
    if (chunk->ends_batch) {
      // The rows of the helper's projections that are due (history rows always), and
      // the batch is whole.
      projections_->flush_due(log, live_batches_.row_lag_events, helper_part_);
      live_batches_.done(log);
    }
    chunk->clear();
    queue_.give_back(std::move(chunk));
  }
}

}  // namespace tally
