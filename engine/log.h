// The durable store: the event log, its hash chain and the projection rows, all in
// one RocksDB database so that one WriteBatch commits them together.
//
// Column families:
//   log    the records (checksum + Envelope) in sequence order, in entries of two kinds:
//          a segment (format 3): key = big-endian first then last sequence number of
//          a run of one batch's records (16 bytes; a batch is one segment or more, see
//          kSegmentBytesTarget), value = those records framed one after another (see
//          append_frame), compressed since format 5 (engine/entry_compression.h); or,
//          in stores begun before format 3, key = big-endian sequence number (8 bytes),
//          value = one record. Both are read.
//   chain  key = big-endian first sequence of a batch,
//          value = big-endian last sequence + SHA-256 of the batch (see below)
//   state  projection rows and their checkpoints, keyed by projection
//   history  rows written once and never changed (statement entries, recorded usage
//          ids), in entries of two kinds: a pack (format 4): key = big-endian sequence
//          number of its first row, then one zero byte (9 bytes), value = rows in
//          (sequence, key) order, encoded by append_history_row, compressed since
//          format 5 (engine/entry_compression.h); or, in stores begun
//          before format 4, key = big-endian sequence number of the event that made
//          the row, then the projection's own key for it (see RowSink::put_history),
//          value = the row's. Both are read.
//
// Every batch's hash is SHA-256(previous hash || for each record: seq (8 bytes BE) ||
// length (4 bytes BE) || record bytes). The first batch chains from 32 zero bytes.
// Changing, removing or reordering any record breaks every later hash.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "engine/error.h"

namespace rocksdb {
class Env;
}

namespace tally {

using Sha256 = std::array<uint8_t, 32>;
std::string to_hex(const Sha256& hash);
Sha256 sha256(std::string_view bytes);

// Where projections write rows; implemented by the write batch and by verify's
// in-memory collectors.
class RowSink {
 public:
  virtual ~RowSink() = default;
  virtual void put(std::string_view key, std::string_view value) = 0;
  virtual void erase(std::string_view key) = 0;
  // A history row: one that event `seq` made and nothing changes afterwards (a
  // statement entry, a recorded usage id). `key` starts with the projection's
  // row_prefix() like any row; the store files it under history_key(seq, key) in the
  // history family, where rows arrive in sequence order. So each table file RocksDB
  // flushes there sorts after the ones before it and is moved down the levels without
  // being rewritten, where in the state family it overlapped every file and was
  // compacted again and again. A sink that keeps rows in memory may keep it as a row
  // like any other under history_key(seq, key), as this default does.
  virtual void put_history(uint64_t seq, std::string_view key, std::string_view value);
};
// The key of a history row as RowSink::put_history's default files it, and as stores
// before format 4 stored it: big-endian seq, then the projection's key.
std::string history_key(uint64_t seq, std::string_view key);

// A pack of history rows (format 4). A batch's history rows go into packs of about
// kHistoryPackBytesTarget each, sorted by (sequence, key), and a pack is cut only
// between two sequence numbers, so no two packs begin at the same one. One entry per
// pack rather than one per row: RocksDB's work per key (the WriteBatch record, the
// memtable insert, the flush's sort, the open's iterator step) is done once per pack;
// a usage event makes two history rows (bench/RESULTS.md, "Runs 49-50").
//
// A row in a pack: seq (8 bytes, big-endian), key length (4 bytes, little-endian),
// key, value length (4 bytes, little-endian), value.
inline constexpr size_t kHistoryPackBytesTarget = 64 << 10;
inline constexpr size_t kHistoryRowHeaderBytes = 8 + 4;
// The key of a pack whose first row has sequence number first_seq. A projection's key
// never begins with a zero byte, so no key of a single row (above) is a pack's.
std::string history_pack_key(uint64_t first_seq);
bool is_history_pack_key(std::string_view key);
// Appends one row to a pack. REQUIRES: key and value each shorter than 4 GiB.
void append_history_row(std::string* pack, uint64_t seq, std::string_view key, std::string_view value);

// Walks a pack's rows in order, checking its framing.
class HistoryPackReader {
 public:
  explicit HistoryPackReader(std::string_view pack) : pack_(pack) {}
  // The next row; false at the end of the pack or where a row does not fit in what is
  // left of it, after which malformed() is true.
  bool next(uint64_t* seq, std::string_view* key, std::string_view* value);
  bool malformed() const { return malformed_; }

