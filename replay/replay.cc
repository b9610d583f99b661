#include "replay/replay.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <limits>
#include <map>
#include <optional>

#include <fmt/format.h>
#include <xxhash.h>

#include "engine/event_format.h"
#include "projections/split_applier.h"

namespace tally {
namespace {

class MapSink final : public RowSink {
 public:
  void put(std::string_view key, std::string_view value) override { rows[std::string(key)] = std::string(value); }
  void erase(std::string_view key) override { rows.erase(std::string(key)); }
  std::map<std::string, std::string> rows;
};

// An order-independent fingerprint of a set of rows: the count and two sums of
// 64-bit hashes of each (key, value). Equal row sets give equal digests; a differing
// row changes them (short of a 2^-128 accident), without holding the rows in memory.
class DigestSink final : public RowSink {
 public:
  void put(std::string_view key, std::string_view value) override {
    std::string row;
    row.reserve(4 + key.size() + value.size());
    const auto key_size = static_cast<uint32_t>(key.size());
    row.append(reinterpret_cast<const char*>(&key_size), sizeof key_size);
    row.append(key);
    row.append(value);
    const XXH128_hash_t hash = XXH3_128bits(row.data(), row.size());
    low_ += hash.low64;
    high_ += hash.high64;
    ++rows_;
  }
  void erase(std::string_view) override {}  // dumps only put
  bool operator==(const DigestSink& other) const { return rows_ == other.rows_ && low_ == other.low_ && high_ == other.high_; }

