#include "server/writer.h"

#include <spdlog/spdlog.h>

#include "engine/assert.h"

namespace tally::server {

Writer::Writer(std::unique_ptr<Engine> engine, WriterOptions options, BatchObserver observer)
    : engine_(std::move(engine)), options_(options), observer_(std::move(observer)) {
  TALLY_ASSERT(engine_ != nullptr);
  TALLY_ASSERT(options_.queue_commands_max >= kBatchCommandsMax);
}

Writer::~Writer() { stop(); }

void Writer::start() {
  TALLY_ASSERT(!thread_.joinable());
  thread_ = std::thread([this] { run(); });
}

template <typename Fill>
Writer::Admission Writer::push(size_t weight, Fill fill) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return Admission::kStopped;
    // An empty queue takes any request, so the largest allowed one always fits.
    if (!queue_.empty() && queued_commands_ + weight > options_.queue_commands_max) return Admission::kFull;
    Item item;
    fill(item);
    queue_.push_back(std::move(item));
    queued_commands_ += weight;
  }
  ready_.notify_one();
  return Admission::kQueued;
}

Writer::Admission Writer::submit(std::vector<Command>& commands, CommandsDone& done) {
  TALLY_ASSERT(!commands.empty() && commands.size() <= kBatchCommandsMax);
  return push(commands.size(), [&](Item& item) {
    item.commands = std::move(commands);
    item.commands_done = std::move(done);
  });
}

Writer::Admission Writer::submit(Query& query, QueryDone& done) {
  return push(1, [&](Item& item) {
    item.query = std::move(query);
    item.query_done = std::move(done);
  });
}

Writer::Admission Writer::submit(Task task) {
  return push(1, [&](Item& item) { item.task = std::move(task); });
}

void Writer::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_one();
  if (thread_.joinable()) thread_.join();
}

std::unique_ptr<Engine> Writer::release_engine() {
  TALLY_ASSERT(!thread_.joinable());
  return std::move(engine_);
}

size_t Writer::queued_commands() const {
  std::lock_guard lock(mutex_);
  return queued_commands_;
}

void Writer::run() {
  using Clock = std::chrono::steady_clock;
  auto next_tick = Clock::now() + options_.tick_interval;
  std::vector<Item> taken;
  for (;;) {
    taken.clear();
    {
      std::unique_lock lock(mutex_);
      ready_.wait_until(lock, next_tick, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty() && stopping_) return;
      // Take a run of command requests that fits one batch, or else one query or task.
      size_t commands = 0;
      while (!queue_.empty()) {
        Item& front = queue_.front();
        const bool is_commands = front.commands_done != nullptr;
        if (!taken.empty() && (!is_commands || taken.front().commands_done == nullptr)) break;
        if (is_commands && commands + front.commands.size() > kBatchCommandsMax) break;
        commands += is_commands ? front.commands.size() : 0;
        queued_commands_ -= is_commands ? front.commands.size() : 1;
        taken.push_back(std::move(front));
        queue_.pop_front();
        if (!is_commands) break;
      }
    }
    if (Clock::now() >= next_tick) {
      run_tick();
      next_tick = Clock::now() + options_.tick_interval;
    }
    if (taken.empty()) continue;
    if (taken.front().commands_done != nullptr) {
      run_commands(taken);
    } else if (taken.front().query) {
      taken.front().query_done(engine_->query(*taken.front().query));
    } else {
      taken.front().task(*engine_);
    }
  }
}

void Writer::run_commands(std::vector<Item>& items) {
  if (items.size() == 1) {
    std::vector<CommandResult> results = engine_->execute(items.front().commands);
    observer_(*engine_, items.front().commands, results);
    items.front().commands_done(std::move(results));
    return;
  }
  batch_.clear();
  for (Item& item : items) {
    for (Command& command : item.commands) batch_.push_back(std::move(command));
  }
  std::vector<CommandResult> results = engine_->execute(batch_);
  TALLY_ASSERT(results.size() == batch_.size());
  observer_(*engine_, batch_, results);
  size_t next = 0;
  for (Item& item : items) {
    const size_t count = item.commands.size();
    std::vector<CommandResult> mine(std::make_move_iterator(results.begin() + static_cast<ptrdiff_t>(next)),
                                    std::make_move_iterator(results.begin() + static_cast<ptrdiff_t>(next + count)));
    next += count;
    item.commands_done(std::move(mine));
  }
}

void Writer::run_tick() {
  Command tick;
  tick.type = CommandType::kTick;
  tick.actor = "platform";
  const std::vector<CommandResult> results = engine_->execute(std::span<const Command>(&tick, 1));
  observer_(*engine_, std::span<const Command>(&tick, 1), results);
  if (!results.front().status.ok() && results.front().status.code != ErrorCode::kReadOnly) {
    spdlog::error("the periodic tick failed: {}", results.front().status.message);
  }
}

}  // namespace tally::server
