// Usage aggregates: events, quantity and credits per organization x workspace x member
// x tool x model x hour (of the time the usage occurred). Days and months are sums of
// hours. Settled holds count as one event of quantity 0 at the time they settle.
//
// In memory, members and (tool, model) pairs are interned to small integers so a cell
// key is four integers; rows in the store spell the names out.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "projections/indexed_map.h"
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
  struct CellHash {
    size_t operator()(const Cell& c) const {
      uint64_t h = (uint64_t{c.workspace} << 40) ^ (uint64_t{c.user} << 20) ^ c.product;
      h ^= static_cast<uint64_t>(c.hour_us) * 0x9E3779B97F4A7C15ULL;
      return static_cast<size_t>(h ^ (h >> 29));
    }
  };
  struct Entry {
    UsageTotals totals;
    bool dirty = false;
  };
  struct OpenHold {
    uint32_t workspace = 0;
    std::string user, tool, model;
  };
  struct OrgUsage {
    std::vector<std::string> users;
    std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> user_index;
    std::unordered_map<Cell, Entry, CellHash> cells;
    std::map<std::string, OpenHold, std::less<>> open_holds;  // by hold id
  };

  uint32_t product(std::string_view tool, std::string_view model);
  static uint32_t user(OrgUsage& org, std::string_view name);
  void add(const std::string& org_id, OrgUsage& org, const Cell& cell, int64_t quantity, int64_t credits);
  std::string row_key(const std::string& org_id, const OrgUsage& org, const Cell& cell) const;
  void write_cell(const std::string& org_id, const OrgUsage& org, const Cell& cell, RowSink* sink) const;
  static std::string hold_row(const OpenHold& hold);

  std::vector<std::pair<std::string, std::string>> products_;  // (tool, model) by index
  // (tool's length, tool, model) as one string -> index in products_; product_key_ is
  // where product() spells that key out for a lookup.
  std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> product_index_;
  std::string product_key_;
  std::map<std::string, OrgUsage, std::less<>> orgs_;
  std::vector<std::pair<const std::string*, Cell>> changed_cells_;
  std::vector<std::pair<std::string, std::string>> changed_holds_;  // (org, hold)
};

}  // namespace tally
