#include "cli/remote.h"

#include <pthread.h>
#include <signal.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <deque>
#include <iostream>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "engine/query.h"
#include "engine/values.h"
#include "server/client.h"

namespace tally::cli {
namespace {

int fail(const Status& status) {
  std::cerr << "tally: " << error_name(status.code) << ": " << status.message << '\n';
  return 1;
}

Status connect(const std::string& address, const std::string& token, std::unique_ptr<server::Client>* client) {
  std::string host;
  uint16_t port = 0;
  if (Status s = server::parse_host_port(address, &host, &port); !s.ok()) return s;
  server::ClientOptions options;
  options.name = "tally-cli";
  return server::Client::connect(host, port, token, client, options);
}

// Commands per request, and requests in flight: enough to keep the daemon's group
// commits full without holding much in memory.
constexpr size_t kRequestCommands = 4096;
constexpr size_t kRequestsInFlight = 4;

}  // namespace

int run_serve(const server::ServerOptions& options) {
  // Block the stop signals in every thread (the server's threads inherit the mask), and
  // wait for them here.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // The log goes to standard error; standard output carries only the listening line.
  spdlog::set_default_logger(spdlog::stderr_color_mt("tally"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %l %v", spdlog::pattern_time_type::utc);
  std::unique_ptr<server::Server> daemon;
  if (Status s = server::Server::start(options, &daemon); !s.ok()) return fail(s);
  std::cout << fmt::format("tally serve: listening on {}:{} (binary) and {}:{} (HTTP)", options.bind_address, daemon->binary_port(),
                           options.bind_address, daemon->http_port())
            << std::endl;
  int received = 0;
  sigwait(&signals, &received);
  spdlog::info("{} received", received == SIGTERM ? "SIGTERM" : "SIGINT");
  daemon->shutdown();
  daemon.reset();
  return 0;
}

int run_remote_apply(const std::string& address, const std::string& token, std::istream& in, std::ostream& out, ApplyStats* stats) {
  std::unique_ptr<server::Client> client;
  if (Status s = connect(address, token, &client); !s.ok()) return fail(s);
  // Each request remembers its lines' answers: local errors at once, the rest from the
  // daemon's reply. Replies come in request order; answers go out in input order.
  struct Pending {
    std::vector<std::string> answers;  // one per input line
    std::vector<size_t> slots;         // answers index of each line sent
    bool sent = false;                 // false: every line was refused locally
  };
  std::deque<Pending> in_flight;
  Pending current;
  std::vector<std::string> lines;
  auto print_front = [&] {
    for (const std::string& answer : in_flight.front().answers) out << answer << '\n';
    in_flight.pop_front();
  };
  auto print_local = [&] {
    while (!in_flight.empty() && !in_flight.front().sent) print_front();
    out.flush();
  };
  auto receive_one = [&]() -> Status {
    print_local();
    if (in_flight.empty()) return Status::Ok();
    server::Reply reply;
    if (Status s = client->receive(&reply); !s.ok()) return s;
    Pending& done = in_flight.front();
    if (!reply.status.ok()) {
      for (size_t slot : done.slots) done.answers[slot] = error_json(reply.status);
      stats->refused += done.slots.size();
    } else {
      if (reply.results.size() != done.slots.size()) return Error(ErrorCode::kInternal, "the daemon answered a different number of commands");
      for (size_t i = 0; i < reply.results.size(); ++i) {
        done.answers[done.slots[i]] = reply.results[i].to_json();
        ++(reply.results[i].status.ok() ? stats->accepted : stats->refused);
      }
    }
    print_front();
    print_local();
    return Status::Ok();
  };
  auto receive_all = [&]() -> Status {
    while (!in_flight.empty()) {
      if (Status s = receive_one(); !s.ok()) return s;
    }
    return Status::Ok();
  };
  auto send = [&]() -> Status {
    if (current.answers.empty()) return Status::Ok();
    if (!lines.empty()) {
      uint64_t request_id;
      if (Status s = client->send_commands(lines, &request_id); !s.ok()) return s;
      current.sent = true;
    }
    in_flight.push_back(std::move(current));
    current = Pending();
    lines.clear();
    print_local();
    while (in_flight.size() >= kRequestsInFlight) {
      if (Status s = receive_one(); !s.ok()) return s;
    }
    return Status::Ok();
  };
  std::string line;
  bool too_long = false;
  while (read_line(in, &line, kCommandBytesMax, &too_long)) {
    if (!too_long && line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ++stats->commands;
    if (too_long) {
      current.answers.push_back(error_json(Error(ErrorCode::kTooLarge, fmt::format("a command line is at most {} bytes", kCommandBytesMax))));
      ++stats->refused;
    } else {
      current.slots.push_back(current.answers.size());
      current.answers.emplace_back();
      lines.push_back(line);
    }
    // Send when the request is full; when nothing more is ready (interactive use), also
    // wait for the answers.
    const bool idle = in.rdbuf()->in_avail() <= 0;
    if (lines.size() >= kRequestCommands || idle) {
      if (Status s = send(); !s.ok()) return fail(s);
    }
    if (idle) {
      if (Status s = receive_all(); !s.ok()) return fail(s);
    }
  }
  if (Status s = send(); !s.ok()) return fail(s);
  if (Status s = receive_all(); !s.ok()) return fail(s);
  return 0;
}

int run_remote_query(const std::string& address, const std::string& token, const std::string& json, std::ostream& out) {
  std::unique_ptr<server::Client> client;
  if (Status s = connect(address, token, &client); !s.ok()) return fail(s);
  std::string answer;
  if (Status s = client->query(json, &answer); !s.ok()) {
    out << error_json(s) << '\n';
    return 1;
  }
  out << answer << '\n';
  return 0;
}

}  // namespace tally::cli
