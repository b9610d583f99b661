// The tally program: one subcommand per job. Exit codes: 0 success, 1 the job failed
// (a refused import, a failed verify, a storage error), 2 bad usage.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <fstream>
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "cli/demo.h"
#include "cli/io.h"
#include "engine/engine.h"
#include "replay/export.h"
#include "replay/replay.h"

namespace {

using namespace tally;

int fail(const Status& status) {
  std::cerr << "tally: " << error_name(status.code) << ": " << status.message << '\n';
  return 1;
}

Status open_engine(const std::string& data_dir, bool create, std::unique_ptr<Engine>* engine) {
  EngineOptions options;
  options.data_dir = data_dir;
  options.create_if_missing = create;
  return Engine::open(options, engine);
}

// Runs `body` on the named input: a file, or standard input for "-".
template <typename Body>
int with_input(const std::string& path, Body body) {
  if (path == "-") return body(std::cin);
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    std::cerr << "tally: cannot read " << path << '\n';
    return 1;
  }
  return body(file);
}

int run_apply(const std::string& data_dir, const std::string& input) {
  std::unique_ptr<Engine> engine;
  if (Status s = open_engine(data_dir, true, &engine); !s.ok()) return fail(s);
  return with_input(input, [&](std::istream& in) {
    cli::ApplyStats stats;
    cli::apply_lines(*engine, in, std::cout, &stats);
    if (isatty(STDERR_FILENO)) {
      std::cerr << fmt::format("{} commands: {} accepted, {} refused\n", stats.commands, stats.accepted, stats.refused);
    }
    return engine->read_only() ? 1 : 0;
  });
}

int run_query(const std::string& data_dir, const std::string& json) {
  std::unique_ptr<Engine> engine;
  if (Status s = open_engine(data_dir, false, &engine); !s.ok()) return fail(s);
  std::cout << engine->query(json) << '\n';
  return 0;
}

int run_replay(const std::string& data_dir) {
  StoreOptions options;
  options.path = data_dir;
  options.create_if_missing = false;
  std::unique_ptr<Store> store;
  if (Status s = Store::open(options, &store); !s.ok()) return fail(s);
  RebuildStats stats;
  const Status status = rebuild_projections(*store, &stats, cli::terminal_progress("replay"));
  cli::end_progress();
  if (!status.ok()) return fail(status);
  const double rate = stats.seconds > 0 ? static_cast<double>(stats.events) / stats.seconds : 0;
  std::cout << fmt::format("rebuilt every projection from {} events in {:.3f} s ({:.0f} events/s)\n", stats.events, stats.seconds, rate);
  return 0;
}

int run_verify(const std::string& data_dir) {
  std::unique_ptr<Engine> engine;
  if (Status s = open_engine(data_dir, false, &engine); !s.ok()) return fail(s);
  const VerifyReport report = verify(engine->store(), &engine->state(), cli::terminal_progress("verify"));
  cli::end_progress();
  std::cout << fmt::format("events: {}\nbatches: {}\nhead: {}\n", report.events, report.batches, report.head_hash);
  for (const std::string& problem : report.problems) std::cout << "problem: " << problem << '\n';
  std::cout << (report.ok() ? "verify: ok\n" : "verify: FAILED\n");
  return report.ok() ? 0 : 1;
}

int run_export(const std::string& data_dir, const std::string& output) {
  StoreOptions options;
  options.path = data_dir;
  options.create_if_missing = false;
  std::unique_ptr<Store> store;
  if (Status s = Store::open(options, &store); !s.ok()) return fail(s);
  ExportStats stats;
  Status status;
  if (output == "-") {
    status = export_commands(*store, std::cout, &stats, cli::terminal_progress("export"));
  } else {
    std::ofstream file(output, std::ios::binary | std::ios::trunc);
    if (!file) return fail(Error(ErrorCode::kInvalidArgument, fmt::format("cannot write {}", output)));
    status = export_commands(*store, file, &stats, cli::terminal_progress("export"));
  }
  cli::end_progress();
  if (!status.ok()) return fail(status);
  std::cerr << fmt::format("exported {} commands ({} events); head {}\n", stats.commands, stats.events, to_hex(store->head_hash()));
  return 0;
}

