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

}  // namespace
}  // namespace tally
