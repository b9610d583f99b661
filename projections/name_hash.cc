#include "projections/name_hash.h"

// XXH3 compiled here, with this build's flags, rather than called in libxxhash.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace tally {

uint64_t name_hash(std::string_view name) { return XXH3_64bits(name.data(), name.size()); }

}  // namespace tally