int run_import(const std::string& data_dir, const std::string& input) {
  std::unique_ptr<Engine> engine;
  if (Status s = open_engine(data_dir, true, &engine); !s.ok()) return fail(s);
  return with_input(input, [&](std::istream& in) {
    ImportStats stats;
    const Status status = import_commands(*engine, in, &stats, cli::terminal_progress("import"));
    cli::end_progress();
    if (!status.ok()) return fail(status);
    std::cerr << fmt::format("imported {} commands ({} events)\n", stats.commands, stats.events);
    return 0;
  });
}

}  // namespace

int main(int argc, char** argv) {
  // Our own stdin buffer lets apply see whether more input is ready (in_avail).
  std::ios::sync_with_stdio(false);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %l %v", spdlog::pattern_time_type::utc);
  CLI::App app{"tally: an event-sourced credit ledger for AI platforms.\n"
               "Every subcommand takes --help. Data lives in a directory (--data) that one process opens at a time."};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show the help of every subcommand");

  std::string data_dir;
  std::string input = "-";
  std::string output = "-";
  std::string query_json;

  auto* apply = app.add_subcommand("apply", "Execute JSON command lines (SPEC §4), answering one JSON line per command");
  apply->add_option("--data", data_dir, "Data directory (created if missing)")->required();
  apply->add_option("input", input, "File of JSON lines, or - for standard input")->capture_default_str();

  auto* query = app.add_subcommand("query", "Answer one JSON query, e.g. '{\"query\":\"members\",\"actor\":\"platform\",\"org\":\"acme\"}'");
  query->add_option("--data", data_dir, "Data directory")->required();
  query->add_option("json", query_json, "The query object")->required();

  auto* replay = app.add_subcommand("replay", "Rebuild every projection from the log and store the result");
  replay->add_option("--data", data_dir, "Data directory")->required();

  auto* verify_cmd = app.add_subcommand("verify", "Check the hash chain, checksums, and that a rebuild equals the stored state");
  verify_cmd->add_option("--data", data_dir, "Data directory")->required();

  auto* export_cmd = app.add_subcommand("export", "Write the log as JSON command lines with their original times");
  export_cmd->add_option("--data", data_dir, "Data directory")->required();
  export_cmd->add_option("--out", output, "Output file, or - for standard output")->capture_default_str();

  auto* import_cmd = app.add_subcommand("import", "Replay an export into an empty data directory");
  import_cmd->add_option("--data", data_dir, "Data directory (must be empty or new)")->required();
  import_cmd->add_option("input", input, "Export file, or - for standard input")->capture_default_str();

  cli::DemoOptions demo_options;
  auto* demo = app.add_subcommand("demo", "Run the engine on a fresh embedded store with a generated workload and report");
  demo->add_option("--data", demo_options.data_dir, "Keep the store in this directory (default: a temporary one, removed)");
  demo->add_option("--seed", demo_options.seed, "Seed of the generated workload")->capture_default_str();
  demo->add_option("--orgs", demo_options.orgs, "Organizations to generate")->check(CLI::Range(1u, 8u))->capture_default_str();
  demo->add_option("--events", demo_options.usage_events, "Usage events to generate")
      ->check(CLI::Range(uint64_t{1000}, uint64_t{100'000'000}))
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }

  if (*apply) return run_apply(data_dir, input);
  if (*query) return run_query(data_dir, query_json);
  if (*replay) return run_replay(data_dir);
  if (*verify_cmd) return run_verify(data_dir);
  if (*export_cmd) return run_export(data_dir, output);
  if (*import_cmd) return run_import(data_dir, input);
  if (*demo) return cli::run_demo(demo_options);
  return 2;
}
