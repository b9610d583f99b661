// Rebuilding projections from the log, and proving the log and the projections sound.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/log.h"
#include "projections/projection_set.h"

namespace tally {

// Called now and then during long work with (events done, events in all).
using Progress = std::function<void(uint64_t done, uint64_t total)>;

struct RebuildStats {
  uint64_t events = 0;
  double seconds = 0;
};

// Rebuilds every projection from the whole log and replaces the stored rows and
// checkpoints with the result, in one synced write.
Status rebuild_projections(Store& store, RebuildStats* stats, const Progress& progress = {});

struct VerifyReport {
  uint64_t events = 0;
  uint64_t batches = 0;
  std::string head_hash;              // hex SHA-256 of the last batch
  std::vector<std::string> problems;  // empty when everything holds
  bool ok() const { return problems.empty(); }
};

// Checks, reading everything:
//   - the hash chain: every batch's hash recomputed from its records;
//   - every record's checksum, envelope, sequence number and strictly rising time;
//   - rebuilding every projection from the log gives exactly its stored rows as of
//     their checkpoint (rows are written only every so many events), and exactly
//     `live`'s rows at the log's end when given;
//   - no event refers to something that does not exist;
//   - the accounting invariants of SPEC §2 hold (BalancesProjection::check_invariants).
VerifyReport verify(const Store& store, const ProjectionSet* live, const Progress& progress = {});

// Every row of `projections`, sorted by key, as (key, value) pairs.
std::vector<std::pair<std::string, std::string>> projection_rows(const ProjectionSet& projections);

}  // namespace tally
