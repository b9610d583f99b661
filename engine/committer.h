// Committer: a thread that makes sealed batches durable (Store::write) in the order
// they are handed over, so that the engine's writer executes its next batch meanwhile.
//
// Group sync: the batches that were handed over while a write was in progress are
// written together next, and synced once — each unsynced but the last, whose synced
// write makes all of them durable (Store::write). None of them is reported written
// before that sync has succeeded; if any write of the group fails, every batch of the
// group gets the failure. A daemon answering small reserve and settle batches among
// large ones syncs a quarter to a third less often (bench/RESULTS.md, "Runs 45-46").
//
// Once a write fails, the batches handed over after it are not written: each gets the
// failure's status instead. A batch sealed on top of one that failed must never reach
// the disk, or the log would hold events whose premises were never written.
//
// Contract: one thread (the engine's writer) calls hand_over(), expect() and wait().
// A batch handed over belongs to the committer until wait() has returned its status;
// wait() returns the statuses in hand-over order; written_ok() tells, without
// blocking, how many of them are ready and Ok. A batch may also be handed over in two
// steps, when another thread seals it (the engine's split-apply helper): the writer
// calls expect() at once, and that thread deliver() once the batch is sealed; until
// then wait() waits for it. Batches are delivered in the order they are expected, and
// every batch expected must be delivered. The destructor waits for the writes in
// progress.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <thread>

#include "engine/error.h"

namespace tally {

class LogBatch;
class Store;

class Committer {
 public:
  explicit Committer(const Store* store);
  ~Committer();
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  // REQUIRES: the batch is sealed (Store::seal), after every batch handed over before.
  // The same as expect() then deliver(batch).
  void hand_over(LogBatch* batch);
  // A batch will be delivered: wait() and pending() count it from now on.
  void expect();
  // Any thread: the batch is sealed; write it after the ones delivered before.
  void deliver(LogBatch* batch);
  // Blocks until the oldest batch handed over and not yet waited for is written, and
  // returns the write's status. REQUIRES: such a batch exists.
  Status wait();
  // Batches handed over whose status wait() has not yet returned.
  size_t pending() const { return pending_; }
  // How many of those, from the oldest, are written, each successfully: that many next
  // calls of wait() return Ok at once. Never waits for a write.
  size_t written_ok() const;

 private:
  void run();

  const Store* const store_;
  size_t pending_ = 0;  // caller's thread only
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<LogBatch*> to_write_;  // guarded by mutex_
  std::deque<Status> written_;      // guarded by mutex_, in hand-over order
  bool stopping_ = false;           // guarded by mutex_
  std::thread thread_;              // last: it starts once the rest exists
};

}  // namespace tally
