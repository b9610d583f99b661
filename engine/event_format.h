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

// FlatBuffers reads scalars in place, so an envelope must start at an address aligned
// for its widest scalar (int64). Store::read_log hands out envelopes aligned so.
inline constexpr size_t kEnvelopeAlignment = 8;

// Runs the FlatBuffers verifier over untrusted bytes and checks the schema version.
// Returns null if the bytes are not a well-formed envelope this build can read; if
// they, or a vector of structs inside them, are not aligned for in-place reads (which
// would be undefined); or if a number in the event lies outside what the engine ever logs (a
// negative amount, one beyond any command's reach, a workspace id beyond
// kWorkspacesPerOrgMax), which only a damaged or forged log holds.
const fb::Envelope* decode_envelope(std::string_view bytes);

// The event type's name as in the schema ("OrgCreated").
std::string_view event_type_name(fb::Event type);

}  // namespace tally
