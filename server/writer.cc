#include "server/writer.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "engine/assert.h"
#include "engine/thread_name.h"

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
  name_thread(thread_, kWriterThreadName);
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
    if (lane == Lane::kExpress) express_waiting_.store(true, std::memory_order_relaxed);
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
    size_t bulk_max = 0;  // > 0: begin that many commands of started_
    {
      std::unique_lock lock(mutex_);
      auto has_work = [&] { return !queue_.empty() || !express_.empty() || started_commands_ > 0 || stopping_; };
      if (!parts_.empty() && !has_work()) {
        // Nothing to execute meanwhile: answer the batches in flight rather than sleep
        // with them.
        lock.unlock();
        finish_parts();
        continue;
      }
      ready_.wait_until(lock, next_tick, has_work);
      if (queue_.empty() && express_.empty() && started_commands_ == 0 && stopping_) {
        lock.unlock();
        finish_parts();
        return;
      }
      // Take a run of command requests that fits one batch, or else one query or task:
      // from the express lane while it has any (batches of their own, so that express
      // work does not wait for a bulk batch's thousands of events), else from the bulk
      // lane, in smaller batches while express work is recent. A query or task in the
      // bulk lane waits for the command requests before it to be answered.
      const auto now = Clock::now();
      if (!express_.empty()) {
        last_express_ = now;
        take_run(express_, express_commands_, options_.batch_commands_max, taken);
        express_waiting_.store(!express_.empty(), std::memory_order_relaxed);
      } else {
        const bool interactive = now - last_express_ < options_.express_recent;
        bulk_max = interactive ? options_.express_batch_commands_max : options_.batch_commands_max;
        take_bulk(bulk_max);
        if (started_commands_ == 0) {
          bulk_max = 0;
          if (started_.empty()) take_run(queue_, queued_commands_, options_.batch_commands_max, taken);
        }
      }
    }
    if (Clock::now() >= next_tick) {
      finish_parts();
      run_tick();
      next_tick = Clock::now() + options_.tick_interval;
    }
    if (bulk_max > 0) {
      started_commands_ -= begin_part(started_, bulk_max);
      // A bulk batch of usage and holds stays in flight while the next one is
      // executed; the parts begun before it are answered now (an express part among
      // them was written just after the bulk part before it), unless express work
      // waits: that is begun first, on top of them, and they are answered as they
      // become durable while the next bulk part is executed.
      const std::vector<const Command*>& begun = parts_.back().commands;
      if (!options_.pipeline || !std::all_of(begun.begin(), begun.end(), [](const Command* c) { return pipelined(c->type); })) {
        finish_parts();
      } else if (!express_waiting_.load(std::memory_order_relaxed)) {
        while (parts_.size() > 1) finish_part();
      }
      continue;
    }
    // An express run of usage and holds is begun on top of the batch in flight and
    // left in flight itself, so the bulk work behind it is executed while it is written
    // rather than after: waiting for the batches in flight first took 40 % of the
    // binary ingest while round trips kept coming (bench/RESULTS.md, "Run 40").
    if (options_.pipeline && !taken.empty() && taken.front().commands_done != nullptr &&
        std::all_of(taken.begin(), taken.end(), [](const Item& item) {
          return std::all_of(item.commands.begin(), item.commands.end(), [](const Command& c) { return pipelined(c.type); });
        })) {
      size_t commands = 0;
      for (Item& item : taken) {
        commands += item.commands.size();
        express_started_.push_back(std::move(item));
      }
      while (commands > 0) commands -= begin_part(express_started_, options_.batch_commands_max);
      continue;
    }
    // Everything else sees durable state: first answer what is in flight.
    finish_parts();
    if (taken.empty()) {
      continue;
    } else if (taken.front().commands_done != nullptr) {
      // An express run fits one batch, except a first request larger than the batch,
      // which goes on in further parts.
      while (!taken.empty()) {
        begin_part(taken, options_.batch_commands_max);
        finish_part();
      }
    } else if (taken.front().query) {
      taken.front().query_done(engine_->query(*taken.front().query));
    } else {
      taken.front().task(*engine_);
    }
  }
}

