// Queries: JSON objects with "query" instead of "cmd" (SPEC §4). They read the
// projections and never change anything.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "engine/error.h"
#include "projections/projection_set.h"

namespace tally {

enum class QueryType : uint8_t {
  kOrg,         // one organization's summary
  kWorkspaces,  // its workspaces, deleted ones included
  kMembers,     // its members, invited and removed ones included
};

struct Query {
  QueryType type = QueryType::kOrg;
  std::string actor;
  std::string org;
  std::string workspace;  // optional filter
  std::optional<uint64_t> as_of_seq;
  std::optional<int64_t> as_of_us;
};

// Decodes one JSON query; the same error codes as decode_command.
Status decode_query(std::string_view json, Query* query);

// Answers the query from `state` as one JSON line. `seq` is the sequence number the
// state reflects, reported as "as_of_seq".
std::string answer_query(const ProjectionSet& state, const Query& query, uint64_t seq);

// {"ok":false,"error":...,"message":...}
std::string error_json(const Status& status);

}  // namespace tally
