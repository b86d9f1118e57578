#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "src/config/options.h"
#include "src/data/zca.h"

namespace distill::data {

// An in-memory labelled image set: images float32 N,C,H,W with raw values in [0,1] (before
// normalization, which is applied by `normalize`), labels int64 N in [0, num_classes).
struct Dataset {
  at::Tensor images;
  at::Tensor labels;
  int64_t num_classes = 0;
  std::vector<std::string> class_names;

  int64_t size() const { return images.defined() ? images.size(0) : 0; }
  int64_t channels() const { return images.size(1); }
  int64_t height() const { return images.size(2); }
  int64_t width() const { return images.size(3); }
};

struct TrainTestSplit {
  Dataset train;
  Dataset test;
};

// Which data to load and how to prepare it. `format` picks the reader.
struct DataOptions {
  std::string format = "idx";  // idx | cifar10 | cifar100 | image-folder | tensor
  std::string path = "/usr/share/datasets/fashion-mnist";
  std::string name = "fashion-mnist";  // known names carry their mean/std presets
  int64_t image_size = 0;              // image-folder: resize to this (0 = 32)
  int64_t channels = 0;                // image-folder: 1 or 3 (0 = 3)
  bool normalize = true;
  std::vector<double> mean;  // empty = preset for `name`, else computed on the training split
  std::vector<double> std;
  int64_t train_limit = 0;  // use only the first N training images (0 = all); for quick tests
  bool zca = false;         // ZCA-whiten after normalizing (MTT's CIFAR setting)
  double zca_eps = 0.1;

  void visit(config::Visitor& v) {
    v.choice("format", format, "reader: idx (MNIST family, .gz or raw), cifar10, cifar100 (binary "
             "version), image-folder (train/ and test/ with one sub-folder per class), tensor "
             "(.pt dict with images/labels[/test_images/test_labels])",
             {"idx", "cifar10", "cifar100", "image-folder", "tensor"});
    v.field("path", path, "folder (idx, cifar, image-folder) or .pt file (tensor)");
    v.field("name", name, "dataset name; fashion-mnist, mnist, cifar10, cifar100 have mean/std presets");
    v.field("image_size", image_size, "image-folder: side length images are resized to (0 = 32)");
    v.field("channels", channels, "image-folder: 1 (grey) or 3 (RGB); 0 = 3");
    v.field("normalize", normalize, "subtract the per-channel mean and divide by the std");
    v.field("mean", mean, "per-channel mean; empty = preset for `name` or computed on train");
    v.field("std", std, "per-channel std; empty = preset for `name` or computed on train");
    const auto bad_std =
        std::find_if(this->std.begin(), this->std.end(), [](double s) { return !(s > 0); });
    const bool stds_positive = bad_std == this->std.end();
    v.rule(stds_positive, "data.std: every value must be > 0" +
                              (stds_positive ? "" : ", found " + std::to_string(*bad_std)));
    v.field("train_limit", train_limit, "use only the first N training images (0 = all)",
            config::Range::at_least(0));
    v.field("zca", zca, "ZCA-whiten the images (after the mean/std step when normalize is on; "
            "MTT and DATM whiten raw pixels: normalize = false), fitted on the training split; "
            "sets made this way stay in that space");
    v.field("zca_eps", zca_eps, "ZCA regularization added to the eigenvalues",
            config::Range::at_least(0));
  }
};

// Per-channel statistics used to normalize (stored in synthetic-set files for display).
struct Normalization {
  at::Tensor mean;  // float C
  at::Tensor std;   // float C
  std::shared_ptr<const Zca> zca;  // applied after mean/std when data.zca is on, else null
};

// Reads train and test splits as configured (readers in idx_reader.h, cifar_reader.h, ...).
TrainTestSplit load_dataset(const DataOptions& options);

// Preset mean/std for a known dataset name, else computed on `train` (per channel).
Normalization normalization_for(const DataOptions& options, const Dataset& train);

// Returns images normalized with `norm` (the dataset's other fields unchanged).
Dataset normalize(const Dataset& dataset, const Normalization& norm);

// The configured data, normalized with its normalization_for() and, with data.zca, whitened by
// a ZCA fitted on the normalized training images: what every command uses.
struct PreparedData {
  Dataset train;
  Dataset test;
  Normalization norm;
};
PreparedData load_normalized(const DataOptions& options);

// `per_class` distinct indices of each class, drawn with `generator`, ordered by class.
// Error naming the class when it has fewer images than asked.
at::Tensor sample_per_class(const at::Tensor& labels, int64_t num_classes, int64_t per_class,
                            at::Generator& generator);

// Splits `set` into {the rest, `per_class` images of each class drawn by sample_per_class}, both
// in the original order within each part: a class-balanced held-out split.
std::pair<Dataset, Dataset> hold_out_per_class(const Dataset& set, int64_t per_class,
                                               at::Generator& generator);

// Checks shapes and label range; `what` names the source in the error.
void validate(const Dataset& dataset, const std::string& what);

}  // namespace distill::data
