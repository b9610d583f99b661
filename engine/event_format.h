// The log's envelope format (schemas/events.fbs) as C++ sees it.
#pragma once

#include <cstdint>
#include <string_view>

#include "schemas/events_generated.h"

namespace tally {

// The schema version written into every new envelope. Bump it when the meaning of an
// existing field changes, and teach replay/ to upcast the older version.
inline constexpr uint16_t kSchemaVersion = 1;
// Bound on one envelope; no command produces events anywhere near this size.
inline constexpr size_t kEnvelopeBytesMax = 1 << 20;

// Runs the FlatBuffers verifier over untrusted bytes and checks the schema version.
// Returns null if the bytes are not a well-formed envelope this build can read.
// FlatBuffers reads need aligned memory and RocksDB gives no alignment, so unaligned
// bytes are first copied into a per-thread buffer: the result is valid until the same
// thread's next call.
const fb::Envelope* decode_envelope(std::string_view bytes);

// The event type's name as in the schema ("OrgCreated").
std::string_view event_type_name(fb::Event type);

}  // namespace tally
