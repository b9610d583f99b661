// `tally demo`: the main job on a fresh embedded store.
#pragma once

#include <cstdint>
#include <string>

namespace tally::cli {

struct DemoOptions {
  std::string data_dir;  // empty: a fresh temporary directory, removed afterwards
  uint64_t seed = 42;
  uint32_t orgs = 6;
};

// Runs the demo and prints its report to stdout; returns the process exit code.
int run_demo(const DemoOptions& options);

}  // namespace tally::cli
