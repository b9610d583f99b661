#include "projections/history_loader.h"

#include <string>
#include <vector>

#include "engine/thread_name.h"

namespace tally {
namespace {

constexpr size_t kChunksQueuedMax = 8;
constexpr size_t kChunkRowsMax = 4096;
constexpr size_t kChunkBytesMax = size_t{1} << 20;

}  // namespace

// Rows copied end to end: each row's key, then its value, in `bytes`.
struct HistoryLoader::Chunk {
  struct Row {
    uint64_t seq;
    size_t key_at;
    uint32_t key_size;
    uint32_t value_size;  // the value follows the key
  };
  std::string bytes;
  std::vector<Row> rows;

  void add(uint64_t seq, std::string_view key, std::string_view value) {
    rows.push_back(Row{seq, bytes.size(), static_cast<uint32_t>(key.size()), static_cast<uint32_t>(value.size())});
    bytes.append(key);
    bytes.append(value);
  }
  bool full() const { return rows.size() >= kChunkRowsMax || bytes.size() >= kChunkBytesMax; }
  void clear() {
    bytes.clear();
    rows.clear();
  }
};

HistoryLoader::HistoryLoader(Projection* projection)
    : projection_(projection), chunk_(std::make_unique<Chunk>()), queue_(kChunksQueuedMax), helper_([this] { run_helper(); }) {
  name_thread(helper_, kHistoryThreadName);
}

HistoryLoader::~HistoryLoader() { finish(); }

void HistoryLoader::add(uint64_t seq, std::string_view key, std::string_view value) {
  chunk_->add(seq, key, value);
  if (chunk_->full()) hand_over();
}

bool HistoryLoader::finish() {
  if (helper_.joinable()) {
    hand_over();
    queue_.close();
    helper_.join();
  }
  return !malformed_;
}

void HistoryLoader::hand_over() {
  if (chunk_->rows.empty()) return;
  chunk_ = queue_.fill_next(std::move(chunk_), [] { return std::make_unique<Chunk>(); });
}

void HistoryLoader::run_helper() {
  // Until the queue is closed and every row restored.
  while (std::unique_ptr<Chunk> chunk = queue_.take()) {
    for (const Chunk::Row& row : chunk->rows) {
      if (malformed_) break;  // the projection is rebuilt from the log: skip the rest
      const std::string_view key(chunk->bytes.data() + row.key_at, row.key_size);
      const std::string_view value(chunk->bytes.data() + row.key_at + row.key_size, row.value_size);
      if (!projection_->load_history_row(row.seq, key, value)) malformed_ = true;
    }
    chunk->clear();
    queue_.give_back(std::move(chunk));
  }
}

}  // namespace tally
