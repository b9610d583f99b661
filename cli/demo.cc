#include "cli/demo.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <vector>

#include <fmt/format.h>

#include "cli/io.h"
#include "cli/workload.h"
#include "engine/engine.h"
#include "engine/values.h"
#include "replay/replay.h"

namespace tally::cli {
namespace {

constexpr int64_t kNov2026 = 1793491200LL * 1'000'000;  // 2026-11-01T00:00:00Z

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string credits(int64_t micro) {
  // Reports round to whole credits for reading; the ledger itself stays exact.
  return fmt::format("{:>12}", format_credits(micro / kMicrosPerCredit * kMicrosPerCredit));
}

struct Totals {
  int64_t events = 0;
  int64_t credits = 0;
};

void print_table(std::string_view title, const std::map<std::string, Totals>& rows, size_t top) {
  std::vector<std::pair<std::string, Totals>> sorted(rows.begin(), rows.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second.credits > b.second.credits; });
  std::cout << fmt::format("    {:<34} {:>10} {:>12}\n", title, "events", "credits");
  for (size_t i = 0; i < sorted.size() && i < top; ++i) {
    std::cout << fmt::format("    {:<34} {:>10} {}\n", sorted[i].first, sorted[i].second.events, credits(sorted[i].second.credits));
  }
  if (sorted.size() > top) std::cout << fmt::format("    ... and {} more\n", sorted.size() - top);
}

// The usage report of one organization, by workspace, member and tool, from the
// usage projection.
void print_report(const ProjectionSet& state, const std::string& org_id) {
  const Org* org = state.orgs.find(org_id);
  const OrgBalances* balances = state.balances.find(org_id);
  if (org == nullptr || balances == nullptr) return;
  std::cout << fmt::format("\n== {} ({} mode, {} workspaces, {} members)\n", org_id, mode_name(org->mode), org->live_workspaces.size(),
                           org->members.size());
  std::cout << fmt::format("    granted {}  consumed {}  expired {}  banked {}  held {}  available {}\n", credits(balances->granted),
                           credits(balances->consumed), credits(balances->expired), credits(balances->banked), credits(balances->held),
                           credits(balances->available()));
  std::map<std::string, Totals> by_workspace, by_member, by_tool;
  state.usage.for_each(org_id, [&](const UsageCell& cell, const UsageTotals& totals) {
    const auto add = [&](std::map<std::string, Totals>& table, const std::string& key) {
      table[key].events += totals.events;
      table[key].credits += totals.credits;
    };
    add(by_workspace, org->workspaces[cell.workspace].name);
    add(by_member, std::string(cell.user));
    add(by_tool, fmt::format("{} / {}", cell.tool, cell.model));
  });
  print_table("by workspace", by_workspace, 10);
  print_table("by member (top 5)", by_member, 5);
  print_table("by tool / model", by_tool, 12);
}

}  // namespace

int run_demo(const DemoOptions& options) {
  namespace fs = std::filesystem;
  fs::path dir = options.data_dir;
  const bool temporary = dir.empty();
  if (temporary) {
    dir = fs::temp_directory_path() / fmt::format("tally-demo-{}", getpid());
    fs::remove_all(dir);  // ours alone: named after this process
  } else if (fs::exists(dir) && !fs::is_empty(dir)) {
    // Never delete or reuse a directory the user named: it may hold anything.
    std::cerr << "tally demo: " << dir.string() << " is not empty; give a new or empty --data directory\n";
    return 1;
  }
  int exit_code = 0;
  {
    WorkloadOptions workload_options;
    workload_options.seed = options.seed;
    workload_options.orgs = options.orgs;
    workload_options.usage_events = options.usage_events;
    workload_options.start_us = kNov2026;
    Workload workload(workload_options);
    SteppingClock clock = workload.clock();

    std::unique_ptr<Engine> engine;
    EngineOptions engine_options;
    engine_options.data_dir = dir.string();
    engine_options.clock = &clock;
    if (Status s = Engine::open(engine_options, &engine); !s.ok()) {
      std::cerr << "tally demo: " << s.message << '\n';
      return 1;
    }
    std::cout << fmt::format("tally demo: a month of usage for {} organizations, {} usage events, durable group commits in {}\n",
                             options.orgs, options.usage_events, dir.string());

    std::map<std::string, uint64_t> refused;
    uint64_t accepted = 0, duplicates = 0, commands = 0;
    const Progress progress = terminal_progress("demo");
    auto run = [&](const std::vector<Command>& batch) {
      for (const CommandResult& result : engine->execute(batch)) {
        if (!result.status.ok()) {
          ++refused[std::string(error_name(result.status.code))];
        } else if (result.events == 0) {
          ++duplicates;
        } else {
          ++accepted;
        }
      }
      commands += batch.size();
      if (progress) progress(workload.usage_generated(), options.usage_events);
    };
    run(workload.setup());
    const uint64_t setup_commands = commands;
    const auto start = std::chrono::steady_clock::now();
    const uint64_t seq_before = engine->store().last_seq();
    for (std::vector<Command> batch = workload.next(kBatchCommandsMax / 2); !batch.empty(); batch = workload.next(kBatchCommandsMax / 2)) {
      run(batch);
      if (engine->read_only()) break;
    }
    const double ingest_seconds = seconds_since(start);
    end_progress();
    const uint64_t events = engine->store().last_seq() - seq_before;
    const uint64_t timed = commands - setup_commands;
    std::cout << fmt::format("\ningest: {} commands -> {} events in {:.2f} s: {:.0f} commands/s, {:.0f} events/s (fsync'd batches)\n",
                             timed, events, ingest_seconds, static_cast<double>(timed) / ingest_seconds,
                             static_cast<double>(events) / ingest_seconds);
    std::cout << fmt::format("of all {} commands (set-up included): accepted {}, duplicates answered without a debit {}, refused {}:", commands, accepted, duplicates,
                             commands - accepted - duplicates);
    for (const auto& [code, count] : refused) std::cout << fmt::format(" {} {}", code, count);
    std::cout << fmt::format("\nengine time now {}\n", format_time(engine->last_time_us()));

    for (const Workload::OrgPlan& org : workload.orgs()) print_report(engine->state(), org.id);

    const auto verify_start = std::chrono::steady_clock::now();
    const VerifyReport report = verify(engine->store(), &engine->state(), terminal_progress("verify"));
    end_progress();
    const double verify_seconds = seconds_since(verify_start);
    std::cout << fmt::format("\nverify: {} — {} events in {} batches; hash chain, checksums, rebuild == live, invariants; {:.2f} s ({:.0f} events/s)\n",
                             report.ok() ? "ok" : "FAILED", report.events, report.batches, verify_seconds,
                             static_cast<double>(report.events) / verify_seconds);
    std::cout << fmt::format("head hash: {}\n", report.head_hash);
    for (const std::string& problem : report.problems) std::cout << "problem: " << problem << '\n';
    exit_code = report.ok() && !engine->read_only() ? 0 : 1;
  }
  if (temporary) fs::remove_all(dir);
  return exit_code;
}

}  // namespace tally::cli
