// Storage helpers for tests: a RocksDB file system whose writes start failing when
// told to (what do the store and the engine do after a failed write?), and direct
// access to a store's database (to damage it the way a disk or an attacker would).
#pragma once

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

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

 private:
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
