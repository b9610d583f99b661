#include "server/metrics.h"

#include <fmt/format.h>

namespace tally::server {
namespace {

constexpr std::array<unsigned, 13> kHttpStatuses = {200, 400, 401, 403, 404, 405, 408, 409, 413, 415, 500, 503, 431};

constexpr std::array<double, 8> kBatchBounds = {1, 4, 16, 64, 256, 1024, 4096, 16384};
constexpr std::array<double, 14> kCommitBoundsUs = {50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, 5000000};

void header(std::string* out, std::string_view name, std::string_view type, std::string_view help) {
  fmt::format_to(std::back_inserter(*out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

uint64_t load(const std::atomic<uint64_t>& value) { return value.load(std::memory_order_relaxed); }

}  // namespace

template <size_t N>
void Histogram<N>::render(std::string* out, std::string_view name, std::string_view help, double sum_scale, double bound_scale) const {
  header(out, name, "histogram", help);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < N; ++i) {
    cumulative += load(counts_[i]);
    fmt::format_to(std::back_inserter(*out), "{}_bucket{{le=\"{:g}\"}} {}\n", name, bounds_[i] * bound_scale, cumulative);
  }
  cumulative += load(counts_[N]);
  fmt::format_to(std::back_inserter(*out), "{}_bucket{{le=\"+Inf\"}} {}\n", name, cumulative);
  fmt::format_to(std::back_inserter(*out), "{}_sum {}\n{}_count {}\n", name, static_cast<double>(load(sum_)) * sum_scale, name, cumulative);
}

Metrics::Metrics() : batch_commands_(kBatchBounds), commit_duration_us_(kCommitBoundsUs) {}

void Metrics::observe_batch(const Engine& engine, std::span<const Command* const> commands, std::span<const CommandResult> results) {
  for (const Command* command : commands) commands_[static_cast<size_t>(command->type)].fetch_add(1, std::memory_order_relaxed);
  for (const CommandResult& result : results) {
    if (!result.status.ok()) errors_[static_cast<size_t>(result.status.code)].fetch_add(1, std::memory_order_relaxed);
  }
  const EngineStats& stats = engine.stats();
  for (size_t i = 0; i < kEventTypeCount; ++i) events_[i].store(stats.events_by_type[i], std::memory_order_relaxed);
  if (stats.commits != seen_commits_) {
    seen_commits_ = stats.commits;
    commits_.store(stats.commits, std::memory_order_relaxed);
    commit_duration_us_.observe(static_cast<double>(stats.last_commit_duration_us));
  }
  // Ticks are the writer's own; the batch histogram shows what clients sent.
  if (!(commands.size() == 1 && commands.front()->type == CommandType::kTick)) batch_commands_.observe(static_cast<double>(commands.size()));
  last_seq_.store(engine.store().last_seq(), std::memory_order_relaxed);
  read_only_.store(engine.read_only(), std::memory_order_relaxed);
}

void Metrics::count_http_response(unsigned status) {
  size_t i = 0;
  while (i < kHttpStatuses.size() && kHttpStatuses[i] != status) ++i;
  http_responses_[i].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::count_frames(uint64_t in, uint64_t out) {
  frames_in_.fetch_add(in, std::memory_order_relaxed);
  frames_out_.fetch_add(out, std::memory_order_relaxed);
}

void Metrics::connection_opened(Protocol protocol) {
  connections_open_[static_cast<size_t>(protocol)].fetch_add(1, std::memory_order_relaxed);
  connections_total_[static_cast<size_t>(protocol)].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::connection_closed(Protocol protocol) { connections_open_[static_cast<size_t>(protocol)].fetch_sub(1, std::memory_order_relaxed); }

uint64_t Metrics::open_connections() const { return load(connections_open_[0]) + load(connections_open_[1]); }

std::string Metrics::render(size_t queued_commands) const {
  std::string out;
  out.reserve(16 * 1024);
  auto line = [&](std::string_view series, uint64_t value) { fmt::format_to(std::back_inserter(out), "{} {}\n", series, value); };

  header(&out, "tally_commands_total", "counter", "Commands executed by the engine, by command type (ticks included).");
  for (size_t i = 0; i < kCommandTypeCount; ++i) {
    line(fmt::format("tally_commands_total{{type=\"{}\"}}", command_name(static_cast<CommandType>(i))), load(commands_[i]));
  }
  header(&out, "tally_command_errors_total", "counter", "Commands refused, by error code (decoding errors included).");
  for (int i = 1; i < kErrorCodeCount; ++i) {
    line(fmt::format("tally_command_errors_total{{code=\"{}\"}}", error_name(static_cast<ErrorCode>(i))), load(errors_[static_cast<size_t>(i)]));
  }
  header(&out, "tally_events_total", "counter", "Events appended to the log, by event type.");
  for (size_t i = 1; i < kEventTypeCount; ++i) {
    line(fmt::format("tally_events_total{{type=\"{}\"}}", fb::EnumNameEvent(static_cast<fb::Event>(i))), load(events_[i]));
  }
  header(&out, "tally_cloudevents_total", "counter", "CloudEvents received at POST /v1/events.");
  line("tally_cloudevents_total", load(cloudevents_));
  header(&out, "tally_commits_total", "counter", "Synced group commits.");
  line("tally_commits_total", load(commits_));
  batch_commands_.render(&out, "tally_batch_commands", "Commands per group commit (execute call).", 1.0, 1.0);
  commit_duration_us_.render(&out, "tally_commit_duration_seconds", "Duration of the synced write (fsync) of each group commit.", 1e-6, 1e-6);
  header(&out, "tally_queue_commands", "gauge", "Commands waiting for the writer.");
  line("tally_queue_commands", queued_commands);
  header(&out, "tally_last_seq", "gauge", "Sequence number of the last durable event.");
  line("tally_last_seq", load(last_seq_));
  header(&out, "tally_read_only", "gauge", "1 when a storage failure turned the engine read-only.");
  line("tally_read_only", read_only_.load(std::memory_order_relaxed) ? 1 : 0);
  header(&out, "tally_connections", "gauge", "Open connections, by protocol.");
  line("tally_connections{protocol=\"http\"}", load(connections_open_[0]));
  line("tally_connections{protocol=\"binary\"}", load(connections_open_[1]));
  header(&out, "tally_connections_total", "counter", "Connections accepted, by protocol.");
  line("tally_connections_total{protocol=\"http\"}", load(connections_total_[0]));
  line("tally_connections_total{protocol=\"binary\"}", load(connections_total_[1]));
  header(&out, "tally_connections_refused_total", "counter", "Connections refused because the limit was reached.");
  line("tally_connections_refused_total", load(connections_refused_));
  header(&out, "tally_frames_total", "counter", "Binary protocol frames, by direction.");
  line("tally_frames_total{direction=\"in\"}", load(frames_in_));
  line("tally_frames_total{direction=\"out\"}", load(frames_out_));
  header(&out, "tally_http_responses_total", "counter", "HTTP answers, by status code.");
  for (size_t i = 0; i < kHttpStatuses.size(); ++i) line(fmt::format("tally_http_responses_total{{code=\"{}\"}}", kHttpStatuses[i]), load(http_responses_[i]));
  line("tally_http_responses_total{code=\"other\"}", load(http_responses_[kHttpStatuses.size()]));
  return out;
}

template class Histogram<8>;
template class Histogram<14>;

}  // namespace tally::server
