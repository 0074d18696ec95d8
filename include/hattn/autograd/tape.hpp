#pragma once
/// \file
/// The autograd tape: a flat vector of trivially copyable records, each a backward function
/// pointer and the bytes of an op's node (views of its inputs, outputs and their gradients).
/// Recording copies the node; backward replays the records in reverse. No std::function, no
/// shared_ptr, no allocation per node once the vector has grown to a step's size.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

namespace hattn {

/// An op's backward pass, recordable on a Tape: a trivially copyable, default-constructible struct
/// (views stored as hattn::Ref) of at most
/// Tape::payload_bytes bytes with `void backward() const` that *adds* into input gradients.
template <class Node>
concept TapeNode = std::is_trivially_copyable_v<Node> && std::is_default_constructible_v<Node> &&
                   requires(const Node& n) { n.backward(); };

/// The record of ops run in training mode, replayed in reverse by backward().
class Tape {
 public:
  /// Largest node a record holds.
  static constexpr std::size_t payload_bytes = 448;

  /// One recorded op: how to run its backward pass, and its node's bytes.
  struct Record {
    void (*backward)(const std::byte* payload);  ///< calls Node::backward on the payload
    alignas(std::max_align_t) std::byte payload[payload_bytes];
  };
  static_assert(std::is_trivially_copyable_v<Record>);

  /// A tape with room for `records` records before it grows.
  explicit Tape(std::size_t records = 256) { records_.reserve(records); }

  /// Appends `node`; its backward runs when backward() reaches it.
  template <TapeNode Node>
  void record(const Node& node) {
    static_assert(sizeof(Node) <= payload_bytes, "node too large for a tape record");
    static_assert(alignof(Node) <= alignof(std::max_align_t), "node over-aligned");
    Record& r = records_.emplace_back();
    r.backward = &replay<Node>;
    std::memcpy(r.payload, &node, sizeof(Node));
  }

  /// Runs every recorded backward pass, last recorded first.
  void backward() const {
    for (auto it = records_.rbegin(); it != records_.rend(); ++it) it->backward(it->payload);
  }

  /// Runs the backward passes recorded after the first `keep` records, last recorded first, and
  /// forgets them: the first `keep` stay for a later backward().
  /// requires: keep <= size().
  void backward_to(std::size_t keep) {
    for (std::size_t i = records_.size(); i > keep; --i) records_[i - 1].backward(records_[i - 1].payload);
    records_.resize(std::min(keep, records_.size()));
  }

  /// Forgets the records and keeps the memory, for the next step.
  void clear() { records_.clear(); }
  /// Records held.
  std::size_t size() const { return records_.size(); }
  /// Records the tape can hold without allocating.
  std::size_t capacity() const { return records_.capacity(); }

 private:
  template <class Node>
  static void replay(const std::byte* payload) {
    Node node;
    std::memcpy(&node, payload, sizeof(Node));
    node.backward();
  }

  std::vector<Record> records_;
};

}  // namespace hattn
