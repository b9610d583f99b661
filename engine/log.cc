#include "engine/log.h"

#include <openssl/evp.h>
#include <rocksdb/db.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
// XXH3 compiled here, with this build's flags, rather than called in libxxhash: it is
// in the path of every record written and read back.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <optional>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "engine/assert.h"
#include "engine/crc32c.h"
#include "engine/entry_compression.h"
#include "engine/event_format.h"
#include "engine/memtable.h"

namespace tally {
namespace {

constexpr const char* kLogFamily = "log";
constexpr const char* kChainFamily = "chain";
constexpr const char* kStateFamily = "state";
constexpr const char* kHistoryFamily = "history";
// The state row that names the store format, written when the store is created.
constexpr std::string_view kFormatKey = "meta/format";
constexpr std::string_view kFormat = "tally-log-5";
// Format 4 stored segments and packs uncompressed. Format 5 reads them as they are
// (engine/entry_compression.h tells the two apart by the value).
constexpr std::string_view kFormat4 = "tally-log-4";
// Format 3 kept a history entry per row. Format 4 reads those entries as they are.
constexpr std::string_view kFormat3 = "tally-log-3";
// Format 2 wrote a log entry per record. Format 3 reads those entries as they are.
constexpr std::string_view kFormat2 = "tally-log-2";
// Format 1 kept history rows in the state family. Its log and chain are format 2's;
// Store::open drops its projection rows, which are then rebuilt from the log.
constexpr std::string_view kFormat1 = "tally-log-1";
// The largest write buffer kept for the next batch after a commit.
constexpr size_t kSpareBatchBytesMax = 16 << 20;

Status storage_error(const rocksdb::Status& status, std::string_view what) {
  return Error(ErrorCode::kStorageError, fmt::format("{}: {}", what, status.ToString()));
}

rocksdb::Slice slice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
std::string_view view(const rocksdb::Slice& s) { return std::string_view(s.data(), s.size()); }

// Table files for a family read as whole runs of keys (see Store::open).
std::shared_ptr<rocksdb::TableFactory> run_table_factory() {
  rocksdb::BlockBasedTableOptions table;
  table.block_size = 64 << 10;
  return std::shared_ptr<rocksdb::TableFactory>(rocksdb::NewBlockBasedTableFactory(table));
}

}  // namespace

std::string to_hex(const Sha256& hash) {
  std::string out;
  out.reserve(64);
  for (uint8_t byte : hash) out += fmt::format("{:02x}", byte);
  return out;
}

Sha256 sha256(std::string_view bytes) {
  Sha256 out{};
  unsigned int size = 0;
  EVP_Digest(bytes.data(), bytes.size(), out.data(), &size, EVP_sha256(), nullptr);
  return out;
}

std::string be64(uint64_t value) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
  return out;
}

std::string history_key(uint64_t seq, std::string_view key) {
  std::string out = be64(seq);
  out.append(key);
  return out;
}

void RowSink::put_history(uint64_t seq, std::string_view key, std::string_view value) { put(history_key(seq, key), value); }

std::string history_pack_key(uint64_t first_seq) {
  std::string key = be64(first_seq);
  key += '\0';
  return key;
}

bool is_history_pack_key(std::string_view key) { return key.size() == 9 && key[8] == '\0'; }

namespace {

void append_u32(std::string* out, size_t value) {
  TALLY_ASSERT(value <= UINT32_MAX);
  const auto v = static_cast<uint32_t>(value);
  out->append(reinterpret_cast<const char*>(&v), sizeof v);  // little-endian hosts only (x86-64, arm64)
}

uint32_t read_u32(const char* at) {
  uint32_t v;
  std::memcpy(&v, at, sizeof v);
  return v;
}

}  // namespace

void append_history_row(std::string* pack, uint64_t seq, std::string_view key, std::string_view value) {
  pack->append(be64(seq));
  append_u32(pack, key.size());
  pack->append(key);
  append_u32(pack, value.size());
  pack->append(value);
}

bool HistoryPackReader::next(uint64_t* seq, std::string_view* key, std::string_view* value) {
  if (malformed_ || pos_ == pack_.size()) return false;
  const std::string_view rest = pack_.substr(pos_);
  // Sizes are compared with what is left, never added to a position first: a length
  // near 4 GiB cannot wrap around.
  if (rest.size() < kHistoryRowHeaderBytes) return malformed_ = true, false;
  const size_t key_size = read_u32(rest.data() + 8);
  if (rest.size() - kHistoryRowHeaderBytes < key_size + size_t{4}) return malformed_ = true, false;
  const size_t value_at = kHistoryRowHeaderBytes + key_size + 4;
  const size_t value_size = read_u32(rest.data() + value_at - 4);
  if (rest.size() - value_at < value_size) return malformed_ = true, false;
  *seq = read_be64(rest);
  *key = rest.substr(kHistoryRowHeaderBytes, key_size);
  *value = rest.substr(value_at, value_size);
  pos_ += value_at + value_size;
  return true;
}

uint64_t read_be64(std::string_view bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < 8 && i < bytes.size(); ++i) value = (value << 8) | static_cast<uint8_t>(bytes[i]);
  return value;
}

RecordChecksum record_checksum(std::string_view envelope) {
  const uint64_t checksum = XXH3_64bits(envelope.data(), envelope.size());
  RecordChecksum bytes;
  std::memcpy(bytes.data(), &checksum, sizeof checksum);  // little-endian hosts only (x86-64, arm64)
  return bytes;
}

std::string encode_record(std::string_view envelope) {
  std::string record(view(record_checksum(envelope)));
  record.append(envelope);
  return record;
}

bool decode_record(std::string_view record, std::string_view* envelope) {
  if (record.size() < kRecordChecksumBytes) return false;
  uint64_t stored;
  std::memcpy(&stored, record.data(), sizeof stored);
  const std::string_view body = record.substr(kRecordChecksumBytes);
  if (XXH3_64bits(body.data(), body.size()) != stored) return false;
  *envelope = body;
  return true;
}

