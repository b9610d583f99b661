// A small, fixed history for the fuzz targets: an engine in a temporary directory that
// has run a command of every kind, so fuzzed queries and events meet real state.
#pragma once

#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/clock.h"
#include "engine/command.h"
#include "engine/engine.h"
#include "engine/values.h"

namespace tally::fuzz {

// Every event type, and the state each leaves: two organizations (budget and shared),
// workspaces, members in every status, a service key, lots of every kind (one
// expired, one banked and released), a plan, prices, usage, holds in every state,
// limits.
inline const std::vector<std::string_view> kHistory = {
    R"({"cmd":"set_price","actor":"platform","tool":"image","model":"flux","unit":"image","credits_per_unit":"16","effective_at":"2026-11-01T00:00:00Z"})",
    R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","name":"Acme","mode":"budget"})",
    R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})",
    R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"tmp"})",
    R"({"cmd":"rename_workspace","actor":"alice@acme.io","org":"acme","workspace":"tmp","name":"scratch"})",
    R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","role":"member","workspace":"design"})",
    R"({"cmd":"accept_invite","actor":"bob@acme.io","org":"acme"})",
    R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"carol@acme.io","role":"admin","workspace":"primary"})",
    R"({"cmd":"accept_invite","actor":"carol@acme.io","org":"acme"})",
    R"({"cmd":"change_role","actor":"alice@acme.io","org":"acme","user":"carol@acme.io","role":"member"})",
    R"({"cmd":"move_member","actor":"alice@acme.io","org":"acme","user":"carol@acme.io","workspace":"scratch"})",
    R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"dan@acme.io","role":"member","workspace":"design"})",
    R"({"cmd":"remove_member","actor":"alice@acme.io","org":"acme","user":"dan@acme.io"})",
    R"({"cmd":"create_service_key","actor":"platform","org":"acme","key":"backend","secret_sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"})",
    R"({"cmd":"set_plan","actor":"alice@acme.io","org":"acme","plan":"pro","monthly_credits":"500","rollover":true})",
    R"({"cmd":"renew_plan","actor":"alice@acme.io","org":"acme","grant":"r1"})",
    R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g1","kind":"one_time","credits":"100","expires_at":"2026-11-23T10:00:30Z"})",
    R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g2","kind":"promo","credits":"20.5"})",
    R"({"cmd":"transfer_credits","actor":"alice@acme.io","org":"acme","from":"primary","to":"design","credits":"300"})",
    R"({"cmd":"set_limit","actor":"alice@acme.io","org":"acme","workspace":"design","period":"day","credits":"1000"})",
    R"({"cmd":"set_limit","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","period":"month","credits":"900"})",
    R"({"cmd":"record_usage","actor":"bob@acme.io","id":"u-1","org":"acme","workspace":"design","tool":"image","model":"flux","quantity":2,"unit":"image","occurred_at":"2026-11-23T10:00:00Z"})",
    R"({"cmd":"record_usage","actor":"key:backend","id":"u-2","org":"acme","workspace":"design","user":"bob@acme.io","tool":"chat","model":"gpt","quantity":900,"unit":"token","credits":"0.25","occurred_at":"2026-11-23T10:00:00Z"})",
    R"({"cmd":"reserve","actor":"bob@acme.io","org":"acme","workspace":"design","hold":"h1","credits":"80","timeout_s":600,"tool":"video","model":"veo"})",
    R"({"cmd":"settle","actor":"bob@acme.io","org":"acme","hold":"h1","credits":"64"})",
    R"({"cmd":"reserve","actor":"bob@acme.io","org":"acme","workspace":"design","hold":"h2","credits":"10","timeout_s":600})",
    R"({"cmd":"release_hold","actor":"bob@acme.io","org":"acme","hold":"h2"})",
    R"({"cmd":"reserve","actor":"bob@acme.io","org":"acme","workspace":"design","hold":"h3","credits":"5","timeout_s":1})",
    R"({"cmd":"reserve","actor":"bob@acme.io","org":"acme","workspace":"design","hold":"h4","credits":"7","timeout_s":3600})",
    R"({"cmd":"delete_workspace","actor":"alice@acme.io","org":"acme","workspace":"scratch"})",
    R"({"cmd":"tick","actor":"platform"})",
    R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g3","kind":"top_up","credits":"50"})",
    R"({"cmd":"set_budget_mode","actor":"alice@acme.io","org":"acme","mode":"shared"})",
    R"({"cmd":"create_org","actor":"platform","org":"beta","owner":"erin@beta.io"})",
    R"({"cmd":"invite_member","actor":"erin@beta.io","org":"beta","user":"bob@acme.io","role":"admin","workspace":"primary"})",
    R"({"cmd":"accept_invite","actor":"bob@acme.io","org":"beta"})",
    R"({"cmd":"transfer_ownership","actor":"erin@beta.io","org":"beta","user":"bob@acme.io"})",
    R"({"cmd":"create_service_key","actor":"platform","org":"beta","key":"old","secret_sha256":"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"})",
    R"({"cmd":"revoke_service_key","actor":"platform","org":"beta","key":"old"})",
    R"({"cmd":"create_org","actor":"zed@gone.io","org":"gone"})",
    R"({"cmd":"delete_org","actor":"zed@gone.io","org":"gone"})",
};

// A temporary directory that lives as long as the process.
inline std::string process_temp_dir() {
  // Never freed: the exit handler that removes the directory runs after static
  // destructors would have run.
  static const std::string* dir = [] {
    auto* path = new std::string((std::filesystem::temp_directory_path() / "tally-fuzz-XXXXXX").string());
    if (mkdtemp(path->data()) == nullptr) std::abort();
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(process_temp_dir(), ignored);
    });
    return path;
  }();
  return *dir;
}

// An engine that has run kHistory, one command per second from 2026-11-23T10:00:00Z
// (so the one-time lot expires and hold h3 times out along the way).
inline std::unique_ptr<Engine> history_engine(ManualClock* clock) {
  EngineOptions options;
  options.data_dir = process_temp_dir() + "/history";
  options.clock = clock;
  std::unique_ptr<Engine> engine;
  if (!Engine::open(options, &engine).ok()) std::abort();
  for (std::string_view line : kHistory) {
    Command command;
    if (!decode_command(line, &command).ok()) {
      std::fprintf(stderr, "fuzz history: bad line %.*s\n", static_cast<int>(line.size()), line.data());
      std::abort();
    }
    clock->advance(1'000'000);
    const std::vector<CommandResult> results = engine->execute(std::span<const Command>(&command, 1));
    if (!results[0].status.ok()) {
      std::fprintf(stderr, "fuzz history: refused %s\n", results[0].to_json().c_str());
      std::abort();
    }
  }
  return engine;
}

}  // namespace tally::fuzz
