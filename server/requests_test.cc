#include "server/requests.h"

#include <gtest/gtest.h>

#include "server/auth.h"

namespace tally::server {
namespace {

const Identity kPlatform{ActorKind::kPlatform, "platform", {}};
const Identity kKey{ActorKind::kServiceKey, "key:k1", "acme"};
const Identity kBob{ActorKind::kUser, "bob@acme.io", {}};

TEST(Scope, FillsTheActorAndRefusesOthers) {
  Command command;
  command.org = "acme";
  ASSERT_TRUE(scope_command(kBob, &command).ok());
  EXPECT_EQ(command.actor, "bob@acme.io");
  command.actor = "alice@acme.io";
  EXPECT_EQ(scope_command(kBob, &command).code, ErrorCode::kForbidden);
  // The platform may act as anyone.
  ASSERT_TRUE(scope_command(kPlatform, &command).ok());
  EXPECT_EQ(command.actor, "alice@acme.io");
}

TEST(Scope, ServiceKeysStayInTheirOrganization) {
  Command command;
  command.org = "acme";
  ASSERT_TRUE(scope_command(kKey, &command).ok());
  EXPECT_EQ(command.actor, "key:k1");
  command.org = "beta";
  EXPECT_EQ(scope_command(kKey, &command).code, ErrorCode::kForbidden);
  command.org.clear();  // set_price, tick: no organization at all
  EXPECT_EQ(scope_command(kKey, &command).code, ErrorCode::kForbidden);
  std::string actor;
  EXPECT_EQ(scope_query(kKey, &actor, "beta").code, ErrorCode::kForbidden);
  EXPECT_TRUE(scope_query(kKey, &actor, "acme").ok());
  EXPECT_EQ(actor, "key:k1");
}

TEST(JsonLines, OneSlotPerLineAndRequestLevelErrors) {
  CommandBatch batch;
  ASSERT_TRUE(add_json_lines("{\"cmd\":\"accept_invite\",\"org\":\"acme\"}\n\n  \nnot json\r\n{\"cmd\":\"nope\"}", kBob, &batch).ok());
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(batch.commands().size(), 1u);
  EXPECT_EQ(batch.commands().front().actor, "bob@acme.io");
  EXPECT_EQ(batch.results()[1].status.code, ErrorCode::kInvalidJson);
  EXPECT_EQ(batch.results()[2].status.code, ErrorCode::kUnknownCommand);
  std::vector<CommandResult> results(1);
  results[0].seq = 7;
  batch.complete(std::move(results));
  EXPECT_EQ(batch.results()[0].seq, 7u);

  CommandBatch empty;
  EXPECT_EQ(add_json_lines("\n \n", kBob, &empty).code, ErrorCode::kInvalidArgument);
  CommandBatch foreign;
  EXPECT_EQ(add_json_lines("{\"cmd\":\"accept_invite\",\"actor\":\"eve@x.io\",\"org\":\"acme\"}", kBob, &foreign).code, ErrorCode::kForbidden);
  CommandBatch many;
  std::string body;
  for (size_t i = 0; i <= kBatchCommandsMax; ++i) body += "x\n";
  EXPECT_EQ(add_json_lines(body, kBob, &many).code, ErrorCode::kTooLarge);
}

TEST(CheckUsage, AppliesTheJsonRules) {
  Command command;
  command.type = CommandType::kRecordUsage;
  command.id = "u-1";
  command.org = "acme";
  command.workspace = "design";
  command.tool = "chat";
  command.model = "meta/llama-3.1";
  command.unit = "token";
  command.quantity = 10;
  command.occurred_at_us = 1'700'000'000'000'000;
  EXPECT_TRUE(check_usage(command).ok());
  Command bad = command;
  bad.id = "has space";
  EXPECT_EQ(check_usage(bad).code, ErrorCode::kInvalidArgument);
  bad = command;
  bad.workspace.clear();
  EXPECT_EQ(check_usage(bad).code, ErrorCode::kMissingField);
  bad = command;
  bad.quantity = kQuantityMax + 1;
  EXPECT_EQ(check_usage(bad).code, ErrorCode::kInvalidArgument);
  bad = command;
  bad.user = "not-an-email";
  EXPECT_EQ(check_usage(bad).code, ErrorCode::kInvalidArgument);
  bad = command;
  bad.credits_micro = -1;
  EXPECT_EQ(check_usage(bad).code, ErrorCode::kInvalidAmount);
  bad = command;
  bad.occurred_at_us = -1;
  EXPECT_EQ(check_usage(bad).code, ErrorCode::kInvalidArgument);
}

TEST(HttpStatus, EveryCodeHasOne) {
  for (int i = 0; i < kErrorCodeCount; ++i) {
    const unsigned status = http_status(static_cast<ErrorCode>(i));
    EXPECT_TRUE(status == 200 || (status >= 400 && status < 600)) << i;
  }
  EXPECT_EQ(http_status(ErrorCode::kForbidden), 403u);
  EXPECT_EQ(http_status(ErrorCode::kUnauthenticated), 401u);
  EXPECT_EQ(http_status(ErrorCode::kTooLarge), 413u);
  EXPECT_EQ(http_status(ErrorCode::kUnavailable), 503u);
}

}  // namespace
}  // namespace tally::server
