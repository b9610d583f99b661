#include "projections/orgs.h"

#include "engine/log.h"
#include "engine/values.h"
#include "projections/codec.h"

namespace tally {
namespace {

std::string be32(uint32_t v) {
  std::string out(4, '\0');
  for (int i = 3; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}

uint32_t read_be32(std::string_view s) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4 && i < s.size(); ++i) v = (v << 8) | static_cast<uint8_t>(s[i]);
  return v;
}

std::string_view str(const flatbuffers::String* s) { return s == nullptr ? std::string_view() : s->string_view(); }

}  // namespace

std::string_view role_name(Role role) {
  switch (role) {
    case Role::Owner: return "owner";
    case Role::Admin: return "admin";
    case Role::Member: return "member";
  }
  return "member";
}

std::string_view mode_name(BudgetMode mode) { return mode == BudgetMode::Budget ? "budget" : "shared"; }

std::string_view status_name(MemberStatus status) {
  switch (status) {
    case MemberStatus::kInvited: return "invited";
    case MemberStatus::kActive: return "active";
    case MemberStatus::kRemoved: return "removed";
  }
  return "removed";
}

std::optional<uint32_t> Org::find_workspace(std::string_view name, size_t hash) const {
  auto it = live_workspaces.find(name, hash);
  if (it == live_workspaces.end()) return std::nullopt;
  return it->second;
}

const Member* Org::active_member(std::string_view user, size_t hash) const {
  auto it = members.find(user, hash);
  if (it == members.end() || it->second.status != MemberStatus::kActive) return nullptr;
  return &it->second;
}

const Org* OrgsProjection::find(std::string_view org) const {
  auto it = orgs_.find(org);
  return it == orgs_.end() ? nullptr : it->second.get();
}

Org* OrgsProjection::mutable_org(std::string_view org) {
  auto it = orgs_.find(org);
  if (it == orgs_.end()) {
    ++anomalies_;
    return nullptr;
  }
  return it->second.get();
}

void OrgsProjection::mark(RowKind kind, const std::string& org, std::string sub) { dirty_.emplace(kind, org, std::move(sub)); }