// ---- Segments ------------------------------------------------------------------------

std::string segment_key(uint64_t first_seq, uint64_t last_seq) { return be64(first_seq) + be64(last_seq); }

void append_frame(std::string* segment, std::string_view head, std::string_view tail) {
  const size_t length = head.size() + tail.size();
  TALLY_ASSERT(length <= kRecordBytesMax && segment->size() % 8 == 0);
  char header[kFrameHeaderBytes] = {};
  for (size_t i = 0; i < 4; ++i) header[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  segment->append(header, sizeof header);
  segment->append(head);
  segment->append(tail);
  segment->append((8 - length % 8) % 8, '\0');
}

bool SegmentReader::next(std::string_view* record) {
  if (malformed_ || pos_ == segment_.size()) return false;
  const auto bad = [this] {
    malformed_ = true;
    return false;
  };
  if (segment_.size() - pos_ < kFrameHeaderBytes) return bad();
  const auto* header = reinterpret_cast<const uint8_t*>(segment_.data() + pos_);
  size_t length = 0;
  for (size_t i = 0; i < 4; ++i) length |= size_t{header[i]} << (8 * i);
  if ((header[4] | header[5] | header[6] | header[7]) != 0) return bad();
  const size_t padded = length + (8 - length % 8) % 8;
  if (segment_.size() - pos_ - kFrameHeaderBytes < padded) return bad();
  *record = segment_.substr(pos_ + kFrameHeaderBytes, length);
  for (size_t i = length; i < padded; ++i) {
    if (segment_[pos_ + kFrameHeaderBytes + i] != '\0') return bad();
  }
  pos_ += kFrameHeaderBytes + padded;
  return true;
}

// ---- ChainHasher ---------------------------------------------------------------------

ChainHasher::ChainHasher(const Sha256& previous) : context_(EVP_MD_CTX_new()) {
  auto* ctx = static_cast<EVP_MD_CTX*>(context_);
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, previous.data(), previous.size());
}

ChainHasher::~ChainHasher() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(context_)); }

void ChainHasher::add(uint64_t seq, std::string_view record) { add(seq, record, {}); }

void ChainHasher::add(uint64_t seq, std::string_view head, std::string_view tail) {
  auto* ctx = static_cast<EVP_MD_CTX*>(context_);
  uint8_t header[12];
  for (int i = 0; i < 8; ++i) header[i] = static_cast<uint8_t>(seq >> (56 - 8 * i));
  const auto length = static_cast<uint32_t>(head.size() + tail.size());
  for (int i = 0; i < 4; ++i) header[8 + i] = static_cast<uint8_t>(length >> (24 - 8 * i));
  EVP_DigestUpdate(ctx, header, sizeof header);
  EVP_DigestUpdate(ctx, head.data(), head.size());
  if (!tail.empty()) EVP_DigestUpdate(ctx, tail.data(), tail.size());
}

Sha256 ChainHasher::finish() {
  Sha256 out{};
  unsigned int size = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(context_), out.data(), &size);
  return out;
}

// ---- LogBatch ------------------------------------------------------------------------

// LogBatch::deferred_rows(): the rows kept in order, to be put into the batch at seal().
class DeferredRows final : public RowSink {
 public:
  void put(std::string_view key, std::string_view value) override { rows_.push_back({Kind::kPut, 0, std::string(key), std::string(value)}); }
  void erase(std::string_view key) override { rows_.push_back({Kind::kErase, 0, std::string(key), {}}); }
  void put_history(uint64_t seq, std::string_view key, std::string_view value) override {
    rows_.push_back({Kind::kHistory, seq, std::string(key), std::string(value)});
  }
  // Puts every row into `sink`, in the order given, and forgets them.
  void move_to(RowSink* sink) {
    for (const Row& row : rows_) {
      switch (row.kind) {
        case Kind::kPut: sink->put(row.key, row.value); break;
        case Kind::kErase: sink->erase(row.key); break;
        case Kind::kHistory: sink->put_history(row.seq, row.key, row.value); break;
      }
    }
    rows_.clear();
  }

 private:
  enum class Kind : uint8_t { kPut, kErase, kHistory };
  struct Row {
    Kind kind;
    uint64_t seq;
    std::string key;
    std::string value;
  };
  std::vector<Row> rows_;
};

struct LogBatch::Impl {
  std::unique_ptr<rocksdb::WriteBatch> batch;  // null once committed
  // The frames of the segment being filled: put into `batch` once it holds
  // kSegmentBytesTarget bytes (by append(), on the thread appending), the last at
  // seal(). Put as each fills, a segment is copied while it is still in the core's
  // cache, and off the writer in a batch whose records the split-apply helper
  // appends; put at seal(), a batch's megabytes were copied on the writer in one go.
  std::string segment;
  uint64_t segment_first = 0;                  // the seq of its first record
  std::string compressed_segment;              // put_segment's buffer (engine/entry_compression.h)
  std::string compressed_pack;                 // put_history_packs' buffer
  rocksdb::Status sealed;                      // the segments' puts: write() refuses the batch if one failed
  void put_segment(uint64_t last_seq);
  // History rows in the order put, each encoded as a pack holds it, and for each its
  // seq and where it begins in `history_bytes`. write() files them in packs.
  std::string history_bytes;
  std::vector<std::pair<uint64_t, size_t>> history_rows;
  std::string sorted_history;  // write()'s buffer when the rows came out of order
  // Set for a batch that holds rows only (Store::replace_rows): its history rows are
  // put as they come, an entry each, never held for packs. A rebuild puts every
  // history row of the store in one batch, and holding them twice would double that.
  bool history_unpacked = false;

  rocksdb::Status put_history_packs(uint64_t first_seq, uint64_t last_seq);
  std::optional<ChainHasher> hasher;  // from the previous batch's hash, once chained
  DeferredRows deferred;
  rocksdb::ColumnFamilyHandle* log = nullptr;
  rocksdb::ColumnFamilyHandle* state = nullptr;
  rocksdb::ColumnFamilyHandle* history = nullptr;
};

