#include "server/cloudevents.h"

#include <gtest/gtest.h>

#include <string>

#include <fmt/format.h>

#include "engine/values.h"

namespace tally::server {
namespace {

const Identity kKey{ActorKind::kServiceKey, "key:k1", "acme"};
const Identity kPlatform{ActorKind::kPlatform, "platform", {}};

// One structured event through the decoder.
Status decode_one(const std::string& body, const Identity& who, Command* command) {
  CommandBatch batch;
  if (Status s = add_cloudevents(body, false, who, &batch); !s.ok()) return s;
  EXPECT_EQ(batch.size(), 1u);
  if (!batch.results().front().status.ok()) return batch.results().front().status;
  *command = batch.commands().front();
  return Status::Ok();
}

std::string with(std::string_view attributes) {
  return fmt::format(R"({{"specversion":"1.0","id":"u-1","source":"/s","type":"com.tally.usage.recorded","time":"2026-11-23T10:00:00Z",{},"data":{{"tool":"chat","model":"m1","quantity":5,"unit":"token"}}}})",
                     attributes);
}

TEST(CloudEvents, MapsAttributesToRecordUsage) {
  Command command;
  ASSERT_TRUE(decode_one(with(R"("subject":"acme/design/bob@acme.io","traceparent":"00-abc")"), kKey, &command).ok());
  EXPECT_EQ(command.type, CommandType::kRecordUsage);
  EXPECT_EQ(command.id, "u-1");
  EXPECT_EQ(command.actor, "key:k1");
  EXPECT_EQ(command.org, "acme");
  EXPECT_EQ(command.workspace, "design");
  EXPECT_EQ(command.user, "bob@acme.io");
  EXPECT_EQ(command.tool, "chat");
  EXPECT_EQ(command.model, "m1");
  EXPECT_EQ(command.quantity, 5);
  EXPECT_EQ(command.unit, "token");
  int64_t time_us = 0;
  ASSERT_TRUE(parse_time("2026-11-23T10:00:00Z", &time_us));
  EXPECT_EQ(command.occurred_at_us, time_us);
  EXPECT_FALSE(command.credits_micro.has_value());
}

TEST(CloudEvents, DataMayNameTheSubjectAndCredits) {
  Command command;
  const std::string body =
      R"({"specversion":"1.0","id":"u-2","source":"/s","type":"com.tally.usage.recorded","time":"2026-11-23T10:00:00Z","datacontenttype":"application/json",)"
      R"("data":{"org":"acme","workspace":"design","user":"bob@acme.io","tool":"chat","model":"m1","quantity":5,"unit":"token","credits":"0.25"}})";
  ASSERT_TRUE(decode_one(body, kPlatform, &command).ok());
  EXPECT_EQ(command.org, "acme");
  EXPECT_EQ(command.actor, "platform");
  EXPECT_EQ(command.credits_micro, 250'000);
}

TEST(CloudEvents, RefusesWhatDoesNotMap) {
  Command command;
  auto code = [&](const std::string& body) { return decode_one(body, kPlatform, &command).code; };
  const std::string data = R"("data":{"tool":"chat","model":"m1","quantity":5,"unit":"token"})";
  EXPECT_EQ(code(fmt::format("{}{}}}", R"({"id":"u","source":"/s","type":"com.tally.usage.recorded","time":"2026-11-23T10:00:00Z","subject":"a/b/c@d.io",)", data)),
            ErrorCode::kMissingField);  // no specversion
  EXPECT_EQ(code(fmt::format("{}{}}}", R"({"specversion":"0.3","id":"u","source":"/s","type":"com.tally.usage.recorded","time":"2026-11-23T10:00:00Z","subject":"a/b/c@d.io",)", data)),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(fmt::format("{}{}}}", R"({"specversion":"1.0","id":"u","source":"/s","type":"com.example","time":"2026-11-23T10:00:00Z","subject":"a/b/c@d.io",)", data)),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(fmt::format("{}{}}}", R"({"specversion":"1.0","id":"u","source":"/s","type":"com.tally.usage.recorded","subject":"a/b/c@d.io",)", data)),
            ErrorCode::kMissingField);  // no time
  EXPECT_EQ(code(fmt::format("{}{}}}", R"({"specversion":"1.0","id":"u","type":"com.tally.usage.recorded","time":"2026-11-23T10:00:00Z","subject":"a/b/c@d.io",)", data)),
            ErrorCode::kMissingField);  // no source
  EXPECT_EQ(code(with(R"("subject":"acme")")), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(with(R"("subject":"acme/design","Bad-Name":1)")), ErrorCode::kUnknownField);
  EXPECT_EQ(code(with(R"("subject":"acme/design","data_base64":"AAAA")")), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(with(R"("subject":"acme/design","datacontenttype":"text/xml")")), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(with(R"("subject":"acme/design","time":"yesterday")")), ErrorCode::kInvalidArgument);
  // Data disagreeing with the subject, unknown data fields, bad values.
  const std::string base = R"({"specversion":"1.0","id":"u","source":"/s","type":"com.tally.usage.recorded","time":"2026-11-23T10:00:00Z","subject":"acme/design/bob@acme.io",)";
  EXPECT_EQ(code(fmt::format("{}{}", base, R"("data":{"org":"beta","tool":"chat","model":"m1","quantity":5,"unit":"token"}})")), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(fmt::format("{}{}", base, R"("data":{"tool":"chat","model":"m1","quantity":5,"unit":"token","colour":"red"}})")), ErrorCode::kUnknownField);
  EXPECT_EQ(code(fmt::format("{}{}", base, R"("data":{"tool":"chat","model":"m1","quantity":-5,"unit":"token"}})")), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(fmt::format("{}{}", base, R"("data":{"tool":"chat","model":"m1","quantity":"5","unit":"token"}})")), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(fmt::format("{}{}", base, R"("data":{"tool":"chat","model":"m1","quantity":5,"unit":"token","credits":"-1"}})")), ErrorCode::kInvalidAmount);
  EXPECT_EQ(code(fmt::format("{}{}", base, R"("data":{"tool":"chat","model":"m1","unit":"token"}})")), ErrorCode::kMissingField);
  EXPECT_EQ(code(fmt::format("{}{}", base, R"("data":"text"})")), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(fmt::format("{}{}", base, R"("data":{"tool":"chat","model":"m1","quantity":5,"unit":"token"}})")), ErrorCode::kOk);
}

TEST(CloudEvents, BatchesAndScope) {
  CommandBatch batch;
  // A batch's own errors stay per event; the request fails only as a whole.
  const std::string good = with(R"("subject":"acme/design/bob@acme.io")");
  const std::string body = fmt::format(R"([{},{{"specversion":"1.0"}},42,{}])", good, good);
  ASSERT_TRUE(add_cloudevents(body, true, kKey, &batch).ok());
  ASSERT_EQ(batch.size(), 4u);
  EXPECT_EQ(batch.commands().size(), 2u);
  EXPECT_EQ(batch.results()[1].status.code, ErrorCode::kMissingField);
  EXPECT_EQ(batch.results()[2].status.code, ErrorCode::kInvalidJson);
  CommandBatch other;
  EXPECT_EQ(add_cloudevents(fmt::format("[{}]", with(R"("subject":"beta/primary/zed@beta.io")")), true, kKey, &other).code, ErrorCode::kForbidden);
  CommandBatch broken;
  EXPECT_EQ(add_cloudevents("[{", true, kKey, &broken).code, ErrorCode::kInvalidJson);
  EXPECT_EQ(add_cloudevents("{}", true, kKey, &broken).code, ErrorCode::kInvalidJson);
  EXPECT_EQ(add_cloudevents("[]", true, kKey, &broken).code, ErrorCode::kInvalidArgument);
  std::string huge = "[";
  for (size_t i = 0; i <= kBatchCommandsMax; ++i) huge += i == 0 ? "1" : ",1";
  huge += "]";
  EXPECT_EQ(add_cloudevents(huge, true, kKey, &broken).code, ErrorCode::kTooLarge);
}

}  // namespace
}  // namespace tally::server
