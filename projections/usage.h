// Usage aggregates: events, quantity and credits per organization x workspace x member
// x tool x model x hour (of the time the usage occurred). Days and months are sums of
// hours. Settled holds count as one event of quantity 0 at the time they settle.
//
// In memory, members and (tool, model) pairs are interned to small integers so a cell
// key is four integers; rows in the store spell the names out. Names and cells are kept
// in arrays, in the order they first occurred, and found through a HashIndex.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "projections/hash_index.h"
#include "projections/indexed_map.h"
#include "projections/name_hash.h"
#include "projections/projection.h"

namespace tally {

struct UsageTotals {
  int64_t events = 0;
  int64_t quantity = 0;
  int64_t credits = 0;
};

// One aggregate cell as queries see it.
struct UsageCell {
  uint32_t workspace = 0;
  std::string_view user;
  std::string_view tool;
  std::string_view model;
  int64_t hour_us = 0;  // start of the hour
};

class UsageProjection final : public Projection {
 public:
  std::string_view name() const override { return "usage"; }
  void apply(const fb::Envelope& event) override;
  // For a usage event: the member's slot in its organization's index (kSlot); the
  // member's and the product's numbers, and the cell's slot (kEntry); the cell (kKey).
  // The note holds the organization's node of orgs_ (entry), the member's name_hash
  // (hashes[0]) and the cell's hash_of (hashes[1]), and the member's and the product's
  // numbers plus one (numbers[0] and [1]; 0: not known yet), which apply_noted() takes
  // instead of looking them up.
  void prefetch(const fb::Envelope& event, PrefetchStage stage, PrefetchNote* note) const override;
  void apply_noted(const fb::Envelope& event, const PrefetchNote& note) override;
  void flush(RowSink* sink) override;
  void dump(RowSink* sink) const override;
  bool load_row(std::string_view key, std::string_view value) override;
  void clear() override;

  // Calls visit for every cell of the organization, in no particular order.
  void for_each(std::string_view org, const std::function<void(const UsageCell&, const UsageTotals&)>& visit) const;

 private:
  struct Cell {
    uint32_t workspace;
    uint32_t user;
    uint32_t product;
    int64_t hour_us;
    bool operator==(const Cell&) const = default;
  };
  static uint64_t hash_of(const Cell& c) {
    uint64_t h = (uint64_t{c.workspace} << 40) ^ (uint64_t{c.user} << 20) ^ c.product;
    h ^= static_cast<uint64_t>(c.hour_us) * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 29);
  }
  struct CellEntry {
    Cell cell;
    UsageTotals totals;
    bool dirty = false;  // in changed_cells_
  };
  struct OpenHold {
    uint32_t workspace = 0;
    std::string user, tool, model;
  };
  // Interned names, by number, their bytes end to end in one string: comparing one
  // reads one run of memory, where a std::string longer than its inline buffer (a
  // member id such as "m1234@example.com") sends the read on to a heap copy. A view
  // from operator[] is valid until the next add().
  struct Names {
    std::string bytes;
    std::vector<size_t> ends;  // ends[i]: one past the last byte of name i
    size_t size() const { return ends.size(); }
    std::string_view operator[](size_t i) const {
      const size_t begin = i == 0 ? 0 : ends[i - 1];
      return std::string_view(bytes).substr(begin, ends[i] - begin);
    }
    void add(std::string_view name) {
      bytes.append(name);
      ends.push_back(bytes.size());
    }
  };
  struct OrgUsage {
    Names users;  // interned member ids, by number
    HashIndex user_index;
    // Cells by number, in the order they first occurred (a deque: they never move, and
    // growing it copies nothing).
    std::deque<CellEntry> cells;
    HashIndex cell_index;
    std::map<std::string, OpenHold, std::less<>> open_holds;  // by hold id
  };
  using OrgMap = IndexedMap<OrgUsage>;

  static uint64_t product_hash(std::string_view tool, std::string_view model) { return name_hash(tool) * 31 + name_hash(model); }
  // Whether item i of the index is the product (tool, model) / the member `name`: the
  // comparison each lookup in product_index_ / an organization's user_index makes.
  auto same_product(std::string_view tool, std::string_view model) const {
    return [this, tool, model](uint32_t i) { return products_[i].first == tool && products_[i].second == model; };
  }
  static auto same_user(const OrgUsage& org, std::string_view name) {
    return [&org, name](uint32_t i) { return org.users[i] == name; };
  }
  uint32_t product(std::string_view tool, std::string_view model);
  static uint32_t user(OrgUsage& org, std::string_view name);
  // The cell's number in org.cells, added with zero totals if new.
  static uint32_t cell_number(OrgUsage& org, const Cell& cell);
  void add(OrgMap::value_type& org, const Cell& cell, int64_t quantity, int64_t credits);
  std::string row_key(const std::string& org_id, const OrgUsage& org, const Cell& cell) const;
  void write_cell(const std::string& org_id, const OrgUsage& org, const CellEntry& entry, RowSink* sink) const;
  static std::string hold_row(const OpenHold& hold);

  std::vector<std::pair<std::string, std::string>> products_;  // (tool, model) by number
  HashIndex product_index_;
  OrgMap orgs_;
  // Cells changed since the last flush: (organization, cell number).
  std::vector<std::pair<OrgMap::value_type*, uint32_t>> changed_cells_;
  std::vector<std::pair<std::string, std::string>> changed_holds_;  // (org, hold)
};

}  // namespace tally