LogBatch::LogBatch() : impl_(std::make_unique<Impl>()) {}
LogBatch::~LogBatch() = default;

void LogBatch::Impl::put_segment(uint64_t last_seq) {
  // RocksDB refuses a value of 4 GiB or more, and a segment is kSegmentBytesTarget plus
  // at most one record, so none comes near; but should a put fail, write() refuses the
  // batch and the store turns read-only, rather than commit a chain row without its
  // records.
  const std::string_view stored = compress_entry(segment, &compressed_segment);
  const rocksdb::Status status = batch->Put(log, slice(segment_key(segment_first, last_seq)), slice(stored));
  if (sealed.ok()) sealed = status;  // the first failure, if any
  segment.clear();
}

void LogBatch::append(uint64_t seq, std::string_view envelope) {
  if (records_ == 0) {
    first_seq_ = seq;
    impl_->segment_first = seq;
  }
  last_seq_ = seq;
  ++records_;
  // The record (checksum, then envelope) is hashed and framed in two parts, without a
  // copy of its own: this runs for every event.
  const RecordChecksum checksum = record_checksum(envelope);
  const std::string_view head = view(checksum);
  TALLY_ASSERT(impl_->hasher.has_value());  // chained
  impl_->hasher->add(seq, head, envelope);
  if (impl_->segment.size() >= kSegmentBytesTarget) {
    impl_->put_segment(seq - 1);
    impl_->segment_first = seq;
  }
  append_frame(&impl_->segment, head, envelope);
}

RowSink* LogBatch::deferred_rows() { return &impl_->deferred; }

void LogBatch::put(std::string_view key, std::string_view value) { impl_->batch->Put(impl_->state, slice(key), slice(value)); }

void LogBatch::erase(std::string_view key) { impl_->batch->Delete(impl_->state, slice(key)); }

namespace {

// Puts one history row as an entry of its own, under history_key(seq, key).
rocksdb::Status put_history_entry(rocksdb::WriteBatch* batch, rocksdb::ColumnFamilyHandle* history, uint64_t seq,
                                  std::string_view key, std::string_view value) {
  const std::string seq_key = be64(seq);
  const rocksdb::Slice key_parts[] = {slice(seq_key), slice(key)};
  const rocksdb::Slice value_part = slice(value);
  return batch->Put(history, rocksdb::SliceParts(key_parts, 2), rocksdb::SliceParts(&value_part, 1));
}

// A row as append_history_row encoded it, read back from bytes known to hold it whole.
struct EncodedRow {
  std::string_view key;
  std::string_view value;
  size_t size;  // of the whole row, header included
};
EncodedRow encoded_row(const char* row) {
  const std::string_view key(row + kHistoryRowHeaderBytes, read_u32(row + 8));
  const size_t value_at = kHistoryRowHeaderBytes + key.size() + 4;
  const std::string_view value(row + value_at, read_u32(row + value_at - 4));
  return {key, value, value_at + value.size()};
}

}  // namespace

void LogBatch::put_history(uint64_t seq, std::string_view key, std::string_view value) {
  // A projection's key begins with its row prefix: never empty, never a zero byte, so
  // a row's own entry can never be taken for a pack (history_pack_key).
  TALLY_ASSERT(!key.empty() && key.front() != '\0');
  if (impl_->history_unpacked) {
    put_history_entry(impl_->batch.get(), impl_->history, seq, key, value);
    return;
  }
  impl_->history_rows.emplace_back(seq, impl_->history_bytes.size());
  append_history_row(&impl_->history_bytes, seq, key, value);
}

size_t LogBatch::bytes() const { return impl_->batch->GetDataSize() + impl_->segment.size() + impl_->history_bytes.size(); }

// Puts the history rows of the batch's own events, [first_seq, last_seq], into packs,
// in (seq, key) order; of rows put twice under one seq and key, the last. Rows of
// earlier events (an open's replay making them again, a rebuild's dump, the repair of
// a malformed row) are put as entries of their own, as format 3 did: a pack never
// shares a sequence number with another, and such an entry replaces the row it
// repeats as read_history reads them. The engine puts each projection's rows in
// sequence order, one projection's after another's, so the rows usually need sorting:
// only their (seq, offset) pairs are sorted (ties, the rows of one event, by key), and
// then copied once in that order. Returns the first failed put's status, if any.
rocksdb::Status LogBatch::Impl::put_history_packs(uint64_t first_seq, uint64_t last_seq) {
  auto& rows = history_rows;
  if (rows.empty()) return rocksdb::Status::OK();
  const char* bytes = history_bytes.data();
  rocksdb::Status status;
  const auto ours = [&](uint64_t seq) { return first_seq <= seq && seq <= last_seq; };
  // Whether the rows left for packs lie end to end in history_bytes.
  bool contiguous = true;
  if (!std::all_of(rows.begin(), rows.end(), [&](const auto& row) { return ours(row.first); })) {
    contiguous = false;
    size_t kept = 0;
    for (const auto& [seq, offset] : rows) {
      if (ours(seq)) {
        rows[kept++] = {seq, offset};
        continue;
      }
      const EncodedRow row = encoded_row(bytes + offset);
      const rocksdb::Status put = put_history_entry(batch.get(), history, seq, row.key, row.value);
      if (status.ok()) status = put;
    }
    rows.resize(kept);
    if (rows.empty()) return status;
  }
  const auto before = [&](const std::pair<uint64_t, size_t>& a, const std::pair<uint64_t, size_t>& b) {
    if (a.first != b.first) return a.first < b.first;
    return encoded_row(bytes + a.second).key < encoded_row(bytes + b.second).key;
  };
  std::string_view packed = history_bytes;
  const auto out_of_order = [&](const auto& a, const auto& b) { return !before(a, b); };
  if (!contiguous || std::adjacent_find(rows.begin(), rows.end(), out_of_order) != rows.end()) {
    std::stable_sort(rows.begin(), rows.end(), before);
    std::string& sorted = sorted_history;
    sorted.clear();
    size_t kept = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      // A row put again under the same seq and key replaces the earlier one.
      if (i + 1 < rows.size() && !before(rows[i], rows[i + 1])) continue;
      const char* row = bytes + rows[i].second;
      rows[kept++] = {rows[i].first, sorted.size()};
      sorted.append(row, encoded_row(row).size);
    }
    rows.resize(kept);
    packed = sorted;
  }
  // Cut before a row whose seq differs from the last one's, once the pack is full.
  size_t begin = 0;
  uint64_t first = rows.front().first;
  const auto put = [&](size_t end) {
    const std::string_view stored = compress_entry(packed.substr(begin, end - begin), &compressed_pack);
    const rocksdb::Status put = batch->Put(history, slice(history_pack_key(first)), slice(stored));
    if (status.ok()) status = put;
  };
  for (size_t i = 1; i < rows.size(); ++i) {
    if (rows[i].first != rows[i - 1].first && rows[i].second - begin >= kHistoryPackBytesTarget) {
      put(rows[i].second);
      begin = rows[i].second;
      first = rows[i].first;
    }
  }
  put(packed.size());
  return status;
}

