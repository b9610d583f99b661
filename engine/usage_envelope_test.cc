#include "engine/usage_envelope.h"

#include <flatbuffers/flatbuffers.h>
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "engine/event_format.h"

namespace tally {
namespace {

// Every field of a usage envelope, read through the generated accessors.
struct ReadBack {
  uint64_t seq;
  int64_t time_us;
  uint16_t schema_version;
  std::string actor, command_id;
  uint64_t command_seq;
  std::string org, id;
  uint32_t workspace;
  std::string user, tool, model;
  int64_t quantity;
  std::string unit;
  int64_t amount, occurred_at;
  uint32_t funding_workspace;
  std::vector<std::pair<uint32_t, int64_t>> lots;
  bool priced;
  uint64_t content_hash;

  auto tie() const {
    return std::tie(seq, time_us, schema_version, actor, command_id, command_seq, org, id, workspace, user, tool, model, quantity, unit,
                    amount, occurred_at, funding_workspace, lots, priced, content_hash);
  }
  bool operator==(const ReadBack& other) const { return tie() == other.tie(); }
};

// What the fields should read back as.
ReadBack expected(const EnvelopeHeader& h, const UsageRecordedFields& u) {
  ReadBack r{h.seq, h.time_us, kSchemaVersion, std::string(h.actor), std::string(h.command_id), h.command_seq,
             std::string(u.org), std::string(u.id), u.workspace, std::string(u.user), std::string(u.tool), std::string(u.model),
             u.quantity, std::string(u.unit), u.amount, u.occurred_at, u.funding_workspace, {}, u.priced, u.content_hash};
  for (const fb::LotAmount& lot : u.lots) r.lots.emplace_back(lot.lot(), lot.amount());
  return r;
}

// Runs the FlatBuffers verifier (alignment checked) over the bytes, copied to an
// 8-aligned buffer, then reads every field; nullopt if the verifier refuses them or
// they are not a UsageRecorded envelope.
std::optional<ReadBack> read_back(std::string_view bytes) {
  std::vector<uint64_t> aligned((bytes.size() + 7) / 8);
  std::memcpy(aligned.data(), bytes.data(), bytes.size());
  const auto* data = reinterpret_cast<const uint8_t*>(aligned.data());
  flatbuffers::Verifier verifier(data, bytes.size());
  if (!fb::VerifyEnvelopeBuffer(verifier)) return std::nullopt;
  const fb::Envelope* e = fb::GetEnvelope(data);
  const fb::UsageRecorded* u = e->event_as_UsageRecorded();
  if (u == nullptr || e->actor() == nullptr || e->command_id() == nullptr || u->org() == nullptr || u->id() == nullptr ||
      u->user() == nullptr || u->tool() == nullptr || u->model() == nullptr || u->unit() == nullptr || u->lots() == nullptr) {
    return std::nullopt;
  }
  ReadBack r{e->seq(), e->time_us(), e->schema_version(), e->actor()->str(), e->command_id()->str(), e->command_seq(),
             u->org()->str(), u->id()->str(), u->workspace(), u->user()->str(), u->tool()->str(), u->model()->str(),
             u->quantity(), u->unit()->str(), u->amount(), u->occurred_at(), u->funding_workspace(), {}, u->priced(),
             u->content_hash()};
  for (const fb::LotAmount* lot : *u->lots()) r.lots.emplace_back(lot->lot(), lot->amount());
  return r;
}

// Encodes into an 8-aligned heap buffer of exactly usage_envelope_size bytes, so that
// a write past its end is caught (by AddressSanitizer).
std::string encoded(const EnvelopeHeader& header, const UsageRecordedFields& usage) {
  const size_t size = usage_envelope_size(header, usage);
  auto buffer = std::make_unique<uint64_t[]>((size + 7) / 8);
  const std::string_view bytes = encode_usage_envelope(header, usage, reinterpret_cast<uint8_t*>(buffer.get()), size);
  EXPECT_EQ(bytes.size(), size);
  return std::string(bytes);
}

// The same fields through FlatBufferBuilder, as LiveContext::emit builds other events.
std::string built_by_flatbuffers(const EnvelopeHeader& header, const UsageRecordedFields& usage) {
  flatbuffers::FlatBufferBuilder builder;
  const auto org = builder.CreateString(usage.org.data(), usage.org.size());
  const auto id = builder.CreateString(usage.id.data(), usage.id.size());
  const auto user = builder.CreateString(usage.user.data(), usage.user.size());
  const auto tool = builder.CreateString(usage.tool.data(), usage.tool.size());
  const auto model = builder.CreateString(usage.model.data(), usage.model.size());
  const auto unit = builder.CreateString(usage.unit.data(), usage.unit.size());
  const auto lots = builder.CreateVectorOfStructs(usage.lots.data(), usage.lots.size());
  const auto payload = fb::CreateUsageRecorded(builder, org, id, usage.workspace, user, tool, model, usage.quantity, unit, usage.amount,
                                               usage.occurred_at, usage.funding_workspace, lots, usage.priced, usage.content_hash);
  const auto actor = builder.CreateString(header.actor.data(), header.actor.size());
  const auto command_id = builder.CreateString(header.command_id.data(), header.command_id.size());
  builder.Finish(fb::CreateEnvelope(builder, header.seq, header.time_us, kSchemaVersion, actor, command_id, header.command_seq,
                                    fb::Event::UsageRecorded, payload.Union()));
  return std::string(reinterpret_cast<const char*>(builder.GetBufferPointer()), builder.GetSize());
}

// The field names of `table` in schemas/events.fbs, in order.
std::vector<std::string> schema_fields(const std::string& table) {
  std::ifstream in(std::string(TALLY_SOURCE_DIR) + "/schemas/events.fbs");
  std::vector<std::string> fields;
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    line = line.substr(0, line.find("//"));
    if (!inside) {
      inside = line.rfind("table " + table + " {", 0) == 0;
      continue;
    }
    if (line.find('}') != std::string::npos) break;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const size_t start = line.find_first_not_of(' ');
    fields.push_back(line.substr(start, colon - start));
  }
  return fields;
}

// The layout writes every field the schema has. A field appended to UsageRecorded or
// Envelope (schema evolution appends) must be added to engine/usage_envelope.cc too,
// or usage events would be logged without it: this fails until it is.
TEST(UsageEnvelope, TheSchemaHasTheFieldsTheLayoutWrites) {
  EXPECT_EQ(schema_fields("Envelope"),
            (std::vector<std::string>{"seq", "time_us", "schema_version", "actor", "command_id", "command_seq", "event"}));
  EXPECT_EQ(schema_fields("UsageRecorded"),
            (std::vector<std::string>{"org", "id", "workspace", "user", "tool", "model", "quantity", "unit", "amount", "occurred_at",
                                      "funding_workspace", "lots", "priced", "content_hash"}));
}

TEST(UsageEnvelope, AnEventAsTheEngineLogsItReadsBackFieldForField) {
  const std::vector<fb::LotAmount> lots = {fb::LotAmount(3, 1'500'000), fb::LotAmount(7, 250)};
  const EnvelopeHeader header{.seq = 1042, .time_us = 1'780'000'000'000'000, .actor = "key:ingest", .command_id = "u-000017",
                              .command_seq = 1042};
  const UsageRecordedFields usage{.org = "acme", .id = "u-000017", .workspace = 4, .user = "ann", .tool = "chat", .model = "gpt-4o",
                                  .quantity = 1200, .unit = "tokens", .amount = 1'500'250, .occurred_at = 1'779'999'999'000'000,
                                  .funding_workspace = 0, .lots = lots, .priced = true, .content_hash = 0x9e3779b97f4a7c15};
  const std::string bytes = encoded(header, usage);
  EXPECT_EQ(read_back(bytes), expected(header, usage));
  // The engine's own reader takes it (in range, aligned), and it means what the
  // builder's bytes for the same fields mean.
  alignas(kEnvelopeAlignment) char copy[1024];
  ASSERT_LE(bytes.size(), sizeof copy);
  std::memcpy(copy, bytes.data(), bytes.size());
  EXPECT_NE(decode_envelope(std::string_view(copy, bytes.size())), nullptr);
  EXPECT_EQ(read_back(bytes), read_back(built_by_flatbuffers(header, usage)));
}

// The usage id and the envelope's command_id, equal as the engine logs them, are one
// string that both fields point to.
TEST(UsageEnvelope, TheUsageIdIsWrittenOnceWhenItIsTheCommandId) {
  const EnvelopeHeader header{.seq = 5, .time_us = 9, .actor = "ann", .command_id = "u-0000000000000042", .command_seq = 5};
  UsageRecordedFields usage;
  usage.org = "acme";
  usage.id = "u-0000000000000042";
  usage.user = "ann";
  usage.tool = "chat";
  usage.unit = "token";
  const std::string shared = encoded(header, usage);
  EXPECT_EQ(read_back(shared), expected(header, usage));
  EXPECT_EQ(shared.find("u-0000000000000042"), shared.rfind("u-0000000000000042"));  // once
  const std::string other_id = "u-0000000000000043";
  usage.id = other_id;
  const std::string apart = encoded(header, usage);
  EXPECT_EQ(read_back(apart), expected(header, usage));
  EXPECT_EQ(apart.size(), shared.size() + 4 + 20);  // its length, 18 bytes, the zero, one of padding
}

// Fields at their defaults, which the builder leaves out, are written all the same;
// the strings are empty and there are no lots.
TEST(UsageEnvelope, FieldsAtTheirDefaultsAndEmptyStringsReadBack) {
  const EnvelopeHeader header{.seq = 1, .time_us = 0, .actor = "", .command_id = "", .command_seq = 0};
  const UsageRecordedFields usage{};
  const std::string bytes = encoded(header, usage);
  EXPECT_EQ(read_back(bytes), expected(header, usage));
  EXPECT_EQ(read_back(bytes), read_back(built_by_flatbuffers(header, usage)));
}

TEST(UsageEnvelope, AMisalignedOrTooSmallBufferAborts) {
  alignas(8) uint8_t buffer[1024];
  const EnvelopeHeader header{.seq = 1, .time_us = 1, .actor = "ann", .command_id = "u1", .command_seq = 1};
  const size_t size = usage_envelope_size(header, UsageRecordedFields{});
  EXPECT_DEATH(encode_usage_envelope(header, UsageRecordedFields{}, buffer + 4, size), "kEnvelopeAlignment");
  EXPECT_DEATH(encode_usage_envelope(header, UsageRecordedFields{}, buffer, size - 1), "usage_envelope_size");
}

RC_GTEST_PROP(UsageEnvelope, AnyFieldsReadBackAsTheyWereGiven, ()) {
  // Strings of every length modulo 4 (they move the padding), numbers either zero (the
  // builder's default) or anything, up to 40 lots.
  const auto text = [] { return *rc::gen::container<std::string>(*rc::gen::inRange<size_t>(0, 40), rc::gen::arbitrary<char>()); };
  const auto maybe = [](auto value) { return *rc::gen::element<bool>(true, false) ? value : decltype(value){}; };
  const std::string actor = text(), command_id = text(), org = text(), user = text(), tool = text(), model = text(), unit = text();
  // As the engine logs them, the usage id is the command's id; but not necessarily.
  const std::string id = *rc::gen::element<bool>(true, false) ? command_id : text();
  std::vector<fb::LotAmount> lots;
  const size_t lot_count = *rc::gen::inRange<size_t>(0, 41);
  for (size_t i = 0; i < lot_count; ++i) lots.emplace_back(*rc::gen::arbitrary<uint32_t>(), *rc::gen::arbitrary<int64_t>());
  const EnvelopeHeader header{.seq = maybe(*rc::gen::arbitrary<uint64_t>()), .time_us = maybe(*rc::gen::arbitrary<int64_t>()),
                              .actor = actor, .command_id = command_id, .command_seq = maybe(*rc::gen::arbitrary<uint64_t>())};
  const UsageRecordedFields usage{.org = org,
                                  .id = id,
                                  .workspace = maybe(*rc::gen::arbitrary<uint32_t>()),
                                  .user = user,
                                  .tool = tool,
                                  .model = model,
                                  .quantity = maybe(*rc::gen::arbitrary<int64_t>()),
                                  .unit = unit,
                                  .amount = maybe(*rc::gen::arbitrary<int64_t>()),
                                  .occurred_at = maybe(*rc::gen::arbitrary<int64_t>()),
                                  .funding_workspace = maybe(*rc::gen::arbitrary<uint32_t>()),
                                  .lots = lots,
                                  .priced = *rc::gen::arbitrary<bool>(),
                                  .content_hash = maybe(*rc::gen::arbitrary<uint64_t>())};
  const std::string bytes = encoded(header, usage);
  const std::optional<ReadBack> read = read_back(bytes);
  RC_ASSERT(read.has_value());
  RC_ASSERT(*read == expected(header, usage));
  RC_ASSERT(read_back(built_by_flatbuffers(header, usage)) == read);
}

}  // namespace
}  // namespace tally
