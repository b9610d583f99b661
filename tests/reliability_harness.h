// Small helpers shared by the reliability suites (fault injection, simulation): a
// scratch directory, commands from JSON lines, and the checks every test ends with —
// the log as stored, and the live projections against a rebuild from that log.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/command.h"
#include "engine/engine.h"
#include "engine/event_format.h"
#include "engine/log.h"
#include "projections/projection_set.h"
#include "replay/replay.h"

namespace tally::test {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it at the end.
class ScratchDir {
 public:
  explicit ScratchDir(std::string_view tag) {
    static std::atomic<int> counter{0};
    const char* base = std::getenv("TMPDIR");
    path_ = std::filesystem::path(base != nullptr && *base != '\0' ? base : "/tmp") /
            ("tally-" + std::string(tag) + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// Decodes a JSON command line the test wrote; a line that does not decode is a bug in
// the test itself.
inline Command command(std::string_view json) {
  Command out;
  const Status status = decode_command(json, &out);
  if (!status.ok()) {
    ADD_FAILURE() << "test command does not decode: " << json << ": " << status.message;
  }
  return out;
}

inline std::vector<Command> commands(std::initializer_list<std::string_view> lines) {
  std::vector<Command> out;
  for (std::string_view line : lines) out.push_back(command(line));
  return out;
}

// One log record as read back: its sequence number, command id and envelope bytes.
struct LoggedEvent {
  uint64_t seq = 0;
  std::string command_id;
  std::string envelope;
  bool operator==(const LoggedEvent&) const = default;
};

inline std::vector<LoggedEvent> read_whole_log(const Store& store) {
  std::vector<LoggedEvent> out;
  const Status status = store.read_log(1, store.last_seq(), [&](uint64_t seq, std::string_view bytes) {
    const fb::Envelope* event = decode_envelope(bytes);
    std::string id = event != nullptr && event->command_id() != nullptr ? event->command_id()->str() : std::string();
    out.push_back({seq, std::move(id), std::string(bytes)});
    return true;
  });
  EXPECT_TRUE(status.ok()) << status.message;
  return out;
}

// Every projection row rebuilt from nothing but the log.
inline std::vector<std::pair<std::string, std::string>> rebuilt_rows(const Store& store) {
  ProjectionSet rebuilt;
  const Status status = rebuilt.replay(store, store.last_seq(), std::numeric_limits<int64_t>::max());
  EXPECT_TRUE(status.ok()) << status.message;
  return projection_rows(rebuilt);
}

// The checks of SPEC §2 and §6 that hold after anything: the hash chain and checksums
// verify, the stored and live projections equal a rebuild, and the invariants hold.
inline void expect_sound(const Engine& engine, std::string_view context) {
  const VerifyReport report = verify(engine.store(), &engine.state());
  std::string problems;
  for (const std::string& problem : report.problems) problems += "\n  " + problem;
  EXPECT_TRUE(report.ok()) << context << ": verify found" << problems;
  EXPECT_TRUE(projection_rows(engine.state()) == rebuilt_rows(engine.store()))
      << context << ": the live projections differ from a rebuild from the log";
  for (const std::string& broken : engine.state().balances.check_invariants()) {
    ADD_FAILURE() << context << ": invariant broken: " << broken;
  }
}

}  // namespace tally::test
