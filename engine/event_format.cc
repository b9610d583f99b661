#include "engine/event_format.h"

#include <limits>

#include "engine/command.h"
#include "engine/values.h"

namespace tally {
namespace {

// Amounts that sum lots (a bank release, a workspace swept to the primary one) are
// bounded by an organization's grants, which the engine keeps at most INT64_MAX / 2;
// an amount one command names is at most kCreditsMicroMax.
constexpr int64_t kSumMax = std::numeric_limits<int64_t>::max() / 2;

bool amount_in(int64_t amount, int64_t max) { return amount >= 0 && amount <= max; }
bool workspace_in(uint32_t id) { return id < kWorkspacesPerOrgMax; }

// The FlatBuffers verifier (2.0) checks a vector of structs for 4-byte alignment only;
// the structs hold int64s, and reading them misaligned would be undefined.
// An empty vector is never read, and FlatBuffers does not align its (empty) data.
template <typename Struct>
bool aligned(const flatbuffers::Vector<const Struct*>* vector) {
  return vector->size() == 0 || reinterpret_cast<uintptr_t>(vector->Data()) % alignof(Struct) == 0;
}

bool portions_in(const flatbuffers::Vector<const fb::LotAmount*>* portions) {
  if (portions == nullptr) return true;
  if (!aligned(portions)) return false;
  for (const fb::LotAmount* portion : *portions) {
    if (!amount_in(portion->amount(), kSumMax)) return false;
  }
  return true;
}

bool parts_in(const flatbuffers::Vector<const fb::WorkspaceAmount*>* parts) {
  if (parts == nullptr) return true;
  if (!aligned(parts)) return false;
  for (const fb::WorkspaceAmount* part : *parts) {
    if (!workspace_in(part->workspace()) || !amount_in(part->amount(), kSumMax)) return false;
  }
  return true;
}

// Whether every number in the event lies within what the engine ever logs. The
// projections trust the log's numbers; a forged one (a negative or astronomic amount,
// a workspace id that would size a table at gigabytes) must not reach them.
bool within_bounds(const fb::Envelope& event) {
  switch (event.event_type()) {
    case fb::Event::WorkspaceCreated: return workspace_in(event.event_as_WorkspaceCreated()->workspace_id());
    case fb::Event::WorkspaceRenamed: return workspace_in(event.event_as_WorkspaceRenamed()->workspace_id());
    case fb::Event::WorkspaceDeleted: return workspace_in(event.event_as_WorkspaceDeleted()->workspace_id());
    case fb::Event::MemberInvited: return workspace_in(event.event_as_MemberInvited()->workspace_id());
    case fb::Event::MemberMoved: return workspace_in(event.event_as_MemberMoved()->workspace_id());
    case fb::Event::CreditsGranted: return amount_in(event.event_as_CreditsGranted()->amount(), kCreditsMicroMax);
    case fb::Event::BankReleased: return amount_in(event.event_as_BankReleased()->amount(), kSumMax);
    case fb::Event::CreditsMoved: {
      const auto* e = event.event_as_CreditsMoved();
      return workspace_in(e->from_workspace()) && workspace_in(e->to_workspace()) && amount_in(e->amount(), kSumMax) &&
             portions_in(e->lots());
    }
    case fb::Event::LotExpired: {
      const auto* e = event.event_as_LotExpired();
      return amount_in(e->amount(), kSumMax) && parts_in(e->workspaces());
    }
    case fb::Event::PlanSet: return amount_in(event.event_as_PlanSet()->monthly_amount(), kCreditsMicroMax);
    case fb::Event::PriceSet: return amount_in(event.event_as_PriceSet()->price(), kCreditsMicroMax);
    case fb::Event::UsageRecorded: {
      const auto* e = event.event_as_UsageRecorded();
      return workspace_in(e->workspace()) && workspace_in(e->funding_workspace()) && amount_in(e->quantity(), kQuantityMax) &&
             amount_in(e->amount(), kCreditsMicroMax) && portions_in(e->lots());
    }
    case fb::Event::HoldReserved: {
      const auto* e = event.event_as_HoldReserved();
      return workspace_in(e->workspace()) && workspace_in(e->funding_workspace()) && amount_in(e->amount(), kCreditsMicroMax) &&
             portions_in(e->lots());
    }
    case fb::Event::HoldClosed: {
      const auto* e = event.event_as_HoldClosed();
      return workspace_in(e->returned_to()) && amount_in(e->amount(), kCreditsMicroMax) && portions_in(e->consumed_lots()) &&
             portions_in(e->returned_lots()) && portions_in(e->expired_lots());
    }
    case fb::Event::LimitSet: {
      const auto* e = event.event_as_LimitSet();
      return workspace_in(e->workspace()) && e->amount() >= -1 && e->amount() <= kCreditsMicroMax;  // -1: no limit
    }
    default: return true;
  }
}

}  // namespace

const fb::Envelope* decode_envelope(std::string_view bytes) {
  if (bytes.empty() || bytes.size() > kEnvelopeBytesMax) return nullptr;
  if (reinterpret_cast<uintptr_t>(bytes.data()) % kEnvelopeAlignment != 0) return nullptr;
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  flatbuffers::Verifier verifier(data, bytes.size(), /*max_depth=*/16, /*max_tables=*/100000);
  if (!fb::VerifyEnvelopeBuffer(verifier)) return nullptr;
  const fb::Envelope* envelope = fb::GetEnvelope(data);
  if (envelope->schema_version() == 0 || envelope->schema_version() > kSchemaVersion) return nullptr;
  if (envelope->event_type() == fb::Event::NONE || envelope->event() == nullptr) return nullptr;
  if (!within_bounds(*envelope)) return nullptr;
  return envelope;
}

std::string_view event_type_name(fb::Event type) { return fb::EnumNameEvent(type); }

}  // namespace tally