// ---- Store ---------------------------------------------------------------------------

struct Store::Impl {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::ColumnFamilyHandle* log = nullptr;
  rocksdb::ColumnFamilyHandle* chain = nullptr;
  rocksdb::ColumnFamilyHandle* state = nullptr;
  rocksdb::ColumnFamilyHandle* history = nullptr;
  // The last committed batch, emptied, whose buffers the next batch reuses.
  std::unique_ptr<rocksdb::WriteBatch> spare;
  std::string spare_segment;
  std::string spare_history_bytes;
  std::vector<std::pair<uint64_t, size_t>> spare_history_rows;
  std::string spare_sorted_history;
  // Guards the sealed head and failed_, and the spare buffers (log.h: begin_batch etc.
  // may be called from two threads).
  mutable std::mutex lock;

  ~Impl() {
    for (auto* handle : handles) db->DestroyColumnFamilyHandle(handle);
  }
};

Store::Store() : impl_(std::make_unique<Impl>()) {}

Store::~Store() {
  if (impl_->db == nullptr || failed_) return;
  // A clean close writes every memtable out, so the next open has no WAL to replay.
  // Replaying it (reading, checking each record's CRC, inserting into memtables that
  // recovery then flushes anyway) took the first open after tally_load's 2M events
  // 4.2 s, against 1.6 s for the opens after it. After a failed write nothing more is
  // written: the next open recovers from the WAL.
  rocksdb::FlushOptions flush;
  flush.wait = true;
  flush.allow_write_stall = true;
  const rocksdb::Status flushed = impl_->db->Flush(flush, impl_->handles);
  if (!flushed.ok()) spdlog::warn("the store's memtables were not written at close; the next open replays the WAL: {}", flushed.ToString());
}

