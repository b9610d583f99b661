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
#include "cli/load.h"
#include "cli/remote.h"
#include "engine/allocator.h"
#include "engine/engine.h"
#include "replay/export.h"
#include "replay/replay.h"
#include "server/server.h"

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

// Where apply and query send their work: a data directory, or a daemon.
struct Target {
  std::string data_dir;
  std::string server;      // HOST:PORT of `tally serve`'s binary protocol
  std::string token_file;  // the bearer secret for the daemon
};

// Exactly one of --data and --server; --server needs --token-file.
int check_target(const Target& target, std::string* token) {
  if (target.data_dir.empty() == target.server.empty()) {
    std::cerr << "tally: give exactly one of --data DIR and --server HOST:PORT\n";
    return 2;
  }
  if (target.server.empty()) return 0;
  if (target.token_file.empty()) {
    std::cerr << "tally: --server needs --token-file (the daemon's admin token, a service key or a user token)\n";
    return 2;
  }
  if (Status s = server::read_token_file(target.token_file, token); !s.ok()) return fail(s);
  return 0;
}

int run_apply_remote(const Target& target, const std::string& token, const std::string& input) {
  return with_input(input, [&](std::istream& in) {
    cli::ApplyStats stats;
    const int code = cli::run_remote_apply(target.server, token, in, std::cout, &stats);
    if (isatty(STDERR_FILENO)) {
      std::cerr << fmt::format("{} commands: {} accepted, {} refused\n", stats.commands, stats.accepted, stats.refused);
    }
    return code;
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
  // False only off glibc or under a sanitizer's allocator: Tally then runs, only slower.
  if (!tally::tune_allocator_for_batches()) spdlog::debug("the allocator keeps its default thresholds");
  // Our own stdin buffer lets apply see whether more input is ready (in_avail).
  std::ios::sync_with_stdio(false);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %l %v", spdlog::pattern_time_type::utc);
  CLI::App app{"tally: an event-sourced credit ledger for AI platforms.\n"
               "Every subcommand takes --help. Data lives in a directory (--data) that one process opens at a time."};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show the help of every subcommand");

  std::string data_dir;
  Target target;
  std::string input = "-";
  std::string output = "-";
  std::string query_json;

  auto* apply = app.add_subcommand("apply", "Execute JSON command lines (SPEC §4), answering one JSON line per command");
  apply->add_option("--data", target.data_dir, "Data directory (created if missing)");
  apply->add_option("--server", target.server, "Send the commands to a daemon (tally serve) at HOST:PORT, its binary protocol port");
  apply->add_option("--token-file", target.token_file, "With --server: a file holding the bearer secret to act with");
  apply->add_option("input", input, "File of JSON lines, or - for standard input")->capture_default_str();

  auto* query = app.add_subcommand("query", "Answer one JSON query, e.g. '{\"query\":\"members\",\"actor\":\"platform\",\"org\":\"acme\"}'");
  query->add_option("--data", target.data_dir, "Data directory");
  query->add_option("--server", target.server, "Ask a daemon (tally serve) at HOST:PORT, its binary protocol port");
  query->add_option("--token-file", target.token_file, "With --server: a file holding the bearer secret to act with");
  query->add_option("json", query_json, "The query object")->required();

  server::ServerOptions serve_options;
  std::string admin_token_file;
  auto* serve = app.add_subcommand("serve", "Run the daemon: the binary protocol and the HTTP/JSON API (docs/server.md) until SIGTERM or SIGINT");
  serve->add_option("--data", serve_options.data_dir, "Data directory (created if missing)")->required();
  serve->add_option("--port", serve_options.binary_port, "Port of the binary protocol (0: any free port)")->capture_default_str();
  serve->add_option("--http-port", serve_options.http_port, "Port of the HTTP API (0: any free port)")->capture_default_str();
  serve->add_option("--bind", serve_options.bind_address, "Address to listen on")->capture_default_str();
  serve->add_option("--admin-token-file", admin_token_file, "File whose first line is the secret that acts as \"platform\"");
  serve->add_option("--io-threads", serve_options.io_threads, "Threads serving connections")->check(CLI::Range(1u, 64u))->capture_default_str();
  serve->add_option("--max-connections", serve_options.limits.connections_max, "Connections at most; more are refused")
      ->check(CLI::Range(size_t{1}, size_t{100000}))
      ->capture_default_str();
  serve->add_option("--express-batch", serve_options.express_batch_commands,
                    "Bulk commands per group commit, at most, while small interactive requests (reserve, settle, balance) keep "
                    "coming: smaller answers them sooner, at a cost to bulk ingest (docs/server.md)")
      ->check(CLI::Range(size_t{1}, size_t{16384}))
      ->capture_default_str();

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

  cli::LoadOptions load_options;
  auto* load = app.add_subcommand("load", "Load-test a running daemon: record usage events over the binary protocol and report throughput");
  load->add_option("--server", load_options.server, "HOST:PORT of the daemon's binary protocol")->required();
  load->add_option("--token-file", load_options.token_file, "File holding the daemon's admin token (the load sets up its own organization)")->required();
  load->add_option("--http", load_options.http,
                   "HOST:PORT of the daemon's HTTP API: record the events there, as CloudEvents batches of --batch to POST /v1/events, "
                   "one request at a time per connection (the set-up still uses --server)");
  load->add_option("--connections", load_options.connections, "Connections")->check(CLI::Range(1u, 256u))->capture_default_str();
  load->add_option("--events", load_options.events, "Usage events to record")->check(CLI::Range(uint64_t{1}, uint64_t{1'000'000'000}))->capture_default_str();
  load->add_option("--batch", load_options.batch, "Usage records per request")->check(CLI::Range(1u, 16384u))->capture_default_str();
  load->add_option("--window", load_options.window, "Requests in flight per connection")->check(CLI::Range(1u, 64u))->capture_default_str();
  load->add_option("--workspaces", load_options.workspaces, "Workspaces of the load's organization")->check(CLI::Range(1u, 10000u))->capture_default_str();
  load->add_option("--members", load_options.members, "Members of the load's organization")->check(CLI::Range(1u, 1000000u))->capture_default_str();
  load->add_option("--round-trips", load_options.round_trips, "Reserve -> settle round trips on one more connection during the ingest")
      ->check(CLI::Range(0u, 1000000u))
      ->capture_default_str();
  load->add_option("--rate", load_options.rate, "Events per second to offer in all, spread over the connections (0: as fast as the daemon answers)")
      ->check(CLI::Range(uint64_t{0}, uint64_t{100'000'000}))
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }

  if (*apply || *query) {
    std::string token;
    if (int code = check_target(target, &token); code != 0) return code;
    if (*apply) return target.server.empty() ? run_apply(target.data_dir, input) : run_apply_remote(target, token, input);
    if (!target.server.empty()) return cli::run_remote_query(target.server, token, query_json, std::cout);
    return run_query(target.data_dir, query_json);
  }
  if (*serve) {
    if (!admin_token_file.empty()) {
      if (Status s = server::read_token_file(admin_token_file, &serve_options.admin_token); !s.ok()) return fail(s);
    } else {
      spdlog::warn("no --admin-token-file: nobody can act as the platform over the network");
    }
    return cli::run_serve(serve_options);
  }
  if (*replay) return run_replay(data_dir);
  if (*verify_cmd) return run_verify(data_dir);
  if (*export_cmd) return run_export(data_dir, output);
  if (*import_cmd) return run_import(data_dir, input);
  if (*demo) return cli::run_demo(demo_options);
  if (*load) return cli::run_load(load_options);
  return 2;
}
