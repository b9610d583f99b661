// IndexedMap: a map from strings kept in key order, with a hash index beside it.
//
// Members and workspaces are looked up by name several times for every usage event
// (who is acting, which workspace, whose spend limit), and organizations have up to
// thousands of members whose ids share long prefixes ("user-1234@acme.io"): a walk
// down a std::map compares a dozen such strings. The index answers a lookup with one
// hash and, as a rule, one comparison. Iteration stays in key order, which rows,
// listings and dumps depend on.
//
// Each projection also keeps its organizations in one, however few there are: a usage
// event looks its organization up in four projections (two of them twice), and with
// std::map each lookup walked three or four nodes, a string comparison at each: 6-9 %
// of a rebuild's samples, nearly all on its helper thread (bench/RESULTS.md, "Runs
// 36-37").
//
// The index holds the tree's own iterators (std::map nodes never move), so it stays
// valid through inserts, erases of other keys and moves of the whole map; a copy
// rebuilds it. Only the operations the projections use are offered.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <stdexcept>
#include <utility>
#include <vector>

#include "projections/name_hash.h"

namespace tally {

// The hash an IndexedMap keeps of a key: never 0, which marks an empty slot. The same
// for every IndexedMap, whatever its values.
inline size_t key_hash(std::string_view key) {
  const size_t hash = name_hash(key);
  return hash == 0 ? 1 : hash;
}

template <typename V>
class IndexedMap {
 public:
  using Tree = std::map<std::string, V, std::less<>>;
  using iterator = typename Tree::iterator;
  using const_iterator = typename Tree::const_iterator;
  using value_type = typename Tree::value_type;

  IndexedMap() = default;
  IndexedMap(const IndexedMap& other) : tree_(other.tree_) { reindex(); }
  IndexedMap(IndexedMap&& other) noexcept : tree_(std::move(other.tree_)), slots_(std::move(other.slots_)) { other.clear(); }
  IndexedMap& operator=(const IndexedMap& other) {
    if (this != &other) {
      tree_ = other.tree_;
      reindex();
    }
    return *this;
  }
  IndexedMap& operator=(IndexedMap&& other) noexcept {
    if (this != &other) {
      tree_ = std::move(other.tree_);
      slots_ = std::move(other.slots_);
      other.clear();
    }
    return *this;
  }

  iterator begin() { return tree_.begin(); }
  iterator end() { return tree_.end(); }
  const_iterator begin() const { return tree_.begin(); }
  const_iterator end() const { return tree_.end(); }
  size_t size() const { return tree_.size(); }
  bool empty() const { return tree_.empty(); }

