#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>

#include "src/io/tensor_file.h"

namespace distill::io {

// The one checkpoint mechanism. A run's state names its fields once, in a function that takes a
// Checkpoint (as the options structs name their settings once for the TOML reader):
//
//   void checkpoint_fields(io::Checkpoint& c, MyState& s) {
//     c.tensor("images", s.images);
//     c.integer("iteration", s.iteration);
//     c.part("optimizer.", *s.optimizer);
//   }
//
// save_checkpoint() runs it on a saving Checkpoint and writes the file atomically (torch.save's
// format: Python reads it with torch.load); load_checkpoint() runs the same function on a loading
// one, so what is read is exactly what was written. Errors name the file and the key.
class Checkpoint {
 public:
  static Checkpoint for_saving();
  static Checkpoint for_loading(const std::string& path);

  bool saving() const { return saving_; }

  // Saving: stored (on the CPU) when defined. Loading: when `value` is defined (the state
  // expects it), the key is required and must hold a tensor of value's shape, which is copied to
  // value's device and dtype; when undefined, taken as saved if present (required if `required`).
  void tensor(const std::string& key, at::Tensor& value, bool required = false);
  // Numbers; loading also accepts a 0-dim tensor (how some earlier checkpoints stored them).
  void integer(const std::string& key, int64_t& value);
  void real(const std::string& key, double& value);
  // Named numbers under a key prefix ("metric." + name); loading takes every such key present.
  void reals(const std::string& prefix, std::map<std::string, double>& values);
  // Entries kept as a dict of their own (an optimizer's saved state) under a key prefix.
  void entries(const std::string& prefix, TensorDict& values);
  // A value fixed by the settings (an architecture, a method, a size): saving stores it, loading
  // refuses a checkpoint that holds another one, naming both.
  void expect(const std::string& key, const std::string& value);
  void expect(const std::string& key, int64_t value);
  // An object that saves itself under a key prefix (train::Optimizer: save_state/load_state).
  template <typename Part>
  void part(const std::string& prefix, Part& object) {
    if (saving_) {
      object.save_state(dict_, prefix);
    } else {
      object.load_state(dict_, prefix);
    }
  }

  bool contains(const std::string& key) const;
  const std::string& path() const { return path_; }
  // The underlying dict (for fields kept in their own format, such as a nested state).
  TensorDict& dict() { return dict_; }

  void save(const std::string& path) const;

 private:
  Checkpoint(bool saving, std::string path, TensorDict dict);
  [[noreturn]] void missing(const std::string& key, const std::string& expected) const;

  bool saving_;
  std::string path_;
  TensorDict dict_;
};

// Writes `state` (through checkpoint_fields(Checkpoint&, State&), found by argument-dependent
// lookup) to `path` atomically. Saving only reads the state.
template <typename State>
void save_checkpoint(const std::string& path, const State& state) {
  Checkpoint checkpoint = Checkpoint::for_saving();
  checkpoint_fields(checkpoint, const_cast<State&>(state));
  checkpoint.save(path);
}

// Reads `path` into `state`, which holds a fresh state of the same settings (its defined tensors
// say which fields are expected and their shapes).
template <typename State>
void load_checkpoint(const std::string& path, State& state) {
  Checkpoint checkpoint = Checkpoint::for_loading(path);
  checkpoint_fields(checkpoint, state);
}

}  // namespace distill::io
