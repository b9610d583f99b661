#include "fault_env.h"

#include <unistd.h>

#include <algorithm>
#include <utility>

namespace tally::test {
namespace {

const char* kind_name(FaultKind kind) {
  switch (kind) {
    case FaultKind::kWrite: return "write";
    case FaultKind::kSync: return "sync";
    case FaultKind::kRead: return "read";
  }
  return "?";
}

// Each wrapper owns its target (the rocksdb wrappers only borrow it).
class FaultWritableFile final : public rocksdb::WritableFileWrapper {
 public:
  FaultWritableFile(FaultEnv* env, std::string name, std::unique_ptr<rocksdb::WritableFile> target, uint64_t size)
      : rocksdb::WritableFileWrapper(target.get()), env_(env), name_(std::move(name)), target_(std::move(target)), size_(size) {}

  rocksdb::Status Append(const rocksdb::Slice& data) override {
    return append(data, [&](const rocksdb::Slice& part) { return target_->Append(part); });
  }
  rocksdb::Status Append(const rocksdb::Slice& data, const rocksdb::DataVerificationInfo& info) override {
    return append(data, [&](const rocksdb::Slice& part) { return target_->Append(part, info); });
  }
  rocksdb::Status PositionedAppend(const rocksdb::Slice& data, uint64_t offset) override {
    if (env_->should_fail(FaultKind::kWrite, name_)) return FaultEnv::injected(FaultKind::kWrite, name_);
    rocksdb::Status status = target_->PositionedAppend(data, offset);
    if (status.ok()) size_ = std::max<uint64_t>(size_, offset + data.size());
    return status;
  }
  rocksdb::Status PositionedAppend(const rocksdb::Slice& data, uint64_t offset, const rocksdb::DataVerificationInfo& info) override {
    if (env_->should_fail(FaultKind::kWrite, name_)) return FaultEnv::injected(FaultKind::kWrite, name_);
    rocksdb::Status status = target_->PositionedAppend(data, offset, info);
    if (status.ok()) size_ = std::max<uint64_t>(size_, offset + data.size());
    return status;
  }
  rocksdb::Status Truncate(uint64_t size) override {
    rocksdb::Status status = target_->Truncate(size);
    if (status.ok()) size_ = size;
    return status;
  }
  rocksdb::Status Sync() override { return sync([&] { return target_->Sync(); }); }
  rocksdb::Status Fsync() override { return sync([&] { return target_->Fsync(); }); }
  rocksdb::Status RangeSync(uint64_t offset, uint64_t bytes) override {
    // A hint to start writeback, not a durability point: counted, never marks synced.
    if (env_->should_fail(FaultKind::kSync, name_)) return FaultEnv::injected(FaultKind::kSync, name_);
    return target_->RangeSync(offset, bytes);
  }

 private:
  template <typename Write>
  rocksdb::Status append(const rocksdb::Slice& data, Write write) {
    if (env_->should_fail(FaultKind::kWrite, name_)) {
      if (env_->torn_writes() && data.size() > 1) {
        const rocksdb::Slice half(data.data(), data.size() / 2);
        if (write(half).ok()) size_ += half.size();
      }
      return FaultEnv::injected(FaultKind::kWrite, name_);
    }
    rocksdb::Status status = write(data);
    if (status.ok()) size_ += data.size();
    return status;
  }

  template <typename Sync>
  rocksdb::Status sync(Sync call) {
    if (env_->should_fail(FaultKind::kSync, name_)) return FaultEnv::injected(FaultKind::kSync, name_);
    env_->wait_if_held(name_);
    rocksdb::Status status = call();
    if (status.ok()) env_->synced(name_, size_);
    return status;
  }

  FaultEnv* env_;
  std::string name_;
  std::unique_ptr<rocksdb::WritableFile> target_;
  uint64_t size_;  // bytes appended so far
};

class FaultSequentialFile final : public rocksdb::SequentialFileWrapper {
 public:
  FaultSequentialFile(FaultEnv* env, std::string name, std::unique_ptr<rocksdb::SequentialFile> target)
      : rocksdb::SequentialFileWrapper(target.get()), env_(env), name_(std::move(name)), target_(std::move(target)) {}

  rocksdb::Status Read(size_t n, rocksdb::Slice* result, char* scratch) override {
    if (env_->should_fail(FaultKind::kRead, name_)) return FaultEnv::injected(FaultKind::kRead, name_);
    return target_->Read(n, result, scratch);
  }
  rocksdb::Status PositionedRead(uint64_t offset, size_t n, rocksdb::Slice* result, char* scratch) override {
    if (env_->should_fail(FaultKind::kRead, name_)) return FaultEnv::injected(FaultKind::kRead, name_);
    return target_->PositionedRead(offset, n, result, scratch);
  }

