#include "engine/memtable.h"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <string_view>
#include <utility>
#include <vector>

#include "projections/huge_pages.h"

namespace tally {
namespace {

constexpr size_t kTrailerBytes = 8;  // an internal key ends in sequence number and type

// Points user_key at the user key of a memtable entry; false if the entry is malformed
// (then RocksDB's comparator decides). The varint is decoded here rather than by
// rocksdb::GetLengthPrefixedSlice: with that out-of-line call, made twice per
// comparison, the sort took 6.8-7.4 % of all samples instead of 5.1-6.0 % (perf,
// tally_load --events 600000, three runs each).
bool entry_user_key(const char* entry, std::string_view* user_key) {
  uint32_t length = 0;
  const auto* bytes = reinterpret_cast<const uint8_t*>(entry);
  int shift = 0;
  for (;; ++bytes, shift += 7) {
    if (shift > 28) return false;
    length |= static_cast<uint32_t>(*bytes & 0x7f) << shift;
    if ((*bytes & 0x80) == 0) break;
  }
  if (length < kTrailerBytes) return false;
  *user_key = std::string_view(reinterpret_cast<const char*>(bytes + 1), length - kTrailerBytes);
  return true;
}

// Sorts `entries`, which are ascending runs starting at 0 and at each of `run_starts`,
// by merging neighbouring runs until one is left: about n * log2(runs) comparisons
// where std::sort makes about n * log2(n) whatever the input. With many short runs
// (keys in no particular order) std::sort is as good, and needs no second buffer.
template <typename Less>
void sort_runs(std::vector<const char*>* entries, const std::vector<size_t>& run_starts, Less less) {
  if (run_starts.empty()) return;
  if (run_starts.size() * 8 > entries->size()) {
    std::sort(entries->begin(), entries->end(), less);
    return;
  }
  std::vector<size_t> bounds{0};
  bounds.insert(bounds.end(), run_starts.begin(), run_starts.end());
  bounds.push_back(entries->size());
  std::vector<const char*> other(entries->size());
  std::vector<const char*>* from = entries;
  std::vector<const char*>* to = &other;
  while (bounds.size() > 2) {
    std::vector<size_t> merged{0};
    for (size_t i = 0; i + 1 < bounds.size(); i += 2) {
      const size_t lo = bounds[i], mid = bounds[i + 1], hi = i + 2 < bounds.size() ? bounds[i + 2] : mid;
      const auto base = from->begin();
      std::merge(base + static_cast<ptrdiff_t>(lo), base + static_cast<ptrdiff_t>(mid), base + static_cast<ptrdiff_t>(mid),
                 base + static_cast<ptrdiff_t>(hi), to->begin() + static_cast<ptrdiff_t>(lo), less);
      merged.push_back(hi);
    }
    bounds = std::move(merged);
    std::swap(from, to);
  }
  if (from != entries) entries->swap(*from);
}

// Memory for memtable entries, in blocks of kHugePageBytes that outlive the memtables:
// a memtable's blocks go back to this pool when it is freed, and the next memtables
// take them again, their pages still present. RocksDB's own arena gives each memtable
// fresh memory from the heap, 4 KiB pages the kernel faults in and zeroes one by one:
// in tally_load --events 1000000 that was 21 % of the samples of the commit thread,
// which writes the batches into the memtables. With these blocks: median pair ratio
// 1.069 in events/s, whole-process CPU 0.956 (eleven pairs; bench/RESULTS.md, "Runs
// 53-54"). A 1M-event run still maps 43 blocks afresh before the first memtables are
// freed; after that, none.
class EntryBlocks {
 public:
  static constexpr size_t kBlockBytes = kHugePageBytes;
  // Blocks kept for reuse at most (64 MiB); more are unmapped when freed.
  static constexpr size_t kKeptMax = 32;

