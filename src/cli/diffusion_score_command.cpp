// `distill diffusion score`: sample quality of generated images in the feature space of a
// classifier trained by this project on the same data. The Fréchet distance there is FCD
// (Fréchet Classifier Distance, the FID-MNIST practice), never FID: the embedding is not
// Inception, so its numbers are not comparable with published FIDs.
#include "src/cli/diffusion_score_command.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "src/cli/command.h"
#include "src/config/config_io.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/eval/reference_statistics.h"
#include "src/eval/sample_quality.h"
#include "src/io/atomic_file.h"
#include "src/io/tensor_file.h"
#include "src/kd/teacher.h"

namespace distill::cli {

namespace {

// Seed of the reference subset when reference_count is smaller than the split (part of the
// cache key): every score with the same settings compares against the same real images.
constexpr uint64_t kReferenceSubsetSeed = 0x5c02e;

namespace fs = std::filesystem;

std::string shape_text(at::IntArrayRef shape) {
  std::ostringstream out;
  out << shape;
  return out.str();
}

std::string values_text(const at::Tensor& t) {
  std::ostringstream out;
  out.precision(9);
  at::Tensor flat = t.to(at::kDouble).reshape({-1});
  for (int64_t i = 0; i < flat.numel(); ++i) out << (i ? "," : "") << flat[i].item<double>();
  return out.str();
}

// The two paths it needs; samples may be the argument after `score`, filled in after the
// settings are read (the declared ranges and rules were checked then).
void check_score_settings(const DiffusionScoreSettings& s) {
  if (s.samples.empty()) {
    throw Error(
        "diffusion.score.samples is empty: name a `distill diffusion sample` run folder or its "
        "samples.pt (distill diffusion score RUN_DIR --classifier MODEL.pt)");
  }
  if (s.classifier.empty()) {
    throw Error(
        "diffusion.score.classifier is empty: name the model.pt or checkpoint.pt of a `distill "
        "train` run on the same data");
  }
}

// RUN_DIR -> RUN_DIR/samples.pt; the file must exist.
std::string samples_file(const std::string& path) {
  if (!fs::exists(path)) {
    throw Error("diffusion.score.samples: '" + path + "' does not exist");
  }
  if (fs::is_directory(path)) {
    const std::string file = path + "/samples.pt";
    if (!fs::exists(file)) {
      throw Error("diffusion.score.samples: folder '" + path +
                  "' has no samples.pt (run `distill diffusion sample --out " + path + "` first)");
    }
    return file;
  }
  return path;
}

// The samples in the data's normalized space: pixels = x * std_s + mean_s with the file's own
// mean/std (absent = already normalized like the data), then the data's normalization.
at::Tensor renormalized(const at::Tensor& images, const io::TensorDict& dict,
                        const std::string& file, const data::Normalization& norm) {
  if (!io::has_key(dict, "mean") || !io::has_key(dict, "std")) return images;
  at::Tensor mean = io::get_tensor(dict, "mean", file).to(at::kFloat).reshape({-1});
  at::Tensor std = io::get_tensor(dict, "std", file).to(at::kFloat).reshape({-1});
  if (mean.numel() != images.size(1) || std.numel() != images.size(1)) {
    throw Error("samples '" + file + "': 'mean'/'std' have " + std::to_string(mean.numel()) + "/" +
                std::to_string(std.numel()) + " values, 'images' has " +
                std::to_string(images.size(1)) + " channels");
  }
  at::Tensor pixels = images * std.view({1, -1, 1, 1}) + mean.view({1, -1, 1, 1});
  return (pixels - norm.mean.view({1, -1, 1, 1})) / norm.std.view({1, -1, 1, 1});
}

std::string fixed(double value, int digits = 4) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", digits, value);
  return text;
}

}  // namespace