void OrgsProjection::apply(const fb::Envelope& event) {
  checkpoint_ = event.seq();
  const int64_t now = event.time_us();
  switch (event.event_type()) {
    case fb::Event::OrgCreated: {
      const auto* e = event.event_as_OrgCreated();
      if (orgs_.contains(str(e->org()))) {
        ++anomalies_;
        return;
      }
      auto org = std::make_unique<Org>();
      org->id = str(e->org());
      org->name = str(e->name());
      org->owner = str(e->owner());
      org->mode = e->mode();
      org->created_us = now;
      org->workspaces.push_back(Workspace{std::string(kPrimaryWorkspaceName), false, now});
      org->live_workspaces.emplace(kPrimaryWorkspaceName, kPrimaryWorkspaceId);
      org->members.emplace(org->owner, Member{Role::Owner, MemberStatus::kActive, kPrimaryWorkspaceId, now});
      mark(RowKind::kOrg, org->id);
      mark(RowKind::kWorkspace, org->id, be32(kPrimaryWorkspaceId));
      mark(RowKind::kMember, org->id, org->owner);
      orgs_.emplace(org->id, std::move(org));
      return;
    }
    case fb::Event::OrgDeleted: {
      Org* org = mutable_org(str(event.event_as_OrgDeleted()->org()));
      if (org == nullptr) return;
      org->deleted = true;
      mark(RowKind::kOrg, org->id);
      return;
    }
    case fb::Event::BudgetModeChanged: {
      const auto* e = event.event_as_BudgetModeChanged();
      Org* org = mutable_org(str(e->org()));
      if (org == nullptr) return;
      org->mode = e->mode();
      mark(RowKind::kOrg, org->id);
      return;
    }
    case fb::Event::WorkspaceCreated: {
      const auto* e = event.event_as_WorkspaceCreated();
      Org* org = mutable_org(str(e->org()));
      if (org == nullptr || e->workspace_id() != org->workspaces.size()) {
        ++anomalies_;
        return;
      }
      org->workspaces.push_back(Workspace{std::string(str(e->name())), false, now});
      org->live_workspaces.emplace(str(e->name()), e->workspace_id());
      mark(RowKind::kWorkspace, org->id, be32(e->workspace_id()));
      return;
    }
    case fb::Event::WorkspaceRenamed: {
      const auto* e = event.event_as_WorkspaceRenamed();
      Org* org = mutable_org(str(e->org()));
      if (org == nullptr) return;
      if (e->workspace_id() >= org->workspaces.size()) {
        ++anomalies_;
        return;
      }
      Workspace& workspace = org->workspaces[e->workspace_id()];
      org->live_workspaces.erase(workspace.name);
      workspace.name = str(e->name());
      org->live_workspaces.emplace(workspace.name, e->workspace_id());
      mark(RowKind::kWorkspace, org->id, be32(e->workspace_id()));
      return;
    }
    case fb::Event::WorkspaceDeleted: {
      const auto* e = event.event_as_WorkspaceDeleted();
      Org* org = mutable_org(str(e->org()));
      if (org == nullptr) return;
      if (e->workspace_id() >= org->workspaces.size()) {
        ++anomalies_;
        return;
      }
      Workspace& workspace = org->workspaces[e->workspace_id()];
      workspace.deleted = true;
      org->live_workspaces.erase(workspace.name);
      mark(RowKind::kWorkspace, org->id, be32(e->workspace_id()));
      for (auto& [user, member] : org->members) {
        if (member.workspace_id == e->workspace_id() && member.status != MemberStatus::kRemoved) {
          member.workspace_id = kPrimaryWorkspaceId;
          member.updated_us = now;
          mark(RowKind::kMember, org->id, user);
        }
      }
      return;
    }
    case fb::Event::MemberInvited: {
      const auto* e = event.event_as_MemberInvited();
      Org* org = mutable_org(str(e->org()));
      if (org == nullptr) return;
      if (e->workspace_id() >= org->workspaces.size()) {
        ++anomalies_;
        return;
      }
      org->members[std::string(str(e->user()))] = Member{e->role(), MemberStatus::kInvited, e->workspace_id(), now};
      mark(RowKind::kMember, org->id, std::string(str(e->user())));
      return;
    }
    default:
      break;
  }

  // The remaining member and key events update one existing entry.
  switch (event.event_type()) {
    case fb::Event::InviteAccepted:
    case fb::Event::MemberRoleChanged:
    case fb::Event::MemberMoved:
    case fb::Event::MemberRemoved: {
      const flatbuffers::String* org_id = nullptr;
      const flatbuffers::String* user = nullptr;
      if (const auto* e = event.event_as_InviteAccepted()) org_id = e->org(), user = e->user();
      if (const auto* e = event.event_as_MemberRoleChanged()) org_id = e->org(), user = e->user();
      if (const auto* e = event.event_as_MemberMoved()) org_id = e->org(), user = e->user();
      if (const auto* e = event.event_as_MemberRemoved()) org_id = e->org(), user = e->user();
      Org* org = mutable_org(str(org_id));
      if (org == nullptr) return;
      auto it = org->members.find(str(user));
      if (it == org->members.end()) {
        ++anomalies_;
        return;
      }
      Member& member = it->second;
      member.updated_us = now;
      if (event.event_type() == fb::Event::InviteAccepted) member.status = MemberStatus::kActive;
      if (const auto* e = event.event_as_MemberRoleChanged()) member.role = e->role();
      if (const auto* e = event.event_as_MemberMoved()) {
        if (e->workspace_id() >= org->workspaces.size()) {
          ++anomalies_;
          return;
        }
        member.workspace_id = e->workspace_id();
      }
      if (event.event_type() == fb::Event::MemberRemoved) member.status = MemberStatus::kRemoved;
      mark(RowKind::kMember, org->id, it->first);
      return;
    }
    case fb::Event::OwnershipTransferred: {
      const auto* e = event.event_as_OwnershipTransferred();
      Org* org = mutable_org(str(e->org()));
      if (org == nullptr) return;
      auto from = org->members.find(str(e->from_user()));
      auto to = org->members.find(str(e->to_user()));
      if (from == org->members.end() || to == org->members.end()) {
        ++anomalies_;
        return;
      }
      from->second.role = Role::Admin;
      from->second.updated_us = now;
      to->second.role = Role::Owner;
      to->second.updated_us = now;
      org->owner = to->first;
      mark(RowKind::kOrg, org->id);
      mark(RowKind::kMember, org->id, from->first);
      mark(RowKind::kMember, org->id, to->first);
      return;
    }
    case fb::Event::ServiceKeyCreated: {
      const auto* e = event.event_as_ServiceKeyCreated();
      Org* org = mutable_org(str(e->org()));
      if (org == nullptr) return;
      ServiceKey key;
      if (e->secret_sha256() != nullptr) {
        key.secret_sha256.assign(reinterpret_cast<const char*>(e->secret_sha256()->data()), e->secret_sha256()->size());
      }
      key.created_us = now;
      org->keys[std::string(str(e->key_id()))] = std::move(key);
      mark(RowKind::kKey, org->id, std::string(str(e->key_id())));
      return;
    }
    case fb::Event::ServiceKeyRevoked: {
      const auto* e = event.event_as_ServiceKeyRevoked();
      Org* org = mutable_org(str(e->org()));
      if (org == nullptr) return;
      auto it = org->keys.find(str(e->key_id()));
      if (it == org->keys.end()) {
        ++anomalies_;
        return;
      }
      it->second.revoked = true;
      mark(RowKind::kKey, org->id, it->first);
      return;
    }
    default:
      return;  // events of other projections
  }
}