  static char* take() {
    EntryBlocks& pool = instance();
    {
      std::lock_guard lock(pool.mutex_);
      if (!pool.kept_.empty()) {
        char* block = pool.kept_.back();
        pool.kept_.pop_back();
        return block;
      }
    }
    return static_cast<char*>(allocate_huge_pages(kBlockBytes));
  }
  static void give(char* block) {
    EntryBlocks& pool = instance();
    {
      std::lock_guard lock(pool.mutex_);
      if (pool.kept_.size() < kKeptMax) {
        pool.kept_.push_back(block);
        return;
      }
    }
    deallocate_huge_pages(block, kBlockBytes);
  }

 private:
  // Never destroyed, so that a memtable freed during the process's exit still finds it.
  static EntryBlocks& instance() {
    static EntryBlocks* const pool = new EntryBlocks;
    return *pool;
  }

  std::mutex mutex_;
  std::vector<char*> kept_;  // guarded by mutex_
};

// An iterator over a memtable's entries already in order.
class SortedIterator final : public rocksdb::MemTableRep::Iterator {
 public:
  SortedIterator(const std::vector<const char*>& entries, const BytewiseEntryComparator& comparator)
      : entries_(entries), comparator_(comparator), at_(entries.size()) {}

  bool Valid() const override { return at_ < entries_.size(); }
  const char* key() const override { return entries_[at_]; }
  void Next() override { at_ = at_ < entries_.size() ? at_ + 1 : at_; }
  // Before the first entry is past the end, as in RocksDB's vector memtable.
  void Prev() override { at_ = at_ == 0 ? entries_.size() : at_ - 1; }
  void Seek(const rocksdb::Slice& internal_key, const char* memtable_key) override {
    const auto first_not_below = std::partition_point(entries_.begin(), entries_.end(), [&](const char* entry) {
      return order(entry, internal_key, memtable_key) < 0;
    });
    at_ = static_cast<size_t>(first_not_below - entries_.begin());
  }
  void SeekForPrev(const rocksdb::Slice& internal_key, const char* memtable_key) override {
    // The last entry at or below the target: the one before the first above it.
    const auto first_above = std::partition_point(entries_.begin(), entries_.end(), [&](const char* entry) {
      return order(entry, internal_key, memtable_key) <= 0;
    });
    at_ = first_above == entries_.begin() ? entries_.size() : static_cast<size_t>(first_above - entries_.begin()) - 1;
  }
  void SeekToFirst() override { at_ = 0; }
  void SeekToLast() override { at_ = entries_.empty() ? 0 : entries_.size() - 1; }

 private:
  // The entry against the target, given as a memtable entry when the caller has one.
  int order(const char* entry, const rocksdb::Slice& internal_key, const char* memtable_key) const {
    return memtable_key != nullptr ? comparator_(entry, memtable_key) : comparator_(entry, internal_key);
  }

  const std::vector<const char*>& entries_;
  const BytewiseEntryComparator& comparator_;
  size_t at_;
};

// RocksDB's vector memtable, made with a BytewiseEntryComparator that it owns, with
// one thing added: the memtable keeps its own list of entries in insertion order and
// notes where each ascending run of inserts begins. Once the memtable is read-only
// (full, waiting for its flush) its iterators walk that list, sorted once by merging
// the runs. The log's keys arrive in order (one run: nothing to sort) and the history
// family's in a few runs per batch (one per projection); RocksDB's vector memtable
// sorted them with std::sort, about 18 comparisons per entry, on the flush thread:
// 5.8 % of all the CPU tally_load used (perf). With the runs merged, tally_load
// --events 1000000 used 4.5 % less CPU (median of six A/B pairs).
// Everything else (point reads, iterators of the memtable still being written) is
// forwarded to RocksDB's vector memtable.
class VectorMemTableRep final : public rocksdb::MemTableRep {
 public:
  VectorMemTableRep(const KeyComparator& fallback, rocksdb::Allocator* allocator, const rocksdb::SliceTransform* transform,
                    rocksdb::Logger* logger)
      : MemTableRep(allocator),
        comparator_(fallback),
        vector_(rocksdb::VectorRepFactory().CreateMemTableRep(comparator_, allocator, transform, logger)) {}

  ~VectorMemTableRep() override {
    for (char* block : blocks_) EntryBlocks::give(block);
  }