 private:
  std::string_view pack_;
  size_t pos_ = 0;
  bool malformed_ = false;
};

// Log record layout: 8-byte little-endian XXH3-64 of the envelope, then the envelope.
inline constexpr size_t kRecordChecksumBytes = 8;
using RecordChecksum = std::array<char, kRecordChecksumBytes>;
// The bytes that open the record of `envelope`; the writer and verify hash a record as
// these bytes then the envelope, without building it.
RecordChecksum record_checksum(std::string_view envelope);
inline std::string_view view(const RecordChecksum& checksum) { return {checksum.data(), checksum.size()}; }
std::string encode_record(std::string_view envelope);
// Checks the checksum; on success points `envelope` into `record`.
bool decode_record(std::string_view record, std::string_view* envelope);

// A segment's value: each record framed as its length (4 bytes, little-endian), 4 zero
// bytes, the record, then zero bytes to a multiple of 8. Every frame begins at a
// multiple of 8 from the segment's start, so in a segment at an 8-aligned address each
// envelope (16 bytes into its frame) is aligned as FlatBuffers needs.
//
// A batch's records go into segments of about kSegmentBytesTarget each: LogBatch
// starts a new segment before a record once the current one holds that many bytes.
// Entries of 64 KiB rather than one per record: RocksDB's work per key (the memtable
// insert, the flush's sort and block building, the iterator's step on a replay) is
// done once per segment (bench/RESULTS.md, "Runs 30-31"). Rather than one per batch
// (megabytes): a replay reads each segment back, decompressed, copies it, checks
// each record and decodes it, and a segment of 64 KiB stays in the core's cache
// through all of that ("Runs 34-35").
inline constexpr size_t kSegmentBytesTarget = 64 << 10;
inline constexpr size_t kFrameHeaderBytes = 8;
inline constexpr size_t kRecordBytesMax = uint32_t{0xffffffff};
std::string segment_key(uint64_t first_seq, uint64_t last_seq);
// Appends one record, given as head then tail (checksum, envelope), framed.
// REQUIRES: head.size() + tail.size() <= kRecordBytesMax.
void append_frame(std::string* segment, std::string_view head, std::string_view tail);

// Walks a segment's records in order, checking the framing (not the checksums).
class SegmentReader {
 public:
  explicit SegmentReader(std::string_view segment) : segment_(segment) {}
  // The next record; false at the end of the segment or at a malformed frame (a length
  // past the end, nonzero reserved or padding bytes), after which malformed() is true.
  bool next(std::string_view* record);
  bool malformed() const { return malformed_; }

 private:
  std::string_view segment_;
  size_t pos_ = 0;
  bool malformed_ = false;
};

// One group commit under construction: log records, projection rows, and the chain
// row, written by Store::commit in one synced WriteBatch.
//
// A batch begun with Store::Chain::kLater may be filled on two threads (Engine::begin
// with its split-apply helper): the helper appends the records, and the writer puts
// its projections' rows into deferred_rows() meanwhile; only Store::seal, on the
// helper's thread once the writer is done with the batch, brings them together.
class LogBatch : public RowSink {
 public:
  ~LogBatch() override;
  // REQUIRES: seq is the next sequence number after the previous append, and the batch
  // is chained (begun with Store::Chain::kNow, or given to Store::chain since).
  void append(uint64_t seq, std::string_view envelope);
  // Rows put here go into the batch when it is sealed, after its other rows. They are
  // kept apart from the rest, so one thread may put them while another appends
  // records and puts rows of its own; seal() must happen after both are done.
  RowSink* deferred_rows();
  void put(std::string_view key, std::string_view value) override;
  void erase(std::string_view key) override;
  void put_history(uint64_t seq, std::string_view key, std::string_view value) override;
  size_t records() const { return records_; }
  size_t bytes() const;

 private:
  friend class Store;
  struct Impl;
  LogBatch();
  std::unique_ptr<Impl> impl_;
  uint64_t first_seq_ = 0;
  uint64_t last_seq_ = 0;
  size_t records_ = 0;
  bool sealed_ = false;
  Sha256 hash_{};  // the chain's hash after this batch, once sealed
};

struct StoreOptions {
  std::string path;
  bool create_if_missing = true;
  // For fault-injection tests; null means the default environment.
  rocksdb::Env* env = nullptr;
};

class Store {
 public:
  // Opens (or creates) the store at options.path and finds the log's head. A store of
  // an earlier format is upgraded as it opens:
  //   tally-log-4 (segments and packs stored uncompressed): marked format 5; its
  //     entries are read as they are, and new batches' are compressed.
  //   tally-log-3 (a history entry per row): marked format 5; its rows are read as
  //     they are, and new batches write their history rows in packs.
  //   tally-log-2 (a log entry per record): marked format 5; its entries are read as
  //     they are, and new batches are written as segments.
  //   tally-log-1 (history rows in the state family): its projection rows are dropped,
  //     in one synced write, and ProjectionSet::load rebuilds them from the log, which
  //     is unchanged.
  static Status open(const StoreOptions& options, std::unique_ptr<Store>* store);
  ~Store();

  // The durable head: the last record and the chain's hash as of the last batch
  // written.
  uint64_t last_seq() const { return last_seq_; }
  const Sha256& head_hash() const { return head_hash_; }
  // The head as of the last batch sealed, written or not: where the next batch
  // begins. The same as last_seq() while no sealed batch waits for its write.
  uint64_t sealed_seq() const;
  // After a failed write the store refuses every further write until reopened.
  bool failed() const;

