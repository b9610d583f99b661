// Storage helpers for tests: a RocksDB file system whose writes start failing when
// told to (what do the store and the engine do after a failed write?), and direct
// access to a store's database (to damage it the way a disk or an attacker would).
#pragma once

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "engine/entry_compression.h"
#include "engine/log.h"

namespace tally::testing {

class FaultFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  FaultFileSystem() : FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "TallyFaultFileSystem"; }

  // From now on every append and sync of a file opened for writing fails.
  void fail_writes(bool fail) { failing_->store(fail); }

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* debug) override {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus status = target()->NewWritableFile(name, options, &file, debug);
    if (status.ok()) *result = std::make_unique<File>(std::move(file), failing_);
    return status;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* debug) override {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus status = target()->ReopenWritableFile(name, options, &file, debug);
    if (status.ok()) *result = std::make_unique<File>(std::move(file), failing_);
    return status;
  }

 private:
  class File final : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> file, std::shared_ptr<std::atomic<bool>> failing)
        : FSWritableFileOwnerWrapper(std::move(file)), failing_(std::move(failing)) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options, rocksdb::IODebugContext* debug) override {
      if (*failing_) return rocksdb::IOStatus::IOError("injected append failure");
      return FSWritableFileOwnerWrapper::Append(data, options, debug);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             const rocksdb::DataVerificationInfo& info, rocksdb::IODebugContext* debug) override {
      if (*failing_) return rocksdb::IOStatus::IOError("injected append failure");
      return FSWritableFileOwnerWrapper::Append(data, options, info, debug);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* debug) override {
      if (*failing_) return rocksdb::IOStatus::IOError("injected sync failure");
      return FSWritableFileOwnerWrapper::Sync(options, debug);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* debug) override {
      if (*failing_) return rocksdb::IOStatus::IOError("injected fsync failure");
      return FSWritableFileOwnerWrapper::Fsync(options, debug);
    }

   private:
    std::shared_ptr<std::atomic<bool>> failing_;
  };

  std::shared_ptr<std::atomic<bool>> failing_ = std::make_shared<std::atomic<bool>>(false);
};

// An Env over a FaultFileSystem; keep both alive as long as a store uses them.
struct FaultEnv {
  std::shared_ptr<FaultFileSystem> file_system = std::make_shared<FaultFileSystem>();
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(file_system);
};

// A store's RocksDB database opened directly, beneath the Store. Open it only while no
// Store has the same path open.
class RawDb {
 public:
  static constexpr int kLog = 1, kChain = 2, kState = 3, kHistory = 4;  // column families

