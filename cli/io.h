// Small helpers the tally commands share: bounded line reading, progress on a
// terminal, and the apply loop.
#pragma once

#include <cstdint>
#include <istream>
#include <ostream>
#include <string>
#include <string_view>

#include "engine/engine.h"
#include "replay/replay.h"

namespace tally::cli {

// Reads one line of at most `max_bytes` (without the newline). A longer line is read to
// its end and dropped, with *too_long set. Returns false at end of input.
bool read_line(std::istream& in, std::string* line, size_t max_bytes, bool* too_long);

// A Progress that redraws one status line on stderr when stderr is a terminal, and
// does nothing otherwise.
Progress terminal_progress(std::string label);
// Ends a progress line (prints the newline) if one was drawn.
void end_progress();

struct ApplyStats {
  uint64_t commands = 0;
  uint64_t accepted = 0;
  uint64_t refused = 0;
};

// Reads JSON command lines from `in`, executes them in group commits, and writes one
// JSON answer line per input line to `out`, in order. Lines that fail to decode are
// answered without reaching the engine. Blank lines are skipped.
void apply_lines(Engine& engine, std::istream& in, std::ostream& out, ApplyStats* stats);

}  // namespace tally::cli
