#include "projections/usage.h"

#include "engine/log.h"
#include "engine/values.h"
#include "projections/codec.h"
#include "schemas/events_generated.h"

namespace tally {
namespace {

std::string_view str(const flatbuffers::String* s) { return s == nullptr ? std::string_view() : s->string_view(); }

}  // namespace

// Both are looked up for every usage event: a known name costs a hash and no allocation.
uint32_t UsageProjection::product(std::string_view tool, std::string_view model) {
  // The tool's length first, so no two (tool, model) pairs share a key.
  const auto tool_bytes = static_cast<uint32_t>(tool.size());
  product_key_.assign(reinterpret_cast<const char*>(&tool_bytes), sizeof tool_bytes);
  product_key_ += tool;
  product_key_ += model;
  if (auto it = product_index_.find(product_key_); it != product_index_.end()) return it->second;
  const auto index = static_cast<uint32_t>(products_.size());
  product_index_.emplace(product_key_, index);
  products_.emplace_back(tool, model);
  return index;
}

uint32_t UsageProjection::user(OrgUsage& org, std::string_view name) {
  if (auto it = org.user_index.find(name); it != org.user_index.end()) return it->second;
  const auto index = static_cast<uint32_t>(org.users.size());
  org.user_index.emplace(name, index);
  org.users.emplace_back(name);
  return index;
}

void UsageProjection::add(const std::string& org_id, OrgUsage& org, const Cell& cell, int64_t quantity, int64_t credits) {
  Entry& entry = org.cells[cell];
  entry.totals.events += 1;
  entry.totals.quantity += quantity;
  entry.totals.credits += credits;
  if (!entry.dirty) {
    entry.dirty = true;
    changed_cells_.emplace_back(&org_id, cell);
  }
}

void UsageProjection::apply(const fb::Envelope& event) {
  checkpoint_ = event.seq();
  if (const auto* e = event.event_as_UsageRecorded()) {
    auto [it, inserted] = orgs_.try_emplace(std::string(str(e->org())));
    OrgUsage& org = it->second;
    const Cell cell{e->workspace(), user(org, str(e->user())), product(str(e->tool()), str(e->model())), hour_start(e->occurred_at())};
    add(it->first, org, cell, e->quantity(), e->amount());
  } else if (const auto* e = event.event_as_HoldReserved()) {
    auto [it, inserted] = orgs_.try_emplace(std::string(str(e->org())));
    it->second.open_holds[std::string(str(e->hold()))] =
        OpenHold{e->workspace(), std::string(str(e->user())), std::string(str(e->tool())), std::string(str(e->model()))};
    changed_holds_.emplace_back(it->first, str(e->hold()));
  } else if (const auto* e = event.event_as_HoldClosed()) {
    auto org_it = orgs_.find(str(e->org()));
    if (org_it == orgs_.end()) return;
    OrgUsage& org = org_it->second;
    auto it = org.open_holds.find(str(e->hold()));
    if (it == org.open_holds.end()) return;
    if (e->end() == fb::HoldEnd::Settled) {
      const OpenHold& hold = it->second;
      const Cell cell{hold.workspace, user(org, hold.user), product(hold.tool, hold.model), hour_start(event.time_us())};
      add(org_it->first, org, cell, 0, e->amount());
    }
    changed_holds_.emplace_back(org_it->first, it->first);
    org.open_holds.erase(it);
  }
}

// Rows: "usage/t/<org>\0<ws be32>\0<user>\0<tool>\0<model>\0<hour be64>" per cell, and
// "usage/h/<org>\0<hold>" for holds still open.
std::string UsageProjection::row_key(const std::string& org_id, const OrgUsage& org, const Cell& cell) const {
  std::string key = row_prefix() + "t/" + org_id;
  key += '\0';
  for (int i = 0; i < 4; ++i) key += static_cast<char>(cell.workspace >> (24 - 8 * i));
  key += '\0';
  key += org.users[cell.user];
  key += '\0';
  key += products_[cell.product].first;
  key += '\0';
  key += products_[cell.product].second;
  key += '\0';
  key += be64(static_cast<uint64_t>(cell.hour_us));
  return key;
}

void UsageProjection::write_cell(const std::string& org_id, const OrgUsage& org, const Cell& cell, RowSink* sink) const {
  const UsageTotals& totals = org.cells.at(cell).totals;
  RowWriter value;
  value.i64(totals.events).i64(totals.quantity).i64(totals.credits);
  sink->put(row_key(org_id, org, cell), value.data());
}

std::string UsageProjection::hold_row(const OpenHold& hold) {
  RowWriter value;
  value.u32(hold.workspace).str(hold.user).str(hold.tool).str(hold.model);
  return value.take();
}

void UsageProjection::flush(RowSink* sink) {
  for (const auto& [org_id, cell] : changed_cells_) {
    OrgUsage& org = orgs_.find(*org_id)->second;
    write_cell(*org_id, org, cell, sink);
    org.cells[cell].dirty = false;
  }
  changed_cells_.clear();
  for (const auto& [org_id, hold_id] : changed_holds_) {
    const OrgUsage& org = orgs_.find(org_id)->second;
    const std::string key = row_prefix() + "h/" + org_id + '\0' + hold_id;
    auto it = org.open_holds.find(hold_id);
    if (it == org.open_holds.end()) {
      sink->erase(key);
    } else {
      sink->put(key, hold_row(it->second));
    }
  }
  changed_holds_.clear();
  sink->put(checkpoint_key(), be64(checkpoint_));
}

void UsageProjection::dump(RowSink* sink) const {
  for (const auto& [org_id, org] : orgs_) {
    for (const auto& [cell, entry] : org.cells) write_cell(org_id, org, cell, sink);
    for (const auto& [hold_id, hold] : org.open_holds) sink->put(row_prefix() + "h/" + org_id + '\0' + hold_id, hold_row(hold));
  }
  sink->put(checkpoint_key(), be64(checkpoint_));
}

bool UsageProjection::load_row(std::string_view key, std::string_view value) {
  if (key == checkpoint_key()) {
    if (value.size() != 8) return false;
    checkpoint_ = read_be64(value);
    return true;
  }
  const std::string_view rest = key.substr(row_prefix().size());
  RowReader in(value);
  if (rest.starts_with("h/")) {
    const std::string_view body = rest.substr(2);
    const size_t nul = body.find('\0');
    if (nul == std::string_view::npos) return false;
    OpenHold& hold = orgs_[std::string(body.substr(0, nul))].open_holds[std::string(body.substr(nul + 1))];
    hold.workspace = in.u32();
    hold.user = in.str();
    hold.tool = in.str();
    hold.model = in.str();
    return in.done();
  }
  if (!rest.starts_with("t/")) return false;
  // The workspace id and the hour are fixed-width and may hold NUL bytes; read them by
  // position rather than by splitting.
  const std::string_view body = rest.substr(2);
  const size_t org_end = body.find('\0');
  if (org_end == std::string_view::npos || body.size() < org_end + 1 + 4 + 1 + 3 + 8 || body[org_end + 5] != '\0' ||
      body[body.size() - 9] != '\0') {
    return false;
  }
  Cell cell{};
  for (char c : body.substr(org_end + 1, 4)) cell.workspace = (cell.workspace << 8) | static_cast<uint8_t>(c);
  std::string_view middle = body.substr(org_end + 6, body.size() - (org_end + 6) - 9);
  const size_t first = middle.find('\0');
  const size_t second = first == std::string_view::npos ? first : middle.find('\0', first + 1);
  if (second == std::string_view::npos) return false;
  auto [it, inserted] = orgs_.try_emplace(std::string(body.substr(0, org_end)));
  cell.user = user(it->second, middle.substr(0, first));
  cell.product = product(middle.substr(first + 1, second - first - 1), middle.substr(second + 1));
  cell.hour_us = static_cast<int64_t>(read_be64(body.substr(body.size() - 8)));
  Entry& entry = it->second.cells[cell];
  entry.totals.events = in.i64();
  entry.totals.quantity = in.i64();
  entry.totals.credits = in.i64();
  return in.done();
}

void UsageProjection::for_each(std::string_view org_id, const std::function<void(const UsageCell&, const UsageTotals&)>& visit) const {
  auto it = orgs_.find(org_id);
  if (it == orgs_.end()) return;
  const OrgUsage& org = it->second;
  for (const auto& [cell, entry] : org.cells) {
    const auto& [tool, model] = products_[cell.product];
    visit(UsageCell{cell.workspace, org.users[cell.user], tool, model, cell.hour_us}, entry.totals);
  }
}

void UsageProjection::clear() {
  products_.clear();
  product_index_.clear();
  orgs_.clear();
  changed_cells_.clear();
  changed_holds_.clear();
  checkpoint_ = 0;
}

}  // namespace tally
