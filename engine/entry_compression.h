// LZ4 for the values of the log's segments and the history's packs (format 5).
//
// A batch's segments and packs are compressed before they go into its WriteBatch, so
// the write-ahead log, the memtables and the table files all carry the smaller bytes,
// and the table files of those two families are not compressed again. Before, RocksDB
// compressed only the table files: every byte went into the write-ahead log (copied
// into the page cache by the commit thread, a tenth of all the CPU time of tally_load)
// and the memtable at full size (bench/RESULTS.md, "Runs 59-60").
//
// A compressed value: 8 zero bytes, the uncompressed size (4 bytes, little-endian),
// then one LZ4 block. An uncompressed segment never begins with 8 zero bytes (its
// first frame's length is at least a record's checksum, 8 bytes), nor does an
// uncompressed pack (its first 8 bytes are the big-endian sequence number of its first
// row, at least 1). So a store holds both, and a reader tells them apart by the value
// alone: stores of format 4 and earlier keep their values as they were written.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tally {

inline constexpr size_t kCompressedHeaderBytes = 8 + 4;
// A smaller value is stored as it is: a batch of one command (an express reserve or
// settle) would gain a few bytes at best.
inline constexpr size_t kCompressedValueBytesMin = 512;
// The largest value compressed, and so the largest size a compressed value may declare.
// A segment or a pack is about 64 KiB plus one event's worth; a larger value is stored
// as it is.
inline constexpr size_t kCompressedValueBytesMax = 16 << 20;

// The bytes to store for `value`: compressed into `*buffer` when its size is within
// [kCompressedValueBytesMin, kCompressedValueBytesMax] and LZ4 makes it smaller (the
// result then points into `*buffer`), otherwise `value` itself.
// REQUIRES: `value` does not begin with 8 zero bytes (no segment or pack does).
std::string_view compress_entry(std::string_view value, std::string* buffer);

// Whether `stored` is a compressed value (begins with the 8 zero bytes).
bool is_compressed_entry(std::string_view stored);

// The value `stored` holds: `stored` itself when it is not compressed; otherwise
// decompressed into `*buffer` (and the result points into it). False when a compressed
// value declares more than kCompressedValueBytesMax, does not decompress, or
// decompresses to another size than it declares.
bool expand_entry(std::string_view stored, std::string* buffer, std::string_view* value);

}  // namespace tally
