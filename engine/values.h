// Value rules shared by every interface: identifiers, names, credit amounts and times.
// Each parser accepts exactly the documented form and rejects everything else.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tally {

// ---- limits on every input -----------------------------------------------------------
inline constexpr size_t kIdBytesMax = 64;          // org, workspace, grant, hold, key ids
inline constexpr size_t kUserBytesMax = 254;       // user ids are emails
inline constexpr size_t kNameBytesMax = 200;       // display names
inline constexpr size_t kCommandIdBytesMax = 128;  // client command and usage ids
inline constexpr size_t kCommandBytesMax = 64 * 1024;  // one JSON command line
inline constexpr uint32_t kWorkspacesPerOrgMax = 10'000;
inline constexpr uint32_t kMembersPerOrgMax = 1'000'000;

// Ids: 1..64 bytes of [A-Za-z0-9._-], starting with a letter or digit.
bool valid_id(std::string_view id);
// User ids: an email-like 3..254 bytes of printable ASCII with one '@', no spaces,
// not starting with "key:" (which names a service key).
bool valid_user(std::string_view user);
// Display names: 1..200 bytes with no control characters.
bool valid_name(std::string_view name);
// Model names: 1..128 bytes of printable ASCII without spaces ("flux-1.1-pro",
// "meta/llama-3.1-70b").
bool valid_model(std::string_view model);
// Client command ids: 1..128 bytes of printable ASCII, no spaces.
bool valid_command_id(std::string_view id);

// ---- credits -------------------------------------------------------------------------
inline constexpr int64_t kMicrosPerCredit = 1'000'000;
// The largest single amount any command may carry: one billion credits. Sums are
// checked separately against int64 overflow.
inline constexpr int64_t kCreditsMicroMax = 1'000'000'000LL * kMicrosPerCredit;

// Parses decimal credits ("12", "2.42", "0.000001") into micro-credits. Rejects signs,
// exponents, more than six fractional digits, empty parts and values above
// kCreditsMicroMax. Zero parses; commands decide whether they accept it.
bool parse_credits(std::string_view text, int64_t* credits_micro);
// The canonical form: shortest exact decimal, no trailing zeros ("1328", "2.42").
std::string format_credits(int64_t credits_micro);
// The same, appended to *out.
void append_credits(std::string* out, int64_t credits_micro);

// ---- time ----------------------------------------------------------------------------
// Parses RFC 3339 UTC: "2026-11-23T10:00:00Z", with an optional fraction of up to six
// digits and "Z" or "+00:00". Years 1970..9999.
bool parse_time(std::string_view text, int64_t* time_us);
// The same instant `months` calendar months later, the day clamped to the month's end.
// Like the bucket starts below, held to the int64 range near its ends (times no command
// can give; a forged log record's).
int64_t add_months(int64_t time_us, int months);
// UTC day and month numbers since the epoch, for spend limits and usage buckets.
int64_t day_of(int64_t time_us);
int64_t month_of(int64_t time_us);
// The start of an hour/day/month bucket; the lowest int64 when that start lies below it.
int64_t hour_start(int64_t time_us);
int64_t day_start(int64_t time_us);
int64_t month_start(int64_t time_us);
// "2026-11-23T10:00:00Z", or with ".ffffff" when the microseconds are not zero.
std::string format_time(int64_t time_us);

}  // namespace tally