Status Store::open(const StoreOptions& options, std::unique_ptr<Store>* out) {
  // RocksDB checks every WAL record's CRC32C as it recovers, and under point-in-time
  // recovery drops the records from the first that fails: a CRC32C with wrong answers
  // would lose acknowledged batches. This call also makes the linker take ours
  // (engine/crc32c.h).
  if (!crc32c_self_check()) {
    return Error(ErrorCode::kStorageError, fmt::format("the CRC32C in use ({}) fails its check values; not opening {}", crc32c_kind(), options.path));
  }
  std::unique_ptr<Store> store(new Store());
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = options.create_if_missing;
  // A store of format 1 has no history family yet: it is created as the store opens.
  db_options.create_missing_column_families = true;
  // Every acknowledged write is synced explicitly (WriteOptions::sync); a torn WAL tail
  // can only hold unacknowledged batches, so recovery drops it.
  db_options.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  db_options.paranoid_checks = true;
  db_options.max_background_jobs = 2;
  db_options.allow_concurrent_memtable_write = false;  // one writer; required by the vector memtable
  db_options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  db_options.keep_log_file_num = 3;
  // A WAL file is kept until every family's data in it is flushed. The chain and state
  // families fill their memtables slowly, so by default (four times all the memtables'
  // room, about 1.8 GB here) the WAL grew past 1 GB in tally_load's 2M events: disk,
  // and a crash then replays all of it at the next open. Past this total, RocksDB
  // flushes the families that hold the oldest WAL file back.
  db_options.max_total_wal_size = 256 << 20;
  if (options.env != nullptr) db_options.env = options.env;

  // Writes only ever append (log) or overwrite (state) and the writer never reads back
  // from the memtable on the hot path, so a vector memtable fits: inserts are appends,
  // and the sort happens when a background thread flushes it, with our comparator
  // (engine/memtable.h: 2.6 % less CPU for tally_load, median of six A/B pairs).
  //
  // LZ4 for the state family's table files rather than RocksDB's default, Snappy: the
  // files came out the same size and the flush no slower, and rebuilding the
  // projections from a log of 1M events took 12 % less time (medians of seven A/B
  // pairs). The log's segments and the history's packs are compressed before they are
  // put (engine/entry_compression.h), so those two families' table files are not
  // compressed again; a value written uncompressed (by a store before format 5, or one
  // that LZ4 does not shrink) stays so in them.
  //
  // Memtables of 32 MiB: with 64 MiB and the pipelined commit, the daemon peaked at
  // 1,023-1,067 MiB after 10M usage events (bench/memory.sh), past SPEC's 1 GiB. The log
  // may hold three (one filling, two waiting for or in their flush): with two, a full
  // memtable often had to wait for the other's flush, and that write stall took the
  // commit's p99 from 60 to 150-300 ms in tally_load. Three gave +9 % events/s and a
  // p99 of 84-124 ms; the daemon peaked at 963 MiB.
  //
  // The log and history families are read as whole runs (a replay, an open), never a
  // key at a time on a hot path, so their table files use blocks of 64 KiB rather than
  // RocksDB's 4 KiB: fewer blocks to find and read. When RocksDB still compressed them
  // (until format 5), LZ4 also found more to share in each: on tally_load's 2M-event
  // store the files came out 13 % smaller, rebuilding the projections took 5 % less time
  // and opening the store 13 % less (medians of eight A/B pairs; bench/RESULTS.md,
  // "Runs 28-29").
  rocksdb::ColumnFamilyOptions log_options;
  log_options.write_buffer_size = 32 << 20;
  log_options.max_write_buffer_number = 3;
  log_options.compression = rocksdb::kNoCompression;
  log_options.memtable_factory = vector_memtable_factory();
  log_options.table_factory = run_table_factory();
  rocksdb::ColumnFamilyOptions state_options;
  // 16 MiB: since history rows have a family of their own (below), the state family is
  // written far less, and a third family's memtables took the daemon's peak after 10M
  // events (bench/memory.sh) to 992 MiB with 32 MiB here; 942 MiB with 16.
  state_options.write_buffer_size = 16 << 20;
  // The state family (usage cells, balances, and until format 2 a row for every
  // statement entry and usage id) is read only when the store is opened or verified,
  // and its keys are spread over every workspace, so each table file the flush writes
  // overlaps all of level 1. Compacting level 0 into level 1 after the default 4 files
  // rewrote level 1 every 4 flushes: in tally_load, 3M usage events took 3.9 s of CPU in the state's
  // flushes and 3.4 s in its compactions (2.4 µs an event), and in the daemon both cores
  // are busy. Compacting after 16 files, and writing level 0 uncompressed (it is soon
  // compacted into level 1, compressed), gave HTTP ingest after 4M binary-protocol
  // events 152-171k events/s instead of 127-132k. Writes slow down only once level 0
  // holds 32 files (about 1 GB).
  state_options.compression = rocksdb::kLZ4Compression;
  state_options.compression_per_level = {rocksdb::kNoCompression, rocksdb::kLZ4Compression};
  state_options.level0_file_num_compaction_trigger = 16;
  state_options.level0_slowdown_writes_trigger = 32;
  state_options.level0_stop_writes_trigger = 48;
  state_options.memtable_factory = vector_memtable_factory();

  // History rows arrive in sequence order, a batch's after the batch before's, like
  // the log's records: each table file the flush writes sorts after every older one, so
  // RocksDB moves it down the levels without rewriting it. In the state family these
  // rows were most of what its flushes and compactions rewrote: on a fresh daemon, 7M
  // events over the binary protocol then 3M over HTTP measured 209-226k and 158-163k
  // events/s with this family, against 194-209k and 146-151k (four alternating pairs).
  // (With these rows not written at all: 250-262k and 186-193k, two runs; what is left
  // is their share of the WAL, the memtables and the flush.)
  rocksdb::ColumnFamilyOptions history_options;
  history_options.write_buffer_size = 32 << 20;
  history_options.compression = rocksdb::kNoCompression;
  history_options.memtable_factory = vector_memtable_factory();
  history_options.table_factory = run_table_factory();

  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
      {kLogFamily, log_options},
      {kChainFamily, rocksdb::ColumnFamilyOptions()},
      {kStateFamily, state_options},
      {kHistoryFamily, history_options},
  };
  rocksdb::DB* db = nullptr;
  rocksdb::Status status = rocksdb::DB::Open(db_options, options.path, families, &store->impl_->handles, &db);
  if (!status.ok()) return storage_error(status, fmt::format("cannot open the store at {}", options.path));
  store->impl_->db.reset(db);
  store->impl_->log = store->impl_->handles[1];
  store->impl_->chain = store->impl_->handles[2];
  store->impl_->state = store->impl_->handles[3];
  store->impl_->history = store->impl_->handles[4];

  std::string format;
  bool found = false;
  if (Status s = store->get_row(kFormatKey, &format, &found); !s.ok()) return s;
  if (!found || format == kFormat4 || format == kFormat3 || format == kFormat2) {
    if (Status s = store->write_format(); !s.ok()) return s;
  } else if (format == kFormat1) {
    if (Status s = store->upgrade_format1(); !s.ok()) return s;
  } else if (format != kFormat) {
    return Error(ErrorCode::kStorageError, fmt::format("{} holds format \"{}\"; this tally reads \"{}\"", options.path, format, kFormat));
  }
  if (Status s = store->find_head(); !s.ok()) return s;
  *out = std::move(store);
  return Status::Ok();
}

Status Store::find_head() {
  rocksdb::ReadOptions read;
  std::unique_ptr<rocksdb::Iterator> log(impl_->db->NewIterator(read, impl_->log));
  log->SeekToLast();
  if (!log->status().ok()) return storage_error(log->status(), "cannot read the log");
  last_seq_ = 0;
  if (log->Valid()) {
    const std::string_view key = view(log->key());
    if (key.size() != 8 && key.size() != 16) return Error(ErrorCode::kStorageError, "the log's last key is malformed");
    last_seq_ = read_be64(key.substr(key.size() - 8));
  }

  std::unique_ptr<rocksdb::Iterator> chain(impl_->db->NewIterator(read, impl_->chain));
  chain->SeekToLast();
  if (!chain->status().ok()) return storage_error(chain->status(), "cannot read the chain");
  uint64_t chained_to = 0;
  head_hash_ = Sha256{};
  if (chain->Valid()) {
    const std::string_view value = view(chain->value());
    if (value.size() != 8 + 32) return Error(ErrorCode::kStorageError, "the last chain row is malformed");
    chained_to = read_be64(value);
    std::memcpy(head_hash_.data(), value.data() + 8, 32);
  }
  // Records and their chain row are written in one batch, so they always agree.
  if (chained_to != last_seq_) {
    return Error(ErrorCode::kStorageError,
                 fmt::format("the log ends at {} but the hash chain at {}: the store was altered", last_seq_, chained_to));
  }
  sealed_seq_ = last_seq_;
  sealed_hash_ = head_hash_;
  return Status::Ok();
}

