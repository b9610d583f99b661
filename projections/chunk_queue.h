// ChunkQueue: hands chunks of work from one thread to one helper thread, and the
// chunks back once the helper is done with them, so the next ones are filled in memory
// already touched instead of fresh pages (a page fault every 4 KiB of a new chunk).
// SplitApplier (envelopes) and HistoryLoader (history rows) share it.
//
// Contract: one producer thread calls fill_next(), wait_idle() and close(); one helper
// thread calls take() and give_back(), which hands back each chunk taken before the
// next take(). At most `queued_max` chunks wait in the queue: fill_next() waits for
// room, and counts how long it waited (take_producer_wait_us). Chunks come out of take() in
// the order they went in.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace tally {

template <typename Chunk>
class ChunkQueue {
 public:
  explicit ChunkQueue(size_t queued_max) : queued_max_(queued_max) {}

  // Producer: queues `full` (waiting while queued_max chunks wait) and returns an empty
  // chunk to fill next, one given back if there is one, else made by `make()`.
  template <typename Make>
  std::unique_ptr<Chunk> fill_next(std::unique_ptr<Chunk> full, Make&& make) {
    std::unique_ptr<Chunk> next;
    {
      std::unique_lock lock(mutex_);
      if (queue_.size() >= queued_max_) {
        const auto waiting = std::chrono::steady_clock::now();
        changed_.wait(lock, [&] { return queue_.size() < queued_max_; });
        producer_wait_us_ += std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - waiting).count();
      }
      queue_.push_back(std::move(full));
      if (!spare_.empty()) {
        next = std::move(spare_.back());
        spare_.pop_back();
      }
    }
    changed_.notify_all();
    return next != nullptr ? std::move(next) : make();
  }
  // Producer: no more chunks; take() returns null once the queue is empty.
  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    changed_.notify_all();
  }

  // Producer: waits until the helper has given back every chunk queued. Whatever the
  // helper did before giving them back is then visible to the producer, and the
  // helper does nothing more until the next chunk is queued.
  void wait_idle() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return queue_.empty() && !taken_; });
  }

  // Producer: how long fill_next() has waited for room since the last call.
  int64_t take_producer_wait_us() { return std::exchange(producer_wait_us_, 0); }

  // Helper: the next chunk, waiting for one; null once closed and every chunk taken.
  std::unique_ptr<Chunk> take() {
    std::unique_ptr<Chunk> chunk;
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return !queue_.empty() || closed_; });
      if (queue_.empty()) return nullptr;
      chunk = std::move(queue_.front());
      queue_.pop_front();
      taken_ = true;
    }
    changed_.notify_all();
    return chunk;
  }
  // Helper: a chunk it is done with, emptied by the helper, for the producer to fill.
  void give_back(std::unique_ptr<Chunk> used) {
    {
      std::lock_guard lock(mutex_);
      spare_.push_back(std::move(used));
      taken_ = false;
    }
    changed_.notify_all();
  }

 private:
  const size_t queued_max_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::unique_ptr<Chunk>> queue_;   // guarded by mutex_
  std::vector<std::unique_ptr<Chunk>> spare_;  // guarded by mutex_
  bool closed_ = false;                        // guarded by mutex_
  bool taken_ = false;                         // guarded by mutex_: the helper holds a chunk
  int64_t producer_wait_us_ = 0;               // the producer's
};

}  // namespace tally