  // A batch chained to the head of the batches sealed so far (kNow), or to be chained
  // later with chain() (kLater): a batch may begin while the one before it is still
  // being filled on another thread, whose hash it chains from once that one is sealed.
  enum class Chain : uint8_t { kNow, kLater };
  std::unique_ptr<LogBatch> begin_batch(Chain chain = Chain::kNow);
  // Chains a batch begun with Chain::kLater to the head of the batches sealed so far.
  // REQUIRES: called once, before the batch's first append().
  void chain(LogBatch* batch);
  // Writes the batch with sync = true: seal(), write() and complete() in turn. On
  // success the head moves to the batch; on failure nothing is acknowledged, the store
  // is marked failed and stays so. Either way the batch is spent: it must not be
  // appended to or committed again (its buffer goes to the next batch).
  Status commit(LogBatch* batch);

  // commit() in three steps, so that a writer may execute its next batch while this
  // one is written (Engine::begin). Batches are sealed, written and completed in the
  // order they began; a batch begun after another is sealed only after it.
  //   seal      finishes the chain hash and adds the chain row; the sealed head moves
  //             to the batch, so the next batch chains from it. On a failed store it
  //             only marks the batch sealed: it is never written (Committer).
  //
  // begin_batch, chain, seal and complete, and sealed_seq() and failed(), may be called
  // from two threads (the engine's writer and its split-apply helper): they take a
  // lock. Each batch is still sealed by one thread, in order.
  //   write     the write of a sealed batch, synced if `sync`. It uses nothing of the
  //             Store but the database, so it may run on another thread while the owner
  //             goes on with begin_batch and seal (never with commit or a second write).
  //             With sync = false the batch reaches the WAL and the memtables but not
  //             the disk: it is durable only once a later synced write has succeeded
  //             (RocksDB syncs every earlier WAL write with it). Until then it must
  //             not be completed as written.
  //   complete  on the owner's thread, with write's status: the durable head moves to
  //             the batch, or the store is marked failed. The batch is spent.
  void seal(LogBatch* batch);
  Status write(LogBatch* batch, bool sync) const;
  void complete(LogBatch* batch, const Status& written);

  // Calls `visit(seq, envelope)` for each record with from_seq <= seq <= to_seq in
  // order, after checking each checksum; stops early when visit returns false. Each
  // envelope is kEnvelopeAlignment-aligned and valid only during its call.
  // Returns storage_error naming the sequence number of a corrupt record.
  Status read_log(uint64_t from_seq, uint64_t to_seq,
                  const std::function<bool(uint64_t seq, std::string_view envelope)>& visit) const;
  // Calls `visit(first_seq, last_seq, hash)` for each chain row in order.
  Status read_chain(const std::function<bool(uint64_t first_seq, uint64_t last_seq, const Sha256& hash)>& visit) const;
  // Calls `visit(key, value)` for each state row whose key starts with prefix.
  Status read_rows(std::string_view prefix, const std::function<void(std::string_view key, std::string_view value)>& visit) const;
  // The same for several prefixes in turn, `visit(i, key, value)` naming prefixes[i],
  // through one iterator. Prefer it to several read_rows calls: each new iterator
  // sorts a copy of the unflushed rows (the vector memtable), which dominated verify
  // and reopening a large store.
  Status read_rows(std::span<const std::string_view> prefixes,
                   const std::function<void(size_t prefix, std::string_view key, std::string_view value)>& visit) const;
  Status get_row(std::string_view key, std::string* value, bool* found) const;
  // Calls `visit(seq, key, value)` for each history row in sequence order (rows of one
  // event in key order); `key` is the projection's key, as put_history was given it.
  // Returns storage_error if a key is too short to hold a sequence number, or a pack is
  // malformed or out of order.
  Status read_history(const std::function<void(uint64_t seq, std::string_view key, std::string_view value)>& visit) const;

  // Replaces every state and history row with what `fill` writes (used by `tally
  // replay`), in one synced write.
  Status replace_rows(const std::function<void(RowSink*)>& fill);

 private:
  struct Impl;
  Store();
  Status find_head();
  // Drops every projection row of a format-1 store and marks it with this format.
  Status upgrade_format1();
  // Writes this format's row, synced: for a new store, or one of format 2.
  Status write_format();

  std::unique_ptr<Impl> impl_;
  uint64_t last_seq_ = 0;
  Sha256 head_hash_{};
  uint64_t sealed_seq_ = 0;  // guarded by the lock of begin_batch etc. (above)
  Sha256 sealed_hash_{};     // guarded likewise
  bool failed_ = false;      // guarded likewise
};

// Big-endian integer keys sort in numeric order.
std::string be64(uint64_t value);
uint64_t read_be64(std::string_view bytes);

// Chain hashing, shared by the writer and verify.
class ChainHasher {
 public:
  explicit ChainHasher(const Sha256& previous);
  ~ChainHasher();
  ChainHasher(const ChainHasher&) = delete;
  ChainHasher& operator=(const ChainHasher&) = delete;
  void add(uint64_t seq, std::string_view record);
  // The same for a record given in two pieces, head then tail.
  void add(uint64_t seq, std::string_view head, std::string_view tail);
  Sha256 finish();

 private:
  void* context_;  // EVP_MD_CTX*
};

}  // namespace tally
