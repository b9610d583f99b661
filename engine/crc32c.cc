#include "engine/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace tally {
namespace {

// The Castagnoli polynomial, bit-reversed (CRC32C shifts right, lowest bit first).
constexpr uint32_t kPolynomial = 0x82f63b78;

// The remainder of each byte value, for the byte-at-a-time path.
constexpr std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t byte = 0; byte < 256; ++byte) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1) != 0 ? (crc >> 1) ^ kPolynomial : crc >> 1;
    table[byte] = crc;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kTable = make_table();

#if defined(__x86_64__)
// Both paths work on the register as CRC32C keeps it: the value handed in and out is
// inverted at each end.
__attribute__((target("sse4.2"))) uint32_t extend_sse42(uint32_t crc, const char* data, size_t n) {
  uint64_t reg = ~crc;
  // Eight bytes at a time once aligned; the instruction has a latency of three cycles,
  // so this runs at about 8 bytes per 3 cycles, several times the table's rate.
  while (n > 0 && (reinterpret_cast<uintptr_t>(data) & 7) != 0) {
    reg = _mm_crc32_u8(static_cast<uint32_t>(reg), static_cast<uint8_t>(*data++));
    --n;
  }
  for (; n >= 8; n -= 8, data += 8) {
    uint64_t word;
    std::memcpy(&word, data, sizeof word);
    reg = _mm_crc32_u64(reg, word);
  }
  for (; n > 0; --n) reg = _mm_crc32_u8(static_cast<uint32_t>(reg), static_cast<uint8_t>(*data++));
  return ~static_cast<uint32_t>(reg);
}

bool has_sse42() {
  // __builtin_cpu_init first: RocksDB may checksum from a static constructor, which can
  // run before the one that fills in what __builtin_cpu_supports reads.
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") != 0;
  }();
  return has;
}
#endif

// Products modulo the polynomial, for combine: each 32-bit value is a polynomial of
// degree < 32 with x^0 in the top bit (the reflected order CRC32C uses).
uint32_t multiply(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (uint32_t bit = uint32_t{1} << 31; bit != 0; bit >>= 1) {
    if ((a & bit) != 0) product ^= b;
    b = (b & 1) != 0 ? (b >> 1) ^ kPolynomial : b >> 1;  // b *= x
  }
  return product;
}

// x^(8n) modulo the polynomial: what appending n zero bytes multiplies a CRC by. Built
// from x^(2^k), squared in turn, over the bits of 8n.
uint32_t shift_for_bytes(size_t n) {
  uint32_t result = uint32_t{1} << 31;  // x^0
  uint32_t power = uint32_t{1} << 30;   // x^1
  for (uint64_t bits = uint64_t{n} * 8; bits != 0; bits >>= 1) {
    if ((bits & 1) != 0) result = multiply(result, power);
    power = multiply(power, power);
  }
  return result;
}

}  // namespace

uint32_t crc32c_extend_table(uint32_t crc, const char* data, size_t n) {
  uint32_t reg = ~crc;
  for (size_t i = 0; i < n; ++i) reg = kTable[(reg ^ static_cast<uint8_t>(data[i])) & 0xff] ^ (reg >> 8);
  return ~reg;
}

uint32_t crc32c_extend(uint32_t crc, const char* data, size_t n) {
#if defined(__x86_64__)
  if (has_sse42()) return extend_sse42(crc, data, n);
#endif
  return crc32c_extend_table(crc, data, n);
}

uint32_t crc32c_combine(uint32_t crc1, uint32_t crc2, size_t crc2_length) {
  // The inversions at each end cancel out between the two runs, so the CRC of both is
  // the first's moved past the second's bytes, plus the second's.
  return multiply(crc1, shift_for_bytes(crc2_length)) ^ crc2;
}

}  // namespace tally

#if defined(__x86_64__)
namespace rocksdb::crc32c {

uint32_t Extend(uint32_t init_crc, const char* data, size_t n) { return tally::crc32c_extend(init_crc, data, n); }
uint32_t Crc32cCombine(uint32_t crc1, uint32_t crc2, size_t crc2len) { return tally::crc32c_combine(crc1, crc2, crc2len); }
std::string IsFastCrc32Supported() { return "tally's CRC32C: " + std::string(tally::crc32c_kind()); }

}  // namespace rocksdb::crc32c
#endif

namespace tally {

std::string_view crc32c_kind() {
#if defined(__x86_64__)
  return has_sse42() ? "sse4.2" : "table";
#else
  return "rocksdb";
#endif
}

bool crc32c_self_check() {
  // RFC 3720, B.4: 32 bytes of zeros, of ones, ascending and descending.
  char zeros[32], ones[32], up[32], down[32];
  std::memset(zeros, 0, sizeof zeros);
  std::memset(ones, 0xff, sizeof ones);
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<char>(i);
    down[i] = static_cast<char>(31 - i);
  }
  const char* digits = "123456789";
  const uint32_t split = rocksdb::crc32c::Extend(rocksdb::crc32c::Extend(0, up, 13), up + 13, 19);
  return rocksdb::crc32c::Extend(0, zeros, 32) == 0x8a9136aa && rocksdb::crc32c::Extend(0, ones, 32) == 0x62a8ab43 &&
         rocksdb::crc32c::Extend(0, up, 32) == 0x46dd794e && rocksdb::crc32c::Extend(0, down, 32) == 0x113fdb5c &&
         rocksdb::crc32c::Extend(0, digits, 9) == 0xe3069283 && split == 0x46dd794e &&
         crc32c_combine(crc32c_extend(0, up, 13), crc32c_extend(0, up + 13, 19), 19) == 0x46dd794e;
}

}  // namespace tally