  iterator find(std::string_view key) { return find(key, key_hash(key)); }
  // find() for a key whose key_hash() the caller has.
  iterator find(std::string_view key, size_t hash) {
    const Slot* slot = lookup(key, hash);
    return slot == nullptr ? tree_.end() : slot->node;
  }
  const_iterator find(std::string_view key) const { return find(key, key_hash(key)); }
  const_iterator find(std::string_view key, size_t hash) const {
    const Slot* slot = lookup(key, hash);
    return slot == nullptr ? tree_.end() : const_iterator(slot->node);
  }
  bool contains(std::string_view key) const { return lookup(key) != nullptr; }
  // Hints that a key is looked up soon; they change nothing. They take the key's
  // key_hash(), which a caller computes once for all three, and for every map it
  // hints. prefetch() starts loading the slot where the lookup begins;
  // prefetch_entry(), called later, reads that slot and starts loading the entry it
  // points to; prefetch_key(), later still, its key.
  void prefetch(size_t hash) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[hash & (slots_.size() - 1)]);
  }
  void prefetch_entry(size_t hash) const {
    if (slots_.empty()) return;
    const Slot& slot = slots_[hash & (slots_.size() - 1)];
    if (slot.hash != hash) return;
    // The whole entry, key and value: a member's balance spans three cache lines.
    const char* entry = reinterpret_cast<const char*>(&*slot.node);
    for (size_t at = 0; at < sizeof(value_type); at += 64) __builtin_prefetch(entry + at);
  }
  // Called after prefetch_entry(): reads the entry and starts loading the characters of
  // its key, which the lookup compares. A key longer than std::string's inline buffer
  // (15 characters: "m1234@example.com" is 17) lives in an allocation of its own, one
  // more cache miss that the entry's prefetch does not cover.
  void prefetch_key(size_t hash) const {
    if (slots_.empty()) return;
    const Slot& slot = slots_[hash & (slots_.size() - 1)];
    if (slot.hash == hash) __builtin_prefetch(slot.node->first.data());
  }
  size_t count(std::string_view key) const { return contains(key) ? 1 : 0; }

  // The value for `key`; the key must be present (std::out_of_range otherwise).
  V& at(std::string_view key) { return checked(key)->second; }
  const V& at(std::string_view key) const { return checked(key)->second; }

  // Adds `key` with a value made from `args` unless the key is present; either way,
  // the entry for `key` and whether it was added.
  template <typename... Args>
  std::pair<iterator, bool> emplace(std::string_view key, Args&&... args) {
    if (const Slot* slot = lookup(key)) return {slot->node, false};
    const iterator added = tree_.try_emplace(std::string(key), std::forward<Args>(args)...).first;
    insert_slot(added);
    return {added, true};
  }

  // The value for `key`, added (value-initialized) if absent.
  V& operator[](std::string_view key) { return emplace(key).first->second; }

  // Removes `key` if present; how many entries were removed (0 or 1).
  size_t erase(std::string_view key) {
    const Slot* slot = lookup(key);
    if (slot == nullptr) return 0;
    const iterator node = slot->node;
    erase_slot(static_cast<size_t>(slot - slots_.data()));
    tree_.erase(node);
    return 1;
  }

  void clear() {
    slots_.clear();
    tree_.clear();
  }

 private:
  // The index is an open-addressing table with linear probing: a lookup reads one slot
  // (the key's hash and its tree node) where a std::unordered_map reads a bucket and
  // then a list node, one more cache miss on a table that does not fit in cache.
  struct Slot {
    size_t hash = 0;  // 0: the slot is empty (a key hashing to 0 is stored as 1)
    iterator node{};
  };

  const Slot* lookup(std::string_view key) const { return lookup(key, key_hash(key)); }
  const Slot* lookup(std::string_view key, size_t hash) const {
    if (slots_.empty()) return nullptr;
    const size_t mask = slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
      const Slot& slot = slots_[i];
      if (slot.hash == 0) return nullptr;
      if (slot.hash == hash && slot.node->first == key) return &slot;
    }
  }

  iterator checked(std::string_view key) const {
    const Slot* slot = lookup(key);
    if (slot == nullptr) throw std::out_of_range("IndexedMap::at: no such key");
    return slot->node;
  }

  // Adds a node whose key is not in the index yet. Keeps the table at most half full.
  void insert_slot(iterator node) {
    if ((tree_.size()) * 2 > slots_.size()) {
      size_t capacity = slots_.empty() ? 16 : slots_.size() * 2;
      while (capacity < tree_.size() * 2) capacity *= 2;
      std::vector<Slot> old = std::exchange(slots_, std::vector<Slot>(capacity));
      for (const Slot& slot : old) {
        if (slot.hash != 0) place(slot);
      }
    }
    place(Slot{key_hash(node->first), node});
  }

  void place(const Slot& slot) {
    const size_t mask = slots_.size() - 1;
    size_t i = slot.hash & mask;
    while (slots_[i].hash != 0) i = (i + 1) & mask;
    slots_[i] = slot;
  }

  // Empties slot i and shifts later slots of the same run back, so that every key
  // stays reachable from its home slot without tombstones.
  void erase_slot(size_t i) {
    const size_t mask = slots_.size() - 1;
    for (size_t j = (i + 1) & mask; slots_[j].hash != 0; j = (j + 1) & mask) {
      const size_t home = slots_[j].hash & mask;
      // Slot j may move back to i unless its home lies cyclically in (i, j].
      const bool stays = i < j ? (i < home && home <= j) : (i < home || home <= j);
      if (!stays) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i] = Slot{};
  }

  void reindex() {
    slots_.clear();
    for (auto it = tree_.begin(); it != tree_.end(); ++it) insert_slot(it);
  }

  Tree tree_;
  std::vector<Slot> slots_;  // size 0 or a power of two; nodes of tree_ (they never move)
};

}  // namespace tally
