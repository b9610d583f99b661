#include "projections/history_loader.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

namespace tally {
namespace {

// Records the history rows it is given; refuses the one whose key is `refuse`.
class RecordingProjection final : public Projection {
 public:
  std::vector<std::tuple<uint64_t, std::string, std::string>> rows;
  std::string refuse;

  std::string_view name() const override { return "recording"; }
  void apply(const fb::Envelope&) override {}
  void flush(RowSink*) override {}
  void dump(RowSink*) const override {}
  bool load_row(std::string_view, std::string_view) override { return true; }
  bool load_history_row(uint64_t seq, std::string_view key, std::string_view value) override {
    if (key == refuse) return false;
    rows.emplace_back(seq, key, value);
    return true;
  }
  void clear() override { rows.clear(); }
};

// Rows of every size from empty to 70 KiB, so that chunks end on the row count (4,096)
// and on the byte count (1 MiB), and more chunks than the queue holds (8).
std::vector<std::tuple<uint64_t, std::string, std::string>> sample_rows() {
  std::vector<std::tuple<uint64_t, std::string, std::string>> rows;
  for (uint64_t seq = 1; seq <= 40'000; ++seq) {
    const size_t value_size = seq % 997 == 0 ? 70'000 : seq % 31;
    rows.emplace_back(seq, fmt::format("recording/{}", seq), std::string(value_size, static_cast<char>('a' + seq % 26)));
  }
  return rows;
}

TEST(HistoryLoaderTest, GivesEveryRowInOrderAcrossManyChunks) {
  const auto rows = sample_rows();
  RecordingProjection projection;
  HistoryLoader loader(&projection);
  for (const auto& [seq, key, value] : rows) loader.add(seq, key, value);
  EXPECT_TRUE(loader.finish());
  EXPECT_EQ(projection.rows, rows);
  EXPECT_TRUE(loader.finish());  // a second finish is harmless
}

TEST(HistoryLoaderTest, NoRowsIsFine) {
  RecordingProjection projection;
  HistoryLoader loader(&projection);
  EXPECT_TRUE(loader.finish());
  EXPECT_TRUE(projection.rows.empty());
}

// A refused row makes finish() false, and the helper gives the projection no row after
// it (ProjectionSet::load then rebuilds that projection from the log).
TEST(HistoryLoaderTest, ARefusedRowStopsTheRestAndIsReported) {
  const auto rows = sample_rows();
  RecordingProjection projection;
  projection.refuse = "recording/12345";
  {
    HistoryLoader loader(&projection);
    for (const auto& [seq, key, value] : rows) loader.add(seq, key, value);
    EXPECT_FALSE(loader.finish());
  }
  ASSERT_EQ(projection.rows.size(), 12'344u);
  EXPECT_EQ(std::get<0>(projection.rows.back()), 12'344u);
}

}  // namespace
}  // namespace tally
