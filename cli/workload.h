// A generated, realistic month of an AI platform: organizations in shared and budget
// mode with workspaces and dozens of members, plans, top-ups, promos and expiring
// packs, a rate card for chat, image, video and audio models, usage from every tool,
// holds for video jobs (some never settled, so they time out), and a few requests that
// must be refused. Deterministic for a seed. Used by `tally demo` and the benchmarks.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/clock.h"
#include "engine/command.h"

namespace tally::cli {

struct WorkloadOptions {
  uint64_t seed = 42;
  uint32_t orgs = 4;
  uint64_t usage_events = 1'000'000;  // record_usage commands, holds not counted
  int64_t start_us = 0;               // the month's first instant
  int64_t month_us = 30LL * 24 * 3600 * 1'000'000;
};

// The workload's clock: every call moves time on by a fixed step, so the n-th command
// the engine runs happens at start + n * step. The engine reads its clock once per
// command, which lets the generator know when each command it emits will run.
class SteppingClock final : public Clock {
 public:
  SteppingClock(int64_t start_us, int64_t step_us) : now_us_(start_us), step_us_(step_us) {}
  int64_t now_us() override {
    const int64_t now = now_us_;
    now_us_ += step_us_;
    return now;
  }

 private:
  int64_t now_us_;
  int64_t step_us_;
};

class Workload {
 public:
  explicit Workload(const WorkloadOptions& options);

  // The clock the engine must run on for the generated times to hold.
  SteppingClock clock() const { return SteppingClock(options_.start_us, step_us_); }
  // The set-up: rate card, organizations, workspaces, members, plans and first grants.
  std::vector<Command> setup();
  // The next at most `max_commands` commands; empty when the month is done.
  std::vector<Command> next(size_t max_commands);

  struct OrgPlan {
    std::string id;
    bool shared = false;
    std::string owner;
    std::vector<std::string> workspaces;               // names, primary first
    std::vector<std::pair<std::string, size_t>> members;  // user, workspace index
  };
  const std::vector<OrgPlan>& orgs() const { return orgs_; }
  uint64_t usage_generated() const { return usage_generated_; }

 private:
  int64_t now() const { return options_.start_us + static_cast<int64_t>(emitted_) * step_us_; }
  void emit(Command command, std::vector<Command>* out);
  Command usage(const OrgPlan& org, size_t member);
  void add_video_job(const OrgPlan& org, size_t member, std::vector<Command>* out);
  void add_money_events(std::vector<Command>* out);
  void add_refusals(std::vector<Command>* out);

  WorkloadOptions options_;
  std::mt19937_64 random_;
  int64_t step_us_ = 1;
  std::vector<OrgPlan> orgs_;
  uint64_t usage_generated_ = 0;
  uint64_t emitted_ = 0;  // commands handed out so far: the clock's position
  uint64_t next_id_ = 0;
  int64_t last_day_ = 0;
  // Settles and releases waiting for their job to finish, by the command index at
  // which they are due (a min-heap).
  std::vector<std::pair<uint64_t, Command>> pending_;
};

}  // namespace tally::cli
