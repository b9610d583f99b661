#include "engine/event_format.h"

#include <cstring>
#include <vector>

namespace tally {

const fb::Envelope* decode_envelope(std::string_view bytes) {
  if (bytes.empty() || bytes.size() > kEnvelopeBytesMax) return nullptr;
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  if (reinterpret_cast<uintptr_t>(data) % alignof(uint64_t) != 0) {
    thread_local std::vector<uint64_t> aligned;
    aligned.resize((bytes.size() + sizeof(uint64_t) - 1) / sizeof(uint64_t));
    std::memcpy(aligned.data(), bytes.data(), bytes.size());
    data = reinterpret_cast<const uint8_t*>(aligned.data());
  }
  flatbuffers::Verifier verifier(data, bytes.size(), /*max_depth=*/16, /*max_tables=*/100000);
  if (!fb::VerifyEnvelopeBuffer(verifier)) return nullptr;
  const fb::Envelope* envelope = fb::GetEnvelope(data);
  if (envelope->schema_version() == 0 || envelope->schema_version() > kSchemaVersion) return nullptr;
  if (envelope->event_type() == fb::Event::NONE || envelope->event() == nullptr) return nullptr;
  return envelope;
}

std::string_view event_type_name(fb::Event type) { return fb::EnumNameEvent(type); }

}  // namespace tally