uint64_t Store::sealed_seq() const {
  std::lock_guard lock(impl_->lock);
  return sealed_seq_;
}

bool Store::failed() const {
  std::lock_guard lock(impl_->lock);
  return failed_;
}

std::unique_ptr<LogBatch> Store::begin_batch(Chain chain) {
  std::unique_ptr<LogBatch> batch(new LogBatch());
  std::lock_guard lock(impl_->lock);
  if (chain == Chain::kNow) batch->impl_->hasher.emplace(sealed_hash_);
  batch->impl_->batch = impl_->spare != nullptr ? std::move(impl_->spare) : std::make_unique<rocksdb::WriteBatch>();
  batch->impl_->segment = std::move(impl_->spare_segment);
  batch->impl_->segment.clear();
  batch->impl_->history_bytes = std::move(impl_->spare_history_bytes);
  batch->impl_->history_bytes.clear();
  batch->impl_->history_rows = std::move(impl_->spare_history_rows);
  batch->impl_->history_rows.clear();
  batch->impl_->sorted_history = std::move(impl_->spare_sorted_history);
  batch->impl_->log = impl_->log;
  batch->impl_->state = impl_->state;
  batch->impl_->history = impl_->history;
  return batch;
}

void Store::chain(LogBatch* batch) {
  std::lock_guard lock(impl_->lock);
  TALLY_ASSERT(!batch->impl_->hasher.has_value() && batch->records_ == 0);
  batch->impl_->hasher.emplace(sealed_hash_);
}

Status Store::commit(LogBatch* batch) {
  if (failed()) {
    complete(batch, Status::Ok());  // spends the batch; a failed store stays failed
    return Error(ErrorCode::kReadOnly, "the store refused writes after an earlier write failure");
  }
  seal(batch);
  const Status written = write(batch, true);  // synced: commit answers once it is durable
  complete(batch, written);
  return written;
}

void Store::seal(LogBatch* batch) {
  // The whole seal holds the lock: a writer beginning its next batch meanwhile waits
  // for it. Doing the batch's own work (its deferred rows, last segment, hash) outside
  // the lock, so that the writer did not wait, measured slower: tally_load --events
  // 3000000, fourteen alternating pairs, faster in 4 (bench/RESULTS.md, "Runs 69–72").
  // On two busy cores the writer gains nothing by running ahead of the helper.
  std::lock_guard lock(impl_->lock);
  TALLY_ASSERT(batch->impl_->batch != nullptr && !batch->sealed_);  // a batch is sealed once
  batch->sealed_ = true;
  batch->hash_ = sealed_hash_;
  // A batch begun before a write failed, and sealed after: it is never written (the
  // Committer fails every batch after a failure), and the sealed head, gone back to
  // what is on disk, is not where it would begin.
  if (failed_) return;
  batch->impl_->deferred.move_to(batch);
  if (batch->records_ == 0) return;
  TALLY_ASSERT(batch->first_seq_ == sealed_seq_ + 1);
  // The segments append() put as they filled, each under its own key; now the last.
  batch->impl_->put_segment(batch->last_seq_);
  // The write batch has the segment's bytes now: its buffer goes to the next batch at
  // once, so that batches in flight do not each hold one.
  if (batch->impl_->segment.capacity() <= kSpareBatchBytesMax) impl_->spare_segment = std::move(batch->impl_->segment);
  batch->impl_->segment = std::string();
  batch->hash_ = batch->impl_->hasher->finish();
  std::string value = be64(batch->last_seq_);
  value.append(reinterpret_cast<const char*>(batch->hash_.data()), batch->hash_.size());
  batch->impl_->batch->Put(impl_->chain, slice(be64(batch->first_seq_)), slice(value));
  sealed_seq_ = batch->last_seq_;
  sealed_hash_ = batch->hash_;
}

Status Store::write(LogBatch* batch, bool sync) const {
  TALLY_ASSERT(batch->sealed_ && batch->impl_->batch != nullptr);
  rocksdb::WriteOptions write;
  write.sync = sync;         // unsynced only within a group, whose last write syncs it (Committer)
  write.disableWAL = false;  // the WAL is what makes the batch durable
  if (!batch->impl_->sealed.ok()) return storage_error(batch->impl_->sealed, "a batch's log segment was refused; the engine is now read-only");
  // The history packs are made here, on the thread that writes, rather than in seal(),
  // on the writer's: sorting the rows is a batch's worth of work.
  const uint64_t first = batch->records_ == 0 ? 1 : batch->first_seq_;
  const uint64_t last = batch->records_ == 0 ? 0 : batch->last_seq_;  // none, if the batch has no records
  if (const rocksdb::Status packed = batch->impl_->put_history_packs(first, last); !packed.ok()) {
    return storage_error(packed, "a batch's history rows were refused; the engine is now read-only");
  }
  const rocksdb::Status status = impl_->db->Write(write, batch->impl_->batch.get());
  if (!status.ok()) return storage_error(status, "the write of a batch failed; the engine is now read-only");
  return Status::Ok();
}

void Store::complete(LogBatch* batch, const Status& written) {
  std::lock_guard lock(impl_->lock);
  TALLY_ASSERT(batch->impl_->batch != nullptr);  // a batch is completed once
  // Keep the buffer for the next batch. A group commit of 8,192 usage events is a few
  // MiB; a fresh buffer for each one is copied as it grows and its new pages faulted
  // in, which showed in profiles. A larger buffer (a big row flush) is let go.
  std::unique_ptr<rocksdb::WriteBatch> used = std::move(batch->impl_->batch);
  if (used->Data().capacity() <= kSpareBatchBytesMax) {
    used->Clear();
    impl_->spare = std::move(used);
  }
  LogBatch::Impl& spent = *batch->impl_;
  if (spent.history_bytes.capacity() <= kSpareBatchBytesMax && spent.sorted_history.capacity() <= kSpareBatchBytesMax) {
    impl_->spare_history_bytes = std::move(spent.history_bytes);
    impl_->spare_history_rows = std::move(spent.history_rows);
    impl_->spare_sorted_history = std::move(spent.sorted_history);
  }
  if (failed_) return;
  if (!written.ok()) {
    // Batches sealed after this one are not written either (the store stays failed);
    // the sealed head goes back to what is on disk.
    failed_ = true;
    sealed_seq_ = last_seq_;
    sealed_hash_ = head_hash_;
    return;
  }
  if (batch->records_ > 0) {
    last_seq_ = batch->last_seq_;
    head_hash_ = batch->hash_;
  }
}

