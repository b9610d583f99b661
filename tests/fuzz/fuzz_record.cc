// libFuzzer target: the log record decoders (engine/log.cc decode_record,
// SegmentReader and HistoryPackReader, engine/entry_compression.cc expand_entry,
// engine/event_format.cc decode_envelope) over
// arbitrary bytes, and the projections over any envelope that passes the FlatBuffers
// verifier. A damaged or forged log must be reported by verify, never crash the
// program reading it; so any envelope that verifies is applied — to fresh projections,
// and on top of a real history — then flushed, dumped, reloaded and checked, and none
// of it may crash.
//
// The input is read as a log record (checksum + envelope), as a log segment (framed
// records, engine/log.h), as a pack of history rows, as a stored (possibly compressed)
// segment or pack, and as a bare envelope; a
// misaligned envelope must be refused (RocksDB hands out values at any address, and
// Store::read_log aligns them first).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/entry_compression.h"
#include "engine/event_format.h"
#include "engine/log.h"
#include "engine/values.h"
#include "fuzz_history.h"
#include "projections/projection_set.h"

namespace {

std::vector<std::string>* history = nullptr;  // the envelopes of fuzz_history.h

class MapSink final : public tally::RowSink {
 public:
  void put(std::string_view key, std::string_view value) override { rows[std::string(key)] = std::string(value); }
  void erase(std::string_view key) override { rows.erase(std::string(key)); }
  void put_history(uint64_t seq, std::string_view key, std::string_view value) override {
    history[{seq, std::string(key)}] = std::string(value);
  }
  std::map<std::string, std::string> rows;
  std::map<std::pair<uint64_t, std::string>, std::string> history;  // in the store's order
};

// What `tally` does with a projection set over its life: apply, flush to the store,
// restore from rows, dump for verify, check invariants.
void exercise(tally::ProjectionSet& projections) {
  MapSink flushed;
  projections.flush(&flushed);
  MapSink dumped;
  projections.dump(&dumped);
  (void)projections.balances.check_invariants();
  (void)projections.anomalies();
  // Restoring every projection from its dumped rows must not crash either.
  tally::ProjectionSet restored;
  for (tally::Projection* projection : restored.all()) {
    for (const auto& [key, value] : dumped.rows) {
      if (key.starts_with(projection->row_prefix()) || key == projection->checkpoint_key()) (void)projection->load_row(key, value);
    }
    for (const auto& [at, value] : dumped.history) {
      if (at.second.starts_with(projection->row_prefix())) (void)projection->load_history_row(at.first, at.second, value);
    }
    (void)projection->finish_history();
  }
  MapSink again;
  restored.dump(&again);
}

void apply_envelope(std::string_view bytes) {
  const tally::fb::Envelope* event = tally::decode_envelope(bytes);
  if (event == nullptr) return;
  (void)tally::event_type_name(event->event_type());
  {
    tally::ProjectionSet fresh;
    fresh.apply(*event);
    exercise(fresh);
  }
  // On top of the history, whatever its sequence number says.
  tally::ProjectionSet lived;
  for (const std::string& past : *history) lived.apply(*tally::decode_envelope(past));
  for (tally::Projection* projection : lived.all()) projection->apply(*event);
  exercise(lived);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  int64_t start = 0;
  tally::parse_time("2026-11-23T10:00:00Z", &start);
  tally::ManualClock clock(start);
  std::unique_ptr<tally::Engine> engine = tally::fuzz::history_engine(&clock);
  history = new std::vector<std::string>();
  (void)engine->store().read_log(1, engine->store().last_seq(), [](uint64_t, std::string_view envelope) {
    history->emplace_back(envelope);
    return true;
  });
  engine.reset();
  std::filesystem::remove_all(tally::fuzz::process_temp_dir());  // not needed again; a crash leaves nothing behind
  // TALLY_FUZZ_WRITE_SEEDS=<dir> writes the history's records as a seed corpus.
  if (const char* dir = std::getenv("TALLY_FUZZ_WRITE_SEEDS")) {
    for (size_t i = 0; i < history->size(); ++i) {
      const std::string path = std::string(dir) + "/event-" + std::to_string(i + 1);
      std::FILE* file = std::fopen(path.c_str(), "wb");
      if (file == nullptr) std::abort();
      const std::string record = (i % 2 == 0) ? tally::encode_record((*history)[i]) : (*history)[i];
      std::fwrite(record.data(), 1, record.size(), file);
      std::fclose(file);
    }
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // As a log record: checksum, then envelope.
  std::string_view envelope;
  if (tally::decode_record(bytes, &envelope)) apply_envelope(envelope);
  // Records round-trip.
  const std::string record = tally::encode_record(bytes);
  std::string_view back;
  if (!tally::decode_record(record, &back) || back != bytes) std::abort();
  // As a log segment: its records come out within its bytes, in order, and framed
  // again they give the same bytes back, unless the reader called it malformed.
  tally::SegmentReader segment(bytes);
  std::string reframed;
  for (std::string_view framed; segment.next(&framed);) {
    if (framed.data() < bytes.data() || framed.data() + framed.size() > bytes.data() + bytes.size()) std::abort();
    tally::append_frame(&reframed, framed, {});
  }
  if (!segment.malformed() && reframed != bytes) std::abort();
  if (segment.malformed() && reframed.size() >= bytes.size()) std::abort();
  // As a pack of history rows, the same: rows within its bytes, in order, and packed
  // again the same bytes, unless the reader called it malformed.
  tally::HistoryPackReader pack(bytes);
  std::string repacked;
  uint64_t seq = 0;
  for (std::string_view key, value; pack.next(&seq, &key, &value);) {
    for (std::string_view part : {key, value}) {
      if (part.data() < bytes.data() || part.data() + part.size() > bytes.data() + bytes.size()) std::abort();
    }
    tally::append_history_row(&repacked, seq, key, value);
  }
  if (!pack.malformed() && repacked != bytes) std::abort();
  if (pack.malformed() && repacked.size() >= bytes.size()) std::abort();
  // As a stored segment or pack (engine/entry_compression.h): one that expands comes
  // out at no more than the largest size allowed, and compressed again and expanded,
  // it gives the same bytes.
  std::string expanded_buffer;
  std::string_view expanded;
  if (tally::expand_entry(bytes, &expanded_buffer, &expanded)) {
    if (expanded.size() > tally::kCompressedValueBytesMax && tally::is_compressed_entry(bytes)) std::abort();
    if (!tally::is_compressed_entry(expanded)) {
      std::string stored_buffer, again_buffer;
      std::string_view again;
      const std::string_view stored = tally::compress_entry(expanded, &stored_buffer);
      if (!tally::expand_entry(stored, &again_buffer, &again) || again != expanded) std::abort();
    }
  }
  // As a bare envelope (libFuzzer's buffer is malloc-aligned)...
  apply_envelope(bytes);
  // ...and at an odd address, where reading it in place would be undefined: refused.
  std::unique_ptr<char[]> shifted(new char[size + 1]);
  std::memcpy(shifted.get() + 1, data, size);
  if (tally::decode_envelope(std::string_view(shifted.get() + 1, size)) != nullptr) std::abort();
  return 0;
}
