#include "src/data/dataset.h"

#include <ATen/ATen.h>

#include "src/config/config_io.h"
#include "src/core/error.h"
#include "src/data/readers.h"

namespace distill::data {
namespace {

struct Preset {
  const char* name;
  std::vector<double> mean, std;
};

// The normalization constants used by the DC/DSA/MTT code for each dataset.
const std::vector<Preset>& presets() {
  static const std::vector<Preset> table = {
      {"fashion-mnist", {0.2861}, {0.3530}},
      {"mnist", {0.1307}, {0.3081}},
      {"cifar10", {0.4914, 0.4822, 0.4465}, {0.2023, 0.1994, 0.2010}},
      {"cifar100", {0.5071, 0.4866, 0.4409}, {0.2673, 0.2564, 0.2762}},
  };
  return table;
}

const std::vector<std::string> kFashionMnistClasses = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

Dataset first_n(const Dataset& d, int64_t n) {
  Dataset out = d;
  out.images = d.images.narrow(0, 0, n);
  out.labels = d.labels.narrow(0, 0, n);
  return out;
}

}  // namespace

std::vector<std::string> numbered_class_names(int64_t num_classes) {
  std::vector<std::string> names;
  for (int64_t c = 0; c < num_classes; ++c) names.push_back(std::to_string(c));
  return names;
}

TrainTestSplit load_dataset(const DataOptions& options) {
  config::check(options, "data");  // the declared ranges and rules, before any file is read
  TrainTestSplit split;
  if (options.format == "idx") {
    split = read_idx_folder(options.path);
  } else if (options.format == "cifar10") {
    split = read_cifar10(options.path);
  } else if (options.format == "cifar100") {
    split = read_cifar100(options.path);
  } else if (options.format == "image-folder") {
    split = read_image_folder(options.path, options.image_size == 0 ? 32 : options.image_size,
                              options.channels == 0 ? 3 : options.channels);
  } else if (options.format == "tensor") {
    split = read_tensor_file(options.path);
  } else {
    throw Error("data.format: unknown format '" + options.format +
                "' (idx, cifar10, cifar100, image-folder, tensor)");
  }
  if (options.train_limit > 0 && options.train_limit < split.train.size()) {
    split.train = first_n(split.train, options.train_limit);
  }
  if (options.name == "fashion-mnist" && split.train.num_classes == 10) {
    split.train.class_names = split.test.class_names = kFashionMnistClasses;
  }
  validate(split.train, options.path + " (train)");
  if (split.test.size() > 0) validate(split.test, options.path + " (test)");
  return split;
}

Normalization normalization_for(const DataOptions& options, const Dataset& train) {
  config::check(options, "data");  // the declared ranges and rules (data.std > 0)
  const int64_t channels = train.channels();
  auto check = [&](const std::vector<double>& values, const char* key) {
    if (static_cast<int64_t>(values.size()) != channels) {
      throw Error(std::string("data.") + key + ": expected " + std::to_string(channels) +
                  " value(s), one per channel, found " + std::to_string(values.size()));
    }
  };
  auto as_tensor = [](const std::vector<double>& v) { return at::tensor(v, at::kDouble).to(at::kFloat); };
  if (!options.normalize) return {at::zeros({channels}), at::ones({channels})};
  if (!options.mean.empty() || !options.std.empty()) {
    check(options.mean, "mean");
    check(options.std, "std");
    return {as_tensor(options.mean), as_tensor(options.std)};
  }
  for (const Preset& preset : presets()) {
    if (options.name == preset.name && static_cast<int64_t>(preset.mean.size()) == channels) {
      return {as_tensor(preset.mean), as_tensor(preset.std)};
    }
  }
  // Unknown data: per-channel statistics of the training images.
  at::Tensor per_channel = train.images.transpose(0, 1).reshape({channels, -1}).to(at::kDouble);
  at::Tensor std = per_channel.std(1).clamp_min(1e-8);
  return {per_channel.mean(1).to(at::kFloat), std.to(at::kFloat)};
}

Dataset normalize(const Dataset& dataset, const Normalization& norm) {
  Dataset out = dataset;
  if (dataset.size() == 0) return out;
  auto shape = std::vector<int64_t>{1, -1, 1, 1};
  out.images = (dataset.images - norm.mean.view(shape)) / norm.std.view(shape);
  return out;
}

PreparedData load_normalized(const DataOptions& options) {
  TrainTestSplit split = load_dataset(options);
  Normalization norm = normalization_for(options, split.train);
  Dataset train = normalize(split.train, norm), test = normalize(split.test, norm);
  if (options.zca) {
    auto zca = std::make_shared<Zca>(Zca::fit(train.images, options.zca_eps));
    train.images = zca->apply(train.images);
    test.images = zca->apply(test.images);
    norm.zca = zca;
  }
  return {train, test, norm};
}

at::Tensor sample_per_class(const at::Tensor& labels, int64_t num_classes, int64_t per_class,
                            at::Generator& generator) {
  if (per_class < 1) {
    throw Error("images per class must be >= 1, found " + std::to_string(per_class));
  }
  at::Tensor cpu_labels = labels.cpu();
  std::vector<at::Tensor> picks;
  for (int64_t c = 0; c < num_classes; ++c) {
    at::Tensor members = at::nonzero(cpu_labels == c).view(-1);
    if (members.size(0) < per_class) {
      throw Error("class " + std::to_string(c) + " has " + std::to_string(members.size(0)) +
                  " images, fewer than the " + std::to_string(per_class) + " per class asked for");
    }
    at::Tensor order = at::randperm(members.size(0), generator, at::kLong);
    picks.push_back(members.index_select(0, order.narrow(0, 0, per_class)));
  }
  return at::cat(picks);
}

std::pair<Dataset, Dataset> hold_out_per_class(const Dataset& set, int64_t per_class,
                                               at::Generator& generator) {
  const at::Tensor held = sample_per_class(set.labels, set.num_classes, per_class, generator);
  at::Tensor keep = at::ones({set.size()}, at::kBool);
  keep.index_fill_(0, held, false);
  const at::Tensor kept = keep.nonzero().squeeze(1);
  Dataset rest = set, held_out = set;
  rest.images = set.images.index_select(0, kept);
  rest.labels = set.labels.index_select(0, kept);
  held_out.images = set.images.index_select(0, held);
  held_out.labels = set.labels.index_select(0, held);
  return {rest, held_out};
}

void validate(const Dataset& d, const std::string& what) {
  if (!d.images.defined() || d.images.dim() != 4) {
    throw Error(what + ": expected images shaped N,C,H,W, found " +
                (d.images.defined() ? std::to_string(d.images.dim()) + " dimensions" : "none"));
  }
  if (d.images.scalar_type() != at::kFloat) throw Error(what + ": expected float32 images");
  if (!d.labels.defined() || d.labels.dim() != 1 || d.labels.scalar_type() != at::kLong) {
    throw Error(what + ": expected int64 labels shaped N");
  }
  if (d.labels.size(0) != d.images.size(0)) {
    throw Error(what + ": " + std::to_string(d.images.size(0)) + " images but " +
                std::to_string(d.labels.size(0)) + " labels");
  }
  if (d.num_classes < 2) {
    throw Error(what + ": expected at least 2 classes, found " + std::to_string(d.num_classes));
  }
  if (d.size() > 0) {
    int64_t low = d.labels.min().item<int64_t>(), high = d.labels.max().item<int64_t>();
    if (low < 0 || high >= d.num_classes) {
      at::Tensor bad = at::nonzero((d.labels < 0).logical_or(d.labels >= d.num_classes)).view(-1);
      int64_t index = bad[0].item<int64_t>();
      throw Error(what + ": label " + std::to_string(d.labels[index].item<int64_t>()) + " at index " +
                  std::to_string(index) + " is outside [0, " + std::to_string(d.num_classes) + ")");
    }
  }
}

}  // namespace distill::data
