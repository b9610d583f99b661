#include "engine/committer.h"

#include "engine/assert.h"
#include "engine/log.h"

namespace tally {

Committer::Committer(const Store* store) : store_(store), thread_([this] { run(); }) {}

Committer::~Committer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void Committer::hand_over(LogBatch* batch) {
  {
    std::lock_guard lock(mutex_);
    to_write_.push_back(batch);
  }
  ++pending_;
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
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return !to_write_.empty() || stopping_; });
    if (to_write_.empty()) return;  // stopping, and every batch handed over is written
    LogBatch* batch = to_write_.front();
    to_write_.pop_front();
    lock.unlock();
    Status status = failure.ok() ? store_->write(batch) : failure;
    if (!status.ok() && failure.ok()) failure = status;
    lock.lock();
    written_.push_back(std::move(status));
    changed_.notify_all();
  }
}

}  // namespace tally
