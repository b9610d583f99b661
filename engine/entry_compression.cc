#include "engine/entry_compression.h"

#include <lz4.h>

#include <cstdint>
#include <cstring>

#include "engine/assert.h"

namespace tally {

namespace {

constexpr char kZeros[8] = {};

}  // namespace

std::string_view compress_entry(std::string_view value, std::string* buffer) {
  TALLY_ASSERT(!is_compressed_entry(value));
  if (value.size() < kCompressedValueBytesMin || value.size() > kCompressedValueBytesMax) return value;
  // Room for a result smaller than the value, no more: LZ4 gives up (returns 0) once its
  // output would not fit, so a value that does not shrink costs no full compression.
  // The buffer only grows: shrinking it to the result would have the next call fill
  // the difference with zeros again.
  const size_t room = value.size() - kCompressedHeaderBytes - 1;
  if (buffer->size() < kCompressedHeaderBytes + room) buffer->resize(kCompressedHeaderBytes + room);
  char* out = buffer->data();
  std::memcpy(out, kZeros, sizeof kZeros);
  const auto size = static_cast<uint32_t>(value.size());
  std::memcpy(out + 8, &size, sizeof size);  // little-endian hosts only (x86-64, arm64)
  const int compressed = LZ4_compress_default(value.data(), out + kCompressedHeaderBytes, static_cast<int>(value.size()),
                                              static_cast<int>(room));
  if (compressed <= 0) return value;
  return std::string_view(out, kCompressedHeaderBytes + static_cast<size_t>(compressed));
}

bool is_compressed_entry(std::string_view stored) {
  return stored.size() >= sizeof kZeros && std::memcmp(stored.data(), kZeros, sizeof kZeros) == 0;
}

bool expand_entry(std::string_view stored, std::string* buffer, std::string_view* value) {
  if (!is_compressed_entry(stored)) {
    *value = stored;
    return true;
  }
  if (stored.size() < kCompressedHeaderBytes) return false;
  uint32_t size;
  std::memcpy(&size, stored.data() + 8, sizeof size);
  if (size > kCompressedValueBytesMax || stored.size() - kCompressedHeaderBytes > kCompressedValueBytesMax) return false;
  buffer->resize(size);
  const int expanded = LZ4_decompress_safe(stored.data() + kCompressedHeaderBytes, buffer->data(),
                                           static_cast<int>(stored.size() - kCompressedHeaderBytes), static_cast<int>(size));
  if (expanded < 0 || static_cast<uint32_t>(expanded) != size) return false;
  *value = *buffer;
  return true;
}

}  // namespace tally
