// IndexedMap: a map from strings kept in key order, with a hash index beside it.
//
// Members and workspaces are looked up by name several times for every usage event
// (who is acting, which workspace, whose spend limit), and organizations have up to
// thousands of members whose ids share long prefixes ("user-1234@acme.io"): a walk
// down a std::map compares a dozen such strings. The index answers a lookup with one
// hash and, as a rule, one comparison. Iteration stays in key order, which rows,
// listings and dumps depend on.
//
// The index holds the tree's own iterators (std::map nodes never move), so it stays
// valid through inserts, erases of other keys and moves of the whole map; a copy
// rebuilds it. Only the operations the projections use are offered.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace tally {

// A hash for unordered maps keyed by std::string that also takes string_views, so a
// lookup (with std::equal_to<>) needs no temporary string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

template <typename V>
class IndexedMap {
 public:
  using Tree = std::map<std::string, V, std::less<>>;
  using iterator = typename Tree::iterator;
  using const_iterator = typename Tree::const_iterator;

  IndexedMap() = default;
  IndexedMap(const IndexedMap& other) : tree_(other.tree_) { reindex(); }
  IndexedMap(IndexedMap&& other) noexcept : tree_(std::move(other.tree_)), index_(std::move(other.index_)) { other.clear(); }
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
      index_ = std::move(other.index_);
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

  iterator find(std::string_view key) {
    auto it = index_.find(key);
    return it == index_.end() ? tree_.end() : it->second;
  }
  const_iterator find(std::string_view key) const {
    auto it = index_.find(key);
    return it == index_.end() ? tree_.end() : const_iterator(it->second);
  }
  bool contains(std::string_view key) const { return index_.contains(key); }
  size_t count(std::string_view key) const { return index_.count(key); }

  // The value for `key`; the key must be present (std::out_of_range otherwise).
  V& at(std::string_view key) { return index_.at(key)->second; }
  const V& at(std::string_view key) const { return index_.at(key)->second; }

  // Adds `key` with a value made from `args` unless the key is present; either way,
  // the entry for `key` and whether it was added.
  template <typename... Args>
  std::pair<iterator, bool> emplace(std::string_view key, Args&&... args) {
    if (auto it = index_.find(key); it != index_.end()) return {it->second, false};
    const iterator added = tree_.try_emplace(std::string(key), std::forward<Args>(args)...).first;
    index_.emplace(std::string_view(added->first), added);
    return {added, true};
  }

  // The value for `key`, added (value-initialized) if absent.
  V& operator[](std::string_view key) { return emplace(key).first->second; }

  // Removes `key` if present; how many entries were removed (0 or 1).
  size_t erase(std::string_view key) {
    auto it = index_.find(key);
    if (it == index_.end()) return 0;
    const iterator node = it->second;
    index_.erase(it);  // before the node: the index's key points into it
    tree_.erase(node);
    return 1;
  }

  void clear() {
    index_.clear();
    tree_.clear();
  }

 private:
  void reindex() {
    index_.clear();
    index_.reserve(tree_.size());
    for (auto it = tree_.begin(); it != tree_.end(); ++it) index_.emplace(std::string_view(it->first), it);
  }

  Tree tree_;
  std::unordered_map<std::string_view, iterator> index_;  // keys point into tree_'s nodes
};

}  // namespace tally
