// The memtables of the log, state and history families: RocksDB's vector memtable,
// sorted with a comparator that compares two entries' user keys with one memcmp.
//
// A vector memtable takes inserts as appends and sorts when a background thread flushes
// it (or when an iterator reads it). RocksDB's own entry comparator decodes both
// entries, then goes through the internal-key comparator and the column family's
// comparator (two virtual calls) to a memcmp through the PLT, and counts each call in a
// thread-local: sorting the log's 32 MiB memtables that way took about 40 % of the
// flush thread, an eighth of all the CPU tally_load used. BytewiseEntryComparator orders
// two entries by their user keys' bytes, which is the bytewise comparator's order, and
// hands a pair with equal user keys to RocksDB's comparator, which orders them by
// their sequence numbers.
//
// The memtable also keeps its entries in insertion order and notes where each
// ascending run of inserts begins; once it is read-only (full, waiting for its flush),
// its iterators walk that list, sorted once by merging the runs instead of by
// std::sort. The log's records arrive as one run and the history family's as a few per
// batch, so their flushes sort little or nothing (engine/memtable.cc).
//
// The entries themselves are kept in blocks of kHugePageBytes taken from a pool that
// outlives the memtables (up to 64 MiB of blocks kept), not in RocksDB's arena; an
// entry of more than a quarter block gets memory of its own. The memtable counts that
// memory in its ApproximateMemoryUsage(), by which RocksDB decides it is full.
//
// Only for column families with the default, bytewise comparator.
#pragma once

#include <memory>

#include <rocksdb/memtablerep.h>

namespace tally {

class BytewiseEntryComparator final : public rocksdb::MemTableRep::KeyComparator {
 public:
  explicit BytewiseEntryComparator(const rocksdb::MemTableRep::KeyComparator& fallback) : fallback_(fallback) {}
  // Memtable entries: varint32 length of the internal key, then the internal key (the
  // user key, then an 8-byte trailer of sequence number and type).
  int operator()(const char* entry_a, const char* entry_b) const override;
  // An entry against an internal key.
  int operator()(const char* entry, const rocksdb::Slice& internal_key) const override;

 private:
  const rocksdb::MemTableRep::KeyComparator& fallback_;
};

// Makes RocksDB's vector memtables that sort with BytewiseEntryComparator.
std::shared_ptr<rocksdb::MemTableRepFactory> vector_memtable_factory();

}  // namespace tally
