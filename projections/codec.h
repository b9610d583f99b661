// The byte format of projection rows: fixed-width little-endian integers and
// length-prefixed strings, written and read in the same field order. Deterministic, so
// two projections with equal state produce byte-identical rows.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace tally {

class RowWriter {
 public:
  RowWriter& u8(uint8_t v) { return bytes(&v, 1); }
  RowWriter& u32(uint32_t v) { return bytes(&v, 4); }
  RowWriter& u64(uint64_t v) { return bytes(&v, 8); }
  RowWriter& i64(int64_t v) { return bytes(&v, 8); }
  RowWriter& str(std::string_view s) {
    u32(static_cast<uint32_t>(s.size()));
    out_.append(s);
    return *this;
  }
  const std::string& data() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  RowWriter& bytes(const void* p, size_t n) {
    out_.append(static_cast<const char*>(p), n);
    return *this;
  }
  std::string out_;
};

// Reads fields in order; after any read past the end, ok() is false and every later
// read yields zero or empty.
class RowReader {
 public:
  explicit RowReader(std::string_view data) : data_(data) {}
  uint8_t u8() { return fixed<uint8_t>(); }
  uint32_t u32() { return fixed<uint32_t>(); }
  uint64_t u64() { return fixed<uint64_t>(); }
  int64_t i64() { return fixed<int64_t>(); }
  std::string str() {
    const uint32_t n = u32();
    if (!ok_ || n > data_.size() - pos_) {
      ok_ = false;
      return {};
    }
    std::string s(data_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  // True when every read fitted and the whole row was consumed.
  bool done() const { return ok_ && pos_ == data_.size(); }
  bool ok() const { return ok_; }

 private:
  template <typename T>
  T fixed() {
    T v{};
    if (!ok_ || sizeof(T) > data_.size() - pos_) {
      ok_ = false;
      return v;
    }
    std::memcpy(&v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace tally