  // Entries go into blocks from EntryBlocks, one after another; an entry of more than
  // a quarter block gets memory of its own. RocksDB calls this from one thread at a
  // time: a vector memtable takes no concurrent writes.
  rocksdb::KeyHandle Allocate(const size_t len, char** buf) override {
    if (len > EntryBlocks::kBlockBytes / 4) {
      std::unique_ptr<char[]> own(new char[len]);  // not zeroed
      *buf = own.get();
      large_.push_back(std::move(own));
      allocated_.fetch_add(len, std::memory_order_relaxed);
      return *buf;
    }
    if (blocks_.empty() || block_used_ + len > EntryBlocks::kBlockBytes) {
      // Room first, so that a block taken is never dropped by a throw.
      if (blocks_.size() == blocks_.capacity()) blocks_.reserve(2 * blocks_.size() + 8);
      blocks_.push_back(EntryBlocks::take());
      block_used_ = 0;
      allocated_.fetch_add(EntryBlocks::kBlockBytes, std::memory_order_relaxed);
    }
    *buf = blocks_.back() + block_used_;
    block_used_ += len;
    return *buf;
  }
  void Insert(rocksdb::KeyHandle handle) override {
    note(handle);
    vector_->Insert(handle);
  }
  bool InsertKey(rocksdb::KeyHandle handle) override {
    note(handle);
    return vector_->InsertKey(handle);
  }
  void InsertWithHint(rocksdb::KeyHandle handle, void** hint) override {
    note(handle);
    vector_->InsertWithHint(handle, hint);
  }
  bool InsertKeyWithHint(rocksdb::KeyHandle handle, void** hint) override {
    note(handle);
    return vector_->InsertKeyWithHint(handle, hint);
  }
  // Concurrent inserts (which RocksDB's vector memtable does not take either) leave the
  // list behind: the memtable then does without it.
  void InsertWithHintConcurrently(rocksdb::KeyHandle handle, void** hint) override {
    untracked_ = true;
    vector_->InsertWithHintConcurrently(handle, hint);
  }
  bool InsertKeyWithHintConcurrently(rocksdb::KeyHandle handle, void** hint) override {
    untracked_ = true;
    return vector_->InsertKeyWithHintConcurrently(handle, hint);
  }
  void InsertConcurrently(rocksdb::KeyHandle handle) override {
    untracked_ = true;
    vector_->InsertConcurrently(handle);
  }
  bool InsertKeyConcurrently(rocksdb::KeyHandle handle) override {
    untracked_ = true;
    return vector_->InsertKeyConcurrently(handle);
  }
  bool Contains(const char* key) const override { return vector_->Contains(key); }
  void MarkReadOnly() override {
    vector_->MarkReadOnly();
    std::lock_guard lock(mutex_);
    read_only_ = true;
  }
  void MarkFlushed() override { vector_->MarkFlushed(); }
  void Get(const rocksdb::LookupKey& key, void* callback_args, bool (*callback_func)(void* arg, const char* entry)) override {
    vector_->Get(key, callback_args, callback_func);
  }
  uint64_t ApproximateNumEntries(const rocksdb::Slice& start_ikey, const rocksdb::Slice& end_key) override {
    return vector_->ApproximateNumEntries(start_ikey, end_key);
  }
  void UniqueRandomSample(const uint64_t num_entries, const uint64_t target_sample_size, std::unordered_set<const char*>* entries) override {
    vector_->UniqueRandomSample(num_entries, target_sample_size, entries);
  }
  size_t ApproximateMemoryUsage() override {
    // RocksDB decides when the memtable is full by this and by its arena's usage.
    return vector_->ApproximateMemoryUsage() + tracked_count_.load(std::memory_order_relaxed) * sizeof(const char*) +
           allocated_.load(std::memory_order_relaxed);
  }
  Iterator* GetIterator(rocksdb::Arena* arena) override {
    if (!sorted()) return vector_->GetIterator(arena);
    if (arena == nullptr) return new SortedIterator(entries_, comparator_);
    // Given an arena, the caller calls the destructor only and frees its arena itself.
    // RocksDB's Arena is not in its public headers, so the iterator's bytes come from
    // this memtable instead, freed with it. Such iterators are made only while it is
    // read-only: for its flush, and for reads in the moments until the flush ends.
    std::lock_guard lock(mutex_);
    auto* bytes = arena_iterators_.emplace_back(std::make_unique<IteratorBytes>()).get();
    return new (bytes->data) SortedIterator(entries_, comparator_);
  }
  Iterator* GetDynamicPrefixIterator(rocksdb::Arena* arena) override { return GetIterator(arena); }
  bool IsMergeOperatorSupported() const override { return vector_->IsMergeOperatorSupported(); }
  bool IsSnapshotSupported() const override { return vector_->IsSnapshotSupported(); }