Status Store::read_log(uint64_t from_seq, uint64_t to_seq,
                       const std::function<bool(uint64_t, std::string_view)>& visit) const {
  rocksdb::ReadOptions read;
  read.fill_cache = false;
  read.readahead_size = 4 << 20;
  read.verify_checksums = true;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(read, impl_->log));
  // RocksDB returns values at any address (a memtable entry follows its varint-coded
  // key), but FlatBuffers needs aligned envelopes: copy the entries that are not.
  std::vector<uint64_t> aligned;
  std::string expanded;  // a compressed segment, decompressed (engine/entry_compression.h)
  const auto aligned_copy = [&aligned](std::string_view bytes) {
    if (reinterpret_cast<uintptr_t>(bytes.data()) % kEnvelopeAlignment == 0) return bytes;
    aligned.resize(bytes.size() / sizeof(uint64_t) + 1);
    std::memcpy(aligned.data(), bytes.data(), bytes.size());
    return std::string_view(reinterpret_cast<const char*>(aligned.data()), bytes.size());
  };
  // The entry that holds from_seq is the last whose key is at most from_seq's followed
  // by the largest last sequence number.
  it->SeekForPrev(slice(segment_key(from_seq, ~uint64_t{0})));
  if (!it->Valid()) it->SeekToFirst();
  uint64_t expected = from_seq;
  for (bool first = true; it->Valid(); it->Next(), first = false) {
    const std::string_view key = view(it->key());
    const uint64_t entry_first = read_be64(key);
    const uint64_t entry_last = key.size() == 16 ? read_be64(key.substr(8)) : entry_first;
    const bool well_formed = (key.size() == 8 || key.size() == 16) && entry_first <= entry_last;
    if (well_formed && first && entry_last < from_seq) continue;  // the entry before from_seq's
    if (entry_first > to_seq) break;
    if (!well_formed || entry_first > expected || (entry_first < expected && !first)) {
      return Error(ErrorCode::kStorageError, fmt::format("the log has a gap or a stray key at sequence {}", expected));
    }
    if (key.size() == 8) {  // a record of format 2
      std::string_view envelope;
      if (!decode_record(view(it->value()), &envelope)) {
        return Error(ErrorCode::kStorageError, fmt::format("log record {} fails its checksum", entry_first));
      }
      if (!visit(entry_first, aligned_copy(envelope))) return Status::Ok();
      ++expected;
      continue;
    }
    std::string_view stored_segment;
    if (!expand_entry(view(it->value()), &expanded, &stored_segment)) {
      return Error(ErrorCode::kStorageError, fmt::format("the log's segment of records {} to {} does not decompress", entry_first, entry_last));
    }
    SegmentReader segment(aligned_copy(stored_segment));
    std::string_view record;
    for (uint64_t seq = entry_first; seq <= entry_last; ++seq) {
      if (!segment.next(&record)) {
        return Error(ErrorCode::kStorageError, fmt::format("log record {} is missing from its segment or malformed", seq));
      }
      if (seq < from_seq) continue;
      if (seq > to_seq) return Status::Ok();
      std::string_view envelope;
      if (!decode_record(record, &envelope)) {
        return Error(ErrorCode::kStorageError, fmt::format("log record {} fails its checksum", seq));
      }
      if (!visit(seq, envelope)) return Status::Ok();
    }
    if (segment.next(&record) || segment.malformed()) {
      return Error(ErrorCode::kStorageError, fmt::format("the log's segment of records {} to {} has bytes past its last record", entry_first, entry_last));
    }
    expected = entry_last + 1;
  }
  if (!it->status().ok()) return storage_error(it->status(), "cannot read the log");
  return Status::Ok();
}

Status Store::read_chain(const std::function<bool(uint64_t, uint64_t, const Sha256&)>& visit) const {
  rocksdb::ReadOptions read;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(read, impl_->chain));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string_view value = view(it->value());
    if (it->key().size() != 8 || value.size() != 40) {
      return Error(ErrorCode::kStorageError, "a chain row is malformed");
    }
    Sha256 hash;
    std::memcpy(hash.data(), value.data() + 8, 32);
    if (!visit(read_be64(view(it->key())), read_be64(value), hash)) break;
  }
  if (!it->status().ok()) return storage_error(it->status(), "cannot read the chain");
  return Status::Ok();
}

Status Store::read_rows(std::string_view prefix, const std::function<void(std::string_view, std::string_view)>& visit) const {
  const std::string_view prefixes[] = {prefix};
  return read_rows(prefixes, [&](size_t, std::string_view key, std::string_view value) { visit(key, value); });
}

Status Store::read_rows(std::span<const std::string_view> prefixes,
                        const std::function<void(size_t, std::string_view, std::string_view)>& visit) const {
  rocksdb::ReadOptions read;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(read, impl_->state));
  for (size_t i = 0; i < prefixes.size(); ++i) {
    for (it->Seek(slice(prefixes[i])); it->Valid() && view(it->key()).starts_with(prefixes[i]); it->Next()) {
      visit(i, view(it->key()), view(it->value()));
    }
    if (!it->status().ok()) return storage_error(it->status(), "cannot read projection rows");
  }
  return Status::Ok();
}

Status Store::get_row(std::string_view key, std::string* value, bool* found) const {
  const rocksdb::Status status = impl_->db->Get(rocksdb::ReadOptions(), impl_->state, slice(key), value);
  *found = status.ok();
  if (status.ok() || status.IsNotFound()) return Status::Ok();
  return storage_error(status, "cannot read a projection row");
}

