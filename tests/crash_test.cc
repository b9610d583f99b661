// Crash safety (SPEC §6), with real processes killed by SIGKILL at random moments:
// - `tally apply`, fed usage commands through a pipe;
// - the daemon, `tally serve`, loaded by several binary-protocol clients at once, which
//   also resend what was not acknowledged before the kill, as real clients would.
// After each kill the store is reopened and checked: every acknowledged command is in
// the log exactly once, nothing is half-applied (verify: hash chain, checksums, rebuild
// == stored state, accounting invariants), and the next process continues on the same
// directory.
//
// CI runs 20 kills of each. Soak:
//   TALLY_CRASH_ROUNDS=500 TALLY_CRASH_SEED=123 tally_suite_tests --gtest_filter='Crash.*'
// Every failure prints the seed.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "engine/engine.h"
#include "engine/event_format.h"
#include "engine/values.h"
#include "replay/replay.h"
#include "server/client.h"

extern char** environ;

namespace tally {
namespace {

uint64_t env_number(const char* name, uint64_t fallback) {
  const char* value = std::getenv(name);
  return value == nullptr ? fallback : std::strtoull(value, nullptr, 10);
}

// A running `tally apply --data DIR -` with pipes to its standard input and output.
class ApplyProcess {
 public:
  explicit ApplyProcess(const std::string& data_dir) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) std::abort();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_addclose(&actions, in[1]);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    std::string binary = TALLY_BINARY;
    std::vector<std::string> args = {binary, "apply", "--data", data_dir, "-"};
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ) != 0) std::abort();
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    close(out[1]);
    to_child_ = in[1];
    from_child_ = fdopen(out[0], "r");
    signal(SIGPIPE, SIG_IGN);  // writing to a killed child must fail, not kill the test
  }
  ~ApplyProcess() {
    if (to_child_ >= 0) close(to_child_);
    if (from_child_ != nullptr) fclose(from_child_);
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool send(const std::string& lines) {
    size_t done = 0;
    while (done < lines.size()) {
      const ssize_t n = write(to_child_, lines.data() + done, lines.size() - done);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }
  // One answer line, or false when the child is gone.
  bool read_answer(std::string* line) {
    char buffer[4096];
    if (fgets(buffer, sizeof buffer, from_child_) == nullptr) return false;
    *line = buffer;
    return true;
  }
  void kill_now() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  void finish() {
    close(to_child_);
    to_child_ = -1;
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int to_child_ = -1;
  FILE* from_child_ = nullptr;
};

std::string setup_lines() {
  std::string lines;
  lines += R"({"cmd":"create_org","actor":"owner@crash.example","org":"crash","mode":"budget"})" "\n";
  lines += R"({"cmd":"grant_credits","actor":"owner@crash.example","org":"crash","grant":"g1","kind":"plan","credits":"1000000"})" "\n";
  lines += R"({"cmd":"create_workspace","actor":"owner@crash.example","org":"crash","workspace":"w1"})" "\n";
  lines += R"({"cmd":"transfer_credits","actor":"owner@crash.example","org":"crash","from":"primary","to":"w1","credits":"500000"})" "\n";
  lines += R"({"cmd":"create_service_key","actor":"platform","org":"crash","key":"k","secret_sha256":")" + std::string(64, 'b') + "\"}\n";
  for (int m = 0; m < 8; ++m) {
    lines += fmt::format(R"({{"cmd":"invite_member","actor":"owner@crash.example","org":"crash","user":"m{}@crash.example","role":"member","workspace":"w1"}})" "\n", m);
    lines += fmt::format(R"({{"cmd":"accept_invite","actor":"m{}@crash.example","org":"crash"}})" "\n", m);
  }
  return lines;
}

std::string usage_line(const std::string& id, int member, int64_t occurred_us) {
  return fmt::format(
      R"({{"cmd":"record_usage","actor":"key:k","id":"{}","org":"crash","workspace":"w1","user":"m{}@crash.example","tool":"chat",)"
      R"("model":"m","quantity":1,"unit":"token","credits":"0.25","occurred_at":"{}"}})" "\n",
      id, member, format_time(occurred_us));
}

// Counts UsageRecorded events per usage id over the whole log.
std::map<std::string, int> usage_counts(const Store& store) {
  std::map<std::string, int> counts;
  store.read_log(1, store.last_seq(), [&](uint64_t, std::string_view bytes) {
    const fb::Envelope* event = decode_envelope(bytes);
    if (event != nullptr && event->event_type() == fb::Event::UsageRecorded) ++counts[event->event_as_UsageRecorded()->id()->str()];
    return true;
  });
  return counts;
}

// After a kill: the store opens, every acknowledged usage id is in the log, no id is
// there twice, verify passes (hash chain, checksums, rebuild == stored, invariants), and
// the ledger consumed 0.25 credits per usage event in the log.
void check_store_after_kill(const std::string& data_dir, const std::set<std::string>& acknowledged) {
  std::unique_ptr<Engine> engine;
  EngineOptions options;
  options.data_dir = data_dir;
  options.create_if_missing = false;
  ASSERT_TRUE(Engine::open(options, &engine).ok());
  const std::map<std::string, int> counts = usage_counts(engine->store());
  for (const std::string& id : acknowledged) {
    ASSERT_TRUE(counts.contains(id)) << "acknowledged " << id << " is not in the log";
  }
  for (const auto& [id, count] : counts) ASSERT_EQ(count, 1) << id << " is in the log " << count << " times";
  const VerifyReport report = verify(engine->store(), &engine->state());
  ASSERT_TRUE(report.ok()) << (report.problems.empty() ? "" : report.problems[0]);
  const OrgBalances* balances = engine->state().balances.find("crash");
  ASSERT_NE(balances, nullptr);
  EXPECT_EQ(balances->consumed, static_cast<int64_t>(counts.size()) * 250000);
}

TEST(Crash, KillNineNeverLosesAnAcknowledgedCommand) {
  const uint64_t seed = env_number("TALLY_CRASH_SEED", 20261124);
  const uint64_t rounds = env_number("TALLY_CRASH_ROUNDS", 20);
  SCOPED_TRACE(fmt::format("TALLY_CRASH_SEED={} TALLY_CRASH_ROUNDS={}", seed, rounds));
  std::mt19937_64 random(seed);
  const std::string dir = (std::filesystem::temp_directory_path() / fmt::format("tally-crash-{}", getpid())).string();
  std::filesystem::remove_all(dir);
  {
    ApplyProcess setup(dir);
    ASSERT_TRUE(setup.send(setup_lines()));
    setup.finish();
  }
  std::set<std::string> acknowledged;
  uint64_t sent_total = 0;
  for (uint64_t round = 0; round < rounds; ++round) {
    SCOPED_TRACE(fmt::format("round {}", round));
    ApplyProcess child(dir);
    const auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    // A reader collects acknowledgements while the writer streams commands.
    std::atomic<bool> reading = true;
    std::vector<std::string> answers;
    std::thread reader([&] {
      std::string line;
      while (child.read_answer(&line)) answers.push_back(line);
      reading = false;
    });
    const auto kill_after = std::chrono::milliseconds(20 + random() % 400);
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::string> ids;
    while (std::chrono::steady_clock::now() - start < kill_after && ids.size() < 200000) {
      std::string chunk;
      const int lines = 1 + static_cast<int>(random() % 500);
      for (int i = 0; i < lines; ++i) {
        ids.push_back(fmt::format("r{}-{}", round, ids.size()));
        chunk += usage_line(ids.back(), static_cast<int>(random() % 8), now_us);
      }
      if (!child.send(chunk)) break;
    }
    child.kill_now();
    reader.join();
    sent_total += ids.size();
    // The answers come in order, one per command: an "ok" answer acknowledges its id.
    for (size_t i = 0; i < answers.size(); ++i) {
      ASSERT_LT(i, ids.size());
      if (answers[i].find("\"ok\":true") != std::string::npos) acknowledged.insert(ids[i]);
      else
        ASSERT_NE(answers[i].find("\"ok\":false"), std::string::npos) << answers[i];
    }

    check_store_after_kill(dir, acknowledged);
    if (::testing::Test::HasFatalFailure()) return;
  }
  std::filesystem::remove_all(dir);
  std::cout << fmt::format("crash test: {} kills, {} commands sent, {} acknowledged, all present exactly once\n", rounds, sent_total,
                           acknowledged.size());
  // The test must have exercised something: kills landed while commands were acknowledged.
  EXPECT_GT(acknowledged.size(), 0u);
  EXPECT_GT(sent_total, acknowledged.size()) << "no kill ever interrupted unacknowledged work";
}

// ---- the daemon -------------------------------------------------------------------

// A running `tally serve` on free loopback ports; its standard output (the listening
// line) and its log go to files in `dir`.
class ServeProcess {
 public:
  ServeProcess(const std::string& data_dir, const std::string& dir) : out_path_(dir + "/serve.out"), err_path_(dir + "/serve.err") {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    std::string binary = TALLY_BINARY;
    std::vector<std::string> args = {binary, "serve", "--data", data_dir, "--port", "0", "--http-port", "0", "--bind", "127.0.0.1",
                                      "--admin-token-file", dir + "/admin"};
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ) != 0) std::abort();
    posix_spawn_file_actions_destroy(&actions);
  }
  ~ServeProcess() { kill_now(); }

  // The binary protocol's port, once the daemon prints its listening line (0 if it
  // does not within 20 s, or exits).
  uint16_t wait_for_port() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      std::ifstream out(out_path_);
      std::string line;
      if (std::getline(out, line)) {
        const size_t end = line.find(" (binary)");
        const size_t colon = line.rfind(':', end);
        if (end != std::string::npos && colon != std::string::npos) return static_cast<uint16_t>(std::stoul(line.substr(colon + 1, end - colon - 1)));
      }
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return 0;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return 0;
  }

  void kill_now() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // The end of the daemon's log, for a failure message.
  std::string log_tail() const {
    std::ifstream err(err_path_);
    std::vector<std::string> lines;
    for (std::string line; std::getline(err, line);) lines.push_back(line);
    std::string tail;
    for (size_t i = lines.size() > 20 ? lines.size() - 20 : 0; i < lines.size(); ++i) tail += lines[i] + "\n";
    return tail;
  }

 private:
  std::string out_path_;
  std::string err_path_;
  pid_t pid_ = -1;
};