void run_diffusion_score(const config::RunOptions& run_options, const data::DataOptions& data,
                         const DiffusionScoreSettings& s, const std::string& effective_config,
                         const Invocation& invocation) {
  // 1. Settings and files, before anything is read.
  check_score_settings(s);
  const std::string file = samples_file(s.samples);
  if (!fs::exists(s.classifier) || fs::is_directory(s.classifier)) {
    throw Error("diffusion.score.classifier: '" + s.classifier +
                "' is not a file (expected a model.pt or checkpoint.pt of `distill train`)");
  }
  if (data.zca) {
    throw Error(
        "data.zca = true: diffusion score compares samples in the classifier's input "
        "space and does not whiten them; score on un-whitened data");
  }
  require_single_process("diffusion score");

  // 2. The samples: shape and count.
  io::TensorDict dict = io::load_dict(file);
  at::Tensor images = io::get_tensor(dict, "images", file).to(at::kFloat);
  if (images.dim() != 4) {
    throw Error("samples '" + file + "': 'images' has shape " + shape_text(images.sizes()) +
                ", expected N,C,H,W");
  }
  const int64_t count = images.size(0);
  if (count < 2) {
    throw Error("samples '" + file + "': 'images' holds " + std::to_string(count) +
                " images; FCD needs at least 2");
  }
  if (s.k >= count) {
    throw Error("diffusion.score.k = " + std::to_string(s.k) + " must be below the number of " +
                "samples (" + std::to_string(count) + " in '" + file + "')");
  }

  // 3. The real data and the classifier, checked against the samples.
  auto [train_set, test_set, norm] = data::load_normalized(data);
  const data::Dataset& split = s.split == "train" ? train_set : test_set;
  const std::vector<int64_t> item(split.images.sizes().begin() + 1, split.images.sizes().end());
  const std::vector<int64_t> sample_item(images.sizes().begin() + 1, images.sizes().end());
  if (item != sample_item) {
    throw Error("samples '" + file + "': 'images' are " + shape_text(sample_item) +
                " (C,H,W), but data '" + data.name + "' (" + data.path +
                ") and its classifier take " + shape_text(item));
  }
  const int64_t reference_count =
      s.reference_count == 0 ? split.size() : std::min<int64_t>(s.reference_count, split.size());
  const int64_t manifold_count =
      std::min(reference_count, s.manifold_count == 0 ? count : s.manifold_count);
  if (s.k >= manifold_count) {
    throw Error("diffusion.score.k = " + std::to_string(s.k) +
                " must be below the number of real images for the k-NN metrics (" +
                std::to_string(manifold_count) + ": diffusion.score.manifold_count / " +
                "reference_count, " + s.split + " split of " + data.name + ")");
  }
  kd::TeacherOptions classifier_options;
  classifier_options.checkpoint = s.classifier;
  classifier_options.model = s.model;
  kd::Teacher classifier =
      kd::load_teacher(classifier_options, split.channels(), split.height(), split.num_classes,
                       "diffusion.score.classifier", "diffusion.score.model");
  eval::check_feature_layer(*classifier.model, s.feature_layer, "diffusion.score.feature_layer");

  // 4. Work.
  RunContext run = start_run(run_options, effective_config, invocation);
  const auto start = std::chrono::steady_clock::now();
  const at::Tensor samples = renormalized(images, dict, file, norm);
  eval::ClassifierOutputs fake =
      eval::classifier_outputs(*classifier.model, classifier.params, classifier.buffers, samples,
                               s.feature_layer, s.batch_size);

  // The reference images: the whole split, or a fixed-seed random subset of it, because a
  // split's first images need not be a fair sample (the image-folder reader orders by class).
  at::Tensor reference_index = at::arange(split.size(), at::kLong);
  if (reference_count < split.size()) {
    at::Generator subset_generator = make_generator(kReferenceSubsetSeed);
    reference_index = at::randperm(split.size(), subset_generator, at::kLong)
                          .narrow(0, 0, reference_count);
  }

  // Everything the real side depends on; a retrained classifier has other bytes.
  models::ModelOptions model = s.model;
  std::ostringstream key;
  key << "data " << data.format << " " << data.path << " " << data.name << " train_limit "
      << data.train_limit << " normalize " << data.normalize << " mean " << values_text(norm.mean)
      << " std " << values_text(norm.std) << "\nsplit " << s.split << " count " << reference_count
      << " subset random-" << kReferenceSubsetSeed
      << "\nclassifier " << eval::file_fingerprint(s.classifier) << " layer " << s.feature_layer
      << "\n"
      << config::dump(model);
  bool cached = false;
  eval::ReferenceStatistics reference = eval::cached_reference_statistics(
      s.cache_dir, key.str(),
      [&] {
        std::cerr << "distill diffusion score: reference statistics of " << reference_count << " "
                  << s.split << " images (cached in " << s.cache_dir << ")\n";
        eval::ClassifierOutputs real = eval::classifier_outputs(
            *classifier.model, classifier.params, classifier.buffers,
            split.images.index_select(0, reference_index), s.feature_layer, s.batch_size);
        eval::ReferenceStatistics r;
        r.moments = eval::feature_moments(real.features, "reference features");
        r.features = real.features;
        r.labels = split.labels.index_select(0, reference_index);
        return r;
      },
      &cached);

  const double fcd = eval::frechet_distance(
      reference.moments, eval::feature_moments(fake.features, "sample features"));
  const eval::ManifoldMetrics manifold =
      eval::manifold_metrics(reference.features.narrow(0, 0, manifold_count), fake.features, s.k);
  const eval::ClassCoverage classes =
      eval::class_coverage(fake.predicted, reference.labels, split.num_classes);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  nlohmann::json results;
  results["samples_file"] = file;
  results["samples"] = count;
  for (const char* what : {"sampler", "teacher", "schedule"}) {
    if (dict.contains(what) && dict.at(what).isString())
      results[what] = dict.at(what).toStringRef();
  }
  if (dict.contains("steps") && dict.at("steps").isInt())
    results["steps"] = dict.at("steps").toInt();
  results["classifier"] = s.classifier;
  results["classifier_fingerprint"] = eval::file_fingerprint(s.classifier);
  results["feature_layer"] = s.feature_layer;
  results["feature_dim"] = fake.features.size(1);
  results["reference"] = {{"dataset", data.name},
                          {"split", s.split},
                          {"count", reference_count},
                          {"manifold_count", manifold_count},
                          {"cached", cached}};
  results["fcd"] = fcd;
  results["k"] = s.k;
  results["precision"] = manifold.precision;
  results["recall"] = manifold.recall;
  results["density"] = manifold.density;
  results["coverage"] = manifold.coverage;
  results["class_coverage"] = {{"covered", classes.covered},
                               {"entropy", classes.entropy},
                               {"reference_entropy", classes.reference_entropy},
                               {"kl_to_reference", classes.kl_to_reference},
                               {"counts", classes.counts}};
  results["seconds"] = seconds;
  io::write_file_atomic(run.out + "/results.json", results.dump(2) + "\n");

  std::cout << "sample quality of " << count << " samples (" << file << ")\n"
            << "features: " << s.feature_layer << " of " << s.classifier << " (FCD, not FID)\n"
            << "reference: " << reference_count << " " << s.split << " images of " << data.name
            << (cached ? " (cached)" : "") << "; k-NN metrics on " << manifold_count
            << ", k = " << s.k << "\n\n"
            << "| metric | value |\n|---|---|\n"
            << "| FCD | " << fixed(fcd) << " |\n"
            << "| precision | " << fixed(manifold.precision) << " |\n"
            << "| recall | " << fixed(manifold.recall) << " |\n"
            << "| density | " << fixed(manifold.density) << " |\n"
            << "| coverage | " << fixed(manifold.coverage) << " |\n"
            << "| classes covered | " << fixed(classes.covered) << " |\n"
            << "| class entropy (nats) | " << fixed(classes.entropy) << " (real "
            << fixed(classes.reference_entropy) << ") |\n"
            << "| KL(samples' classes, real) | " << fixed(classes.kl_to_reference) << " |\n\n"
            << "results: " << run.out << "/results.json\n";
}

}  // namespace distill::cli