// Row keys: "orgs/<kind>/<org>" for the organization, "orgs/<kind>/<org>\0<sub>" for
// its workspaces (sub = big-endian id), members (user id) and keys (key id).
void OrgsProjection::write_row(const RowId& row, RowSink* sink) const {
  const auto& [kind, org_id, sub] = row;
  const Org* org = find(org_id);
  if (org == nullptr) return;
  std::string key = "orgs/";
  key += static_cast<char>(kind);
  key += '/';
  key += org_id;
  if (kind != RowKind::kOrg) {
    key += '\0';
    key += sub;
  }
  RowWriter value;
  switch (kind) {
    case RowKind::kOrg:
      value.str(org->name).str(org->owner).u8(static_cast<uint8_t>(org->mode)).u8(org->deleted).i64(org->created_us);
      break;
    case RowKind::kWorkspace: {
      const Workspace& workspace = org->workspaces.at(read_be32(sub));
      value.str(workspace.name).u8(workspace.deleted).i64(workspace.created_us);
      break;
    }
    case RowKind::kMember: {
      const Member& member = org->members.at(sub);
      value.u8(static_cast<uint8_t>(member.role)).u8(static_cast<uint8_t>(member.status)).u32(member.workspace_id).i64(member.updated_us);
      break;
    }
    case RowKind::kKey: {
      const ServiceKey& service_key = org->keys.at(sub);
      value.str(service_key.secret_sha256).u8(service_key.revoked).i64(service_key.created_us);
      break;
    }
  }
  sink->put(key, value.data());
}

void OrgsProjection::flush(RowSink* sink) {
  for (const RowId& row : dirty_) write_row(row, sink);
  dirty_.clear();
  sink->put(checkpoint_key(), be64(checkpoint_));
}

void OrgsProjection::write_org_rows(const Org& org, RowSink* sink) const {
  write_row({RowKind::kOrg, org.id, {}}, sink);
  for (uint32_t id = 0; id < org.workspaces.size(); ++id) write_row({RowKind::kWorkspace, org.id, be32(id)}, sink);
  for (const auto& [user, member] : org.members) write_row({RowKind::kMember, org.id, user}, sink);
  for (const auto& [key_id, key] : org.keys) write_row({RowKind::kKey, org.id, key_id}, sink);
}

void OrgsProjection::dump(RowSink* sink) const {
  for (const auto& [id, org] : orgs_) write_org_rows(*org, sink);
  sink->put(checkpoint_key(), be64(checkpoint_));
}

bool OrgsProjection::load_row(std::string_view key, std::string_view value) {
  if (key == checkpoint_key()) {
    if (value.size() != 8) return false;
    checkpoint_ = read_be64(value);
    return true;
  }
  const std::string prefix = row_prefix();
  if (!key.starts_with(prefix) || key.size() < prefix.size() + 3 || key[prefix.size() + 1] != '/') return false;
  const char kind = key[prefix.size()];
  std::string_view rest = key.substr(prefix.size() + 2);
  const size_t nul = rest.find('\0');
  const std::string_view org_id = rest.substr(0, nul);
  const std::string_view sub = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
  if ((kind == 'o') != (nul == std::string_view::npos)) return false;

  // Rows load in key order, so an organization's members and keys may come before it.
  auto [it, inserted] = orgs_.emplace(org_id);
  if (inserted) {
    it->second = std::make_unique<Org>();
    it->second->id = org_id;
  }
  Org& org = *it->second;
  RowReader in(value);
  switch (kind) {
    case 'o':
      org.name = in.str();
      org.owner = in.str();
      org.mode = static_cast<BudgetMode>(in.u8());
      org.deleted = in.u8() != 0;
      org.created_us = in.i64();
      break;
    case 'w': {
      if (sub.size() != 4) return false;
      const uint32_t id = read_be32(sub);
      if (id >= kWorkspacesPerOrgMax) return false;
      if (org.workspaces.size() <= id) org.workspaces.resize(id + 1);
      Workspace& workspace = org.workspaces[id];
      workspace.name = in.str();
      workspace.deleted = in.u8() != 0;
      workspace.created_us = in.i64();
      if (!workspace.deleted) org.live_workspaces[workspace.name] = id;
      break;
    }
    case 'm': {
      Member& member = org.members[std::string(sub)];
      member.role = static_cast<Role>(in.u8());
      member.status = static_cast<MemberStatus>(in.u8());
      member.workspace_id = in.u32();
      member.updated_us = in.i64();
      break;
    }
    case 'k': {
      ServiceKey& service_key = org.keys[std::string(sub)];
      service_key.secret_sha256 = in.str();
      service_key.revoked = in.u8() != 0;
      service_key.created_us = in.i64();
      break;
    }
    default:
      return false;
  }
  return in.done();
}

void OrgsProjection::clear() {
  orgs_.clear();
  dirty_.clear();
  anomalies_ = 0;
  checkpoint_ = 0;
}

}  // namespace tally
