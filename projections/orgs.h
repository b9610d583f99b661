// The organizations projection: organizations, their workspaces, members and roles,
// and service keys. The engine validates every command against it.
//
// Nothing is ever removed: deleted organizations and workspaces and removed members
// stay as rows with a flag, so history stays readable.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "projections/indexed_map.h"
#include "projections/projection.h"
#include "schemas/events_generated.h"

namespace tally {

using Role = fb::Role;
using BudgetMode = fb::BudgetMode;

enum class MemberStatus : uint8_t { kInvited = 0, kActive = 1, kRemoved = 2 };

std::string_view role_name(Role role);
std::string_view mode_name(BudgetMode mode);
std::string_view status_name(MemberStatus status);

inline constexpr uint32_t kPrimaryWorkspaceId = 0;
inline constexpr std::string_view kPrimaryWorkspaceName = "primary";

struct Workspace {
  std::string name;
  bool deleted = false;
  int64_t created_us = 0;
};

struct Member {
  Role role = Role::Member;
  MemberStatus status = MemberStatus::kInvited;
  uint32_t workspace_id = kPrimaryWorkspaceId;
  int64_t updated_us = 0;  // time of the last change to this membership
};

struct ServiceKey {
  std::string secret_sha256;  // 32 raw bytes
  bool revoked = false;
  int64_t created_us = 0;
};

struct Org {
  std::string id;
  std::string name;
  std::string owner;
  BudgetMode mode = BudgetMode::Shared;
  bool deleted = false;
  int64_t created_us = 0;
  std::vector<Workspace> workspaces;                             // indexed by workspace id
  IndexedMap<uint32_t> live_workspaces;                          // name -> id, not deleted
  IndexedMap<Member> members;                                    // by user id
  std::map<std::string, ServiceKey, std::less<>> keys;           // by key id

  // The live workspace with this name, if any.
  std::optional<uint32_t> find_workspace(std::string_view name) const { return find_workspace(name, key_hash(name)); }
  // find_workspace() for a name whose key_hash() the caller has.
  std::optional<uint32_t> find_workspace(std::string_view name, size_t hash) const;
  // The membership of `user` if it is active.
  const Member* active_member(std::string_view user) const { return active_member(user, key_hash(user)); }
  // active_member() for a user whose key_hash() the caller has.
  const Member* active_member(std::string_view user, size_t hash) const;
};

class OrgsProjection final : public Projection {
 public:
  std::string_view name() const override { return "orgs"; }
  void apply(const fb::Envelope& event) override;
  void flush(RowSink* sink) override;
  void dump(RowSink* sink) const override;
  bool load_row(std::string_view key, std::string_view value) override;
  void clear() override;

  const Org* find(std::string_view org) const;
  const IndexedMap<std::unique_ptr<Org>>& orgs() const { return orgs_; }
  // Events that referred to something that does not exist; always 0 for a sound log.
  uint64_t anomalies() const { return anomalies_; }

 private:
  enum class RowKind : char { kOrg = 'o', kWorkspace = 'w', kMember = 'm', kKey = 'k' };
  using RowId = std::tuple<RowKind, std::string, std::string>;  // kind, org, sub-key

  Org* mutable_org(std::string_view org);
  void mark(RowKind kind, const std::string& org, std::string sub = {});
  void write_row(const RowId& row, RowSink* sink) const;
  void write_org_rows(const Org& org, RowSink* sink) const;

  IndexedMap<std::unique_ptr<Org>> orgs_;
  std::set<RowId> dirty_;
  uint64_t anomalies_ = 0;
};

}  // namespace tally
