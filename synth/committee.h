#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "src/config/options.h"
#include "src/data/dataset.h"
#include "src/dist/process_group.h"
#include "src/kd/teacher.h"
#include "src/models/model.h"
#include "src/train/augment.h"
#include "src/train/trainer.h"
#include "synth/statistics_loss.h"

namespace distill::synth {

// One committee member as the manifest (committee.toml) lists it. `checkpoint` and
// `feature_stats` are relative to the manifest's folder unless absolute.
struct MemberOptions {
  std::string checkpoint;  // model.pt / checkpoint.pt of `distill train`; empty = train it here
  double val_accuracy = -1;   // on the committee's held-out split (-1 = not measured yet)
  double test_accuracy = -1;  // on the test split, for the record (never used for weights)
  std::string feature_stats;  // real feature statistics (members without batch norm)
  models::ModelOptions model;

  void visit(config::Visitor& v) {
    v.field("checkpoint", checkpoint,
            "weights (model.pt/checkpoint.pt of `distill train`); empty = train this member");
    v.field("val_accuracy", val_accuracy, "held-out accuracy in [0, 1] (-1 = measure it)");
    v.field("test_accuracy", test_accuracy, "test accuracy, for the record only");
    v.field("feature_stats", feature_stats,
            "real feature statistics .pt (written for members without batch norm)");
    v.section("model", model);
  }
};

// committee.toml: what `distill committee train` writes and `distill synth` reads.
struct CommitteeManifest {
  std::string dataset;
  int64_t channels = 0, image_size = 0, num_classes = 0;
  std::vector<double> mean, std;  // the normalization the members' inputs had
  double zca_eps = 0.0;           // > 0: inputs were ZCA-whitened with this eps
  std::vector<MemberOptions> members;

  void visit(config::Visitor& v) {
    v.field("dataset", dataset, "dataset name the members were trained on");
    v.field("mean", mean, "per-channel mean the inputs were normalized with");
    v.field("std", std, "per-channel std the inputs were normalized with");
    v.field("zca_eps", zca_eps, "ZCA eps of the inputs (0 = not whitened)");
    v.field("channels", channels, "image channels");
    v.field("image_size", image_size, "image side length");
    v.field("num_classes", num_classes, "classes");
    v.items("members", members, "the members");
  }
};

void save_manifest(const std::string& path, CommitteeManifest manifest);
// Error naming the file on a missing file, a bad key or an empty member list.
CommitteeManifest load_manifest(const std::string& path);

// CV-DD's prior-based voting weights: softmax(accuracy / T) (accuracies as fractions).
at::Tensor committee_weights(const std::vector<double>& accuracies, double temperature);

// `draw` distinct member indices out of `size`, uniformly (Error when draw is not in 1..size).
std::vector<int64_t> draw_members(int64_t size, int64_t draw, at::Generator& generator);

// The committee's soft labels: sum_k w_k softmax(logits_k / T) (rows sum to 1 when w does).
at::Tensor ensemble_soft_labels(const std::vector<at::Tensor>& logits, const at::Tensor& weights,
                                double temperature);

// A loaded member: frozen weights plus what recovery matches its statistics to.
struct Member {
  MemberOptions options;
  kd::Teacher teacher;
  bool batch_norm = false;          // has running statistics to match
  FeatureStatistics feature_stats;  // otherwise: real statistics of its features
};

// Loads every member of a manifest for data of this shape. Errors (before any work) name the
// manifest and member when a checkpoint's architecture, class count or input shape differs from
// the data, when the committee is empty, or when a member lacks a val_accuracy.
std::vector<Member> load_committee(const std::string& manifest_path, int64_t channels,
                                   int64_t image_size, int64_t num_classes, c10::Device device);

// Error naming the manifest and `what` when images normalized with (mean, std, zca_eps) are not
// in the space the committee was trained in.
void check_normalization(const std::string& manifest_path, const at::Tensor& mean,
                         const at::Tensor& std, double zca_eps, const std::string& what);

// `distill committee train`: train (or load) each member on the real data minus a class-balanced
// held-out split, measure its held-out and test accuracy, store the feature statistics of members
// without batch norm, and write OUT/committee.toml.
struct CommitteeOptions {
  std::vector<MemberOptions> members;
  int64_t val_per_class = 500;
  int64_t stats_images = 10000;
  train::TrainOptions train;
  train::AugmentOptions augment;

  CommitteeOptions();
  void visit(config::Visitor& v) {
    v.items("members", members,
            "committee members: [{model = {arch = \"convnet\", norm = \"batchnorm\"}}, "
            "{checkpoint = \"runs/t/model.pt\", model = {arch = \"lenet\"}}, ...]");
    v.field("val_per_class", val_per_class,
            "held-out training images per class that measure each member's accuracy (not trained on)",
            config::Range::at_least(1));
    v.field("stats_images", stats_images,
            "training images the feature statistics of members without batch norm are taken on",
            config::Range::at_least(1));
    v.rule(!members.empty(), "committee.members: committee of size 0");
    v.section("train", train);
    v.section("augment", augment);
  }
};

// Writes model.pt for a trained member (the CLI's model file format).
using SaveModelFn = std::function<void(const std::string& path, const models::Model& model,
                                       const train::TrainState& state)>;

// Returns the manifest written to out/committee.toml. With `resume`, finished members
// (member_K/model.pt present) are kept and an interrupted one continues from its checkpoint.
// With a multi-process `group`, rank r trains members r, r + W, ...; rank 0 writes the manifest
// and returns it (the other ranks return an empty one).
CommitteeManifest train_committee(const CommitteeOptions& options, const data::Dataset& train_set,
                                  const data::Dataset& test_set, const data::Normalization& norm,
                                  const std::string& dataset_name,
                                  uint64_t seed, const std::string& out, bool resume,
                                  bool progress, c10::Device device, const SaveModelFn& save_model,
                                  std::shared_ptr<const dist::ProcessGroup> group = nullptr);

}  // namespace distill::synth
