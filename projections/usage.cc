#include "projections/usage.h"

#include "engine/log.h"
#include "engine/values.h"
#include "projections/codec.h"
#include "schemas/events_generated.h"

namespace tally {
namespace {

std::string_view str(const flatbuffers::String* s) { return s == nullptr ? std::string_view() : s->string_view(); }

// Splits "a\0b\0c..." into at most n parts.
std::vector<std::string_view> split(std::string_view text, size_t n) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < n) {
    const size_t nul = text.find('\0');
    if (nul == std::string_view::npos) break;
    parts.push_back(text.substr(0, nul));
    text = text.substr(nul + 1);
  }
  parts.push_back(text);
  return parts;
}

}  // namespace

std::string UsageProjection::hold_key(std::string_view org, std::string_view hold) const {
  std::string key(org);
  key += '\0';
  key += hold;
  return key;
}

void UsageProjection::add(const UsageKey& key, int64_t quantity, int64_t credits) {
  UsageTotals& totals = totals_[key];
  totals.events += 1;
  totals.quantity += quantity;
  totals.credits += credits;
  dirty_.insert(key);
}

void UsageProjection::apply(const fb::Envelope& event) {
  checkpoint_ = event.seq();
  if (const auto* e = event.event_as_UsageRecorded()) {
    add(UsageKey{std::string(str(e->org())), e->workspace(), std::string(str(e->user())), std::string(str(e->tool())),
                 std::string(str(e->model())), hour_start(e->occurred_at())},
        e->quantity(), e->amount());
  } else if (const auto* e = event.event_as_HoldReserved()) {
    const std::string key = hold_key(str(e->org()), str(e->hold()));
    open_holds_[key] = OpenHold{e->workspace(), std::string(str(e->user())), std::string(str(e->tool())), std::string(str(e->model()))};
    dirty_holds_.insert(key);
  } else if (const auto* e = event.event_as_HoldClosed()) {
    const std::string key = hold_key(str(e->org()), str(e->hold()));
    auto it = open_holds_.find(key);
    if (it == open_holds_.end()) return;
    if (e->end() == fb::HoldEnd::Settled) {
      const OpenHold& hold = it->second;
      add(UsageKey{std::string(str(e->org())), hold.workspace, hold.user, hold.tool, hold.model, hour_start(event.time_us())}, 0,
          e->amount());
    }
    open_holds_.erase(it);
    dirty_holds_.insert(key);
  }
}

// Rows: "usage/t/<org>\0<ws be32>\0<user>\0<tool>\0<model>\0<hour>" and
// "usage/h/<org>\0<hold>" for holds still open.
void UsageProjection::write_row(const UsageKey& key, RowSink* sink) const {
  std::string row = row_prefix() + "t/" + key.org;
  row += '\0';
  std::string ws(4, '\0');
  for (int i = 0; i < 4; ++i) ws[i] = static_cast<char>(key.workspace >> (24 - 8 * i));
  row += ws;
  row += '\0';
  row += key.user;
  row += '\0';
  row += key.tool;
  row += '\0';
  row += key.model;
  row += '\0';
  row += be64(static_cast<uint64_t>(key.hour_us));
  const UsageTotals& totals = totals_.at(key);
  RowWriter value;
  value.i64(totals.events).i64(totals.quantity).i64(totals.credits);
  sink->put(row, value.data());
}

void UsageProjection::flush(RowSink* sink) {
  for (const UsageKey& key : dirty_) write_row(key, sink);
  dirty_.clear();
  for (const std::string& key : dirty_holds_) {
    auto it = open_holds_.find(key);
    const std::string row = row_prefix() + "h/" + key;
    if (it == open_holds_.end()) {
      sink->erase(row);
    } else {
      RowWriter value;
      value.u32(it->second.workspace).str(it->second.user).str(it->second.tool).str(it->second.model);
      sink->put(row, value.data());
    }
  }
  dirty_holds_.clear();
  sink->put(checkpoint_key(), be64(checkpoint_));
}

void UsageProjection::dump(RowSink* sink) const {
  for (const auto& [key, totals] : totals_) write_row(key, sink);
  for (const auto& [key, hold] : open_holds_) {
    RowWriter value;
    value.u32(hold.workspace).str(hold.user).str(hold.tool).str(hold.model);
    sink->put(row_prefix() + "h/" + key, value.data());
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
    OpenHold& hold = open_holds_[std::string(rest.substr(2))];
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
  if (org_end == std::string_view::npos || body.size() < org_end + 1 + 4 + 1 + 8) return false;
  UsageKey usage;
  usage.org = body.substr(0, org_end);
  const std::string_view ws = body.substr(org_end + 1, 4);
  for (char c : ws) usage.workspace = (usage.workspace << 8) | static_cast<uint8_t>(c);
  const std::string_view middle = body.substr(org_end + 6, body.size() - (org_end + 6) - 9);
  const std::vector<std::string_view> parts = split(middle, 3);
  if (parts.size() != 3 || body[body.size() - 9] != '\0') return false;
  usage.user = parts[0];
  usage.tool = parts[1];
  usage.model = parts[2];
  usage.hour_us = static_cast<int64_t>(read_be64(body.substr(body.size() - 8)));
  UsageTotals& totals = totals_[usage];
  totals.events = in.i64();
  totals.quantity = in.i64();
  totals.credits = in.i64();
  return in.done();
}

void UsageProjection::clear() {
  totals_.clear();
  open_holds_.clear();
  dirty_.clear();
  dirty_holds_.clear();
  checkpoint_ = 0;
}

}  // namespace tally
