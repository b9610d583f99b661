// The SPEC §5 usage-ingest workload: organizations in budget mode with 1,000
// workspaces and 10,000 members in all, each workspace funded, then record_usage
// commands with a balance check and debit, spread evenly over members.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/command.h"

namespace tally::bench {

struct UsageWorkloadOptions {
  uint32_t orgs = 10;
  uint32_t workspaces = 1000;  // in all, split evenly over the organizations
  uint32_t members = 10000;    // in all, split evenly over the workspaces
  uint64_t seed = 7;
};

class UsageWorkload {
 public:
  explicit UsageWorkload(const UsageWorkloadOptions& options);
  // Organizations, workspaces, members, a rate card and credits for every workspace.
  std::vector<Command> setup(int64_t now_us) const;
  // The n-th usage event (n = 0, 1, ...): a priced chat usage by one member.
  Command usage(uint64_t n, int64_t now_us) const;

 private:
  UsageWorkloadOptions options_;
};

}  // namespace tally::bench
