// Export the log as JSON command lines (SPEC §4), and import such lines into a fresh
// store. Each exported command carries its original engine time ("at") and client id,
// so importing an export into an empty store reproduces the same log, sequence numbers,
// times and projections; only the hash chain's batch boundaries may differ.
#pragma once

#include <cstdint>
#include <istream>
#include <ostream>

#include "engine/engine.h"
#include "engine/error.h"
#include "engine/log.h"
#include "replay/replay.h"

namespace tally {

struct ExportStats {
  uint64_t events = 0;
  uint64_t commands = 0;
};

// Writes one JSON line per command in the log, in order.
Status export_commands(const Store& store, std::ostream& out, ExportStats* stats, const Progress& progress = {});

struct ImportStats {
  uint64_t commands = 0;
  uint64_t events = 0;
};

// Executes the command lines of `in` on `engine`, honouring each command's "at".
// REQUIRES: the engine's log is empty. Commands run in group commits of 4096 lines.
// Stops at the first batch holding a line that fails to decode or is refused, and
// returns that line's error and number. Earlier batches stay committed, and so do the
// other accepted lines of that batch: an import that fails is not a faithful copy and
// its directory should be discarded.
Status import_commands(Engine& engine, std::istream& in, ImportStats* stats, const Progress& progress = {});

}  // namespace tally