 private:
  FaultEnv* env_;
  std::string name_;
  std::unique_ptr<rocksdb::SequentialFile> target_;
};

class FaultRandomAccessFile final : public rocksdb::RandomAccessFileWrapper {
 public:
  FaultRandomAccessFile(FaultEnv* env, std::string name, std::unique_ptr<rocksdb::RandomAccessFile> target)
      : rocksdb::RandomAccessFileWrapper(target.get()), env_(env), name_(std::move(name)), target_(std::move(target)) {}

  rocksdb::Status Read(uint64_t offset, size_t n, rocksdb::Slice* result, char* scratch) const override {
    if (env_->should_fail(FaultKind::kRead, name_)) return FaultEnv::injected(FaultKind::kRead, name_);
    return target_->Read(offset, n, result, scratch);
  }
  rocksdb::Status MultiRead(rocksdb::ReadRequest* requests, size_t count) override {
    if (env_->should_fail(FaultKind::kRead, name_)) {
      const rocksdb::Status failure = FaultEnv::injected(FaultKind::kRead, name_);
      for (size_t i = 0; i < count; ++i) requests[i].status = failure;
      return failure;
    }
    return target_->MultiRead(requests, count);
  }

 private:
  FaultEnv* env_;
  std::string name_;
  std::unique_ptr<rocksdb::RandomAccessFile> target_;
};

class FaultDirectory final : public rocksdb::DirectoryWrapper {
 public:
  FaultDirectory(FaultEnv* env, std::string name, std::unique_ptr<rocksdb::Directory> target)
      : rocksdb::DirectoryWrapper(target.get()), env_(env), name_(std::move(name)), target_(std::move(target)) {}

  rocksdb::Status Fsync() override {
    if (env_->should_fail(FaultKind::kSync, name_)) return FaultEnv::injected(FaultKind::kSync, name_);
    return target_->Fsync();
  }

