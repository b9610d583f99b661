// The rate card: the price per unit of each (tool, model), with the time each price
// takes effect. Event-sourced, so a replay prices every usage event as it was priced.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "projections/projection.h"

namespace tally {

struct Rate {
  std::string unit;
  int64_t price = 0;  // micro-credits per unit
};

class RatesProjection final : public Projection {
 public:
  RatesProjection() = default;
  // by_hash_ holds iterators into rates_: a copy's would point into the original.
  RatesProjection(const RatesProjection&) = delete;
  RatesProjection& operator=(const RatesProjection&) = delete;
  std::string_view name() const override { return "rates"; }
  void apply(const fb::Envelope& event) override;
  void flush(RowSink* sink) override;
  void dump(RowSink* sink) const override;
  bool load_row(std::string_view key, std::string_view value) override;
  void clear() override;

  // The rate in effect for (tool, model) at `time_us`, or null if none is.
  const Rate* find(std::string_view tool, std::string_view model, int64_t time_us) const;
  // Whether any model of `tool` has a price: pricing a tool registers it.
  bool has_tool(std::string_view tool) const;
  // (tool, model) pairs in std::pair's order, looked up by string views: find() runs
  // for every priced usage event, and a key of two std::strings made for each lookup
  // was half of its instructions.
  struct ProductLess {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      if (const int tools = std::string_view(a.first).compare(b.first); tools != 0) return tools < 0;
      return std::string_view(a.second) < std::string_view(b.second);
    }
  };
  using Products = std::map<std::pair<std::string, std::string>, std::map<int64_t, Rate>, ProductLess>;
  // Every entry: (tool, model) -> effective time -> rate.
  const Products& entries() const { return rates_; }

 private:
  using Key = std::tuple<std::string, std::string, int64_t>;
  void write_row(const Key& key, RowSink* sink) const;
  // The prices of (tool, model) by effective time, or null if it has none.
  const std::map<int64_t, Rate>* prices(std::string_view tool, std::string_view model) const;
  // rates_[(tool, model)], created if new, and indexed by its hash.
  std::map<int64_t, Rate>& product(std::string tool, std::string model);
  static uint64_t product_hash(std::string_view tool, std::string_view model);

  Products rates_;
  // The products of rates_ by product_hash (two share a hash in theory, never in
  // practice). find() runs for every priced usage event: walking the ordered map
  // compared the names at each node, about 220 of the writer's instructions per event
  // with a single product.
  std::unordered_map<uint64_t, std::vector<Products::const_iterator>> by_hash_;
  std::set<Key> dirty_;
};

}  // namespace tally
