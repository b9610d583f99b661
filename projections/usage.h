// Usage aggregates: events, quantity and credits per organization x workspace x member
// x tool x model x hour (of the time the usage occurred). Days and months are sums of
// hours. Settled holds count as one event of quantity 0 at the time they settle.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <tuple>

#include "projections/projection.h"

namespace tally {

struct UsageKey {
  std::string org;
  uint32_t workspace = 0;
  std::string user;
  std::string tool;
  std::string model;
  int64_t hour_us = 0;  // start of the hour
  auto operator<=>(const UsageKey&) const = default;
};

struct UsageTotals {
  int64_t events = 0;
  int64_t quantity = 0;
  int64_t credits = 0;
};

class UsageProjection final : public Projection {
 public:
  std::string_view name() const override { return "usage"; }
  void apply(const fb::Envelope& event) override;
  void flush(RowSink* sink) override;
  void dump(RowSink* sink) const override;
  bool load_row(std::string_view key, std::string_view value) override;
  void clear() override;

  const std::map<UsageKey, UsageTotals>& totals() const { return totals_; }

 private:
  struct OpenHold {
    uint32_t workspace = 0;
    std::string user, tool, model;
  };
  void add(const UsageKey& key, int64_t quantity, int64_t credits);
  void write_row(const UsageKey& key, RowSink* sink) const;
  std::string hold_key(std::string_view org, std::string_view hold) const;

  std::map<UsageKey, UsageTotals> totals_;
  std::map<std::string, OpenHold> open_holds_;  // by "org\0hold"
  std::set<UsageKey> dirty_;
  std::set<std::string> dirty_holds_;
};

}  // namespace tally
