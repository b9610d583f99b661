#include "engine/event_format.h"

#include <fmt/format.h>

#include "engine/log.h"

namespace tally {

const fb::Envelope* decode_envelope(std::string_view bytes) {
  if (bytes.empty() || bytes.size() > kEnvelopeBytesMax) return nullptr;
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  flatbuffers::Verifier verifier(data, bytes.size(), /*max_depth=*/16, /*max_tables=*/100000);
  if (!fb::VerifyEnvelopeBuffer(verifier)) return nullptr;
  const fb::Envelope* envelope = fb::GetEnvelope(data);
  if (envelope->schema_version() == 0 || envelope->schema_version() > kSchemaVersion) return nullptr;
  if (envelope->event_type() == fb::Event::NONE || envelope->event() == nullptr) return nullptr;
  return envelope;
}

Status event_time(const Store& store, uint64_t seq, int64_t* time_us) {
  *time_us = 0;
  if (seq == 0) return Status::Ok();
  Status failure;
  Status status = store.read_log(seq, seq, [&](uint64_t, std::string_view bytes) {
    const fb::Envelope* event = decode_envelope(bytes);
    if (event == nullptr) {
      failure = Error(ErrorCode::kStorageError, fmt::format("log record {} is not a valid envelope", seq));
    } else {
      *time_us = event->time_us();
    }
    return false;
  });
  return status.ok() ? failure : status;
}

std::string_view event_type_name(fb::Event type) { return fb::EnumNameEvent(type); }

}  // namespace tally
