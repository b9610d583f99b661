// HistoryLoader: restores one projection's history rows on a helper thread.
//
// Opening a store reads every history row back (ProjectionSet::load): a statement
// entry and a usage id for each usage event, millions of rows. On one thread, reading
// them from the store took 45 % of an open's samples, restoring the usage ids 25 % and
// restoring the statements 20 % (a 2M-event store). The projections do not read one another, so the caller's
// thread reads the rows and restores all but one projection's, and hands that one's
// rows (copied) to a helper thread, in chunks of at most 4,096 rows or about 1 MiB
// through a queue of at most 8 chunks.
//
// Contract: one thread calls add() and finish(). Until finish() returns, the
// projection belongs to the helper and must not be read or written by anyone else.
// Rows reach the projection in the order they were added. The destructor calls
// finish(). finish_history() is the caller's to call, after finish().
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <thread>

#include "projections/chunk_queue.h"
#include "projections/projection.h"

namespace tally {

class HistoryLoader {
 public:
  explicit HistoryLoader(Projection* projection);
  HistoryLoader(const HistoryLoader&) = delete;
  HistoryLoader& operator=(const HistoryLoader&) = delete;
  ~HistoryLoader();

  // Hands the row to the helper, which gives it to the projection's
  // load_history_row(). The bytes are copied; they need not outlive the call.
  void add(uint64_t seq, std::string_view key, std::string_view value);
  // Returns once the helper has restored every row added, then stops it: false if the
  // projection refused a row as malformed (the helper gives it no row after that one).
  bool finish();

 private:
  struct Chunk;

  void hand_over();
  void run_helper();

  Projection* const projection_;
  std::unique_ptr<Chunk> chunk_;  // being filled by the caller's thread
  ChunkQueue<Chunk> queue_;
  bool malformed_ = false;  // helper thread only until joined
  std::thread helper_;      // last: it starts once the rest exists
};

}  // namespace tally
