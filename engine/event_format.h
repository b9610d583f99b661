// The log's envelope format (schemas/events.fbs) as C++ sees it.
#pragma once

#include <cstdint>
#include <string_view>

#include "engine/error.h"
#include "schemas/events_generated.h"

namespace tally {

class Store;

// The schema version written into every new envelope. Bump it when the meaning of an
// existing field changes, and teach replay/ to upcast the older version.
inline constexpr uint16_t kSchemaVersion = 1;
// Bound on one envelope; no command produces events anywhere near this size.
inline constexpr size_t kEnvelopeBytesMax = 1 << 20;

// Runs the FlatBuffers verifier over untrusted bytes and checks the schema version.
// Returns null if the bytes are not a well-formed envelope this build can read.
const fb::Envelope* decode_envelope(std::string_view bytes);

// The engine time of log record `seq`; 0 when seq is 0 (before the first record).
Status event_time(const Store& store, uint64_t seq, int64_t* time_us);

// The event type's name as in the schema ("OrgCreated").
std::string_view event_type_name(fb::Event type);

}  // namespace tally
