// SplitApplier: applies a long run of log events to a ProjectionSet on two threads.
//
// The projections do not read one another, so each may take the events on a thread of
// its own as long as it sees all of them, in order. The caller's thread applies orgs,
// rates, usage and tokens as it reads the log; a helper thread applies balances and
// statements (about half of the work) from copies of the envelopes, handed over in
// chunks of at most 4,096 envelopes or about 1 MiB through a queue of at most 8, so
// about 10 MiB at most are in flight. Like ProjectionSet::apply, a projection skips an
// event at or below its checkpoint.
//
// Contract: one thread calls apply() and finish(). Until finish() returns, balances and
// statements belong to the helper and must not be read. The set's last_time_us() is not
// updated; ProjectionSet::replay sets it. The destructor calls finish().
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "projections/projection_set.h"

namespace tally {

class SplitApplier {
 public:
  explicit SplitApplier(ProjectionSet* projections);
  SplitApplier(const SplitApplier&) = delete;
  SplitApplier& operator=(const SplitApplier&) = delete;
  ~SplitApplier();

  // Applies `event`, which is `envelope` decoded (decode_envelope), to every projection
  // that has not seen it. The envelope's bytes are copied; they need not outlive the call.
  void apply(std::string_view envelope, const fb::Envelope& event);
  // Returns once the helper has applied every event given; then stops it.
  void finish();

 private:
  struct Chunk;

  void hand_over();
  void run_helper();

  const std::vector<Projection*> own_;
  const std::vector<Projection*> helper_part_;
  std::unique_ptr<Chunk> chunk_;  // being filled by the caller's thread
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::unique_ptr<Chunk>> queue_;  // guarded by mutex_
  bool closed_ = false;                       // guarded by mutex_
  std::thread helper_;                        // last: it starts once the rest exists
};

}  // namespace tally
