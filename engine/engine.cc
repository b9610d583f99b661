#include "engine/engine.h"

#include <flatbuffers/flatbuffers.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <memory>
#include <utility>

#include "engine/assert.h"
#include "engine/committer.h"
#include "engine/event_format.h"
#include "engine/handlers.h"
#include "engine/json_writer.h"
#include "engine/values.h"
#include "projections/split_applier.h"

namespace tally {
namespace {

// The member a usage command names, or else its actor: whose entries its prefetches
// load (a wrong guess costs nothing).
const std::string& prefetch_user(const Command& command) { return command.user.empty() ? command.actor : command.user; }

// Carries one command through its handler, turning emitted payloads into envelopes.
class LiveContext final : public CommandContext {
 public:
  // `split`, if not null, applies the events and appends them to the batch in place of
  // state.apply and batch->append (a large batch).
  // `builder` is the engine's, lent for this command (one context at a time): a
  // builder of its own would allocate its buffer for every command.
  LiveContext(ProjectionSet& state, SplitApplier* split, const Command& command, LogBatch* batch, uint64_t next_seq,
              int64_t now_us, int64_t last_time_us, EngineStats* stats, flatbuffers::FlatBufferBuilder& builder,
              const CommandLookups* lookups = nullptr)
      : builder_(builder),
        lookups_(lookups),
        state_(state),
        split_(split),
        command_(command),
        batch_(batch),
        stats_(stats),
        next_seq_(next_seq),
        now_us_(now_us),
        last_time_us_(last_time_us) {
    builder_.Clear();  // keeps its buffer
  }

  const ProjectionSet& state() const override { return state_; }
  const Command& command() const override { return command_; }
  const CommandLookups* lookups() const override { return lookups_; }
  int64_t now_us() const override { return std::max(now_us_, last_time_us_ + 1); }
  flatbuffers::FlatBufferBuilder& builder() override { return builder_; }

  void emit(fb::Event type, flatbuffers::Offset<void> payload) override {
    const EnvelopeHeader header = next_header();
    auto actor = builder_.CreateString(header.actor.data(), header.actor.size());
    auto command_id = builder_.CreateString(header.command_id.data(), header.command_id.size());
    fb::EnvelopeBuilder envelope(builder_);
    envelope.add_seq(header.seq);
    envelope.add_time_us(header.time_us);
    envelope.add_schema_version(kSchemaVersion);
    envelope.add_actor(actor);
    envelope.add_command_id(command_id);
    envelope.add_command_seq(header.command_seq);
    envelope.add_event_type(type);
    envelope.add_event(payload);
    builder_.Finish(envelope.Finish());
    deliver(type, header.seq, std::string_view(reinterpret_cast<const char*>(builder_.GetBufferPointer()), builder_.GetSize()));
    builder_.Clear();
  }

  void emit_usage(const UsageRecordedFields& usage) override {
    const EnvelopeHeader header = next_header();
    // On the stack unless the names are unusually long.
    alignas(kEnvelopeAlignment) uint8_t stack[2048];
    std::unique_ptr<uint64_t[]> heap;
    const size_t size = usage_envelope_size(header, usage);
    uint8_t* buffer = stack;
    if (size > sizeof stack) {
      heap = std::make_unique_for_overwrite<uint64_t[]>((size + 7) / 8);
      buffer = reinterpret_cast<uint8_t*>(heap.get());
    }
    deliver(fb::Event::UsageRecorded, header.seq, encode_usage_envelope(header, usage, buffer, size));
  }

  void add_result(std::string_view key, std::string_view value) override {
    if (!extra_.empty()) extra_ += ',';
    append_json_string(&extra_, key);
    extra_ += ':';
    append_json_string(&extra_, value);
  }
  // Kept as a number: this runs for every usage event, and formatting it into the
  // members here cost the writer a heap string per event.
  void set_amount(std::string_view key, int64_t credits_micro) override {
    TALLY_ASSERT(amount_key_.empty() && !key.empty());
    amount_key_ = key;
    amount_micro_ = credits_micro;
  }
  std::string_view amount_key() const { return amount_key_; }
  int64_t amount_micro() const { return amount_micro_; }

  uint64_t first_seq() const { return first_seq_; }
  uint64_t next_seq() const { return next_seq_; }
  int64_t last_time_us() const { return last_time_us_; }
  uint32_t events() const override { return events_; }
  void answer_duplicate(uint64_t seq) override {
    duplicate_ = true;
    duplicate_seq_ = seq;
  }
  bool duplicate() const { return duplicate_; }
  uint64_t duplicate_seq() const { return duplicate_seq_; }
  std::string take_extra() { return std::move(extra_); }

