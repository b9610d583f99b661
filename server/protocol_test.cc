#include "server/protocol.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace tally::server {
namespace {

// A frame as the server receives it: into a FrameBuffer, then verified.
const protocol::Frame* receive(const std::string& bytes, FrameBuffer* buffer) {
  if (bytes.size() < kFrameLengthBytes) return nullptr;
  const uint32_t length = frame_length(reinterpret_cast<const uint8_t*>(bytes.data()));
  if (length != bytes.size() - kFrameLengthBytes) return nullptr;
  buffer->resize(length);
  std::memcpy(buffer->body(), bytes.data() + kFrameLengthBytes, length);
  return verify_frame(buffer->frame());
}

TEST(Protocol, FramesCarryTheirLengthAndVerify) {
  FrameBuffer buffer;
  const std::string hello = hello_frame("secret-token", "test");
  const protocol::Frame* frame = receive(hello, &buffer);
  ASSERT_NE(frame, nullptr);
  ASSERT_NE(frame->message_as_Hello(), nullptr);
  EXPECT_EQ(frame->message_as_Hello()->token()->str(), "secret-token");
  EXPECT_EQ(frame->message_as_Hello()->version(), kProtocolVersion);
}

TEST(Protocol, ResultsRoundTripToTheSameAnswerLines) {
  std::vector<CommandResult> results(4);
  results[0].seq = 12;
  results[0].id = "c-1";
  results[0].extra = "\"credits\":\"2\"";
  results[1].status = Error(ErrorCode::kInsufficientCredits, "not enough");
  results[1].id = "c-2";
  results[2].seq = 13;
  // A typed amount and the duplicate flag travel as members, written as the JSON
  // answer writes them.
  results[3].seq = 14;
  results[3].id = "c-3";
  results[3].duplicate = true;
  results[3].amount_key = "credits";
  results[3].amount_micro = 2'420'000;
  FrameBuffer buffer;
  const protocol::Frame* frame = receive(results_frame(99, results), &buffer);
  ASSERT_NE(frame, nullptr);
  const protocol::Response* response = frame->message_as_Response();
  ASSERT_NE(response, nullptr);
  EXPECT_EQ(response->request_id(), 99u);
  ASSERT_EQ(response->results()->size(), 4u);
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(result_of(*response->results()->Get(static_cast<flatbuffers::uoffset_t>(i))).to_json(), results[i].to_json());
  }
  EXPECT_EQ(results[3].to_json(), R"({"ok":true,"seq":14,"id":"c-3","duplicate":true,"credits":"2.42"})");
  EXPECT_EQ(result_of(*response->results()->Get(3)).members(), R"("duplicate":true,"credits":"2.42")");
}

TEST(Protocol, TypedUsageIsCheckedLikeJson) {
  flatbuffers::FlatBufferBuilder builder;
  auto usage = protocol::CreateUsageRecordDirect(builder, "u-1", "acme", "design", "bob@acme.io", "chat", "m1", 5, "token",
                                                 1'700'000'000'000'000, -1, nullptr);
  builder.Finish(usage);
  Command command;
  ASSERT_TRUE(usage_command(*flatbuffers::GetRoot<protocol::UsageRecord>(builder.GetBufferPointer()), &command).ok());
  EXPECT_EQ(command.type, CommandType::kRecordUsage);
  EXPECT_EQ(command.quantity, 5);
  EXPECT_FALSE(command.credits_micro.has_value());
  flatbuffers::FlatBufferBuilder bad;
  bad.Finish(protocol::CreateUsageRecordDirect(bad, "u-1", "acme", "design", nullptr, "chat", "m1", -5, "token", 0, 7, "key:bad id"));
  EXPECT_EQ(usage_command(*flatbuffers::GetRoot<protocol::UsageRecord>(bad.GetBufferPointer()), &command).code, ErrorCode::kInvalidArgument);
}

// Random and truncated bytes never pass as a frame, and never crash the verifier.
TEST(Protocol, GarbageAndTruncatedFramesAreRefused) {
  std::mt19937 random(7);
  FrameBuffer buffer;
  for (int round = 0; round < 2000; ++round) {
    const uint32_t length = 1 + random() % 256;
    buffer.resize(length);
    for (uint32_t i = 0; i < length; ++i) buffer.body()[i] = static_cast<uint8_t>(random());
    const protocol::Frame* frame = verify_frame(buffer.frame());
    if (frame != nullptr) {
      EXPECT_NE(frame->message_type(), protocol::Message::NONE);
    }
  }
  std::vector<CommandResult> results(2);
  const std::string whole = results_frame(5, results);
  for (size_t cut = kFrameLengthBytes + 1; cut < whole.size(); ++cut) {
    const uint32_t length = static_cast<uint32_t>(cut - kFrameLengthBytes);
    buffer.resize(length);
    std::memcpy(buffer.body(), whole.data() + kFrameLengthBytes, length);
    EXPECT_EQ(verify_frame(buffer.frame()), nullptr) << cut;
  }
}

}  // namespace
}  // namespace tally::server
