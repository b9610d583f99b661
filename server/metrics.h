// The daemon's counters, rendered at GET /metrics in the Prometheus text format.
// Every counter is a relaxed atomic: connection threads and the writer thread update
// them without locks, and a scrape reads a slightly blurred but never torn picture.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <span>
#include <string>

#include "engine/command.h"
#include "engine/engine.h"
#include "engine/error.h"

namespace tally::server {

// A histogram with fixed upper bounds (the last bucket is +Inf).
template <size_t N>
class Histogram {
 public:
  explicit constexpr Histogram(const std::array<double, N>& bounds) : bounds_(bounds) {}
  void observe(double value) {
    size_t i = 0;
    while (i < N && value > bounds_[i]) ++i;
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    // A double sum would need a CAS loop; sums are kept in integer units instead.
    sum_.fetch_add(static_cast<uint64_t>(value), std::memory_order_relaxed);
  }
  // Appends the series `name` with the sum scaled by `sum_scale` (e.g. µs -> s).
  void render(std::string* out, std::string_view name, std::string_view help, double sum_scale, double bound_scale) const;

 private:
  std::array<double, N> bounds_;
  std::array<std::atomic<uint64_t>, N + 1> counts_{};
  std::atomic<uint64_t> sum_{0};
};

enum class Protocol : uint8_t { kHttp = 0, kBinary = 1 };

class Metrics {
 public:
  Metrics();

  // After each execute(), on the writer thread.
  void observe_batch(const Engine& engine, std::span<const Command* const> commands, std::span<const CommandResult> results);
  // A command refused before it reached the engine (it did not decode).
  void count_refused(ErrorCode code) { errors_[static_cast<size_t>(code)].fetch_add(1, std::memory_order_relaxed); }
  void count_cloudevents(uint64_t events) { cloudevents_.fetch_add(events, std::memory_order_relaxed); }
  void count_http_response(unsigned status);
  void count_frames(uint64_t in, uint64_t out);
  void connection_opened(Protocol protocol);
  void connection_closed(Protocol protocol);
  void connection_refused() { connections_refused_.fetch_add(1, std::memory_order_relaxed); }
  void set_draining() { draining_.store(true, std::memory_order_relaxed); }

  uint64_t last_seq() const { return last_seq_.load(std::memory_order_relaxed); }
  bool read_only() const { return read_only_.load(std::memory_order_relaxed); }
  bool draining() const { return draining_.load(std::memory_order_relaxed); }
  uint64_t open_connections() const;
  void set_last_seq(uint64_t seq) { last_seq_.store(seq, std::memory_order_relaxed); }

  // The Prometheus exposition text. `queued_commands` is the writer queue's depth now.
  std::string render(size_t queued_commands) const;

 private:
  std::array<std::atomic<uint64_t>, kCommandTypeCount> commands_{};
  std::array<std::atomic<uint64_t>, kErrorCodeCount> errors_{};
  std::array<std::atomic<uint64_t>, kEventTypeCount> events_{};
  std::atomic<uint64_t> cloudevents_{0};
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> last_seq_{0};
  std::atomic<bool> read_only_{false};
  std::atomic<bool> draining_{false};
  Histogram<8> batch_commands_;
  Histogram<14> commit_duration_us_;
  std::array<std::atomic<uint64_t>, 2> connections_open_{};
  std::array<std::atomic<uint64_t>, 2> connections_total_{};
  std::atomic<uint64_t> connections_refused_{0};
  std::atomic<uint64_t> frames_in_{0};
  std::atomic<uint64_t> frames_out_{0};
  // HTTP answers by status: index into kHttpStatuses, the last slot for any other.
  std::array<std::atomic<uint64_t>, 14> http_responses_{};
  uint64_t seen_commits_ = 0;  // writer thread only
};

}  // namespace tally::server
