// A small JSON text builder for answers and exports. It escapes strings and places
// commas; the caller keeps objects and arrays balanced.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tally {

class JsonWriter {
 public:
  JsonWriter() = default;
  // Reserves room for an answer of about `bytes`, so writing it does not regrow.
  explicit JsonWriter(size_t bytes) { out_.reserve(bytes); }

  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  // Inside an object, names the next value.
  JsonWriter& key(std::string_view name);
  JsonWriter& string(std::string_view value);
  JsonWriter& number(int64_t value);
  JsonWriter& unsigned_number(uint64_t value);
  JsonWriter& boolean(bool value);
  // Inserts already-encoded JSON as one value.
  JsonWriter& raw(std::string_view json);

  // Shorthands for key(name).value(v).
  JsonWriter& field(std::string_view name, std::string_view value) { return key(name).string(value); }
  JsonWriter& field(std::string_view name, const char* value) { return key(name).string(value); }
  JsonWriter& field(std::string_view name, int64_t value) { return key(name).number(value); }
  JsonWriter& field(std::string_view name, uint64_t value) { return key(name).unsigned_number(value); }
  JsonWriter& field(std::string_view name, uint32_t value) { return key(name).unsigned_number(value); }
  JsonWriter& field(std::string_view name, int value) { return key(name).number(value); }
  JsonWriter& field(std::string_view name, bool value) { return key(name).boolean(value); }

  const std::string& str() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void before_value();

  std::string out_;
  std::vector<char> first_;  // per open container: 1 while no element is written yet
  bool after_key_ = false;
};

// Appends `value` to `out` as a quoted, escaped JSON string. Bytes that are not part of
// a well-formed UTF-8 character (a stray continuation byte, a cut or overlong sequence,
// a surrogate, a code point past U+10FFFF) are written as U+FFFD each, so the answer
// stays valid JSON whatever a binary frame, a log record or a request line held.
void append_json_string(std::string* out, std::string_view value);

// The length of the well-formed UTF-8 character at the start of `text` (2 to 4 bytes,
// for a first byte of 0x80 or more), or 0 if it is not one.
size_t utf8_character_length(std::string_view text);

// Appends `value` in decimal (a JSON number), without going through a format string.
void append_decimal(std::string* out, int64_t value);
void append_decimal(std::string* out, uint64_t value);

}  // namespace tally