  explicit RawDb(const std::string& path) {
    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, {}}, {"log", {}}, {"chain", {}}, {"state", {}}, {"history", {}}};
    rocksdb::DB* db = nullptr;
    const rocksdb::Status status = rocksdb::DB::Open(rocksdb::DBOptions(), path, families, &handles_, &db);
    if (!status.ok()) ADD_FAILURE() << "cannot open " << path << ": " << status.ToString();
    db_.reset(db);
  }
  ~RawDb() {
    for (auto* handle : handles_) db_->DestroyColumnFamilyHandle(handle);
  }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  std::string get(int family, std::string_view key) {
    std::string value;
    const rocksdb::Status status = db_->Get({}, handles_.at(family), slice(key), &value);
    if (!status.ok()) ADD_FAILURE() << "get: " << status.ToString();
    return value;
  }
  void put(int family, std::string_view key, std::string_view value) {
    const rocksdb::Status status = db_->Put(synced(), handles_.at(family), slice(key), slice(value));
    if (!status.ok()) ADD_FAILURE() << "put: " << status.ToString();
  }
  void erase(int family, std::string_view key) {
    const rocksdb::Status status = db_->Delete(synced(), handles_.at(family), slice(key));
    if (!status.ok()) ADD_FAILURE() << "delete: " << status.ToString();
  }
  // visit(key, value) for every row of the family, in key order.
  void scan(int family, const std::function<void(std::string_view key, std::string_view value)>& visit) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_.at(family)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) visit(std::string_view(it->key().data(), it->key().size()), std::string_view(it->value().data(), it->value().size()));
    if (!it->status().ok()) ADD_FAILURE() << "scan: " << it->status().ToString();
  }

  // The log's records (checksum and envelope), one at a time, in whichever entry holds
  // them (a segment, or a format-2 entry of one record; engine/log.h).
  std::string record(uint64_t seq) {
    const LogEntry entry = entry_holding(seq);
    return seq - entry.first < entry.records.size() ? entry.records[seq - entry.first] : std::string();
  }
  // Replaces the bytes of record `seq` in its entry.
  void set_record(uint64_t seq, std::string_view record) {
    LogEntry entry = entry_holding(seq);
    if (entry.key.size() == 8) return put(kLog, entry.key, record);
    entry.records.at(seq - entry.first) = std::string(record);
    put_segment(entry.first, entry.records);
  }
  // Removes record `seq`: its segment is split in two around it.
  void erase_record(uint64_t seq) {
    const LogEntry entry = entry_holding(seq);
    erase(kLog, entry.key);
    const auto at = entry.records.begin() + static_cast<ptrdiff_t>(seq - entry.first);
    if (at != entry.records.begin()) put_segment(entry.first, {entry.records.begin(), at});
    if (at + 1 != entry.records.end()) put_segment(seq + 1, {at + 1, entry.records.end()});
  }
  // Adds a segment of one record.
  void add_record(uint64_t seq, std::string_view record) { put_segment(seq, {std::string(record)}); }
  // Rewrites the log as a format-2 store held it: an entry per record.
  void unsegment() {
    for (const LogEntry& entry : log_entries()) {
      erase(kLog, entry.key);
      for (size_t i = 0; i < entry.records.size(); ++i) put(kLog, be64(entry.first + i), entry.records[i]);
    }
  }
  size_t log_entry_count() { return log_entries().size(); }

  // A history row, from whichever entry holds it (a pack, or a format-3 entry of one
  // row; engine/log.h).
  struct HistoryRow {
    uint64_t seq = 0;
    std::string key;
    std::string value;
  };
  // Every history row, in the order the entries hold them.
  std::vector<HistoryRow> history_rows() {
    std::vector<HistoryRow> rows;
    scan(kHistory, [&](std::string_view key, std::string_view value) {
      if (!is_history_pack_key(key)) {
        rows.push_back({read_be64(key), std::string(key.substr(8)), std::string(value)});
        return;
      }
      std::string buffer;
      std::string_view expanded;
      if (!expand_entry(value, &buffer, &expanded)) return ADD_FAILURE() << "a history pack at " << read_be64(key) << " does not decompress", void();
      HistoryPackReader pack(expanded);
      uint64_t seq = 0;
      std::string_view row_key, row_value;
      while (pack.next(&seq, &row_key, &row_value)) rows.push_back({seq, std::string(row_key), std::string(row_value)});
      if (pack.malformed()) ADD_FAILURE() << "a malformed history pack at " << read_be64(key);
    });
    return rows;
  }
  // Sets the value of history row (seq, key), adding the row if there is none: every
  // row is then written back in one pack, in (seq, key) order.
  void set_history_row(uint64_t seq, std::string_view key, std::string_view value) {
    std::vector<HistoryRow> rows = history_rows();
    auto it = std::find_if(rows.begin(), rows.end(), [&](const HistoryRow& row) { return row.seq == seq && row.key == key; });
    if (it == rows.end()) {
      rows.push_back({seq, std::string(key), std::string(value)});
    } else {
      it->value = std::string(value);
    }
    std::sort(rows.begin(), rows.end(), [](const HistoryRow& a, const HistoryRow& b) { return std::tie(a.seq, a.key) < std::tie(b.seq, b.key); });
    erase_history();
    std::string pack;
    for (const HistoryRow& row : rows) append_history_row(&pack, row.seq, row.key, row.value);
    put(kHistory, history_pack_key(rows.front().seq), pack);
  }
  // Rewrites the history rows as a format-3 store held them: an entry per row.
  void unpack_history() {
    const std::vector<HistoryRow> rows = history_rows();
    erase_history();
    for (const HistoryRow& row : rows) put(kHistory, history_key(row.seq, row.key), row.value);
  }
  // Rewrites every compressed segment and pack uncompressed, as a store of format 4
  // held them. Returns how many it rewrote.
  size_t expand_entries() {
    size_t rewritten = 0;
    for (int family : {kLog, kHistory}) {
      std::vector<std::pair<std::string, std::string>> expanded;
      scan(family, [&](std::string_view key, std::string_view value) {
        std::string buffer;
        std::string_view plain;
        if (!is_compressed_entry(value)) return;
        if (!expand_entry(value, &buffer, &plain)) return ADD_FAILURE() << "an entry does not decompress", void();
        expanded.emplace_back(key, plain);
      });
      for (const auto& [key, value] : expanded) put(family, key, value);
      rewritten += expanded.size();
    }
    return rewritten;
  }
  // How many of a family's entries are stored compressed.
  size_t compressed_entry_count(int family) {
    size_t compressed = 0;
    scan(family, [&](std::string_view, std::string_view value) { compressed += is_compressed_entry(value) ? 1 : 0; });
    return compressed;
  }
  size_t history_entry_count() {
    size_t entries = 0;
    scan(kHistory, [&](std::string_view, std::string_view) { ++entries; });
    return entries;
  }

  // A log entry: a segment, or a format-2 entry of one record.
  struct LogEntry {
    std::string key;
    uint64_t first = 0;
    std::vector<std::string> records;
  };
  // Every log entry, in key order.
  std::vector<LogEntry> log_entries() {
    std::vector<LogEntry> entries;
    scan(kLog, [&](std::string_view key, std::string_view value) {
      LogEntry entry{std::string(key), read_be64(key), {}};
      if (key.size() == 8) {
        entry.records.emplace_back(value);
      } else {
        std::string buffer;
        std::string_view expanded;
        if (!expand_entry(value, &buffer, &expanded)) return ADD_FAILURE() << "a segment at " << entry.first << " does not decompress", void();
        SegmentReader segment(expanded);
        for (std::string_view record; segment.next(&record);) entry.records.emplace_back(record);
        if (segment.malformed()) ADD_FAILURE() << "a malformed segment at " << entry.first;
      }
      entries.push_back(std::move(entry));
    });
    return entries;
  }

 private:
  LogEntry entry_holding(uint64_t seq) {
    for (LogEntry& entry : log_entries()) {
      if (entry.first <= seq && seq < entry.first + entry.records.size()) return std::move(entry);
    }
    ADD_FAILURE() << "no log entry holds record " << seq;
    return {};
  }
  void erase_history() {
    std::vector<std::string> keys;
    scan(kHistory, [&](std::string_view key, std::string_view) { keys.emplace_back(key); });
    for (const std::string& key : keys) erase(kHistory, key);
  }
  void put_segment(uint64_t first, const std::vector<std::string>& records) {
    std::string value;
    for (const std::string& record : records) append_frame(&value, record, {});
    put(kLog, segment_key(first, first + records.size() - 1), value);
  }
  static rocksdb::Slice slice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
  static rocksdb::WriteOptions synced() {
    rocksdb::WriteOptions write;
    write.sync = true;
    return write;
  }
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
};

}  // namespace tally::testing
