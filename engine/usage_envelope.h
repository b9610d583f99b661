// A UsageRecorded event's envelope, written without FlatBufferBuilder.
//
// Usage is nearly every event the engine logs. Building its envelope through
// FlatBufferBuilder cost the writer about 2,700 of its 9,400 instructions per event
// (callgrind over tally_load --events 200000): a capacity check for every scalar, a
// scratch list of the fields, a vtable worked out and compared for every table. Here
// the two tables have one fixed layout, every field present, decided at compile time:
// the vtables are copied from a constant, the scalars stored at fixed places, the
// strings appended after them. The usage id, which is also the envelope's command_id,
// is written once and both fields point to it.
//
// The bytes differ from what the builder would make (it leaves out fields equal to
// their defaults and lays the rest out back to front), but they are a FlatBuffer of
// schemas/events.fbs like any other: the verifier accepts them and the generated
// accessors read them (UsageEnvelope.* tests check every field). Nothing reads a log
// record by anything but those accessors, so both layouts live in one log.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "schemas/events_generated.h"

namespace tally {

// The envelope's own fields (fb::Envelope); schema_version is always kSchemaVersion.
struct EnvelopeHeader {
  uint64_t seq = 0;
  int64_t time_us = 0;
  std::string_view actor;
  std::string_view command_id;
  uint64_t command_seq = 0;
};

// The fields of fb::UsageRecorded, as schemas/events.fbs describes them.
struct UsageRecordedFields {
  std::string_view org;
  std::string_view id;
  uint32_t workspace = 0;
  std::string_view user;
  std::string_view tool;
  std::string_view model;
  int64_t quantity = 0;
  std::string_view unit;
  int64_t amount = 0;
  int64_t occurred_at = 0;
  uint32_t funding_workspace = 0;
  std::span<const fb::LotAmount> lots;
  bool priced = false;
  uint64_t content_hash = 0;
};

// The number of bytes encode_usage_envelope writes for these fields.
size_t usage_envelope_size(const EnvelopeHeader& header, const UsageRecordedFields& usage);

// Writes the envelope at `buffer` and returns its bytes. `buffer` must be aligned to
// kEnvelopeAlignment (8), as in-place reads need, and `capacity` must be at least
// usage_envelope_size(header, usage); either mistake aborts.
std::string_view encode_usage_envelope(const EnvelopeHeader& header, const UsageRecordedFields& usage, uint8_t* buffer,
                                       size_t capacity);

}  // namespace tally