 private:
  // The next event's envelope fields; takes its sequence number and time.
  EnvelopeHeader next_header() {
    const uint64_t seq = next_seq_++;
    const int64_t time_us = now_us();
    last_time_us_ = time_us;
    if (first_seq_ == 0) first_seq_ = seq;
    return EnvelopeHeader{.seq = seq, .time_us = time_us, .actor = command_.actor, .command_id = command_.id, .command_seq = first_seq_};
  }

  // Applies a finished envelope to the state and appends it to the batch.
  void deliver(fb::Event type, uint64_t seq, std::string_view bytes) {
    TALLY_ASSERT(bytes.size() <= kEnvelopeBytesMax);
    const fb::Envelope& event = *fb::GetEnvelope(bytes.data());
    if (split_ != nullptr) {
      split_->apply(bytes, event);
    } else {
      state_.apply(event);
      batch_->append(seq, bytes);
    }
    ++events_;
    ++stats_->events_by_type[static_cast<size_t>(type)];
  }

  flatbuffers::FlatBufferBuilder& builder_;
  const CommandLookups* lookups_;
  ProjectionSet& state_;
  SplitApplier* split_;
  const Command& command_;
  LogBatch* batch_;
  EngineStats* stats_;
  uint64_t next_seq_;
  uint64_t first_seq_ = 0;
  int64_t now_us_;
  int64_t last_time_us_;
  uint32_t events_ = 0;
  std::string extra_;
  std::string_view amount_key_;
  int64_t amount_micro_ = 0;
  bool duplicate_ = false;
  uint64_t duplicate_seq_ = 0;
};

// The engine time of the last record in the log, or 0 for an empty log.
Status last_event_time(const Store& store, int64_t* time_us) {
  *time_us = 0;
  if (store.last_seq() == 0) return Status::Ok();
  Status failure;
  Status status = store.read_log(store.last_seq(), store.last_seq(), [&](uint64_t, std::string_view bytes) {
    const fb::Envelope* event = decode_envelope(bytes);
    if (event == nullptr) {
      failure = Error(ErrorCode::kStorageError, "the last log record is not a valid envelope");
    } else {
      *time_us = event->time_us();
    }
    return false;
  });
  return status.ok() ? failure : status;
}

}  // namespace

std::string CommandResult::to_json() const {
  JsonWriter out;
  out.begin_object();
  if (status.ok()) {
    out.field("ok", true).field("seq", seq);
  } else {
    out.field("ok", false).field("error", error_name(status.code)).field("message", status.message);
  }
  if (!id.empty()) out.field("id", id);
  // The object stays open so the answer's members can follow; the comma goes again if
  // there are none.
  std::string json = out.take();
  json += ',';
  const size_t members_at = json.size();
  append_members(&json);
  if (json.size() == members_at) json.pop_back();
  json += '}';
  return json;
}

void CommandResult::append_members(std::string* out) const {
  bool first = true;
  const auto separate = [&] {
    if (!first) *out += ',';
    first = false;
  };
  if (duplicate) {
    separate();
    *out += "\"duplicate\":true";
  }
  if (!amount_key.empty()) {
    separate();
    append_json_string(out, amount_key);
    *out += ":\"";
    append_credits(out, amount_micro);  // digits, '-' and '.': nothing to escape
    *out += '"';
  }
  if (!extra.empty()) {
    separate();
    *out += extra;
  }
}

std::string CommandResult::members() const {
  std::string out;
  append_members(&out);
  return out;
}

void CommandResult::clear_members() {
  duplicate = false;
  amount_key = {};
  amount_micro = 0;
  extra.clear();
}

Engine::Engine() : event_builder_(std::make_unique<flatbuffers::FlatBufferBuilder>(512)) {}

Engine::~Engine() {
  while (!in_flight_.empty()) finish();  // their callers never asked; they are written all the same
  settle_split();
  const Status flushed = flush_rows();
  if (!flushed.ok()) spdlog::error("the projection rows were not written at close; the next open replays the log past them: {}", flushed.message);
}

Status Engine::flush_rows() {
  TALLY_ASSERT(in_flight_.empty());
  settle_split();
  if (!opened_ || read_only_ || state_.stored_seq() == store_->last_seq()) return Status::Ok();
  std::unique_ptr<LogBatch> batch = store_->begin_batch();
  state_.flush(batch.get());
  const Status written = store_->commit(batch.get());
  if (!written.ok()) {
    // The log is whole; only the rows are behind it, and open() replays past them.
    read_only_ = true;
    spdlog::critical("storage failure, the engine is now read-only: {}", written.message);
  }
  return written;
}

Status Engine::open(const EngineOptions& options, std::unique_ptr<Engine>* out) {
  std::unique_ptr<Engine> engine(new Engine());
  if (options.clock == nullptr) {
    engine->owned_clock_ = std::make_unique<SystemClock>();
    engine->clock_ = engine->owned_clock_.get();
  } else {
    engine->clock_ = options.clock;
  }
  StoreOptions store_options;
  store_options.path = options.data_dir;
  store_options.create_if_missing = options.create_if_missing;
  store_options.env = options.env;
  if (Status s = Store::open(store_options, &engine->store_); !s.ok()) return s;
  if (Status s = engine->state_.load(*engine->store_); !s.ok()) return s;
  if (Status s = last_event_time(*engine->store_, &engine->last_time_us_); !s.ok()) return s;
  engine->row_lag_events_ = options.row_lag_events;
  engine->split_apply_commands_ = options.split_apply_commands;
  engine->committer_ = std::make_unique<Committer>(engine->store_.get());
  engine->executed_seq_ = engine->store_->last_seq();
  engine->opened_ = true;
  *out = std::move(engine);
  return Status::Ok();
}

CommandResult Engine::execute_one(const Command& command, TimeSource time, LogBatch* batch, SplitApplier* split,
                                  const CommandLookups* lookups) {
  int64_t now_us = clock_->now_us();
  if (time == TimeSource::kCommand && command.at_us) now_us = *command.at_us;
  if (time == TimeSource::kClock && command.type != CommandType::kTick) run_due_timers(now_us, batch, split);
  LiveContext context(state_, split, command, batch, next_seq(), now_us, last_time_us_, &stats_, *event_builder_,
                      lookups);
  CommandResult result;
  result.id = command.id;
  result.status = handle_command(context);
  batch_events_ += context.events();
  // A handler refuses before it emits: a refused command must change nothing.
  TALLY_ASSERT(result.status.ok() || context.events() == 0);
  if (!result.status.ok()) return result;
  // An accepted command is logged, unless it repeats one already logged.
  TALLY_ASSERT((context.events() > 0) != context.duplicate());
  result.seq = context.duplicate() ? context.duplicate_seq() : context.first_seq();
  result.events = context.events();
  result.duplicate = context.duplicate() && result.seq != 0;
  result.amount_key = context.amount_key();
  result.amount_micro = context.amount_micro();
  result.extra = context.take_extra();
  last_time_us_ = context.last_time_us();
  return result;
}

void Engine::run_due_timers(int64_t now_us, LogBatch* batch, SplitApplier* split) {
  // Timers fire at the time the next command would get, so an import that replays
  // the exported ticks at their times fires exactly the same ones.
  const int64_t time_us = std::max(now_us, last_time_us_ + 1);
  const Timer* next = state_.balances.next_timer();
  if (next == nullptr || next->due_us > time_us) return;
  Command tick;
  tick.type = CommandType::kTick;
  tick.actor = "platform";
  LiveContext context(state_, split, tick, batch, next_seq(), time_us, last_time_us_, &stats_, *event_builder_);
  const Status status = handle_command(context);
  batch_events_ += context.events();
  TALLY_ASSERT(status.ok() && context.events() > 0);
  last_time_us_ = context.last_time_us();
}

void Engine::settle_split() {
  if (split_ == nullptr) return;
  split_->finish();
  stats_.split_wait_us += split_->take_wait_us();
  split_.reset();
}

std::vector<CommandResult> Engine::execute(std::span<const Command> commands, TimeSource time) {
  TALLY_ASSERT(in_flight_.empty());
  begin(commands, time);
  return finish();
}

const Engine::PrefetchOrgs& Engine::prefetch_orgs(const Command& command, size_t index) {
  PrefetchOrgs& orgs = prefetch_orgs_[index % prefetch_orgs_.size()];
  if (orgs.index != index) {
    // Each stage looked both up for itself before: six name hashes and lookups per
    // usage event. tally_load --events 1000000, 21 pairs: median pair ratio 1.025,
    // faster in 18 (bench/RESULTS.md, "Runs 53-54").
    orgs.index = index;
    orgs.org = state_.orgs.find(command.org);
    orgs.balances = state_.balances.find(command.org);
    // One hash of each name serves every stage and both maps of members.
    orgs.user = &prefetch_user(command);
    orgs.user_hash = key_hash(*orgs.user);
    orgs.workspace_hash = key_hash(command.workspace);
  }
  return orgs;
}

void Engine::prefetch(const Command& command, PrefetchStage stage, const PrefetchOrgs& orgs) const {
  if (stage == PrefetchStage::kCommand) {
    const char* bytes = reinterpret_cast<const char*>(&command);
    for (size_t at = 0; at < sizeof command; at += 64) __builtin_prefetch(bytes + at);
    return;
  }
  if (command.type != CommandType::kRecordUsage) return;
  if (stage == PrefetchStage::kStrings) {
    __builtin_prefetch(prefetch_user(command).data());
    __builtin_prefetch(command.id.data());
    return;
  }
  const auto hint = [&](const auto& map, size_t hash) {
    switch (stage) {
      case PrefetchStage::kSlot: map.prefetch(hash); break;
      case PrefetchStage::kEntry: map.prefetch_entry(hash); break;
      case PrefetchStage::kKey: map.prefetch_key(hash); break;
      default: break;  // kCommand and kStrings returned above
    }
  };
  if (const Org* org = orgs.org) {
    hint(org->members, orgs.user_hash);
    hint(org->live_workspaces, orgs.workspace_hash);
  }
  if (const OrgBalances* org = orgs.balances) {
    hint(org->members, orgs.user_hash);
    // The usage id's slot in the idempotency index, looked up by the handler and again
    // by the apply: one of millions, nearly always a cache miss.
    if (stage == PrefetchStage::kSlot && !command.id.empty()) org->usage_ids.prefetch(command.id);
  }
}

size_t Engine::begin(std::span<const Command> commands, TimeSource time, const Between& between) {
  command_pointers_.clear();
  for (const Command& command : commands) command_pointers_.push_back(&command);
  return begin(std::span<const Command* const>(command_pointers_), time, between);
}

size_t Engine::begin(std::span<const Command* const> commands, TimeSource time, const Between& between) {
  TALLY_ASSERT(commands.size() <= kBatchCommandsMax);
  TALLY_ASSERT(in_flight_.size() < kPipelineDepthMax);
  TALLY_ASSERT(!beginning_);
  InFlight& flight = in_flight_.emplace_back();
  std::vector<CommandResult>& results = flight.results;
  results.reserve(commands.size());
  if (read_only_) {
    for (const Command* command : commands) {
      CommandResult result;
      result.id = command->id;
      result.status = Error(ErrorCode::kReadOnly, "the engine is read-only after a storage failure; restart it once the disk is healthy");
      results.push_back(std::move(result));
    }
    return results.size();
  }
  flight.executed = true;
  // A large batch applies usage and statements, and appends the log records, on a
  // helper thread while this one goes on with the commands (SplitApplier kLive). The
  // helper stays for the next large batch, and finishes this one (its last events, its
  // rows, the seal) while this thread goes on with the next; a small batch waits for it
  // to be idle, and runs on this thread alone.
  const bool split = split_apply_commands_ > 0 && commands.size() >= split_apply_commands_;
  if (split && split_ == nullptr) {
    SplitApplier::LiveBatches live;
    live.row_lag_events = row_lag_events_;
    live.chain = [store = store_.get()](LogBatch* batch) { store->chain(batch); };
    live.done = [store = store_.get(), committer = committer_.get()](LogBatch* batch) {
      store->seal(batch);
      committer->deliver(batch);
    };
    split_ = std::make_unique<SplitApplier>(&state_, std::move(live));
  } else if (!split && split_ != nullptr) {
    split_->wait_idle();
    stats_.split_wait_us += split_->take_wait_us();
  }
  // Every batch before this one is sealed, unless the helper is still at it.
  TALLY_ASSERT(split || executed_seq_ == store_->sealed_seq());
  std::unique_ptr<LogBatch> batch = store_->begin_batch(split ? Store::Chain::kLater : Store::Chain::kNow);
  batch_events_ = 0;
  prefetch_orgs_.fill({});
  {
    SplitApplier* const splitter = split ? split_.get() : nullptr;
    if (splitter != nullptr) splitter->start_batch(batch.get());
    for (size_t i = 0; i < commands.size(); ++i) {
      // A batch's commands, and the member entries and usage ids they look up, do not
      // stay in the caches; each is loaded a few commands ahead, in stages (see
      // PrefetchStage). tally_load --events 1000000: the slots and entries gave
      // 1.2-2.5 % less time in three sets of A/B pairs (bench/RESULTS.md, "Runs
      // 23-25"); the command and its strings +4.9 % events/s (ten pairs; "Runs
      // 38-39").
      if (i + 16 < commands.size()) prefetch(*commands[i + 16], PrefetchStage::kCommand, {});
      if (i + 12 < commands.size()) prefetch(*commands[i + 12], PrefetchStage::kStrings, {});
      for (const auto& [ahead, stage] : {std::pair{size_t{8}, PrefetchStage::kSlot}, {size_t{4}, PrefetchStage::kEntry}, {size_t{2}, PrefetchStage::kKey}}) {
        if (i + ahead >= commands.size() || commands[i + ahead]->type != CommandType::kRecordUsage) continue;
        prefetch(*commands[i + ahead], stage, prefetch_orgs(*commands[i + ahead], i + ahead));
      }
      const PrefetchOrgs& found = prefetch_orgs_[i % prefetch_orgs_.size()];
      results.push_back(execute_one(*commands[i], time, batch.get(), splitter, found.index == i ? &found : nullptr));
      // The batches before this one may become durable meanwhile: let the caller
      // answer them now. finish() touches neither the projections nor this batch (a
      // failed write is never finished here: durable_in_flight() stops before it).
      if (between && i % kBetweenCommands == kBetweenCommands - 1 && i + 1 < commands.size()) {
        beginning_ = true;
        const bool end_here = between();
        beginning_ = false;
        if (end_here) break;
      }
    }
    if (splitter != nullptr) ++stats_.split_batches;
  }
  if (batch_events_ == 0) return results.size();  // nothing accepted: nothing to write
  executed_seq_ += batch_events_;
  flight.handed_over = std::chrono::steady_clock::now();
  if (split) {
    // This thread's projections' rows go in apart from the records the helper still
    // appends; the helper puts its own, seals the batch and delivers it to the
    // Committer (LiveBatches::done above). The batch is the helper's from here on.
    state_.flush_due(batch->deferred_rows(), row_lag_events_, split_->own_part());
    committer_->expect();
    split_->end_batch();
    stats_.split_wait_us += split_->take_wait_us();
  } else {
    TALLY_ASSERT(batch->records() == batch_events_);
    state_.flush_due(batch.get(), row_lag_events_);
    store_->seal(batch.get());
    committer_->hand_over(batch.get());
  }
  flight.batch = std::move(batch);
  return results.size();
}

size_t Engine::durable_in_flight() const {
  const size_t finished = in_flight_.size() - (beginning_ ? 1 : 0);
  size_t written = committer_->written_ok();
  size_t durable = 0;
  for (; durable < finished; ++durable) {
    if (in_flight_[durable].batch == nullptr) continue;  // nothing to write
    if (written == 0) break;
    --written;
  }
  return durable;
}

std::vector<CommandResult> Engine::finish() {
  TALLY_ASSERT(!in_flight_.empty());
  TALLY_ASSERT(!beginning_ || durable_in_flight() > 0);
  InFlight flight = std::move(in_flight_.front());
  in_flight_.pop_front();
  if (flight.batch != nullptr) {
    const Status written = committer_->wait();
    stats_.last_commit_duration_us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - flight.handed_over).count();
    store_->complete(flight.batch.get(), written);
    if (written.ok()) {
      ++stats_.commits;
    } else if (failure_.ok()) {
      failure_ = written;
      read_only_ = true;
      reload_pending_ = true;
      spdlog::critical("storage failure, the engine is now read-only: {}", written.message);
    }
  }
  // A batch executed on top of one whose write failed (or whose own write failed) is
  // not durable: not its events, nor a duplicate's answer that points at them.
  if (flight.executed && !failure_.ok()) {
    for (CommandResult& result : flight.results) {
      if (result.status.ok()) {
        result.status = failure_;
        result.seq = 0;
        result.clear_members();
      }
    }
  }
  if (reload_pending_ && in_flight_.empty()) {
    // Forget what was applied in memory but never made durable. The helper, if any,
    // has passed on every batch (each was finished), and stops.
    settle_split();
    reload_pending_ = false;
    const Status reloaded = state_.load(*store_);
    if (!reloaded.ok()) spdlog::critical("reloading state after the failure failed too: {}", reloaded.message);
    last_event_time(*store_, &last_time_us_);
    executed_seq_ = store_->last_seq();
  }
  return std::move(flight.results);
}

}  // namespace tally