server::UsageRecord usage_record(const std::string& id, int64_t occurred_us) {
  // Spread over the members by id, so a resent id is the same usage event.
  const int member = static_cast<int>(std::hash<std::string>{}(id) % 8);
  return server::UsageRecord{id, "crash", "w1", fmt::format("m{}@crash.example", member), "chat", "m", 1, "token", occurred_us, 250000};
}

// One client connection: sends `fresh` (and first `resend`) in pipelined requests of
// random size until the daemon dies or `stop` is set. Returns the ids the daemon
// acknowledged (ok, new or duplicate) and those it did not answer.
struct ClientRun {
  std::vector<std::string> acknowledged;
  std::vector<std::string> unanswered;
  uint64_t requests = 0;
};

ClientRun drive_client(uint16_t port, const std::string& token, std::vector<std::string> resend, const std::string& prefix,
                       int64_t occurred_us, uint64_t seed, const std::atomic<bool>& stop) {
  ClientRun run;
  std::mt19937_64 random(seed);
  std::unique_ptr<server::Client> client;
  server::ClientOptions options;
  options.timeout = std::chrono::milliseconds(10'000);
  options.name = "crash-test";
  std::deque<std::pair<uint64_t, std::vector<std::string>>> in_flight;
  uint64_t fresh = 0;
  auto leftovers = [&] {
    for (auto& [request, ids] : in_flight) run.unanswered.insert(run.unanswered.end(), ids.begin(), ids.end());
    run.unanswered.insert(run.unanswered.end(), resend.begin(), resend.end());
  };
  if (!server::Client::connect("127.0.0.1", port, token, &client, options).ok()) {
    leftovers();
    return run;
  }
  while (!stop || !in_flight.empty()) {
    if (!stop && in_flight.size() < 4) {
      std::vector<std::string> ids;
      const size_t count = 1 + random() % 16;
      while (ids.size() < count && !resend.empty()) {
        ids.push_back(std::move(resend.back()));
        resend.pop_back();
      }
      while (ids.size() < count) ids.push_back(fmt::format("{}-{}", prefix, fresh++));
      std::vector<server::UsageRecord> records;
      for (const std::string& id : ids) records.push_back(usage_record(id, occurred_us));
      uint64_t request_id = 0;
      if (!client->send_usage(records, &request_id).ok()) {
        run.unanswered.insert(run.unanswered.end(), ids.begin(), ids.end());
        break;
      }
      in_flight.emplace_back(request_id, std::move(ids));
      ++run.requests;
      // Paced, so that the log (which every round verifies whole) stays small.
      std::this_thread::sleep_for(std::chrono::microseconds(random() % 2000));
      continue;
    }
    server::Reply reply;
    if (!client->receive(&reply).ok()) break;
    auto [request_id, ids] = std::move(in_flight.front());
    in_flight.pop_front();
    EXPECT_EQ(reply.request_id, request_id);
    if (!reply.status.ok() || reply.results.size() != ids.size()) {
      ADD_FAILURE() << "request refused or answered in part: " << error_name(reply.status.code) << " " << reply.status.message;
      run.unanswered.insert(run.unanswered.end(), ids.begin(), ids.end());
      continue;
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      if (reply.results[i].status.ok()) {
        run.acknowledged.push_back(ids[i]);
      } else {
        // Before the kill only a failed write may refuse these; never half an answer.
        ADD_FAILURE() << ids[i] << ": " << reply.results[i].to_json();
        run.unanswered.push_back(ids[i]);
      }
    }
  }
  leftovers();
  return run;
}

TEST(Crash, KillNineTheDaemonNeverLosesAnAcknowledgedCommand) {
  const uint64_t seed = env_number("TALLY_CRASH_SEED", 20261124);
  const uint64_t rounds = env_number("TALLY_CRASH_ROUNDS", 20);
  constexpr int kClients = 4;
  SCOPED_TRACE(fmt::format("TALLY_CRASH_SEED={} TALLY_CRASH_ROUNDS={}", seed, rounds));
  std::mt19937_64 random(seed);
  const std::string dir = (std::filesystem::temp_directory_path() / fmt::format("tally-crash-daemon-{}", getpid())).string();
  const std::string data_dir = dir + "/data";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string token = fmt::format("crash-admin-{:016x}", random());
  std::ofstream(dir + "/admin") << token << "\n";
  {
    ApplyProcess setup(data_dir);
    ASSERT_TRUE(setup.send(setup_lines()));
    setup.finish();
  }
  // One time for every event of the test, so that a resent id is the same content.
  const int64_t occurred_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::set<std::string> acknowledged;
  std::vector<std::string> unanswered;  // resent in the next round
  uint64_t requests = 0, interrupted = 0, resent = 0;
  for (uint64_t round = 0; round < rounds; ++round) {
    SCOPED_TRACE(fmt::format("round {}", round));
    ServeProcess daemon(data_dir, dir);
    const uint16_t port = daemon.wait_for_port();
    ASSERT_NE(port, 0) << "tally serve did not start:\n" << daemon.log_tail();
    std::atomic<bool> stop = false;
    std::vector<ClientRun> runs(kClients);
    std::vector<std::thread> clients;
    resent += unanswered.size();
    for (int c = 0; c < kClients; ++c) {
      // The previous round's unanswered ids are resent, split over the clients.
      std::vector<std::string> mine;
      for (size_t i = static_cast<size_t>(c); i < unanswered.size(); i += kClients) mine.push_back(unanswered[i]);
      clients.emplace_back([&, c, mine = std::move(mine), client_seed = random()]() mutable {
        runs[static_cast<size_t>(c)] = drive_client(port, token, std::move(mine), fmt::format("d{}-{}", round, c), occurred_us, client_seed, stop);
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(30 + random() % 270));
    daemon.kill_now();
    stop = true;
    for (std::thread& client : clients) client.join();
    unanswered.clear();
    for (const ClientRun& run : runs) {
      acknowledged.insert(run.acknowledged.begin(), run.acknowledged.end());
      unanswered.insert(unanswered.end(), run.unanswered.begin(), run.unanswered.end());
      requests += run.requests;
    }
    interrupted += unanswered.size();

    check_store_after_kill(data_dir, acknowledged);
    if (::testing::Test::HasFatalFailure()) return;
  }
  std::filesystem::remove_all(dir);
  std::cout << fmt::format("daemon crash test: {} kills, {} requests from {} clients, {} usage events acknowledged, {} unanswered "
                           "at a kill, {} resent after a restart; every acknowledged one is in the log exactly once\n",
                           rounds, requests, kClients, acknowledged.size(), interrupted, resent);
  // The test must have exercised something: kills landed while commands were in flight.
  EXPECT_GT(acknowledged.size(), 0u);
  EXPECT_GT(interrupted, 0u) << "no kill ever interrupted unacknowledged work";
}

}  // namespace
}  // namespace tally
