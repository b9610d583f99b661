// The user tokens projection: bearer tokens that let a network client act as a user.
// Only the SHA-256 of each secret is kept. Nothing is removed: a revoked token stays
// as a row with a flag, so its id is never reused.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>

#include "projections/projection.h"

namespace tally {

struct UserToken {
  std::string user;
  std::string secret_sha256;  // 32 raw bytes
  bool revoked = false;
  int64_t created_us = 0;
};

class TokensProjection final : public Projection {
 public:
  std::string_view name() const override { return "tokens"; }
  void apply(const fb::Envelope& event) override;
  void flush(RowSink* sink) override;
  void dump(RowSink* sink) const override;
  bool load_row(std::string_view key, std::string_view value) override;
  void clear() override;

  // The token with this id, revoked or not; null if there is none.
  const UserToken* find(std::string_view token_id) const;
  const std::map<std::string, UserToken, std::less<>>& tokens() const { return tokens_; }
  // Events that referred to a token that does not exist; always 0 for a sound log.
  uint64_t anomalies() const { return anomalies_; }

 private:
  void write_row(const std::string& token_id, RowSink* sink) const;

  std::map<std::string, UserToken, std::less<>> tokens_;
  std::set<std::string> dirty_;
  uint64_t anomalies_ = 0;
};

}  // namespace tally
