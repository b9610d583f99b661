#include "engine/committer.h"

#include <vector>

#include "engine/assert.h"
#include "engine/log.h"
#include "engine/thread_name.h"

namespace tally {

Committer::Committer(const Store* store) : store_(store), thread_([this] { run(); }) { name_thread(thread_, kCommitThreadName); }

Committer::~Committer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void Committer::hand_over(LogBatch* batch) {
  expect();
  deliver(batch);
}

void Committer::expect() { ++pending_; }

void Committer::deliver(LogBatch* batch) {
  {
    std::lock_guard lock(mutex_);
    to_write_.push_back(batch);
  }
  changed_.notify_all();
}

Status Committer::wait() {
  TALLY_ASSERT(pending_ > 0);
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return !written_.empty(); });
  Status status = std::move(written_.front());
  written_.pop_front();
  --pending_;
  return status;
}

size_t Committer::written_ok() const {
  std::lock_guard lock(mutex_);
  size_t ok = 0;
  while (ok < written_.size() && written_[ok].ok()) ++ok;
  return ok;
}

void Committer::run() {
  Status failure;  // the first failed write; every later batch gets it, unwritten
  std::vector<LogBatch*> group;
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return !to_write_.empty() || stopping_; });
    if (to_write_.empty()) return;  // stopping, and every batch handed over is written
    // Every batch waiting is written now, and synced once (group sync, committer.h):
    // the others unsynced, then the last one synced, which makes them all durable.
    group.assign(to_write_.begin(), to_write_.end());
    to_write_.clear();
    lock.unlock();
    Status status = failure;
    for (size_t i = 0; i < group.size() && status.ok(); ++i) status = store_->write(group[i], i + 1 == group.size());
    // A failed write fails the whole group: the batches before it were never synced,
    // and the batches after it are never written.
    if (!status.ok() && failure.ok()) failure = status;
    lock.lock();
    for (size_t i = 0; i < group.size(); ++i) written_.push_back(status);
    changed_.notify_all();
  }
}

}  // namespace tally
