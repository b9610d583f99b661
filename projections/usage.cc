#include "projections/usage.h"

#include "engine/log.h"
#include "engine/values.h"
#include "projections/codec.h"
#include "projections/name_hash.h"
#include "schemas/events_generated.h"

namespace tally {
namespace {

std::string_view str(const flatbuffers::String* s) { return s == nullptr ? std::string_view() : s->string_view(); }

}  // namespace

// All three are looked up for every usage event: a known one costs a hash, a probe and
// one comparison, and no allocation.
uint32_t UsageProjection::product(std::string_view tool, std::string_view model) {
  const uint64_t h = product_hash(tool, model);
  const auto next = static_cast<uint32_t>(products_.size());
  const auto [index, added] = product_index_.insert(h, next, same_product(tool, model));
  if (added) products_.emplace_back(tool, model);
  return index;
}

uint32_t UsageProjection::user(OrgUsage& org, std::string_view name) {
  const auto next = static_cast<uint32_t>(org.users.size());
  const auto [index, added] = org.user_index.insert(name_hash(name), next, same_user(org, name));
  if (added) org.users.add(name);
  return index;
}

uint32_t UsageProjection::cell_number(OrgUsage& org, const Cell& cell) {
  const auto next = static_cast<uint32_t>(org.cells.size());
  const auto [index, added] = org.cell_index.insert(hash_of(cell), next, [&](uint32_t i) { return org.cells[i].cell == cell; });
  if (added) org.cells.push_back(CellEntry{cell, UsageTotals{}, false});
  return index;
}

void UsageProjection::add(OrgMap::value_type& org, const Cell& cell, int64_t quantity, int64_t credits) {
  const uint32_t number = cell_number(org.second, cell);
  CellEntry& entry = org.second.cells[number];
  entry.totals.events += 1;
  entry.totals.quantity += quantity;
  entry.totals.credits += credits;
  if (!entry.dirty) {
    entry.dirty = true;
    changed_cells_.emplace_back(&org, number);
  }
}

void UsageProjection::apply(const fb::Envelope& event) {
  checkpoint_ = event.seq();
  if (const auto* e = event.event_as_UsageRecorded()) {
    auto [it, inserted] = orgs_.emplace(str(e->org()));
    const Cell cell{e->workspace(), user(it->second, str(e->user())), product(str(e->tool()), str(e->model())), hour_start(e->occurred_at())};
    add(*it, cell, e->quantity(), e->amount());
  } else if (const auto* e = event.event_as_HoldReserved()) {
    auto [it, inserted] = orgs_.emplace(str(e->org()));
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
      add(*org_it, cell, 0, e->amount());
    }
    changed_holds_.emplace_back(org_it->first, it->first);
    org.open_holds.erase(it);
  }
}

void UsageProjection::prefetch(const fb::Envelope& event, PrefetchStage stage, PrefetchNote* note) const {
  const auto* e = event.event_as_UsageRecorded();
  if (e == nullptr) return;
  if (stage == PrefetchStage::kSlot) {
    auto it = orgs_.find(str(e->org()));
    if (it == orgs_.end()) return;
    note->entry = &*it;
    note->hashes[0] = name_hash(str(e->user()));
    it->second.user_index.prefetch(note->hashes[0]);
    return;
  }
  if (note->entry == nullptr) return;  // the organization was not there at kSlot
  const OrgUsage& org = static_cast<const OrgMap::value_type*>(note->entry)->second;
  if (stage == PrefetchStage::kEntry) {
    // Found now, they are there at the apply: members and products are never removed.
    const uint32_t user = org.user_index.find(note->hashes[0], same_user(org, str(e->user())));
    const std::string_view tool = str(e->tool()), model = str(e->model());
    const uint32_t product = product_index_.find(product_hash(tool, model), same_product(tool, model));
    if (user == HashIndex::kNone || product == HashIndex::kNone) return;
    note->numbers[0] = user + 1;
    note->numbers[1] = product + 1;
    note->hashes[1] = hash_of(Cell{e->workspace(), user, product, hour_start(e->occurred_at())});
    org.cell_index.prefetch(note->hashes[1]);
    return;
  }
  if (note->numbers[0] == 0) return;
  const uint32_t cell = org.cell_index.candidate(note->hashes[1]);
  if (cell != HashIndex::kNone) __builtin_prefetch(&org.cells[cell]);
}

void UsageProjection::apply_noted(const fb::Envelope& event, const PrefetchNote& note) {
  const auto* e = event.event_as_UsageRecorded();
  if (e == nullptr || note.numbers[0] == 0) {
    apply(event);
    return;
  }
  // What apply() does for it, but for the lookups the note answers. The node is this
  // projection's own, passed through prefetch(), which may only read it.
  checkpoint_ = event.seq();
  auto* org = const_cast<OrgMap::value_type*>(static_cast<const OrgMap::value_type*>(note.entry));
  const Cell cell{e->workspace(), note.numbers[0] - 1, note.numbers[1] - 1, hour_start(e->occurred_at())};
  add(*org, cell, e->quantity(), e->amount());
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

void UsageProjection::write_cell(const std::string& org_id, const OrgUsage& org, const CellEntry& entry, RowSink* sink) const {
  RowWriter value;
  value.i64(entry.totals.events).i64(entry.totals.quantity).i64(entry.totals.credits);
  sink->put(row_key(org_id, org, entry.cell), value.data());
}

std::string UsageProjection::hold_row(const OpenHold& hold) {
  RowWriter value;
  value.u32(hold.workspace).str(hold.user).str(hold.tool).str(hold.model);
  return value.take();
}

void UsageProjection::flush(RowSink* sink) {
  for (const auto& [org, number] : changed_cells_) {
    CellEntry& entry = org->second.cells[number];
    write_cell(org->first, org->second, entry, sink);
    entry.dirty = false;
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
    for (const CellEntry& entry : org.cells) write_cell(org_id, org, entry, sink);
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
    OpenHold& hold = orgs_[body.substr(0, nul)].open_holds[std::string(body.substr(nul + 1))];
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
  auto [it, inserted] = orgs_.emplace(body.substr(0, org_end));
  cell.user = user(it->second, middle.substr(0, first));
  cell.product = product(middle.substr(first + 1, second - first - 1), middle.substr(second + 1));
  cell.hour_us = static_cast<int64_t>(read_be64(body.substr(body.size() - 8)));
  CellEntry& entry = it->second.cells[cell_number(it->second, cell)];
  entry.totals.events = in.i64();
  entry.totals.quantity = in.i64();
  entry.totals.credits = in.i64();
  return in.done();
}

void UsageProjection::for_each(std::string_view org_id, const std::function<void(const UsageCell&, const UsageTotals&)>& visit) const {
  auto it = orgs_.find(org_id);
  if (it == orgs_.end()) return;
  const OrgUsage& org = it->second;
  for (const CellEntry& entry : org.cells) {
    const Cell& cell = entry.cell;
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