bool Writer::pipelined(CommandType type) {
  switch (type) {
    case CommandType::kRecordUsage:
    case CommandType::kReserve:
    case CommandType::kSettle:
    case CommandType::kReleaseHold:
      return true;
    default:
      return false;
  }
}

size_t Writer::begin_part(std::deque<Item>& items, size_t max) {
  TALLY_ASSERT(max >= 1);
  if (parts_.size() == kPipelineDepthMax) finish_part();
  Part& part = parts_.emplace_back();
  part.items = &items;
  part.commands = std::move(spare_commands_);
  part.commands.clear();
  for (Item& item : items) {
    const size_t take = std::min(item.commands.size() - item.ran, max - part.commands.size());
    for (size_t i = item.ran; i < item.ran + take; ++i) part.commands.push_back(&item.commands[i]);
    if (part.commands.size() == max) break;
  }
  TALLY_ASSERT(!part.commands.empty());
  // The engine may end the part early (between_commands()): only what it executed counts as begun.
  const size_t begun = engine_->begin(part.commands, TimeSource::kClock, between_);
  TALLY_ASSERT(begun >= 1 && begun <= part.commands.size());
  part.commands.resize(begun);
  size_t left = begun;
  for (auto item = items.begin(); left > 0; ++item) {
    const size_t take = std::min(item->commands.size() - item->ran, left);
    item->ran += take;
    left -= take;
  }
  return begun;
}

void Writer::finish_part() {
  TALLY_ASSERT(!parts_.empty());
  Part& part = parts_.front();
  std::vector<CommandResult> results = engine_->finish();
  TALLY_ASSERT(results.size() == part.commands.size());
  observer_(*engine_, part.commands, results);
  std::deque<Item>& items = *part.items;
  size_t next = 0;
  while (next < results.size()) {
    Item& item = items.front();
    const size_t take = std::min(item.commands.size() - item.results.size(), results.size() - next);
    if (item.results.empty()) item.results.reserve(item.commands.size());
    item.results.insert(item.results.end(), std::make_move_iterator(results.begin() + static_cast<ptrdiff_t>(next)),
                        std::make_move_iterator(results.begin() + static_cast<ptrdiff_t>(next + take)));
    next += take;
    if (item.results.size() < item.commands.size()) break;  // the rest comes with a later part
    item.commands_done(std::move(item.results), std::move(item.commands));
    items.pop_front();
  }
  spare_commands_ = std::move(part.commands);
  parts_.pop_front();
}

void Writer::finish_parts() {
  while (!parts_.empty()) finish_part();
}

bool Writer::between_commands() {
  const bool express_waiting = express_waiting_.load(std::memory_order_relaxed);
  // Only for express work (waiting, or a part in flight): answering bulk parts here
  // too made HTTP ingest on a daemon holding 5M events 14 % slower (bench/RESULTS.md,
  // "Runs 41-42"). parts_.back() is being executed; Engine::durable_in_flight() does
  // not count it, and finish_part() leaves it and its requests where they are (a deque
  // keeps its other elements in place when the front is removed).
  const bool express_in_flight = std::any_of(parts_.begin(), parts_.end() - 1, [this](const Part& part) { return part.items == &express_started_; });
  if (express_waiting || express_in_flight) {
    for (size_t durable = engine_->durable_in_flight(); durable > 0; --durable) finish_part();
  }
  // Express work has come: a bulk part ends here, so that it waits for at most
  // kBetweenCommands more commands rather than for the rest of the part.
  return parts_.back().items == &started_ && express_waiting;
}

void Writer::run_tick() {
  Command tick;
  tick.type = CommandType::kTick;
  tick.actor = "platform";
  const std::vector<CommandResult> results = engine_->execute(std::span<const Command>(&tick, 1));
  const Command* const commands[] = {&tick};
  observer_(*engine_, commands, results);
  if (!results.front().status.ok() && results.front().status.code != ErrorCode::kReadOnly) {
    spdlog::error("the periodic tick failed: {}", results.front().status.message);
  }
}

}  // namespace tally::server
