#include "projections/rates.h"

#include "engine/log.h"
#include "projections/codec.h"
#include "projections/name_hash.h"
#include "schemas/events_generated.h"

namespace tally {

void RatesProjection::apply(const fb::Envelope& event) {
  checkpoint_ = event.seq();
  const auto* e = event.event_as_PriceSet();
  if (e == nullptr || e->tool() == nullptr || e->model() == nullptr) return;
  std::string tool = e->tool()->str(), model = e->model()->str();
  dirty_.emplace(tool, model, e->effective_at());
  product(std::move(tool), std::move(model))[e->effective_at()] = Rate{e->unit() == nullptr ? std::string() : e->unit()->str(), e->price()};
}

uint64_t RatesProjection::product_hash(std::string_view tool, std::string_view model) {
  // Odd multiplier: (tool, model) and (model, tool) hash apart.
  return name_hash(tool) * 0x9e3779b97f4a7c15ULL ^ name_hash(model);
}

std::map<int64_t, Rate>& RatesProjection::product(std::string tool, std::string model) {
  const uint64_t hash = product_hash(tool, model);
  auto [it, inserted] = rates_.try_emplace({std::move(tool), std::move(model)});
  if (inserted) by_hash_[hash].push_back(it);
  return it->second;
}

const std::map<int64_t, Rate>* RatesProjection::prices(std::string_view tool, std::string_view model) const {
  const auto hit = by_hash_.find(product_hash(tool, model));
  if (hit == by_hash_.end()) return nullptr;
  for (const Products::const_iterator it : hit->second) {
    if (it->first.first == tool && it->first.second == model) return &it->second;
  }
  return nullptr;
}

const Rate* RatesProjection::find(std::string_view tool, std::string_view model, int64_t time_us) const {
  const std::map<int64_t, Rate>* entries = prices(tool, model);
  if (entries == nullptr) return nullptr;
  auto entry = entries->upper_bound(time_us);  // first entry after time_us
  if (entry == entries->begin()) return nullptr;
  return &std::prev(entry)->second;
}

bool RatesProjection::has_tool(std::string_view tool) const {
  auto it = rates_.lower_bound(std::pair<std::string_view, std::string_view>(tool, ""));
  return it != rates_.end() && it->first.first == tool;
}

// Key: "rates/<tool>\0<model>\0<effective_at, big-endian with the sign bit flipped>".
void RatesProjection::write_row(const Key& key, RowSink* sink) const {
  const auto& [tool, model, effective_at] = key;
  const Rate& rate = rates_.at({tool, model}).at(effective_at);
  std::string row_key = row_prefix() + tool;
  row_key += '\0';
  row_key += model;
  row_key += '\0';
  row_key += be64(static_cast<uint64_t>(effective_at) ^ (uint64_t{1} << 63));
  RowWriter value;
  value.str(rate.unit).i64(rate.price);
  sink->put(row_key, value.data());
}

void RatesProjection::flush(RowSink* sink) {
  for (const Key& key : dirty_) write_row(key, sink);
  dirty_.clear();
  sink->put(checkpoint_key(), be64(checkpoint_));
}

void RatesProjection::dump(RowSink* sink) const {
  for (const auto& [product, entries] : rates_) {
    for (const auto& [effective_at, rate] : entries) write_row({product.first, product.second, effective_at}, sink);
  }
  sink->put(checkpoint_key(), be64(checkpoint_));
}

bool RatesProjection::load_row(std::string_view key, std::string_view value) {
  if (key == checkpoint_key()) {
    if (value.size() != 8) return false;
    checkpoint_ = read_be64(value);
    return true;
  }
  std::string_view rest = key.substr(row_prefix().size());
  const size_t first = rest.find('\0');
  if (first == std::string_view::npos) return false;
  const size_t second = rest.find('\0', first + 1);
  if (second == std::string_view::npos || rest.size() != second + 1 + 8) return false;
  const std::string tool(rest.substr(0, first));
  const std::string model(rest.substr(first + 1, second - first - 1));
  const auto effective_at = static_cast<int64_t>(read_be64(rest.substr(second + 1)) ^ (uint64_t{1} << 63));
  RowReader in(value);
  Rate rate;
  rate.unit = in.str();
  rate.price = in.i64();
  product(tool, model)[effective_at] = rate;
  return in.done();
}

void RatesProjection::clear() {
  rates_.clear();
  by_hash_.clear();
  dirty_.clear();
  checkpoint_ = 0;
}

}  // namespace tally
