// CRC32C (Castagnoli) for RocksDB, computed with the CPU's crc32 instruction.
//
// RocksDB checksums every WAL record with CRC32C. Debian builds it portably, without
// SSE4.2, so its own crc32c.cc always takes the table-driven path: during binary-protocol
// ingest that was 8.7 % of all the daemon's CPU samples, 46 % of the commit thread's
// (bench/RESULTS.md, "Runs 47–48"). RocksDB is linked statically, and its crc32c.cc defines
// exactly three functions, rocksdb::crc32c::Extend, Crc32cCombine and
// IsFastCrc32Supported. crc32c.cc here defines the same three, so the linker takes them
// from tally_core and never pulls RocksDB's object out of the archive; every CRC32C that
// RocksDB computes or checks is then ours. The values are the same (CRC32C is one fixed
// function), so stores written before read the same.
//
// The linker only takes this object if something it already links refers to it:
// Store::open calls crc32c_self_check(), which also refuses to open a store with a
// CRC32C that gives wrong answers (RocksDB would read every WAL record as torn and drop
// it at recovery). Tests (Crc32c.*) check that RocksDB's Extend is this one. Should a
// later RocksDB add a function to its crc32c.cc that the rest of it calls, the linker
// would pull that object too and stop on the duplicate definitions: loudly, not with a
// silent change of CRC32C.
//
// Contract:
//   - crc32c_extend(crc, data, n) is the CRC32C of the bytes whose CRC32C is `crc`
//     followed by data[0..n) (crc 0 for none); crc32c_combine(a, b, n) is the CRC32C of
//     two runs of bytes whose CRC32Cs are a and b, the second n bytes long. Both are
//     RocksDB's rocksdb::crc32c::Extend and Crc32cCombine.
//   - On x86-64 with SSE4.2 the crc32 instruction does the work; elsewhere a table does,
//     one byte at a time (slower than RocksDB's own on such a CPU, which x86-64 servers
//     have not been since 2008). On other architectures RocksDB keeps its own, and
//     crc32c_kind() says so.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

// RocksDB's own declarations (its util/crc32c.h, which Debian does not install). On
// x86-64 crc32c.cc defines them; elsewhere they are RocksDB's.
namespace rocksdb::crc32c {
uint32_t Extend(uint32_t init_crc, const char* data, size_t n);
uint32_t Crc32cCombine(uint32_t crc1, uint32_t crc2, size_t crc2len);
// A description RocksDB writes into its info log when a database opens.
std::string IsFastCrc32Supported();
}  // namespace rocksdb::crc32c

namespace tally {

uint32_t crc32c_extend(uint32_t crc, const char* data, size_t n);
uint32_t crc32c_combine(uint32_t crc1, uint32_t crc2, size_t crc2_length);
// crc32c_extend by the table alone, whatever the CPU (the path without SSE4.2; tests).
uint32_t crc32c_extend_table(uint32_t crc, const char* data, size_t n);
// Which CRC32C RocksDB uses in this process: "sse4.2", "table" or "rocksdb".
std::string_view crc32c_kind();
// Whether RocksDB's CRC32C gives the standard check values (RFC 3720's vectors, one
// split and combined). Cheap; Store::open calls it.
bool crc32c_self_check();

}  // namespace tally
