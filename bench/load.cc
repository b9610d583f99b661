// The end-to-end load generator for the SPEC §5 usage-ingest workload.
//
//   tally_load --mode inprocess --events 1000000 --batch 8192
//
// In-process it drives the Engine directly: commands are generated before timing,
// then executed in group commits (each one synced WriteBatch). It prints events/s,
// per-commit latency percentiles (an event is acknowledged when its batch commits;
// the time from the batch's begin() to its results, which with --pipeline 2 come once
// the next batch has been executed too), how long the executing thread waited for
// batches to become durable (wait_seconds: the rest of the time it executed, but for
// helper_wait_seconds, spent waiting for the split-apply helper to catch up, with its
// queue full, or to finish at the end; EngineStats::split_wait_us), where the process's CPU
// time went during the run (CpuSplit), peak RSS, and with --rebuild the speed of
// rebuilding every projection from the log.
// With --json the summary is one JSON line (bench/peers/run.sh reads it).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench/usage_workload.h"
#include "engine/allocator.h"
#include "engine/engine.h"
#include "engine/thread_name.h"
#include "replay/replay.h"

namespace {

using namespace tally;
using Steady = std::chrono::steady_clock;

uint64_t peak_rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmHWM:")) return std::stoull(line.substr(6));
  }
  return 0;
}

// CPU seconds (user and system) of the whole process, its threads that have exited
// included, and of each thread now alive by its part: the writer (the main thread),
// the commit thread, RocksDB's flush and compaction threads (rocksdb:high and :low).
// The split-apply helpers live for one batch each, so between two snapshots their time
// is the process's less what the live threads gained.
struct CpuSplit {
  double process = 0, writer = 0, commit = 0, rocksdb = 0;

  static CpuSplit now() {
    CpuSplit split;
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    const auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    split.process = seconds(usage.ru_utime) + seconds(usage.ru_stime);
    const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
    const std::string main_tid = std::to_string(getpid());
    std::error_code error;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", error)) {
      std::ifstream stat(task.path() / "stat");
      std::string line;
      std::getline(stat, line);
      // "tid (name) state ppid ...": the name may hold spaces, so fields count from its ')'.
      const size_t open = line.find('('), close = line.rfind(')');
      if (open == std::string::npos || close == std::string::npos || close < open) continue;
      const std::string name = line.substr(open + 1, close - open - 1);
      std::istringstream fields(line.substr(close + 1));
      std::string skipped;
      for (int field = 3; field <= 13; ++field) fields >> skipped;  // state .. cmajflt
      uint64_t utime = 0, stime = 0;                               // fields 14 and 15, in ticks
      if (!(fields >> utime >> stime)) continue;
      const double cpu = static_cast<double>(utime + stime) / tick;
      if (task.path().filename() == main_tid) {
        split.writer += cpu;
      } else if (name == kCommitThreadName) {
        split.commit += cpu;
      } else if (name.starts_with("rocksdb:")) {
        split.rocksdb += cpu;
      }
    }
    return split;
  }
  CpuSplit since(const CpuSplit& before) const {
    return {process - before.process, writer - before.writer, commit - before.commit, rocksdb - before.rocksdb};
  }
  // The split-apply helpers and any other thread that exited (or is unnamed).
  double others() const { return std::max(0.0, process - writer - commit - rocksdb); }
};

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(p * static_cast<double>(values.size())));
  return values[index];
}

// Times ProjectionSet::replay of a whole log into memory, the work a rebuild, a verify and
// a start without rows have in common.
double time_rebuild(const Store& store, Status* status) {
  const auto start = Steady::now();
  ProjectionSet rebuilt;
  rebuilt.drop_history_rows();  // as a rebuild, verify or query in the past: never flushed
  *status = rebuilt.replay(store, store.last_seq(), std::numeric_limits<int64_t>::max());
  const double seconds = std::chrono::duration<double>(Steady::now() - start).count();
  return static_cast<double>(store.last_seq()) / seconds;
}

