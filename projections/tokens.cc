#include "projections/tokens.h"

#include "engine/log.h"
#include "projections/codec.h"
#include "schemas/events_generated.h"

namespace tally {

void TokensProjection::apply(const fb::Envelope& event) {
  checkpoint_ = event.seq();
  if (const auto* e = event.event_as_UserTokenCreated()) {
    if (e->token_id() == nullptr || e->user() == nullptr) {
      ++anomalies_;
      return;
    }
    UserToken token;
    token.user = e->user()->str();
    if (e->secret_sha256() != nullptr) {
      token.secret_sha256.assign(reinterpret_cast<const char*>(e->secret_sha256()->data()), e->secret_sha256()->size());
    }
    token.created_us = event.time_us();
    tokens_[e->token_id()->str()] = std::move(token);
    dirty_.insert(e->token_id()->str());
    return;
  }
  if (const auto* e = event.event_as_UserTokenRevoked()) {
    auto it = e->token_id() == nullptr ? tokens_.end() : tokens_.find(e->token_id()->string_view());
    if (it == tokens_.end()) {
      ++anomalies_;
      return;
    }
    it->second.revoked = true;
    dirty_.insert(it->first);
  }
}

const UserToken* TokensProjection::find(std::string_view token_id) const {
  auto it = tokens_.find(token_id);
  return it == tokens_.end() ? nullptr : &it->second;
}

// Key: "tokens/<token id>"; value: user, secret hash, revoked, created time.
void TokensProjection::write_row(const std::string& token_id, RowSink* sink) const {
  const UserToken& token = tokens_.at(token_id);
  RowWriter value;
  value.str(token.user).str(token.secret_sha256).u8(token.revoked).i64(token.created_us);
  sink->put(row_prefix() + token_id, value.data());
}

void TokensProjection::flush(RowSink* sink) {
  for (const std::string& token_id : dirty_) write_row(token_id, sink);
  dirty_.clear();
  sink->put(checkpoint_key(), be64(checkpoint_));
}

void TokensProjection::dump(RowSink* sink) const {
  for (const auto& [token_id, token] : tokens_) write_row(token_id, sink);
  sink->put(checkpoint_key(), be64(checkpoint_));
}

bool TokensProjection::load_row(std::string_view key, std::string_view value) {
  if (key == checkpoint_key()) {
    if (value.size() != 8) return false;
    checkpoint_ = read_be64(value);
    return true;
  }
  if (!key.starts_with(row_prefix()) || key.size() == row_prefix().size()) return false;
  RowReader in(value);
  UserToken token;
  token.user = in.str();
  token.secret_sha256 = in.str();
  token.revoked = in.u8() != 0;
  token.created_us = in.i64();
  tokens_[std::string(key.substr(row_prefix().size()))] = std::move(token);
  return in.done();
}

void TokensProjection::clear() {
  tokens_.clear();
  dirty_.clear();
  anomalies_ = 0;
  checkpoint_ = 0;
}

}  // namespace tally
