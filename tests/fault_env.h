// A RocksDB environment that fails file operations on purpose, for fault-injection
// tests (STYLE.md: "faults are injected on purpose in tests"). It wraps the default
// environment and forwards everything, except that writes, syncs and reads of chosen
// files fail once a fault is armed:
//
//   FaultEnv env;
//   env.set_target(".log");                       // only the write-ahead log
//   env.fail_after(FaultKind::kSync, 0);          // the next WAL sync fails...
//   engine->execute(batch);                       // ...so this batch is not durable
//
// A fault is sticky: once an operation of a kind has failed, every later one of that
// kind fails too, until clear() — a dead disk does not heal between two calls.
//
// hold_syncs() plays the part of a slow disk: syncs of targeted files wait until
// release_syncs(), so that a test can queue more work behind a sync in progress.
//
// drop_unsynced_data() plays the part of a power cut: every file written through this
// environment loses what was appended after its last successful sync.
//
// Thread-safe: RocksDB's background threads call in concurrently.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include <rocksdb/env.h>

namespace tally::test {

enum class FaultKind : uint8_t {
  kWrite,  // creating a file for writing, Append, PositionedAppend
  kSync,   // Sync, Fsync, RangeSync of a file; Fsync of a directory
  kRead,   // opening a file for reading, Read, PositionedRead, MultiRead
};
inline constexpr int kFaultKinds = 3;

class FaultEnv final : public rocksdb::EnvWrapper {
 public:
  FaultEnv();
  ~FaultEnv() override;
  const char* Name() const override { return "TallyFaultEnv"; }

  // Calls of `kind` fail once `after` more of them have succeeded (0: the next call
  // fails), and keep failing until clear().
  void fail_after(FaultKind kind, uint64_t after);
  // Every call of `kind` fails (true) or passes (false) from now on.
  void set_failing(FaultKind kind, bool failing);
  // Disarms every fault; counters keep counting.
  void clear();
  // Only files and directories whose name contains `pattern` are counted and faulted;
  // "" means all of them (the default).
  void set_target(std::string pattern);
  // A failing write first writes half of its data, as a torn write would.
  void set_torn_writes(bool torn);
  // From now on a sync of a targeted file that is not failed waits, before it reaches
  // the disk, until release_syncs(); held_syncs() tells how many are waiting. Release
  // before the database is closed.
  void hold_syncs();
  void release_syncs();
  size_t held_syncs() const;

  // Calls of `kind` on targeted files so far, and how many of them failed.
  uint64_t calls(FaultKind kind) const;
  uint64_t failures(FaultKind kind) const;

  // Truncates every file written through this environment to its size at its last
  // successful sync (0 if never synced). REQUIRES: the database is closed.
  rocksdb::Status drop_unsynced_data();

  // ---- rocksdb::Env -------------------------------------------------------------------
  rocksdb::Status NewSequentialFile(const std::string& name, std::unique_ptr<rocksdb::SequentialFile>* result,
                                    const rocksdb::EnvOptions& options) override;
  rocksdb::Status NewRandomAccessFile(const std::string& name, std::unique_ptr<rocksdb::RandomAccessFile>* result,
                                      const rocksdb::EnvOptions& options) override;
  rocksdb::Status NewWritableFile(const std::string& name, std::unique_ptr<rocksdb::WritableFile>* result,
                                  const rocksdb::EnvOptions& options) override;
  rocksdb::Status ReopenWritableFile(const std::string& name, std::unique_ptr<rocksdb::WritableFile>* result,
                                     const rocksdb::EnvOptions& options) override;
  rocksdb::Status ReuseWritableFile(const std::string& name, const std::string& old_name,
                                    std::unique_ptr<rocksdb::WritableFile>* result, const rocksdb::EnvOptions& options) override;
  rocksdb::Status NewDirectory(const std::string& name, std::unique_ptr<rocksdb::Directory>* result) override;

  // ---- used by the file wrappers ------------------------------------------------------
  // Counts a call of `kind` on `name` and says whether it must fail.
  bool should_fail(FaultKind kind, const std::string& name);
  bool torn_writes() const { return torn_writes_.load(); }
  // Waits while syncs are held (hold_syncs), if `name` is targeted.
  void wait_if_held(const std::string& name);
  // Remembers that `name` is durable up to `size` bytes.
  void synced(const std::string& name, uint64_t size);
  static rocksdb::Status injected(FaultKind kind, const std::string& name);

 private:
  struct Counter {
    uint64_t calls = 0;
    uint64_t failures = 0;
    uint64_t fail_at = UINT64_MAX;  // the call number (0-based) from which calls fail
  };

  // Whether `name` is counted and faulted (set_target). REQUIRES: mutex_ held.
  bool targeted(const std::string& name) const;

  mutable std::mutex mutex_;
  Counter counters_[kFaultKinds];
  std::string target_;
  std::atomic<bool> torn_writes_{false};
  bool holding_syncs_ = false;  // guarded by mutex_
  size_t held_syncs_ = 0;       // guarded by mutex_
  std::condition_variable syncs_released_;
  std::map<std::string, uint64_t> synced_size_;  // every file written, by name
};

}  // namespace tally::test
