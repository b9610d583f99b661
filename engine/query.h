// Queries: JSON objects with "query" instead of "cmd" (SPEC §4). They read the
// projections and never change anything.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/error.h"
#include "projections/projection_set.h"

namespace tally {

enum class QueryType : uint8_t {
  kOrg,         // one organization's summary
  kWorkspaces,  // its workspaces, deleted ones included
  kMembers,     // its members, invited and removed ones included
  kBalance,     // the organization's or one workspace's credits and lots
  kUsage,       // usage aggregates, filtered and grouped
  kStatement,   // one workspace's entries with running balance, paged
};

inline constexpr uint32_t kStatementPageMax = 1000;
inline constexpr size_t kUsageRowsMax = 10000;

struct Query {
  QueryType type = QueryType::kOrg;
  std::string actor;
  std::string org;
  std::string workspace;  // filter (members, usage) or subject (balance, statement)
  std::optional<uint32_t> workspace_id;  // the same by id, which reaches deleted workspaces
  std::string member;     // usage filter
  std::string tool;       // usage filter
  std::string model;      // usage filter
  std::optional<int64_t> from_us;  // usage: occurred at or after
  std::optional<int64_t> to_us;    // usage: occurred before
  std::vector<std::string> group_by;  // usage: workspace, member, tool, model, hour|day|month
  uint64_t after_seq = 0;             // statement: entries after this sequence number
  uint32_t limit = 100;               // statement: page size, 1..kStatementPageMax
  std::optional<uint64_t> as_of_seq;
  std::optional<int64_t> as_of_us;
};

// Decodes one JSON query; the same error codes as decode_command.
Status decode_query(std::string_view json, Query* query);

// Answers the query from `state` as one JSON line. `seq` is the sequence number the
// state reflects, reported as "as_of_seq"; `now_us` dates the limit counters.
std::string answer_query(const ProjectionSet& state, const Query& query, uint64_t seq, int64_t now_us);

// {"ok":false,"error":...,"message":...}
std::string error_json(const Status& status);

}  // namespace tally
