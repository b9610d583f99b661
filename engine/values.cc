#include "engine/values.h"

#include <charconv>

#include <algorithm>
#include <limits>

#include <fmt/format.h>

namespace tally {
namespace {

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_printable_ascii(char c) { return c > ' ' && c < 0x7f; }

// Howard Hinnant's days_from_civil: days since 1970-01-01 of a proleptic Gregorian date.
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void civil_from_days(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<int64_t>(yoe) + era * 400 + (*m <= 2);
}

bool leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned days_in_month(int64_t y, unsigned m) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : kDays[m - 1];
}

// Reads exactly `n` digits at text[*pos].
bool read_digits(std::string_view text, size_t* pos, int n, unsigned* out) {
  if (*pos + n > text.size()) return false;
  unsigned v = 0;
  for (int i = 0; i < n; ++i) {
    char c = text[*pos + i];
    if (!is_digit(c)) return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  *pos += n;
  *out = v;
  return true;
}

bool expect(std::string_view text, size_t* pos, char c) {
  if (*pos >= text.size() || text[*pos] != c) return false;
  ++*pos;
  return true;
}

}  // namespace

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > kIdBytesMax || !is_alnum(id[0])) return false;
  for (char c : id) {
    if (!is_alnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

bool valid_user(std::string_view user) {
  if (user.size() < 3 || user.size() > kUserBytesMax) return false;
  // "key:<id>" names a service key; a user id spelled so could never act as itself.
  if (user.starts_with("key:")) return false;
  int at_signs = 0;
  for (char c : user) {
    if (!is_printable_ascii(c)) return false;
    at_signs += c == '@';
  }
  const size_t at = user.find('@');
  return at_signs == 1 && at != 0 && at != user.size() - 1;
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > kNameBytesMax) return false;
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
  }
  return true;
}

bool valid_model(std::string_view model) {
  if (model.empty() || model.size() > 128) return false;
  for (char c : model) {
    if (!is_printable_ascii(c)) return false;
  }
  return true;
}

bool valid_command_id(std::string_view id) {
  if (id.empty() || id.size() > kCommandIdBytesMax) return false;
  for (char c : id) {
    if (!is_printable_ascii(c)) return false;
  }
  return true;
}

bool parse_credits(std::string_view text, int64_t* credits_micro) {
  const size_t dot = text.find('.');
  const std::string_view whole = text.substr(0, dot);
  const std::string_view fraction = dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
  if (whole.empty() || whole.size() > 10) return false;
  if (dot != std::string_view::npos && (fraction.empty() || fraction.size() > 6)) return false;
  int64_t units = 0;
  for (char c : whole) {
    if (!is_digit(c)) return false;
    units = units * 10 + (c - '0');
  }
  int64_t micros = 0;
  for (size_t i = 0; i < 6; ++i) {
    char c = i < fraction.size() ? fraction[i] : '0';
    if (!is_digit(c)) return false;
    micros = micros * 10 + (c - '0');
  }
  const int64_t total = units * kMicrosPerCredit + micros;  // units < 1e10: no overflow
  if (total > kCreditsMicroMax) return false;
  *credits_micro = total;
  return true;
}

std::string format_credits(int64_t credits_micro) {
  std::string out;
  append_credits(&out, credits_micro);
  return out;
}

void append_credits(std::string* out, int64_t credits_micro) {
  const bool negative = credits_micro < 0;
  // Work in unsigned so INT64_MIN formats too.
  const uint64_t magnitude = negative ? 0 - static_cast<uint64_t>(credits_micro) : static_cast<uint64_t>(credits_micro);
  const uint64_t units = magnitude / kMicrosPerCredit;
  uint64_t micros = magnitude % kMicrosPerCredit;
  char text[32];  // "-" + 20 digits + "." + 6 digits at most
  char* end = text;
  if (negative) *end++ = '-';
  end = std::to_chars(end, text + sizeof text, units).ptr;
  if (micros != 0) {
    int digits = 6;
    while (micros % 10 == 0) {
      micros /= 10;
      --digits;
    }
    *end++ = '.';
    for (int i = digits - 1; i >= 0; --i) {  // zero-padded to `digits`
      end[i] = static_cast<char>('0' + micros % 10);
      micros /= 10;
    }
    end += digits;
  }
  out->append(text, end);
}

