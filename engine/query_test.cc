#include "engine/query.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/test_util.h"
#include "engine/values.h"

namespace tally {
namespace {

Status decode(std::string_view json, Query* query = nullptr) {
  Query scratch;
  return decode_query(json, query != nullptr ? query : &scratch);
}

TEST(DecodeQuery, ReadsEveryField) {
  Query query;
  ASSERT_TRUE(decode(R"({"query":"members","actor":"alice@acme.io","org":"acme","workspace":"design","as_of_seq":7,"as_of":"2026-11-23T10:00:00Z"})",
                     &query)
                  .ok());
  EXPECT_EQ(query.type, QueryType::kMembers);
  EXPECT_EQ(query.actor, "alice@acme.io");
  EXPECT_EQ(query.org, "acme");
  EXPECT_EQ(query.workspace, "design");
  EXPECT_EQ(query.as_of_seq, std::optional<uint64_t>(7));
  EXPECT_EQ(query.as_of_us, std::optional<int64_t>(1'795'428'000'000'000));
}

TEST(DecodeQuery, KnowsEveryQueryType) {
  Query query;
  ASSERT_TRUE(decode(R"({"query":"org","actor":"platform","org":"acme"})", &query).ok());
  EXPECT_EQ(query.type, QueryType::kOrg);
  ASSERT_TRUE(decode(R"({"query":"workspaces","actor":"key:backend","org":"acme"})", &query).ok());
  EXPECT_EQ(query.type, QueryType::kWorkspaces);
  EXPECT_EQ(query.actor, "key:backend");
  ASSERT_TRUE(decode(R"({"query":"members","actor":"platform","org":"acme"})", &query).ok());
  EXPECT_EQ(query.type, QueryType::kMembers);
  EXPECT_FALSE(query.as_of_seq.has_value());
  EXPECT_FALSE(query.as_of_us.has_value());
  EXPECT_EQ(query.workspace, "");
}

TEST(DecodeQuery, RefusesBadQueriesWithTheirCodes) {
  const std::vector<std::pair<std::string, ErrorCode>> cases = {
      {"", ErrorCode::kInvalidJson},
      {"{", ErrorCode::kInvalidJson},
      {"[]", ErrorCode::kInvalidJson},
      {R"("members")", ErrorCode::kInvalidJson},
      {R"({"actor":"platform","org":"acme"})", ErrorCode::kMissingField},
      {R"({"query":"members","org":"acme"})", ErrorCode::kMissingField},
      {R"({"query":"members","actor":"platform"})", ErrorCode::kMissingField},
      {R"({"query":"balance2","actor":"platform","org":"acme"})", ErrorCode::kUnknownCommand},
      {R"({"query":"members","actor":"platform","org":"acme","cmd":"x"})", ErrorCode::kUnknownField},
      {R"({"query":"members","actor":"platform","org":"acme","as_of_seq":-1})", ErrorCode::kInvalidArgument},
      {R"({"query":"members","actor":"platform","org":"acme","as_of_seq":1.5})", ErrorCode::kInvalidArgument},
      {R"({"query":"members","actor":"platform","org":"acme","as_of_seq":"1"})", ErrorCode::kInvalidArgument},
      {R"({"query":"members","actor":"platform","org":"acme","as_of":"2026-11-23"})", ErrorCode::kInvalidArgument},
      {R"({"query":"members","actor":"platform","org":"acme","as_of":1})", ErrorCode::kInvalidArgument},
      {R"({"query":7,"actor":"platform","org":"acme"})", ErrorCode::kInvalidArgument},
      {R"({"query":"members","actor":"nobody","org":"acme"})", ErrorCode::kInvalidArgument},
      {R"({"query":"members","actor":"key:","org":"acme"})", ErrorCode::kInvalidArgument},
      {R"({"query":"members","actor":"platform","org":"-acme"})", ErrorCode::kInvalidArgument},
      {R"({"query":"members","actor":"platform","org":"acme","workspace":"a b"})", ErrorCode::kInvalidArgument},
      {R"({"query":"members","actor":"platform","org":null})", ErrorCode::kInvalidArgument},
  };
  for (const auto& [json, expected] : cases) {
    EXPECT_EQ(decode(json).code, expected) << json << " -> " << decode(json).message;
  }
  std::string big = R"({"query":"members","actor":"platform","org":"acme"})";
  big.insert(1, kCommandBytesMax, ' ');
  EXPECT_EQ(decode(big).code, ErrorCode::kTooLarge);
}

// Regression: a field given twice used to be accepted, the last one winning, so
// {"actor":"bob@acme.io","actor":"platform"} was answered as the platform. Commands
// refuse duplicates, and decode_query promises the same error codes.
TEST(DecodeQueryRegression, DuplicateFieldsWereAcceptedWithTheLastOneWinning) {
  for (const char* json : {R"({"query":"members","actor":"bob@acme.io","actor":"platform","org":"acme"})",
                           R"({"query":"members","query":"org","actor":"platform","org":"acme"})",
                           R"({"query":"members","actor":"platform","org":"acme","org":"other"})",
                           R"({"query":"members","actor":"platform","org":"acme","workspace":"a","workspace":"b"})",
                           R"({"query":"members","actor":"platform","org":"acme","as_of_seq":1,"as_of_seq":2})",
                           R"({"query":"members","actor":"platform","org":"acme","as_of":"2026-11-23T10:00:00Z","as_of":"2026-11-23T10:00:00Z"})"}) {
    const Status status = decode(json);
    EXPECT_EQ(status.code, ErrorCode::kInvalidArgument) << json;
    EXPECT_NE(status.message.find("twice"), std::string::npos) << status.message;
  }
}

// Regression, found by fuzz_query in CI: the message quoting an unknown field kept its
// first 64 bytes, which could end inside a UTF-8 character; the answer was then not
// valid JSON. The quote now stops before that character.
TEST(DecodeQueryRegression, AQuotedFieldNameIsNotCutInsideACharacter) {
  const std::string name = std::string(63, 'a') + "\xe1\x98\x95" + "b";  // U+1615 straddles byte 64
  for (const std::string& json : {R"({")" + name + R"(":"x","query":"balance"})", R"({"query":"balance",")" + name + R"(":"x"})"}) {
    const Status status = decode(json);
    EXPECT_EQ(status.code, ErrorCode::kUnknownField) << json;
    EXPECT_NE(status.message.find("\"" + std::string(63, 'a') + "\""), std::string::npos) << status.message;
  }
}

TEST(ErrorJson, RendersCodeAndEscapedMessage) {
  EXPECT_EQ(error_json(Error(ErrorCode::kUnknownOrg, "no organization \"x\"")),
            R"({"ok":false,"error":"unknown_org","message":"no organization \"x\""})");
}

TEST(AnswerQuery, ReportsTheSequenceItWasGiven) {
  testing::TestEngine t;
  ASSERT_TRUE(t.run(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","name":"A \"quoted\" name"})").status.ok());
  Query query;
  ASSERT_TRUE(decode(R"({"query":"org","actor":"alice@acme.io","org":"acme"})", &query).ok());
  const std::string answer = answer_query(t.engine().state(), query, 42, /*now_us=*/0);
  EXPECT_TRUE(answer.starts_with(R"({"ok":true,"as_of_seq":42,"org":"acme","name":"A \"quoted\" name",)")) << answer;
}


TEST(DecodeQuery, RefusesFieldsTheQueryDoesNotTake) {
  // Regression: every query accepted every query field and ignored the ones it did not use.
  const Status status = decode(R"({"query":"balance","actor":"platform","org":"acme","group_by":["tool"]})");
  EXPECT_EQ(status.code, ErrorCode::kUnknownField) << status.message;
  EXPECT_EQ(decode(R"({"query":"org","actor":"platform","org":"acme","workspace":"w"})").code, ErrorCode::kUnknownField);
  EXPECT_TRUE(decode(R"({"query":"usage","actor":"platform","org":"acme","group_by":["tool"],"member":"a@b.io"})").ok());
  EXPECT_EQ(decode(R"({"query":"statement","actor":"platform","org":"acme","workspace":"w","workspace_id":1})").code,
            ErrorCode::kInvalidArgument);
}

// Regression: a deleted workspace's statement could not be named, though its history
// must stay queryable; and usage grouped by workspace merged it with a new namesake.
TEST(AnswerQuery, DeletedWorkspacesStayReachableAndApart) {
  testing::TestEngine t;
  const char* setup[] = {
      R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","mode":"budget"})",
      R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g1","kind":"plan","credits":"100"})",
      R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})",
      R"({"cmd":"transfer_credits","actor":"alice@acme.io","org":"acme","from":"primary","to":"design","credits":"10"})",
      R"({"cmd":"record_usage","actor":"platform","id":"u1","org":"acme","workspace":"design","user":"alice@acme.io","tool":"chat","model":"m","quantity":1,"unit":"token","credits":"2","occurred_at":"2026-11-01T00:00:00Z"})",
      R"({"cmd":"delete_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})",
      R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})",
      R"({"cmd":"transfer_credits","actor":"alice@acme.io","org":"acme","from":"primary","to":"design","credits":"5"})",
      R"({"cmd":"record_usage","actor":"platform","id":"u2","org":"acme","workspace":"design","user":"alice@acme.io","tool":"chat","model":"m","quantity":1,"unit":"token","credits":"3","occurred_at":"2026-11-01T00:00:00Z"})",
  };
  for (const char* line : setup) ASSERT_TRUE(t.run(line).status.ok()) << line;
  const std::string old_statement = t.query(R"({"query":"statement","actor":"alice@acme.io","org":"acme","workspace_id":1})");
  EXPECT_NE(old_statement.find(R"("kind":"returned_out","credits":"-8","balance":"0")"), std::string::npos) << old_statement;
  const std::string usage = t.query(R"({"query":"usage","actor":"alice@acme.io","org":"acme","group_by":["workspace"]})");
  EXPECT_NE(usage.find(R"({"workspace":"design","events":1,"quantity":1,"credits":"3"})"), std::string::npos) << usage;
  EXPECT_NE(usage.find(R"x({"workspace":"design (deleted, id 1)","events":1,"quantity":1,"credits":"2"})x"), std::string::npos) << usage;
}

}  // namespace
}  // namespace tally
