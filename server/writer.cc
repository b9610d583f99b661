#include "server/writer.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "engine/assert.h"

namespace tally::server {

Writer::Writer(std::unique_ptr<Engine> engine, WriterOptions options, BatchObserver observer)
    : engine_(std::move(engine)), options_(options), observer_(std::move(observer)) {
  TALLY_ASSERT(engine_ != nullptr);
  TALLY_ASSERT(options_.queue_commands_max >= kBatchCommandsMax);
  TALLY_ASSERT(options_.batch_commands_max >= 1 && options_.express_batch_commands_max >= 1);
}

Writer::~Writer() { stop(); }

void Writer::start() {
  TALLY_ASSERT(!thread_.joinable());
  thread_ = std::thread([this] { run(); });
}

template <typename Fill>
Writer::Admission Writer::push(size_t weight, Lane lane, Fill fill) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return Admission::kStopped;
    std::deque<Item>& queue = lane == Lane::kExpress ? express_ : queue_;
    size_t& queued = lane == Lane::kExpress ? express_commands_ : queued_commands_;
    const size_t max = lane == Lane::kExpress ? options_.express_commands_max : options_.queue_commands_max;
    // An empty queue takes any request, so the largest allowed one always fits.
    if (!queue.empty() && queued + weight > max) return Admission::kFull;
    Item item;
    fill(item);
    queue.push_back(std::move(item));
    queued += weight;
  }
  ready_.notify_one();
  return Admission::kQueued;
}

Writer::Admission Writer::submit(std::vector<Command>& commands, CommandsDone& done, Lane lane) {
  TALLY_ASSERT(!commands.empty() && commands.size() <= kBatchCommandsMax);
  TALLY_ASSERT(lane == Lane::kBulk || commands.size() <= kExpressCommandsMax);
  return push(commands.size(), lane, [&](Item& item) {
    item.commands = std::move(commands);
    item.commands_done = std::move(done);
  });
}

Writer::Admission Writer::submit(Query& query, QueryDone& done, Lane lane) {
  return push(1, lane, [&](Item& item) {
    item.query = std::move(query);
    item.query_done = std::move(done);
  });
}

Writer::Admission Writer::submit(Task task) {
  return push(1, Lane::kBulk, [&](Item& item) { item.task = std::move(task); });
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
  return queued_commands_ + express_commands_;
}

void Writer::take_run(std::deque<Item>& queue, size_t& queued, size_t max, std::deque<Item>& taken) {
  size_t commands = 0;
  while (!queue.empty()) {
    Item& front = queue.front();
    const bool is_commands = front.commands_done != nullptr;
    if (!taken.empty() && (!is_commands || taken.front().commands_done == nullptr)) return;
    if (is_commands && !taken.empty() && commands + front.commands.size() > max) return;
    commands += is_commands ? front.commands.size() : 0;
    queued -= is_commands ? front.commands.size() : 1;
    taken.push_back(std::move(front));
    queue.pop_front();
    if (!is_commands) return;
  }
}

void Writer::take_bulk(size_t max) {
  while (started_commands_ < max && !queue_.empty() && queue_.front().commands_done != nullptr) {
    Item& front = queue_.front();
    started_commands_ += front.commands.size();
    queued_commands_ -= front.commands.size();
    started_.push_back(std::move(front));
    queue_.pop_front();
  }
}

void Writer::run() {
  using Clock = std::chrono::steady_clock;
  auto next_tick = Clock::now() + options_.tick_interval;
  std::deque<Item> taken;
  for (;;) {
    taken.clear();
    size_t bulk_max = 0;  // > 0: run that many commands of started_
    {
      std::unique_lock lock(mutex_);
      ready_.wait_until(lock, next_tick, [&] { return !queue_.empty() || !express_.empty() || !started_.empty() || stopping_; });
      if (queue_.empty() && express_.empty() && started_.empty() && stopping_) return;
      // Take a run of command requests that fits one batch, or else one query or task:
      // from the express lane while it has any (batches of their own, so that express
      // work does not wait for a bulk batch's thousands of events), else from the bulk
      // lane, in smaller batches while express work is recent. A query or task in the
      // bulk lane waits for the command requests before it to be answered.
      const auto now = Clock::now();
      if (!express_.empty()) {
        last_express_ = now;
        take_run(express_, express_commands_, options_.batch_commands_max, taken);
      } else {
        const bool interactive = now - last_express_ < options_.express_recent;
        bulk_max = interactive ? options_.express_batch_commands_max : options_.batch_commands_max;
        take_bulk(bulk_max);
        if (started_.empty()) {
          bulk_max = 0;
          take_run(queue_, queued_commands_, options_.batch_commands_max, taken);
        }
      }
    }
    if (Clock::now() >= next_tick) {
      run_tick();
      next_tick = Clock::now() + options_.tick_interval;
    }
    if (bulk_max > 0) {
      started_commands_ -= run_part(started_, bulk_max);
    } else if (taken.empty()) {
      continue;
    } else if (taken.front().commands_done != nullptr) {
      // An express run fits one batch, except a first request larger than the batch,
      // which goes on in further parts.
      while (!taken.empty()) run_part(taken, options_.batch_commands_max);
    } else if (taken.front().query) {
      taken.front().query_done(engine_->query(*taken.front().query));
    } else {
      taken.front().task(*engine_);
    }
  }
}

size_t Writer::run_part(std::deque<Item>& items, size_t max) {
  TALLY_ASSERT(!items.empty() && max >= 1);
  batch_.clear();
  for (Item& item : items) {
    const size_t take = std::min(item.commands.size() - item.ran, max - batch_.size());
    for (size_t i = item.ran; i < item.ran + take; ++i) batch_.push_back(std::move(item.commands[i]));
    if (batch_.size() == max) break;
  }
  std::vector<CommandResult> results = engine_->execute(batch_);
  TALLY_ASSERT(results.size() == batch_.size());
  observer_(*engine_, batch_, results);
  size_t next = 0;
  while (next < results.size()) {
    Item& item = items.front();
    const size_t take = std::min(item.commands.size() - item.ran, results.size() - next);
    if (item.results.empty()) item.results.reserve(item.commands.size());
    item.results.insert(item.results.end(), std::make_move_iterator(results.begin() + static_cast<ptrdiff_t>(next)),
                        std::make_move_iterator(results.begin() + static_cast<ptrdiff_t>(next + take)));
    item.ran += take;
    next += take;
    if (item.ran < item.commands.size()) break;  // the rest runs in the next part
    item.commands_done(std::move(item.results));
    items.pop_front();
  }
  return batch_.size();
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