 private:
  // Adds an entry to the list (inserts come from one thread at a time).
  void note(rocksdb::KeyHandle handle) {
    const char* entry = static_cast<const char*>(handle);
    if (!entries_.empty() && comparator_(entry, entries_.back()) < 0) run_starts_.push_back(entries_.size());
    entries_.push_back(entry);
    tracked_count_.store(entries_.size(), std::memory_order_relaxed);
  }

  // True once entries_ is sorted, which it is made the first time it is asked for
  // after the memtable became read-only; false while inserts may still come.
  bool sorted() {
    std::lock_guard lock(mutex_);
    if (!read_only_ || untracked_.load()) return false;
    if (!sorted_) {
      sort_runs(&entries_, run_starts_, [this](const char* a, const char* b) { return comparator_(a, b) < 0; });
      run_starts_ = {};
      sorted_ = true;
    }
    return true;
  }

  struct IteratorBytes {
    alignas(SortedIterator) unsigned char data[sizeof(SortedIterator)];
  };

  const BytewiseEntryComparator comparator_;  // before vector_, which refers to it
  const std::unique_ptr<rocksdb::MemTableRep> vector_;
  std::vector<std::unique_ptr<IteratorBytes>> arena_iterators_;  // guarded by mutex_
  std::vector<const char*> entries_;  // insertion order, then (sorted_) key order
  std::vector<size_t> run_starts_;    // where each ascending run after the first begins
  std::atomic<size_t> tracked_count_{0};
  std::vector<char*> blocks_;                    // from EntryBlocks, the last being filled
  size_t block_used_ = 0;                        // bytes used in the last block
  std::vector<std::unique_ptr<char[]>> large_;  // entries of more than a quarter block
  std::atomic<size_t> allocated_{0};             // bytes of blocks_ and large_
  std::mutex mutex_;  // guards the flags, and entries_ once read_only_
  bool read_only_ = false;
  bool sorted_ = false;
  std::atomic<bool> untracked_{false};
};

class VectorMemTableFactory final : public rocksdb::MemTableRepFactory {
 public:
  using MemTableRepFactory::CreateMemTableRep;
  rocksdb::MemTableRep* CreateMemTableRep(const rocksdb::MemTableRep::KeyComparator& comparator, rocksdb::Allocator* allocator,
                                          const rocksdb::SliceTransform* transform, rocksdb::Logger* logger) override {
    return new VectorMemTableRep(comparator, allocator, transform, logger);
  }
  const char* Name() const override { return "TallyVectorMemTableFactory"; }
};

}  // namespace

int BytewiseEntryComparator::operator()(const char* entry_a, const char* entry_b) const {
  std::string_view a, b;
  if (entry_user_key(entry_a, &a) && entry_user_key(entry_b, &b)) {
    // Equal user keys are ordered by their trailers, which RocksDB's comparator reads.
    if (const int order = a.compare(b); order != 0) return order;
  }
  return fallback_(entry_a, entry_b);
}

int BytewiseEntryComparator::operator()(const char* entry, const rocksdb::Slice& internal_key) const {
  std::string_view a;
  if (internal_key.size() >= kTrailerBytes && entry_user_key(entry, &a)) {
    if (const int order = a.compare(std::string_view(internal_key.data(), internal_key.size() - kTrailerBytes)); order != 0) return order;
  }
  return fallback_(entry, internal_key);
}

std::shared_ptr<rocksdb::MemTableRepFactory> vector_memtable_factory() { return std::make_shared<VectorMemTableFactory>(); }

}  // namespace tally
