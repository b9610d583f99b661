// `tally demo`: the main job on a fresh embedded store — a generated month of an AI
// platform (cli/workload.h), then throughput, a usage report and verify.
#pragma once

#include <cstdint>
#include <string>

namespace tally::cli {

struct DemoOptions {
  std::string data_dir;  // empty: a fresh temporary directory, removed afterwards
  uint64_t seed = 42;
  uint32_t orgs = 4;
  uint64_t usage_events = 1'000'000;
};

// Runs the demo and prints its report to stdout; returns the process exit code.
int run_demo(const DemoOptions& options);

}  // namespace tally::cli