int rebuild_existing(const std::string& data_dir, bool json) {
  std::unique_ptr<Store> store;
  StoreOptions options;
  options.path = data_dir;
  options.create_if_missing = false;
  if (Status s = Store::open(options, &store); !s.ok()) {
    std::cerr << "tally_load: " << s.message << '\n';
    return 1;
  }
  Status status;
  const double rate = time_rebuild(*store, &status);
  if (!status.ok()) {
    std::cerr << "tally_load: rebuild failed: " << status.message << '\n';
    return 1;
  }
  if (json) {
    std::cout << fmt::format(R"({{"system":"tally","mode":"rebuild","events":{},"rebuild_events_per_s":{:.0f},"peak_rss_mib":{:.0f}}})",
                             store->last_seq(), rate, static_cast<double>(peak_rss_kib()) / 1024)
              << '\n';
  } else {
    std::cout << fmt::format("tally_load rebuild: {} events from the log of {} into memory: {:.0f} events/s, peak RSS {:.0f} MiB\n",
                             store->last_seq(), data_dir, rate, static_cast<double>(peak_rss_kib()) / 1024);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  tally::tune_allocator_for_batches();  // as the tally program does
  CLI::App app{"tally_load: the SPEC §5 usage-ingest workload against Tally"};
  std::string mode = "inprocess";
  std::string data_dir;
  uint64_t events = 1'000'000;
  size_t batch = 8192;
  bench::UsageWorkloadOptions workload_options;
  bool rebuild = false;
  bool rebuild_only = false;
  bool json = false;
  uint64_t row_lag = kRowLagEventsDefault;
  size_t split_apply = kSplitApplyCommandsDefault;
  size_t pipeline = 2;
  app.add_option("--mode", mode, "inprocess")->check(CLI::IsMember({"inprocess"}))->capture_default_str();
  app.add_option("--events", events, "Usage events to record")->check(CLI::Range(uint64_t{1}, uint64_t{50'000'000}))->capture_default_str();
  app.add_option("--batch", batch, "Commands per group commit")->check(CLI::Range(size_t{1}, kBatchCommandsMax))->capture_default_str();
  app.add_option("--orgs", workload_options.orgs, "Organizations")->check(CLI::Range(1u, 1000u))->capture_default_str();
  app.add_option("--workspaces", workload_options.workspaces, "Workspaces in all")->check(CLI::Range(1u, 100000u))->capture_default_str();
  app.add_option("--members", workload_options.members, "Members in all")->check(CLI::Range(1u, 1000000u))->capture_default_str();
  app.add_option("--data", data_dir, "Data directory (default: a fresh temporary one, removed)");
  app.add_option("--row-lag", row_lag, "Events a projection's stored rows may fall behind the log (EngineOptions::row_lag_events; 0: write them every batch)")
      ->check(CLI::Range(uint64_t{0}, uint64_t{1} << 24))
      ->capture_default_str();
  app.add_option("--split-apply", split_apply,
                 "Batches of at least this many commands apply usage and statements on a helper thread (EngineOptions::split_apply_commands; 0: never)")
      ->check(CLI::Range(size_t{0}, kBatchCommandsMax))
      ->capture_default_str();
  app.add_option("--pipeline", pipeline, "Batches in flight: 1 waits for each batch's write before executing the next, 2 executes the next meanwhile, 3 the next two (Engine::begin)")
      ->check(CLI::Range(size_t{1}, kPipelineDepthMax))
      ->capture_default_str();
  app.add_flag("--rebuild", rebuild, "Also time rebuilding every projection from the log");
  app.add_flag("--rebuild-only", rebuild_only,
               "Ingest nothing: time rebuilding every projection from the log of the existing store in --data, as a restart "
               "or verify finds it (quiet, compacted)");
  app.add_flag("--json", json, "Print the summary as one JSON line");
  CLI11_PARSE(app, argc, argv);
  if (workload_options.workspaces % workload_options.orgs != 0 || workload_options.members % workload_options.workspaces != 0) {
    std::cerr << "tally_load: --workspaces must divide by --orgs and --members by --workspaces\n";
    return 2;
  }

  if (rebuild_only) {
    if (data_dir.empty()) {
      std::cerr << "tally_load: --rebuild-only needs --data (a store that tally_load --data filled earlier)\n";
      return 2;
    }
    return rebuild_existing(data_dir, json);
  }

  namespace fs = std::filesystem;
  const bool temporary = data_dir.empty();
  if (temporary) data_dir = (fs::temp_directory_path() / fmt::format("tally-load-{}", getpid())).string();
  fs::remove_all(data_dir);

  int exit_code = 0;
  {
    std::unique_ptr<Engine> engine;
    EngineOptions options;
    options.data_dir = data_dir;
    options.row_lag_events = row_lag;
    options.split_apply_commands = split_apply;
    if (Status s = Engine::open(options, &engine); !s.ok()) {
      std::cerr << "tally_load: " << s.message << '\n';
      return 1;
    }
    const bench::UsageWorkload workload(workload_options);
    SystemClock wall;
    const std::vector<Command> setup = workload.setup(wall.now_us());
    for (size_t i = 0; i < setup.size(); i += batch) {
      for (const CommandResult& r : engine->execute(std::span(setup).subspan(i, std::min(batch, setup.size() - i)))) {
        if (!r.status.ok()) {
          std::cerr << "tally_load: set-up refused: " << r.status.message << '\n';
          return 1;
        }
      }
    }
    // Generate before timing: the figure is the engine's, not the generator's.
    std::vector<Command> commands;
    commands.reserve(events);
    const int64_t now = wall.now_us();
    for (uint64_t n = 0; n < events; ++n) commands.push_back(workload.usage(n, now));

    std::vector<double> commit_us;
    uint64_t accepted = 0, refused = 0;
    std::deque<Steady::time_point> begun;  // when each batch in flight began
    double waited_seconds = 0;  // in finish(): the executing thread idle, waiting for the disk
    auto finish_one = [&] {
      const auto waiting = Steady::now();
      const std::vector<CommandResult> results = engine->finish();
      waited_seconds += std::chrono::duration<double>(Steady::now() - waiting).count();
      for (const CommandResult& r : results) (r.status.ok() ? accepted : refused)++;
      commit_us.push_back(std::chrono::duration<double, std::micro>(Steady::now() - begun.front()).count());
      begun.pop_front();
    };
    const int64_t setup_split_wait_us = engine->stats().split_wait_us;
    const uint64_t setup_split_batches = engine->stats().split_batches;
    const CpuSplit cpu_before = CpuSplit::now();
    const auto start = Steady::now();
    for (size_t i = 0; i < commands.size(); i += batch) {
      // With --pipeline 2 the engine executes this batch while the last one is written.
      if (engine->in_flight() == pipeline) finish_one();
      begun.push_back(Steady::now());
      engine->begin(std::span(commands).subspan(i, std::min(batch, commands.size() - i)));
    }
    while (engine->in_flight() > 0) finish_one();
    // The rows still behind the log are part of the work: write them inside the clock.
    if (Status s = engine->flush_rows(); !s.ok()) {
      std::cerr << "tally_load: writing the projection rows failed: " << s.message << '\n';
      exit_code = 1;
    }
    const double seconds = std::chrono::duration<double>(Steady::now() - start).count();
    const CpuSplit cpu = CpuSplit::now().since(cpu_before);
    // The set-up's batches were split too: count the timed part only.
    const double helper_wait_seconds = static_cast<double>(engine->stats().split_wait_us - setup_split_wait_us) / 1e6;
    const double rate = static_cast<double>(accepted) / seconds;

    double rebuild_rate = 0;
    if (rebuild) {
      Status s;
      rebuild_rate = time_rebuild(engine->store(), &s);
      if (!s.ok()) {
        std::cerr << "tally_load: rebuild failed: " << s.message << '\n';
        exit_code = 1;
      }
    }
    const double p50 = percentile(commit_us, 0.50), p99 = percentile(commit_us, 0.99), p999 = percentile(commit_us, 0.999);
    if (json) {
      std::cout << fmt::format(
          R"({{"system":"tally","mode":"{}","events":{},"accepted":{},"refused":{},"seconds":{:.3f},"events_per_s":{:.0f},)"
          R"("batch":{},"commit_p50_us":{:.0f},"commit_p99_us":{:.0f},"commit_p999_us":{:.0f},"wait_seconds":{:.3f},"helper_wait_seconds":{:.3f},"peak_rss_mib":{:.0f},)"
          R"("cpu_seconds":{:.2f},"cpu_writer_seconds":{:.2f},"cpu_commit_seconds":{:.2f},"cpu_rocksdb_seconds":{:.2f},"cpu_helpers_seconds":{:.2f},)"
          R"("rebuild_events_per_s":{:.0f}}})",
          mode, events, accepted, refused, seconds, rate, batch, p50, p99, p999, waited_seconds, helper_wait_seconds,
          static_cast<double>(peak_rss_kib()) / 1024, cpu.process, cpu.writer, cpu.commit, cpu.rocksdb, cpu.others(),
          rebuild_rate)
                << '\n';
    } else {
      std::cout << fmt::format("tally_load {}: {} usage events ({} accepted, {} refused) in {:.2f} s = {:.0f} events/s, durable\n", mode,
                               events, accepted, refused, seconds, rate);
      std::cout << fmt::format("  group commit of {} commands: p50 {:.0f} us, p99 {:.0f} us, p999 {:.0f} us (an event waits for its commit)\n",
                               batch, p50, p99, p999);
      std::cout << fmt::format("  the executing thread waited {:.3f} s of the {:.2f} s for batches to become durable\n", waited_seconds, seconds);
      std::cout << fmt::format("  and {:.3f} s for the split-apply helper, over {} batches (EngineStats::split_wait_us)\n", helper_wait_seconds,
                               engine->stats().split_batches - setup_split_batches);
      std::cout << fmt::format(
          "  CPU {:.2f} s in the {:.2f} s ({:.2f} of the {} cores): writer {:.2f}, commit thread {:.2f}, RocksDB flush and compaction {:.2f}, "
          "split-apply helpers {:.2f}\n",
          cpu.process, seconds, cpu.process / seconds, std::thread::hardware_concurrency(), cpu.writer, cpu.commit, cpu.rocksdb, cpu.others());
      std::cout << fmt::format("  peak RSS {:.0f} MiB\n", static_cast<double>(peak_rss_kib()) / 1024);
      if (rebuild) std::cout << fmt::format("  rebuild of every projection from the log: {:.0f} events/s\n", rebuild_rate);
    }
    if (refused != 0) exit_code = 1;
  }
  if (temporary) fs::remove_all(data_dir);
  return exit_code;
}
