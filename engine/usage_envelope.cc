#include "engine/usage_envelope.h"

#include <array>
#include <bit>
#include <cstring>

#include "engine/assert.h"
#include "engine/event_format.h"

namespace tally {
namespace {

static_assert(std::endian::native == std::endian::little, "FlatBuffers scalars are little-endian; so is this layout");
static_assert(sizeof(fb::LotAmount) == 16 && alignof(fb::LotAmount) == 8);

using E = fb::Envelope;
using U = fb::UsageRecorded;

// Where each part lies, in bytes from the start of the buffer. Each scalar lies at a
// multiple of its size (the verifier checks that, from the start of the buffer), and
// every offset points forward, as FlatBuffers' unsigned offsets must: the root, then
// each table after its vtable, then the lots and the strings the tables refer to.
namespace pos {
constexpr uint32_t kRoot = 0;  // uoffset to the envelope
// The envelope: its vtable, then the table (an soffset back to the vtable, the fields).
constexpr uint32_t kEnvelopeVtable = 4;
constexpr uint32_t kEnvelopeVtableSize = E::VT_EVENT + sizeof(uint16_t);
constexpr uint32_t kEnvelope = kEnvelopeVtable + kEnvelopeVtableSize;
constexpr uint32_t kActor = kEnvelope + 4;
constexpr uint32_t kSeq = kEnvelope + 8;
constexpr uint32_t kTimeUs = kEnvelope + 16;
constexpr uint32_t kCommandSeq = kEnvelope + 24;
constexpr uint32_t kCommandId = kEnvelope + 32;
constexpr uint32_t kEvent = kEnvelope + 36;
constexpr uint32_t kSchemaVersion = kEnvelope + 40;
constexpr uint32_t kEventType = kEnvelope + 42;
constexpr uint32_t kEnvelopeEnd = kEnvelope + 44;  // a byte of padding before it
// The UsageRecorded payload, the same way.
constexpr uint32_t kUsageVtable = kEnvelopeEnd;
constexpr uint32_t kUsageVtableSize = U::VT_CONTENT_HASH + sizeof(uint16_t);
constexpr uint32_t kUsage = kUsageVtable + kUsageVtableSize;
constexpr uint32_t kOrg = kUsage + 4;
constexpr uint32_t kId = kUsage + 8;
constexpr uint32_t kQuantity = kUsage + 12;
constexpr uint32_t kAmount = kUsage + 20;
constexpr uint32_t kOccurredAt = kUsage + 28;
constexpr uint32_t kContentHash = kUsage + 36;
constexpr uint32_t kWorkspace = kUsage + 44;
constexpr uint32_t kUser = kUsage + 48;
constexpr uint32_t kTool = kUsage + 52;
constexpr uint32_t kModel = kUsage + 56;
constexpr uint32_t kUnit = kUsage + 60;
constexpr uint32_t kFundingWorkspace = kUsage + 64;
constexpr uint32_t kLots = kUsage + 68;
constexpr uint32_t kPriced = kUsage + 72;
constexpr uint32_t kUsageEnd = kUsage + 76;  // three bytes of padding before it
// The lots: the count, then the structs, which hold int64s, on a multiple of 8.
constexpr uint32_t kLotCount = kUsageEnd + 4;
constexpr uint32_t kLotData = kLotCount + 4;
// The strings follow the lots.

static_assert(kEnvelope % 8 == 0 && kSeq % 8 == 0 && kTimeUs % 8 == 0 && kCommandSeq % 8 == 0);
static_assert(kUsage % 4 == 0 && kQuantity % 8 == 0 && kAmount % 8 == 0 && kOccurredAt % 8 == 0 && kContentHash % 8 == 0);
static_assert(kSchemaVersion % 2 == 0 && kPriced + 1 <= kUsageEnd && kLotData % 8 == 0);
}  // namespace pos

// The bytes that are the same in every usage envelope: the root offset, the vtables,
// the tables' offsets to them, the schema version, the event's type and where it lies.
constexpr std::array<uint8_t, pos::kLotData> make_fixed_part() {
  std::array<uint8_t, pos::kLotData> bytes{};
  const auto put = [&bytes](uint32_t at, uint32_t value, uint32_t size) {
    for (uint32_t i = 0; i < size; ++i) bytes[at + i] = static_cast<uint8_t>(value >> (8 * i));
  };
  // A table: its vtable (its own size, the table's size, then each field's place in
  // the table, set through the function returned) and the table's soffset back to it.
  const auto table = [&put](uint32_t vtable, uint32_t vtable_size, uint32_t table, uint32_t table_end) {
    put(vtable, vtable_size, 2);
    put(vtable + 2, table_end - table, 2);
    put(table, table - vtable, 4);  // the vtable lies before
    return [&put, vtable, table](uint16_t voffset, uint32_t field_at) { put(vtable + voffset, field_at - table, 2); };
  };
  using namespace pos;
  put(kRoot, kEnvelope - kRoot, 4);

  const auto envelope_field = table(kEnvelopeVtable, kEnvelopeVtableSize, kEnvelope, kEnvelopeEnd);
  envelope_field(E::VT_SEQ, kSeq);
  envelope_field(E::VT_TIME_US, kTimeUs);
  envelope_field(E::VT_SCHEMA_VERSION, kSchemaVersion);
  envelope_field(E::VT_ACTOR, kActor);
  envelope_field(E::VT_COMMAND_ID, kCommandId);
  envelope_field(E::VT_COMMAND_SEQ, kCommandSeq);
  envelope_field(E::VT_EVENT_TYPE, kEventType);
  envelope_field(E::VT_EVENT, kEvent);
  put(kSchemaVersion, tally::kSchemaVersion, 2);
  put(kEventType, static_cast<uint8_t>(fb::Event::UsageRecorded), 1);
  put(kEvent, kUsage - kEvent, 4);

  const auto usage_field = table(kUsageVtable, kUsageVtableSize, kUsage, kUsageEnd);
  usage_field(U::VT_ORG, kOrg);
  usage_field(U::VT_ID, kId);
  usage_field(U::VT_WORKSPACE, kWorkspace);
  usage_field(U::VT_USER, kUser);
  usage_field(U::VT_TOOL, kTool);
  usage_field(U::VT_MODEL, kModel);
  usage_field(U::VT_QUANTITY, kQuantity);
  usage_field(U::VT_UNIT, kUnit);
  usage_field(U::VT_AMOUNT, kAmount);
  usage_field(U::VT_OCCURRED_AT, kOccurredAt);
  usage_field(U::VT_FUNDING_WORKSPACE, kFundingWorkspace);
  usage_field(U::VT_LOTS, kLots);
  usage_field(U::VT_PRICED, kPriced);
  usage_field(U::VT_CONTENT_HASH, kContentHash);
  put(kLots, kLotCount - kLots, 4);
  return bytes;
}

constexpr std::array<uint8_t, pos::kLotData> kFixedPart = make_fixed_part();

template <typename T>
void store(uint8_t* at, T value) {
  std::memcpy(at, &value, sizeof value);
}

// A string's bytes: its length, its characters, a zero, then zeros to a multiple of 4.
size_t string_size(std::string_view text) { return 4 + ((text.size() + 4) & ~size_t{3}); }

// Points the field at `field_at` to a string already written at `string`.
void point_to(uint8_t* buffer, uint32_t field_at, const uint8_t* string) {
  store<uint32_t>(buffer + field_at, static_cast<uint32_t>(string - (buffer + field_at)));
}

// Appends `text` at `end` and points the field at `field_at` to it; returns the new end.
uint8_t* append_string(uint8_t* buffer, uint8_t* end, uint32_t field_at, std::string_view text) {
  point_to(buffer, field_at, end);
  store<uint32_t>(end, static_cast<uint32_t>(text.size()));
  uint8_t* const next = end + string_size(text);
  store<uint32_t>(next - 4, 0);  // the last word holds the zero and the padding
  if (!text.empty()) std::memcpy(end + 4, text.data(), text.size());
  return next;
}

}  // namespace

size_t usage_envelope_size(const EnvelopeHeader& header, const UsageRecordedFields& usage) {
  size_t size = pos::kLotData + usage.lots.size_bytes();
  for (std::string_view text : {header.actor, header.command_id, usage.org, usage.user, usage.tool, usage.model, usage.unit}) {
    size += string_size(text);
  }
  if (usage.id != header.command_id) size += string_size(usage.id);
  return size;
}

std::string_view encode_usage_envelope(const EnvelopeHeader& header, const UsageRecordedFields& usage, uint8_t* buffer,
                                       size_t capacity) {
  TALLY_ASSERT(reinterpret_cast<uintptr_t>(buffer) % kEnvelopeAlignment == 0);
  TALLY_ASSERT(capacity >= usage_envelope_size(header, usage));
  std::memcpy(buffer, kFixedPart.data(), kFixedPart.size());
  store<uint64_t>(buffer + pos::kSeq, header.seq);
  store<int64_t>(buffer + pos::kTimeUs, header.time_us);
  store<uint64_t>(buffer + pos::kCommandSeq, header.command_seq);
  store<int64_t>(buffer + pos::kQuantity, usage.quantity);
  store<int64_t>(buffer + pos::kAmount, usage.amount);
  store<int64_t>(buffer + pos::kOccurredAt, usage.occurred_at);
  store<uint64_t>(buffer + pos::kContentHash, usage.content_hash);
  store<uint32_t>(buffer + pos::kWorkspace, usage.workspace);
  store<uint32_t>(buffer + pos::kFundingWorkspace, usage.funding_workspace);
  store<uint8_t>(buffer + pos::kPriced, usage.priced ? 1 : 0);
  store<uint32_t>(buffer + pos::kLotCount, static_cast<uint32_t>(usage.lots.size()));
  if (!usage.lots.empty()) std::memcpy(buffer + pos::kLotData, usage.lots.data(), usage.lots.size_bytes());
  uint8_t* end = buffer + pos::kLotData + usage.lots.size_bytes();
  end = append_string(buffer, end, pos::kActor, header.actor);
  uint8_t* const command_id = end;
  end = append_string(buffer, end, pos::kCommandId, header.command_id);
  end = append_string(buffer, end, pos::kOrg, usage.org);
  // A usage command's id is the envelope's command_id too: one string for both.
  if (usage.id == header.command_id) {
    point_to(buffer, pos::kId, command_id);
  } else {
    end = append_string(buffer, end, pos::kId, usage.id);
  }
  end = append_string(buffer, end, pos::kUser, usage.user);
  end = append_string(buffer, end, pos::kTool, usage.tool);
  end = append_string(buffer, end, pos::kModel, usage.model);
  end = append_string(buffer, end, pos::kUnit, usage.unit);
  return std::string_view(reinterpret_cast<const char*>(buffer), static_cast<size_t>(end - buffer));
}

}  // namespace tally
