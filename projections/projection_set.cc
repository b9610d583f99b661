#include "projections/projection_set.h"

#include <algorithm>
#include <limits>
#include <optional>

#include <fmt/format.h>

#include "engine/assert.h"
#include "engine/event_format.h"
#include "projections/history_loader.h"
#include "projections/split_applier.h"

namespace tally {

void ProjectionSet::apply(const fb::Envelope& event) {
  last_time_us_ = event.time_us();
  apply_unseen(all(), event);
}

void ProjectionSet::apply_unseen(std::span<Projection* const> projections, const fb::Envelope& event,
                                 const Projection::PrefetchNote* notes) {
  for (size_t i = 0; i < projections.size(); ++i) {
    if (event.seq() <= projections[i]->checkpoint()) continue;
    if (notes != nullptr) {
      projections[i]->apply_noted(event, notes[i]);
    } else {
      projections[i]->apply(event);
    }
  }
}

void ProjectionSet::flush(RowSink* sink) { flush_due(sink, 0); }

void ProjectionSet::flush_due(RowSink* sink, uint64_t lag_events) {
  const std::array<Projection*, kCount> projections = all();
  flush_due(sink, lag_events, projections);
}

void ProjectionSet::flush_due(RowSink* sink, uint64_t lag_events, std::span<Projection* const> part) {
  const std::array<Projection*, kCount> projections = all();
  for (size_t i = 0; i < kCount; ++i) {
    if (std::find(part.begin(), part.end(), projections[i]) == part.end()) continue;
    // Rows dropped cannot be written: the store would silently miss them.
    TALLY_ASSERT(projections[i]->history_rows_kept());
    const uint64_t checkpoint = projections[i]->checkpoint();
    if (lag_events > 1) {
      const uint64_t shift = i * lag_events / kCount;
      if ((checkpoint + shift) / lag_events == (stored_[i] + shift) / lag_events) {
        projections[i]->flush_history(sink);
        continue;
      }
    }
    projections[i]->flush(sink);
    stored_[i] = checkpoint;
  }
}

uint64_t ProjectionSet::stored_seq() const { return *std::min_element(stored_.begin(), stored_.end()); }

void ProjectionSet::dump(RowSink* sink) const {
  for (const Projection* projection : all()) projection->dump(sink);
}

void ProjectionSet::drop_history_rows() {
  for (Projection* projection : all()) projection->drop_history_rows();
}

void ProjectionSet::clear() {
  last_time_us_ = 0;
  stored_.fill(0);
  for (Projection* projection : all()) projection->clear();
}

uint64_t ProjectionSet::applied_seq() const {
  uint64_t seq = std::numeric_limits<uint64_t>::max();
  for (const Projection* projection : all()) seq = std::min(seq, projection->checkpoint());
  return seq;
}

uint64_t ProjectionSet::anomalies() const { return orgs.anomalies() + balances.anomalies() + tokens.anomalies() + statements.anomalies(); }

std::vector<std::string> ProjectionSet::stored_prefixes() const {
  std::vector<std::string> keys;
  for (const Projection* projection : all()) {
    keys.push_back(projection->row_prefix());
    keys.push_back(projection->checkpoint_key());
  }
  return keys;
}

size_t ProjectionSet::owner_of(std::string_view key) const {
  const std::array<const Projection*, kCount> projections = all();
  for (size_t p = 0; p < kCount; ++p) {
    const std::string_view name = projections[p]->name();
    if (key.size() > name.size() && key.starts_with(name) && key[name.size()] == '/') return p;
  }
  return kCount;
}

Status ProjectionSet::load(const Store& store) {
  clear();
  const std::array<Projection*, kCount> projections = all();
  const std::vector<std::string> keys = stored_prefixes();
  const std::vector<std::string_view> prefixes(keys.begin(), keys.end());
  std::vector<bool> malformed(projections.size(), false);
  auto load = [&](size_t prefix, std::string_view key, std::string_view value) {
    const size_t p = prefix / 2;
    if (!projections[p]->load_row(key, value)) malformed[p] = true;
  };
  if (Status s = store.read_rows(prefixes, load); !s.ok()) return s;
  // Then the history rows up to each projection's checkpoint; the replay below makes
  // those past it again. The balances projection's (usage ids) are restored on a
  // helper thread, the statements' on this one, which also reads them.
  constexpr size_t kBalances = 1;  // its index in all()
  TALLY_ASSERT(projections[kBalances] == &balances);
  std::optional<HistoryLoader> helper;
  if (!malformed[kBalances]) helper.emplace(&balances);
  auto load_history = [&](uint64_t seq, std::string_view key, std::string_view value) {
    const size_t p = owner_of(key);
    if (p == kCount || malformed[p] || seq > projections[p]->checkpoint()) return;
    if (p == kBalances) {
      helper->add(seq, key, value);
    } else if (!projections[p]->load_history_row(seq, key, value)) {
      malformed[p] = true;
    }
  };
  const Status read = store.read_history(load_history);
  if (helper && !helper->finish()) malformed[kBalances] = true;
  if (!read.ok()) return read;
  for (size_t p = 0; p < projections.size(); ++p) {
    if (!malformed[p] && !projections[p]->finish_history()) malformed[p] = true;
  }
  for (size_t p = 0; p < projections.size(); ++p) {
    if (malformed[p] || projections[p]->checkpoint() > store.last_seq()) {
      // Rows we cannot trust are rebuilt from the log, the source of truth.
      projections[p]->clear();
    }
    stored_[p] = projections[p]->checkpoint();
  }
  return replay(store, store.last_seq(), std::numeric_limits<int64_t>::max());
}

Status ProjectionSet::replay(const Store& store, uint64_t to_seq, int64_t to_time_us,
                             const std::function<void(uint64_t done, uint64_t total)>& progress) {
  const uint64_t from = applied_seq() + 1;
  // A long replay (a rebuild, a start far behind its rows, a query far in the past)
  // shares the work with a helper thread; a short one is not worth starting a thread.
  std::optional<SplitApplier> split;
  if (to_seq >= from && to_seq - from >= kSplitReplayEventsMin) split.emplace(this, SplitApplier::Split::kReplay);
  int64_t last_time_us = last_time_us_;
  Status failure;
  auto visit = [&](uint64_t seq, std::string_view bytes) {
    const fb::Envelope* event = decode_envelope(bytes);
    if (event == nullptr || event->seq() != seq) {
      failure = Error(ErrorCode::kStorageError, fmt::format("log record {} is not a valid envelope", seq));
      return false;
    }
    if (event->time_us() > to_time_us) return false;
    if (split) {
      split->apply(bytes, *event);
    } else {
      apply(*event);
    }
    last_time_us = event->time_us();
    if (progress && seq % 65536 == 0) progress(seq, to_seq);
    return true;
  };
  const Status read = store.read_log(from, to_seq, visit);
  if (split) split->finish();
  last_time_us_ = last_time_us;
  if (!read.ok()) return read;
  return failure;
}

}  // namespace tally
