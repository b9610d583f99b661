// name_hash: the hash of a name (an organization, member, workspace, tool or model) for
// the projections' in-memory indexes (IndexedMap, the usage projection's HashIndex).
//
// A usage command's names are hashed a dozen times on the writer's thread (each
// projection looks its organization up, two look the member up, the prefetches hash
// ahead of the lookups), and they are short: 5 to 30 bytes. std::hash, libstdc++'s
// MurmurHash2 (`std::_Hash_bytes`), took 3.5 % of a loaded daemon's samples, 8 % of
// its writer's. XXH3, compiled into name_hash.cc, does a short name in a few
// multiplications (bench/RESULTS.md, "Runs 49-50").
//
// Contract: the same bytes give the same hash within one process. The value is never
// stored: nothing on disk depends on it, and it may change between builds.
#pragma once

#include <cstdint>
#include <string_view>

namespace tally {

uint64_t name_hash(std::string_view name);

}  // namespace tally