bool parse_time(std::string_view text, int64_t* time_us) {
  size_t pos = 0;
  unsigned year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!read_digits(text, &pos, 4, &year) || !expect(text, &pos, '-') ||
      !read_digits(text, &pos, 2, &month) || !expect(text, &pos, '-') ||
      !read_digits(text, &pos, 2, &day) || !expect(text, &pos, 'T') ||
      !read_digits(text, &pos, 2, &hour) || !expect(text, &pos, ':') ||
      !read_digits(text, &pos, 2, &minute) || !expect(text, &pos, ':') ||
      !read_digits(text, &pos, 2, &second)) {
    return false;
  }
  if (year < 1970 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) ||
      hour > 23 || minute > 59 || second > 59) {
    return false;
  }
  int64_t micros = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < text.size() && is_digit(text[pos])) {
      if (++digits > 6) return false;
      micros = micros * 10 + (text[pos++] - '0');
    }
    if (digits == 0) return false;
    for (int i = digits; i < 6; ++i) micros *= 10;
  }
  const std::string_view zone = text.substr(pos);
  if (zone != "Z" && zone != "+00:00") return false;
  const int64_t days = days_from_civil(year, month, day);
  *time_us = ((days * 24 + hour) * 60 + minute) * 60 * 1'000'000LL + second * 1'000'000LL + micros;
  return true;
}

namespace {
constexpr int64_t kMicrosPerDay = 86'400'000'000LL;
constexpr int64_t kMicrosPerHour = 3'600'000'000LL;

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// a * b + c, held to the int64 range. Only times far outside what parse_time accepts
// come near its ends: a damaged or forged log record's, which a projection must still
// apply without undefined behaviour.
int64_t saturating(int64_t a, int64_t b, int64_t c = 0) {
  int64_t product, sum;
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min(), kMax = std::numeric_limits<int64_t>::max();
  if (__builtin_mul_overflow(a, b, &product)) return (a < 0) != (b < 0) ? kMin : kMax;
  if (__builtin_add_overflow(product, c, &sum)) return c < 0 ? kMin : kMax;
  return sum;
}
}  // namespace

int64_t day_of(int64_t time_us) { return floor_div(time_us, kMicrosPerDay); }

int64_t month_of(int64_t time_us) {
  int64_t y;
  unsigned m, d;
  civil_from_days(day_of(time_us), &y, &m, &d);
  return (y - 1970) * 12 + (m - 1);
}

int64_t hour_start(int64_t time_us) { return saturating(floor_div(time_us, kMicrosPerHour), kMicrosPerHour); }
int64_t day_start(int64_t time_us) { return saturating(day_of(time_us), kMicrosPerDay); }

int64_t month_start(int64_t time_us) {
  int64_t y;
  unsigned m, d;
  civil_from_days(day_of(time_us), &y, &m, &d);
  return saturating(days_from_civil(y, m, 1), kMicrosPerDay);
}

int64_t add_months(int64_t time_us, int months) {
  const int64_t day = day_of(time_us);
  const int64_t within_day = (time_us % kMicrosPerDay + kMicrosPerDay) % kMicrosPerDay;
  int64_t y;
  unsigned m, d;
  civil_from_days(day, &y, &m, &d);
  int64_t index = y * 12 + (m - 1) + months;
  const int64_t new_year = floor_div(index, 12);
  const auto new_month = static_cast<unsigned>(index - new_year * 12 + 1);
  const unsigned new_day = std::min(d, days_in_month(new_year, new_month));
  return saturating(days_from_civil(new_year, new_month, new_day), kMicrosPerDay, within_day);
}

std::string format_time(int64_t time_us) {
  int64_t seconds = time_us / 1'000'000;
  int64_t micros = time_us % 1'000'000;
  if (micros < 0) {
    micros += 1'000'000;
    --seconds;
  }
  int64_t days = seconds / 86400;
  int64_t rest = seconds % 86400;
  if (rest < 0) {
    rest += 86400;
    --days;
  }
  int64_t y;
  unsigned m, d;
  civil_from_days(days, &y, &m, &d);
  std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", y, m, d, rest / 3600, rest / 60 % 60, rest % 60);
  if (micros != 0) out += fmt::format(".{:06}", micros);
  out += 'Z';
  return out;
}

}  // namespace tally
