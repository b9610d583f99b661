#include "engine/event_format.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace tally {
namespace {

// An envelope holding a HoldClosed whose lot vectors are empty, built as the engine
// builds it, copied to 8-byte-aligned memory.
std::vector<uint64_t> hold_closed_with_empty_vectors() {
  flatbuffers::FlatBufferBuilder b(256);
  const std::vector<fb::LotAmount> none;
  const std::vector<fb::LotAmount> consumed = {fb::LotAmount(0, 5)};
  auto payload = fb::CreateHoldClosedDirect(b, "acme", "h1", fb::HoldEnd::Settled, 5, &consumed, 0, &none, &none);
  auto actor = b.CreateString("platform");
  auto id = b.CreateString("");
  fb::EnvelopeBuilder envelope(b);
  envelope.add_seq(7);
  envelope.add_time_us(1);
  envelope.add_schema_version(kSchemaVersion);
  envelope.add_actor(actor);
  envelope.add_command_id(id);
  envelope.add_command_seq(7);
  envelope.add_event_type(fb::Event::HoldClosed);
  envelope.add_event(payload.Union());
  b.Finish(envelope.Finish());
  std::vector<uint64_t> aligned((b.GetSize() + 7) / 8);
  std::memcpy(aligned.data(), b.GetBufferPointer(), b.GetSize());
  aligned.push_back(b.GetSize());  // remember the size in the last word
  return aligned;
}

// Regression: the alignment check on vectors of structs refused empty vectors, whose
// data FlatBuffers does not align, so every settle that returned nothing made its log
// record "not a valid envelope" for replay and verify.
TEST(EventFormat, EmptyVectorsOfStructsDecode) {
  std::vector<uint64_t> buffer = hold_closed_with_empty_vectors();
  const size_t size = buffer.back();
  const std::string_view bytes(reinterpret_cast<const char*>(buffer.data()), size);
  const fb::Envelope* envelope = decode_envelope(bytes);
  ASSERT_NE(envelope, nullptr);
  ASSERT_EQ(envelope->event_type(), fb::Event::HoldClosed);
  EXPECT_EQ(envelope->event_as_HoldClosed()->returned_lots()->size(), 0u);
  EXPECT_EQ(envelope->event_as_HoldClosed()->consumed_lots()->size(), 1u);
}

TEST(EventFormat, NegativeAmountIsRefused) {
  flatbuffers::FlatBufferBuilder b(256);
  auto payload = fb::CreateCreditsGrantedDirect(b, "acme", "g1", 0, fb::LotKind::Plan, -5, 0, false);
  fb::EnvelopeBuilder envelope(b);
  envelope.add_seq(1);
  envelope.add_schema_version(kSchemaVersion);
  envelope.add_command_seq(1);
  envelope.add_event_type(fb::Event::CreditsGranted);
  envelope.add_event(payload.Union());
  b.Finish(envelope.Finish());
  std::vector<uint64_t> aligned((b.GetSize() + 7) / 8);
  std::memcpy(aligned.data(), b.GetBufferPointer(), b.GetSize());
  EXPECT_EQ(decode_envelope(std::string_view(reinterpret_cast<const char*>(aligned.data()), b.GetSize())), nullptr);
}

}  // namespace
}  // namespace tally
