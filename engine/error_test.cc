#include "engine/error.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace tally {
namespace {

TEST(ErrorCodes, EveryCodeHasAUniqueSnakeCaseNameThatParsesBack) {
  std::set<std::string> names;
  for (int i = 0; i < kErrorCodeCount; ++i) {
    const auto code = static_cast<ErrorCode>(i);
    const std::string name(error_name(code));
    ASSERT_FALSE(name.empty()) << i;
    for (char c : name) EXPECT_TRUE((c >= 'a' && c <= 'z') || c == '_') << name;
    EXPECT_TRUE(names.insert(name).second) << "duplicate name " << name;
    ErrorCode parsed = ErrorCode::kInternal;
    ASSERT_TRUE(error_from_name(name, &parsed)) << name;
    EXPECT_EQ(parsed, code) << name;
  }
}

// The names are the interface (SPEC §4): pin the ones clients already match on.
TEST(ErrorCodes, NamesMatchTheSpec) {
  EXPECT_EQ(error_name(ErrorCode::kOk), "ok");
  EXPECT_EQ(error_name(ErrorCode::kUnknownOrg), "unknown_org");
  EXPECT_EQ(error_name(ErrorCode::kForbidden), "forbidden");
  EXPECT_EQ(error_name(ErrorCode::kInsufficientCredits), "insufficient_credits");
  EXPECT_EQ(error_name(ErrorCode::kLimitExceeded), "limit_exceeded");
  EXPECT_EQ(error_name(ErrorCode::kIdConflict), "id_conflict");
  EXPECT_EQ(error_name(ErrorCode::kHoldNotFound), "hold_not_found");
  EXPECT_EQ(error_name(ErrorCode::kInvalidAmount), "invalid_amount");
  EXPECT_EQ(error_name(ErrorCode::kInvalidArgument), "invalid_argument");
  EXPECT_EQ(error_name(ErrorCode::kInternal), "internal");
}

TEST(ErrorCodes, UnknownNamesDoNotParse) {
  ErrorCode code = ErrorCode::kForbidden;
  EXPECT_FALSE(error_from_name("", &code));
  EXPECT_FALSE(error_from_name("Forbidden", &code));
  EXPECT_FALSE(error_from_name("no_such_code", &code));
  EXPECT_EQ(code, ErrorCode::kForbidden);
}

TEST(ErrorCodes, RetryClassesSayWhetherToResend) {
  EXPECT_EQ(error_retry(ErrorCode::kInvalidJson), Retry::kNever);
  EXPECT_EQ(error_retry(ErrorCode::kForbidden), Retry::kNever);
  EXPECT_EQ(error_retry(ErrorCode::kInsufficientCredits), Retry::kAfterChange);
  EXPECT_EQ(error_retry(ErrorCode::kUnknownOrg), Retry::kAfterChange);
  EXPECT_EQ(error_retry(ErrorCode::kReadOnly), Retry::kLater);
  EXPECT_EQ(error_retry(ErrorCode::kStorageError), Retry::kLater);
}

TEST(Status, DefaultIsOkAndErrorCarriesCodeAndMessage) {
  EXPECT_TRUE(Status().ok());
  EXPECT_TRUE(Status::Ok().ok());
  const Status status = Error(ErrorCode::kUnknownOrg, "no organization \"x\"");
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.code, ErrorCode::kUnknownOrg);
  EXPECT_EQ(status.message, "no organization \"x\"");
}

// Found by fuzz_query in CI: an error quoting the first 64 bytes of a field name cut a
// UTF-8 character in two, and the answer was not valid JSON.
TEST(Excerpt, CutsOnlyBetweenUtf8Characters) {
  EXPECT_EQ(excerpt("short"), "short");
  EXPECT_EQ(excerpt(std::string(64, 'a')), std::string(64, 'a'));
  EXPECT_EQ(excerpt(std::string(70, 'a')), std::string(64, 'a'));
  const std::string three = "\xe1\x98\x95";  // U+1615, three bytes
  EXPECT_EQ(excerpt(std::string(62, 'a') + three), std::string(62, 'a'));   // would keep 2 of 3
  EXPECT_EQ(excerpt(std::string(63, 'a') + three), std::string(63, 'a'));   // would keep 1 of 3
  EXPECT_EQ(excerpt(std::string(61, 'a') + three + "b"), std::string(61, 'a') + three);
  const std::string four = "\xf0\x9f\x98\x80";  // U+1F600, four bytes
  EXPECT_EQ(excerpt(std::string(61, 'a') + four, 64), std::string(61, 'a'));
  EXPECT_EQ(excerpt(four + four, 5), four);
  EXPECT_EQ(excerpt(four, 3), "");
}

}  // namespace
}  // namespace tally
