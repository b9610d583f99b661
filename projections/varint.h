// LEB128 varints and zigzag coding, for the packed in-memory forms of the projections
// that grow with the log (UsageIds, StatementAccount). Seven bits a byte, low bits
// first, the high bit set on every byte but the last: a uint64_t takes 1 to 10 bytes.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tally {

inline constexpr size_t kVarintBytesMax = 10;

// Writes value at out (room for kVarintBytesMax bytes); returns the end.
inline char* put_varint(char* out, uint64_t value) {
  while (value >= 0x80) {
    *out++ = static_cast<char>(value | 0x80);
    value >>= 7;
  }
  *out++ = static_cast<char>(value);
  return out;
}

// Reads a varint from [in, end); returns the byte after it, or nullptr if it runs past
// end or past kVarintBytesMax bytes.
inline const char* get_varint(const char* in, const char* end, uint64_t* value) {
  *value = 0;
  for (unsigned shift = 0; in < end && shift < 64; shift += 7) {
    const auto byte = static_cast<uint8_t>(*in++);
    *value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if (byte < 0x80) return in;
  }
  return nullptr;
}

// Small magnitudes of either sign become small unsigned numbers: 0, -1, 1, -2 -> 0, 1, 2, 3.
inline uint64_t zigzag(int64_t value) { return (static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63); }
inline int64_t unzigzag(uint64_t value) { return static_cast<int64_t>(value >> 1) ^ -static_cast<int64_t>(value & 1); }

}  // namespace tally