Status Store::read_history(const std::function<void(uint64_t, std::string_view, std::string_view)>& visit) const {
  rocksdb::ReadOptions read;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(read, impl_->history));
  const auto too_short = [] { return Error(ErrorCode::kStorageError, "a history row's key is too short for a sequence number"); };
  uint64_t last = 0;  // the last row's seq
  // The pack being read, copied (the iterator moves past it to find the entries that
  // repeat its rows), and its rows.
  std::string pack;
  struct Row {
    uint64_t seq;
    std::string_view key, value;
  };
  std::vector<Row> rows;
  // Entries of one row, made after the pack, that repeat one of its rows or add one
  // to its events: they sort right after it (engine/log.h).
  struct Repeat {
    uint64_t seq;
    std::string key, value;
  };
  std::vector<Repeat> repeats;
  it->SeekToFirst();
  while (it->Valid()) {
    const std::string_view key = view(it->key());
    if (key.size() < 8) return too_short();
    const uint64_t first = read_be64(key);
    if (!is_history_pack_key(key)) {
      last = first;
      visit(first, key.substr(8), view(it->value()));
      it->Next();
      continue;
    }
    // A pack: its rows begin at the seq its key names and go on in order from there.
    // A compressed pack is decompressed into `pack`; one stored as it is, copied there.
    std::string_view stored_pack;
    if (!expand_entry(view(it->value()), &pack, &stored_pack)) {
      return Error(ErrorCode::kStorageError, fmt::format("the history pack at sequence {} does not decompress", first));
    }
    if (stored_pack.data() != pack.data()) pack.assign(stored_pack);
    rows.clear();
    HistoryPackReader reader(pack);
    for (Row row; reader.next(&row.seq, &row.key, &row.value);) {
      if ((rows.empty() && row.seq != first) || row.seq < last) {
        return Error(ErrorCode::kStorageError, fmt::format("the history pack at sequence {} holds a row of {} out of order", first, row.seq));
      }
      last = row.seq;
      rows.push_back(row);
    }
    if (reader.malformed() || rows.empty()) return Error(ErrorCode::kStorageError, fmt::format("the history pack at sequence {} is malformed", first));
    repeats.clear();
    for (it->Next(); it->Valid(); it->Next()) {
      const std::string_view next = view(it->key());
      if (next.size() < 8) return too_short();
      const uint64_t seq = read_be64(next);
      if (is_history_pack_key(next) || seq > last) break;
      repeats.push_back({seq, std::string(next.substr(8)), std::string(view(it->value()))});
    }
    // Both in (seq, key) order: merged, and an entry of one row wins over the pack's.
    size_t r = 0;
    const auto repeat_first = [&](const Row& row) {
      return repeats[r].seq != row.seq ? repeats[r].seq < row.seq : std::string_view(repeats[r].key) < row.key;
    };
    const auto same = [&](const Row& row) { return repeats[r].seq == row.seq && repeats[r].key == row.key; };
    for (const Row& row : rows) {
      for (; r < repeats.size() && repeat_first(row); ++r) visit(repeats[r].seq, repeats[r].key, repeats[r].value);
      if (r < repeats.size() && same(row)) {
        visit(repeats[r].seq, repeats[r].key, repeats[r].value);
        ++r;
        continue;
      }
      visit(row.seq, row.key, row.value);
    }
    for (; r < repeats.size(); ++r) visit(repeats[r].seq, repeats[r].key, repeats[r].value);
  }
  if (!it->status().ok()) return storage_error(it->status(), "cannot read history rows");
  return Status::Ok();
}

Status Store::upgrade_format1() {
  // Every projection row goes: the state family's (all but the meta rows) and the
  // history family's (empty in format 1, but this runs again if the write below did
  // not happen). With no rows and no checkpoints, ProjectionSet::load rebuilds every
  // projection from the log, and the engine writes its rows anew.
  rocksdb::WriteBatch batch;
  rocksdb::Status status = batch.DeleteRange(impl_->state, slice(""), slice("meta/"));
  if (status.ok()) status = batch.DeleteRange(impl_->state, slice("meta0"), slice("\xff"));
  if (status.ok()) status = batch.DeleteRange(impl_->history, slice(""), slice("\xff"));
  if (status.ok()) status = batch.Put(impl_->state, slice(kFormatKey), slice(kFormat));
  rocksdb::WriteOptions write;
  write.sync = true;
  if (status.ok()) status = impl_->db->Write(write, &batch);
  if (!status.ok()) return storage_error(status, "cannot upgrade the store from format 1");
  return Status::Ok();
}

Status Store::write_format() {
  rocksdb::WriteOptions write;
  write.sync = true;
  const rocksdb::Status status = impl_->db->Put(write, impl_->state, slice(kFormatKey), slice(kFormat));
  if (!status.ok()) return storage_error(status, "cannot write the store format");
  return Status::Ok();
}

Status Store::replace_rows(const std::function<void(RowSink*)>& fill) {
  if (failed()) return Error(ErrorCode::kReadOnly, "the store refused writes after an earlier write failure");
  std::unique_ptr<LogBatch> batch = begin_batch();
  batch->impl_->history_unpacked = true;
  // History keys start with a big-endian sequence number, whose first byte is 0 below
  // 2^56 events: the range ["", "\xff") holds them all.
  const rocksdb::Status cleared = batch->impl_->batch->DeleteRange(impl_->history, slice(""), slice("\xff"));
  if (!cleared.ok()) return storage_error(cleared, "cannot delete history rows");
  // Delete every projection row (all but the store's own meta rows), then write anew.
  rocksdb::ReadOptions read;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(read, impl_->state));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (!view(it->key()).starts_with("meta/")) batch->erase(view(it->key()));
  }
  if (!it->status().ok()) return storage_error(it->status(), "cannot read projection rows");
  fill(batch.get());
  return commit(batch.get());
}

}  // namespace tally