 private:
  FaultEnv* env_;
  std::string name_;
  std::unique_ptr<rocksdb::Directory> target_;
};

}  // namespace

FaultEnv::FaultEnv() : rocksdb::EnvWrapper(rocksdb::Env::Default()) {}

FaultEnv::~FaultEnv() = default;

void FaultEnv::fail_after(FaultKind kind, uint64_t after) {
  std::lock_guard lock(mutex_);
  Counter& counter = counters_[static_cast<int>(kind)];
  counter.fail_at = counter.calls + after;
}

void FaultEnv::set_failing(FaultKind kind, bool failing) {
  std::lock_guard lock(mutex_);
  Counter& counter = counters_[static_cast<int>(kind)];
  counter.fail_at = failing ? 0 : UINT64_MAX;
}

void FaultEnv::clear() {
  std::lock_guard lock(mutex_);
  for (Counter& counter : counters_) counter.fail_at = UINT64_MAX;
}

void FaultEnv::set_target(std::string pattern) {
  std::lock_guard lock(mutex_);
  target_ = std::move(pattern);
}

void FaultEnv::set_torn_writes(bool torn) { torn_writes_ = torn; }

void FaultEnv::hold_syncs() {
  std::lock_guard lock(mutex_);
  holding_syncs_ = true;
}

void FaultEnv::release_syncs() {
  {
    std::lock_guard lock(mutex_);
    holding_syncs_ = false;
  }
  syncs_released_.notify_all();
}

size_t FaultEnv::held_syncs() const {
  std::lock_guard lock(mutex_);
  return held_syncs_;
}

void FaultEnv::wait_if_held(const std::string& name) {
  std::unique_lock lock(mutex_);
  if (!targeted(name)) return;
  ++held_syncs_;
  syncs_released_.wait(lock, [this] { return !holding_syncs_; });
  --held_syncs_;
}

uint64_t FaultEnv::calls(FaultKind kind) const {
  std::lock_guard lock(mutex_);
  return counters_[static_cast<int>(kind)].calls;
}

uint64_t FaultEnv::failures(FaultKind kind) const {
  std::lock_guard lock(mutex_);
  return counters_[static_cast<int>(kind)].failures;
}

bool FaultEnv::targeted(const std::string& name) const { return target_.empty() || name.find(target_) != std::string::npos; }

bool FaultEnv::should_fail(FaultKind kind, const std::string& name) {
  std::lock_guard lock(mutex_);
  if (!targeted(name)) return false;
  Counter& counter = counters_[static_cast<int>(kind)];
  const bool fail = counter.calls >= counter.fail_at;
  ++counter.calls;
  counter.failures += fail;
  return fail;
}

rocksdb::Status FaultEnv::injected(FaultKind kind, const std::string& name) {
  return rocksdb::Status::IOError("injected " + std::string(kind_name(kind)) + " fault", name);
}

void FaultEnv::synced(const std::string& name, uint64_t size) {
  std::lock_guard lock(mutex_);
  synced_size_[name] = size;
}

rocksdb::Status FaultEnv::drop_unsynced_data() {
  std::lock_guard lock(mutex_);
  for (const auto& [name, size] : synced_size_) {
    uint64_t current = 0;
    if (!target()->GetFileSize(name, &current).ok()) continue;  // deleted or renamed since
    if (current <= size) continue;
    if (::truncate(name.c_str(), static_cast<off_t>(size)) != 0) {
      return rocksdb::Status::IOError("cannot truncate", name);
    }
  }
  return rocksdb::Status::OK();
}

rocksdb::Status FaultEnv::NewSequentialFile(const std::string& name, std::unique_ptr<rocksdb::SequentialFile>* result,
                                            const rocksdb::EnvOptions& options) {
  if (should_fail(FaultKind::kRead, name)) return injected(FaultKind::kRead, name);
  std::unique_ptr<rocksdb::SequentialFile> file;
  rocksdb::Status status = target()->NewSequentialFile(name, &file, options);
  if (status.ok()) *result = std::make_unique<FaultSequentialFile>(this, name, std::move(file));
  return status;
}

rocksdb::Status FaultEnv::NewRandomAccessFile(const std::string& name, std::unique_ptr<rocksdb::RandomAccessFile>* result,
                                              const rocksdb::EnvOptions& options) {
  if (should_fail(FaultKind::kRead, name)) return injected(FaultKind::kRead, name);
  std::unique_ptr<rocksdb::RandomAccessFile> file;
  rocksdb::Status status = target()->NewRandomAccessFile(name, &file, options);
  if (status.ok()) *result = std::make_unique<FaultRandomAccessFile>(this, name, std::move(file));
  return status;
}

rocksdb::Status FaultEnv::NewWritableFile(const std::string& name, std::unique_ptr<rocksdb::WritableFile>* result,
                                          const rocksdb::EnvOptions& options) {
  if (should_fail(FaultKind::kWrite, name)) return injected(FaultKind::kWrite, name);
  std::unique_ptr<rocksdb::WritableFile> file;
  rocksdb::Status status = target()->NewWritableFile(name, &file, options);
  if (!status.ok()) return status;
  synced(name, 0);  // a new file: nothing of it is durable yet
  *result = std::make_unique<FaultWritableFile>(this, name, std::move(file), 0);
  return status;
}

rocksdb::Status FaultEnv::ReopenWritableFile(const std::string& name, std::unique_ptr<rocksdb::WritableFile>* result,
                                             const rocksdb::EnvOptions& options) {
  if (should_fail(FaultKind::kWrite, name)) return injected(FaultKind::kWrite, name);
  uint64_t size = 0;
  if (!target()->GetFileSize(name, &size).ok()) size = 0;
  std::unique_ptr<rocksdb::WritableFile> file;
  rocksdb::Status status = target()->ReopenWritableFile(name, &file, options);
  if (!status.ok()) return status;
  synced(name, size);  // what was there before counts as durable
  *result = std::make_unique<FaultWritableFile>(this, name, std::move(file), size);
  return status;
}

rocksdb::Status FaultEnv::ReuseWritableFile(const std::string& name, const std::string& old_name,
                                            std::unique_ptr<rocksdb::WritableFile>* result, const rocksdb::EnvOptions& options) {
  if (should_fail(FaultKind::kWrite, name)) return injected(FaultKind::kWrite, name);
  std::unique_ptr<rocksdb::WritableFile> file;
  rocksdb::Status status = target()->ReuseWritableFile(name, old_name, &file, options);
  if (!status.ok()) return status;
  synced(name, 0);
  *result = std::make_unique<FaultWritableFile>(this, name, std::move(file), 0);
  return status;
}

rocksdb::Status FaultEnv::NewDirectory(const std::string& name, std::unique_ptr<rocksdb::Directory>* result) {
  std::unique_ptr<rocksdb::Directory> directory;
  rocksdb::Status status = target()->NewDirectory(name, &directory);
  if (status.ok()) *result = std::make_unique<FaultDirectory>(this, name, std::move(directory));
  return status;
}

}  // namespace tally::test