 private:
  uint64_t rows_ = 0, low_ = 0, high_ = 0;
};

std::string printable(std::string_view key) {
  std::string out;
  for (char c : key) {
    if (c >= 0x20 && c < 0x7f) {
      out += c;
    } else {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    }
  }
  return out;
}

// Compares two row sets and describes the first few differences.
void compare_rows(const std::map<std::string, std::string>& expected, const std::map<std::string, std::string>& actual,
                  std::string_view what, std::vector<std::string>* problems) {
  int reported = 0;
  for (const auto& [key, value] : expected) {
    auto it = actual.find(key);
    if (it == actual.end()) {
      if (reported++ < 5) problems->push_back(fmt::format("{}: row {} is missing", what, printable(key)));
    } else if (it->second != value) {
      if (reported++ < 5) problems->push_back(fmt::format("{}: row {} differs from the rebuild", what, printable(key)));
    }
  }
  for (const auto& [key, value] : actual) {
    if (!expected.contains(key) && reported++ < 5) problems->push_back(fmt::format("{}: row {} should not exist", what, printable(key)));
  }
  if (reported > 5) problems->push_back(fmt::format("{}: {} more differences", what, reported - 5));
}

// Streams the rows of every projection in the store to the sink `sink_for(i)` gives
// for projection i of `projections.all()` (nullptr skips it): its rows, its checkpoint
// row, then its history rows up to that checkpoint, as ProjectionSet::load reads them.
// A store that never committed an event has no checkpoint rows: they are at 0, as
// ProjectionSet::load reads them. With `checkpoints`, also gives the checkpoint each
// projection's rows are at (0 when there is no row; a malformed checkpoint row counts
// as 0, and the rows then differ from the rebuild at 0). With `strays`, counts the
// history rows of no projection.
Status read_stored_rows(const Store& store, const ProjectionSet& projections, const std::function<RowSink*(size_t)>& sink_for,
                        std::array<uint64_t, ProjectionSet::kCount>* checkpoints = nullptr, uint64_t* strays = nullptr) {
  const std::vector<std::string> keys = projections.stored_prefixes();
  const std::vector<std::string_view> prefixes(keys.begin(), keys.end());
  std::vector<bool> has_checkpoint(keys.size() / 2, false);
  std::array<uint64_t, ProjectionSet::kCount> at{};
  size_t done = 0;  // prefixes finished
  auto finish_up_to = [&](size_t prefix) {
    for (; done < prefix; ++done) {
      RowSink* sink = sink_for(done / 2);
      if (done % 2 == 1 && !has_checkpoint[done / 2] && sink != nullptr) sink->put(keys[done], be64(0));
    }
  };
  const Status status = store.read_rows(prefixes, [&](size_t prefix, std::string_view key, std::string_view value) {
    finish_up_to(prefix);
    if (prefix % 2 == 1 && key == keys[prefix]) {
      has_checkpoint[prefix / 2] = true;
      if (value.size() == 8) at[prefix / 2] = read_be64(value);
    }
    if (RowSink* sink = sink_for(prefix / 2)) sink->put(key, value);
  });
  finish_up_to(prefixes.size());
  if (!status.ok()) return status;
  if (checkpoints != nullptr) *checkpoints = at;
  return store.read_history([&](uint64_t seq, std::string_view key, std::string_view value) {
    const size_t p = projections.owner_of(key);
    if (p == ProjectionSet::kCount) {
      if (strays != nullptr) ++*strays;
      return;
    }
    if (seq > at[p]) return;
    if (RowSink* sink = sink_for(p)) sink->put_history(seq, key, value);
  });
}

}  // namespace

std::vector<std::pair<std::string, std::string>> projection_rows(const ProjectionSet& projections) {
  MapSink sink;
  projections.dump(&sink);
  return {sink.rows.begin(), sink.rows.end()};
}

Status rebuild_projections(Store& store, RebuildStats* stats, const Progress& progress) {
  const auto start = std::chrono::steady_clock::now();
  ProjectionSet projections;
  projections.drop_history_rows();  // dumped below, never flushed
  const uint64_t total = store.last_seq();
  if (Status s = projections.replay(store, total, std::numeric_limits<int64_t>::max(), progress); !s.ok()) return s;
  for (Projection* projection : projections.all()) projection->set_checkpoint(total);
  if (progress) progress(total, total);
  if (Status s = store.replace_rows([&](RowSink* sink) { projections.dump(sink); }); !s.ok()) return s;
  stats->events = total;
  stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return Status::Ok();
}

VerifyReport verify(const Store& store, const ProjectionSet* live, const Progress& progress) {
  VerifyReport report;
  auto problem = [&](std::string text) { report.problems.push_back(std::move(text)); };

  struct Batch {
    uint64_t first, last;
    Sha256 hash;
  };
  std::vector<Batch> chain;
  Status status = store.read_chain([&](uint64_t first, uint64_t last, const Sha256& hash) {
    chain.push_back({first, last, hash});
    return true;
  });
  if (!status.ok()) {
    problem(status.message);
    return report;
  }
  report.batches = chain.size();

  // The stored rows of each projection, as digests, and the checkpoint they are at.
  // The engine writes a projection's rows only every so many events (ProjectionSet::
  // flush_due), so each projection is compared with the rebuild as it stood at its own
  // stored checkpoint, taken during the one pass over the log below.
  ProjectionSet rebuilt;
  rebuilt.drop_history_rows();  // compared by dump, never flushed
  constexpr size_t kCount = ProjectionSet::kCount;
  std::array<DigestSink, kCount> stored_digest;
  std::array<uint64_t, kCount> stored_checkpoint{};
  uint64_t strays = 0;
  status = read_stored_rows(store, rebuilt, [&](size_t p) -> RowSink* { return &stored_digest[p]; }, &stored_checkpoint, &strays);
  if (!status.ok()) {
    problem(status.message);
    return report;
  }
  if (strays != 0) problem(fmt::format("stored projections: {} history rows belong to no projection", strays));
  std::array<DigestSink, kCount> expected_digest;
  // The rebuild is shared with a helper thread, as ProjectionSet::replay shares it; at
  // a stored checkpoint the helper catches up first, so the dump sees every projection
  // at that sequence number, and a new helper takes the events after it.
  std::optional<SplitApplier> split;
  auto take_expected = [&](uint64_t seq) {
    if (std::find(stored_checkpoint.begin(), stored_checkpoint.end(), seq) == stored_checkpoint.end()) return;
    split.reset();  // its destructor waits for the helper
    for (size_t p = 0; p < kCount; ++p) {
      if (stored_checkpoint[p] == seq) rebuilt.all()[p]->dump(&expected_digest[p]);
    }
    split.emplace(&rebuilt, SplitApplier::Split::kReplay);
  };
  take_expected(0);
  if (!split) split.emplace(&rebuilt, SplitApplier::Split::kReplay);

  // One pass over the log: hash chain, checksums, envelopes, and the rebuild.
  Sha256 previous{};
  size_t batch_index = 0;
  std::unique_ptr<ChainHasher> hasher;
  int64_t last_time = std::numeric_limits<int64_t>::min();
  const uint64_t total = store.last_seq();
  auto visit = [&](uint64_t seq, std::string_view envelope) {
    if (batch_index >= chain.size() || seq < chain[batch_index].first) {
      problem(fmt::format("record {} is not covered by the hash chain", seq));
      return false;
    }
    const Batch& batch = chain[batch_index];
    if (seq == batch.first) hasher = std::make_unique<ChainHasher>(previous);
    hasher->add(seq, view(record_checksum(envelope)), envelope);
    if (seq == batch.last) {
      const Sha256 hash = hasher->finish();
      if (hash != batch.hash) {
        problem(fmt::format("the hash of the batch {}..{} does not match: history was altered", batch.first, batch.last));
        return false;
      }
      previous = hash;
      ++batch_index;
    }
    const fb::Envelope* event = decode_envelope(envelope);
    if (event == nullptr) {
      problem(fmt::format("record {} is not a valid envelope", seq));
      return false;
    }
    if (event->seq() != seq) problem(fmt::format("record {} carries sequence number {}", seq, event->seq()));
    if (event->time_us() <= last_time) problem(fmt::format("record {}: engine time does not rise", seq));
    if (event->command_seq() == 0 || event->command_seq() > seq) problem(fmt::format("record {}: bad command_seq", seq));
    last_time = event->time_us();
    split->apply(envelope, *event);
    take_expected(seq);
    ++report.events;
    if (progress && seq % 65536 == 0) progress(seq, total);
    return report.problems.size() < 20;
  };
  status = store.read_log(1, total, visit);
  split.reset();  // every event applied: the rebuild is whole again
  if (!status.ok()) problem(status.message);
  if (report.problems.empty() && batch_index != chain.size()) {
    problem(fmt::format("the hash chain names {} batches but the log holds {}", chain.size(), batch_index));
  }
  if (report.problems.empty() && previous != store.head_hash()) problem("the head hash does not match the chain");
  report.head_hash = to_hex(previous);
  if (!report.problems.empty()) return report;

  if (rebuilt.anomalies() != 0) problem(fmt::format("{} events refer to things that do not exist", rebuilt.anomalies()));
  for (std::string& broken : rebuilt.balances.check_invariants()) problem("invariant: " + broken);

  // Compare by digest first; only on a mismatch collect the rows to name them.
  for (size_t p = 0; p < kCount; ++p) {
    const std::string_view name = rebuilt.all()[p]->name();
    if (stored_checkpoint[p] > total) {
      problem(fmt::format("stored projections: the rows of {} are at sequence {}, past the log's last record {}", name,
                          stored_checkpoint[p], total));
    } else if (!(stored_digest[p] == expected_digest[p])) {
      // Rebuild again up to that checkpoint, this time collecting the rows to compare.
      ProjectionSet then;
      then.drop_history_rows();
      const Status replayed = then.replay(store, stored_checkpoint[p], std::numeric_limits<int64_t>::max());
      if (!replayed.ok()) {
        problem(replayed.message);
        continue;
      }
      MapSink expected, stored;
      then.all()[p]->dump(&expected);
      const Status read = read_stored_rows(store, rebuilt, [&](size_t q) -> RowSink* { return q == p ? &stored : nullptr; });
      if (!read.ok()) problem(read.message);
      compare_rows(expected.rows, stored.rows, "stored projections", &report.problems);
    }
  }
  if (live != nullptr) {
    DigestSink expected, current;
    rebuilt.dump(&expected);
    live->dump(&current);
    if (!(current == expected)) {
      MapSink expected_rows, current_rows;
      rebuilt.dump(&expected_rows);
      live->dump(&current_rows);
      compare_rows(expected_rows.rows, current_rows.rows, "live projections", &report.problems);
    }
  }
  if (progress) progress(total, total);
  return report;
}

}  // namespace tally
