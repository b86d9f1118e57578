#include "src/io/checkpoint.h"

#include <ATen/ATen.h>

#include "src/core/error.h"

namespace distill::io {
namespace {

std::string shape_of(const at::Tensor& t) {
  std::string out = "[";
  for (int64_t d = 0; d < t.dim(); ++d) out += (d ? ", " : "") + std::to_string(t.size(d));
  return out + "]";
}

}  // namespace

Checkpoint::Checkpoint(bool saving, std::string path, TensorDict dict)
    : saving_(saving), path_(std::move(path)), dict_(std::move(dict)) {}

Checkpoint Checkpoint::for_saving() { return Checkpoint(true, "", make_dict()); }

Checkpoint Checkpoint::for_loading(const std::string& path) {
  return Checkpoint(false, path, load_dict(path));
}

bool Checkpoint::contains(const std::string& key) const { return dict_.contains(key); }

void Checkpoint::missing(const std::string& key, const std::string& expected) const {
  if (!dict_.contains(key)) {
    throw Error("checkpoint '" + path_ + "': missing " + expected + " '" + key +
                "' (a checkpoint of other settings or another version?)");
  }
  throw Error("checkpoint '" + path_ + "': '" + key + "' should hold " + expected + ", found " +
              dict_.at(key).tagKind());
}

void Checkpoint::tensor(const std::string& key, at::Tensor& value, bool required) {
  if (saving_) {
    if (!value.defined()) return;
    at::Tensor saved = value.detach().cpu();
    // A view (one batch of a set) would be pickled with its whole storage.
    if (saved.storage().nbytes() != static_cast<size_t>(saved.numel() * saved.element_size())) {
      saved = saved.clone();
    }
    dict_.insert_or_assign(key, saved);
    return;
  }
  if (!value.defined()) {
    if (required && !dict_.contains(key)) missing(key, "a tensor");
    if (dict_.contains(key)) value = get_tensor(dict_, key, path_).clone();
    return;
  }
  if (!dict_.contains(key) || !dict_.at(key).isTensor()) missing(key, "a tensor");
  at::Tensor saved = dict_.at(key).toTensor();
  if (!saved.sizes().equals(value.sizes())) {
    throw Error("checkpoint '" + path_ + "': '" + key + "' has shape " + shape_of(saved) +
                ", the settings make " + shape_of(value) +
                "; resume with the settings the run was started with");
  }
  value = saved.to(value.device(), value.scalar_type()).clone();
}

void Checkpoint::integer(const std::string& key, int64_t& value) {
  if (saving_) {
    dict_.insert_or_assign(key, value);
    return;
  }
  if (!dict_.contains(key)) missing(key, "an integer");
  const c10::IValue& saved = dict_.at(key);
  if (saved.isInt()) {
    value = saved.toInt();
  } else if (saved.isTensor() && saved.toTensor().numel() == 1 &&
             !saved.toTensor().is_floating_point()) {
    value = saved.toTensor().item<int64_t>();
  } else {
    missing(key, "an integer");
  }
}

void Checkpoint::real(const std::string& key, double& value) {
  if (saving_) {
    dict_.insert_or_assign(key, value);
    return;
  }
  if (!dict_.contains(key)) missing(key, "a number");
  const c10::IValue& saved = dict_.at(key);
  if (saved.isDouble() || saved.isInt()) {
    value = saved.isDouble() ? saved.toDouble() : static_cast<double>(saved.toInt());
  } else if (saved.isTensor() && saved.toTensor().numel() == 1) {
    value = saved.toTensor().item<double>();
  } else {
    missing(key, "a number");
  }
}

void Checkpoint::reals(const std::string& prefix, std::map<std::string, double>& values) {
  if (saving_) {
    for (const auto& [name, value] : values) dict_.insert_or_assign(prefix + name, value);
    return;
  }
  for (const auto& entry : dict_) {
    const std::string& key = entry.key().toStringRef();
    if (key.rfind(prefix, 0) == 0 && entry.value().isDouble()) {
      values[key.substr(prefix.size())] = entry.value().toDouble();
    }
  }
}

void Checkpoint::entries(const std::string& prefix, TensorDict& values) {
  if (saving_) {
    for (const auto& entry : values) {
      dict_.insert_or_assign(prefix + entry.key().toStringRef(), entry.value());
    }
    return;
  }
  for (const auto& entry : dict_) {
    const std::string& key = entry.key().toStringRef();
    if (key.rfind(prefix, 0) == 0) values.insert_or_assign(key.substr(prefix.size()), entry.value());
  }
}

void Checkpoint::expect(const std::string& key, const std::string& value) {
  if (saving_) {
    dict_.insert_or_assign(key, value);
    return;
  }
  if (!dict_.contains(key) || !dict_.at(key).isString()) missing(key, "a string");
  const std::string& saved = dict_.at(key).toStringRef();
  if (saved != value) {
    throw Error("checkpoint '" + path_ + "' holds " + key + " '" + saved +
                "', the settings ask for '" + value +
                "'; resume with the settings the run was started with");
  }
}

void Checkpoint::expect(const std::string& key, int64_t value) {
  int64_t saved = value;
  integer(key, saved);
  if (saved != value) {
    throw Error("checkpoint '" + path_ + "' holds " + key + " " + std::to_string(saved) +
                ", the settings ask for " + std::to_string(value) +
                "; resume with the settings the run was started with");
  }
}

void Checkpoint::save(const std::string& path) const { save_dict(path, dict_); }

}  // namespace distill::io
