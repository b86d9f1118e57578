#include "synth/committee.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>

#include "src/config/config_io.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/io/atomic_file.h"
#include "src/core/random_streams.h"

namespace distill::synth {
namespace {

namespace fs = std::filesystem;


std::string resolve(const std::string& base_dir, const std::string& path) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  return (fs::path(base_dir) / path).lexically_normal().string();
}

bool has_batch_norm(const models::Model& model) { return model.num_buffers() > 0; }

std::string member_name(size_t i, const MemberOptions& m) {
  return "member " + std::to_string(i) + " (" + m.model.arch + ")";
}

}  // namespace

void save_manifest(const std::string& path, CommitteeManifest manifest) {
  io::write_file_atomic(path, "# distill committee: read by `distill synth`\n" +
                                  config::dump(manifest));
}

CommitteeManifest load_manifest(const std::string& path) {
  if (!fs::exists(path)) {
    throw Error("committee manifest '" + path +
                "' does not exist; write one with `distill committee train`");
  }
  CommitteeManifest manifest;
  config::read(config::ConfigSource::from_file(path), manifest);
  if (manifest.members.empty()) {
    throw Error("committee manifest '" + path + "': committee of size 0 (no [[members]])");
  }
  return manifest;
}

at::Tensor committee_weights(const std::vector<double>& accuracies, double temperature) {
  if (accuracies.empty()) throw Error("committee weights of an empty committee");
  if (!(temperature > 0)) {
    throw Error("synth.temperature must be > 0, found " + std::to_string(temperature));
  }
  at::Tensor acc = at::tensor(accuracies, at::kDouble);
  return at::softmax(acc / temperature, 0).to(at::kFloat);
}

std::vector<int64_t> draw_members(int64_t size, int64_t draw, at::Generator& generator) {
  if (draw < 1 || draw > size) {
    throw Error("synth.draw must be between 1 and the committee size " + std::to_string(size) +
                ", found " + std::to_string(draw));
  }
  at::Tensor order = at::randperm(size, generator, at::kLong);
  std::vector<int64_t> picked(order.data_ptr<int64_t>(), order.data_ptr<int64_t>() + draw);
  std::sort(picked.begin(), picked.end());
  return picked;
}

at::Tensor ensemble_soft_labels(const std::vector<at::Tensor>& logits, const at::Tensor& weights,
                                double temperature) {
  if (logits.empty() || static_cast<int64_t>(logits.size()) != weights.numel()) {
    throw Error("ensemble: " + std::to_string(logits.size()) + " members' logits but " +
                std::to_string(weights.numel()) + " weights");
  }
  if (!(temperature > 0)) {
    throw Error("synth.relabel.T must be > 0, found " + std::to_string(temperature));
  }
  at::Tensor total;
  for (size_t k = 0; k < logits.size(); ++k) {
    at::Tensor term = at::softmax(logits[k].to(at::kFloat) / temperature, 1) *
                      weights[static_cast<int64_t>(k)].item<double>();
    total = total.defined() ? total + term : term;
  }
  return total;
}

std::vector<Member> load_committee(const std::string& manifest_path, int64_t channels,
                                   int64_t image_size, int64_t num_classes, c10::Device device) {
  CommitteeManifest manifest = load_manifest(manifest_path);
  const std::string base = fs::path(manifest_path).parent_path().string();
  if (manifest.num_classes > 0 && manifest.num_classes != num_classes) {
    throw Error("committee manifest '" + manifest_path + "': members were trained for " +
                std::to_string(manifest.num_classes) + " classes, the data has " +
                std::to_string(num_classes));
  }
  if ((manifest.channels > 0 && manifest.channels != channels) ||
      (manifest.image_size > 0 && manifest.image_size != image_size)) {
    throw Error("committee manifest '" + manifest_path + "': members take " +
                std::to_string(manifest.channels) + "x" + std::to_string(manifest.image_size) +
                "x" + std::to_string(manifest.image_size) + " images, the data is " +
                std::to_string(channels) + "x" + std::to_string(image_size) + "x" +
                std::to_string(image_size));
  }
  std::vector<Member> members;
  for (size_t i = 0; i < manifest.members.size(); ++i) {
    const MemberOptions& spec = manifest.members[i];
    const std::string where = "committee manifest '" + manifest_path + "', " + member_name(i, spec);
    if (spec.checkpoint.empty()) throw Error(where + ": no checkpoint");
    if (spec.val_accuracy < 0 || spec.val_accuracy > 1) {
      throw Error(where + ": val_accuracy must be in [0, 1], found " +
                  std::to_string(spec.val_accuracy) + " (run `distill committee train` to measure it)");
    }
    kd::TeacherOptions teacher;
    teacher.checkpoint = resolve(base, spec.checkpoint);
    teacher.model = spec.model;
    Member member;
    member.options = spec;
    try {
      member.teacher = kd::load_teacher(teacher, channels, image_size, num_classes);
      // A probe pass catches input shapes the parameter shapes alone do not reveal.
      at::Tensor probe = at::zeros({2, channels, image_size, image_size});
      at::Tensor out = member.teacher.forward(probe);
      if (out.dim() != 2 || out.size(1) != num_classes) {
        throw Error("outputs " + std::to_string(out.size(-1)) + " classes, the data has " +
                    std::to_string(num_classes));
      }
    } catch (const Error& e) {
      throw Error(where + ": " + e.what());
    } catch (const std::exception& e) {
      std::string what = e.what();
      throw Error(where + ": does not take " + std::to_string(channels) + "x" +
                  std::to_string(image_size) + "x" + std::to_string(image_size) + " images (" +
                  what.substr(0, what.find('\n')) + ")");
    }
    member.batch_norm = has_batch_norm(*member.teacher.model);
    if (!member.batch_norm) {
      if (spec.feature_stats.empty()) {
        throw Error(where + ": has no batch norm and no feature_stats file to match instead");
      }
      member.feature_stats = load_feature_statistics(resolve(base, spec.feature_stats));
      for (auto& [name, stats] : member.feature_stats) {
        stats.mean = stats.mean.to(device);
        stats.var = stats.var.to(device);
      }
    }
    member.teacher.params = member.teacher.params.to(device);
    member.teacher.buffers = member.teacher.buffers.to(device);
    members.push_back(std::move(member));
  }
  return members;
}

void check_normalization(const std::string& manifest_path, const at::Tensor& mean,
                         const at::Tensor& std, double zca_eps, const std::string& what) {
  CommitteeManifest manifest = load_manifest(manifest_path);
  auto text = [](const std::vector<double>& v) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
    return out + "]";
  };
  auto as_vector = [](const at::Tensor& t) {
    at::Tensor d = t.to(at::kDouble).contiguous().cpu();
    return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
  };
  const std::vector<double> m = as_vector(mean), s = as_vector(std);
  auto close = [](const std::vector<double>& a, const std::vector<double>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (std::abs(a[i] - b[i]) > 1e-4 * std::max(1.0, std::abs(b[i]))) return false;
    }
    return true;
  };
  // A hand-written manifest may leave the normalization out: nothing to compare then.
  if (!manifest.mean.empty() && (!close(m, manifest.mean) || !close(s, manifest.std))) {
    throw Error(what + " is normalized with mean " + text(m) + ", std " + text(s) +
                ", but the committee in '" + manifest_path + "' was trained on mean " +
                text(manifest.mean) + ", std " + text(manifest.std));
  }
  if (std::abs(zca_eps - manifest.zca_eps) > 1e-9) {
    throw Error(what + " has zca_eps " + std::to_string(zca_eps) + ", but the committee in '" +
                manifest_path + "' was trained with zca_eps " + std::to_string(manifest.zca_eps) +
                " (0 = not whitened)");
  }
}

CommitteeOptions::CommitteeOptions() {
  MemberOptions convnet;
  convnet.model.arch = "convnet";
  convnet.model.norm = "batchnorm";
  MemberOptions resnet;
  resnet.model.arch = "resnet18bn";
  MemberOptions lenet;
  lenet.model.arch = "lenet";
  members = {convnet, resnet, lenet};
  train.epochs = 10;
  train.batch_size = 256;
  train.optimizer.name = "sgd";
  train.optimizer.lr = 0.05;
  train.schedule.name = "cosine";
  train.eval_every = 0;
  augment.name = "standard";
}

CommitteeManifest train_committee(const CommitteeOptions& options, const data::Dataset& train_set,
                                  const data::Dataset& test_set, const data::Normalization& norm,
                                  const std::string& dataset_name, uint64_t seed,
                                  const std::string& out, bool resume, bool progress,
                                  c10::Device device, const SaveModelFn& save_model,
                                  std::shared_ptr<const dist::ProcessGroup> group) {
  const int64_t channels = train_set.channels(), size = train_set.height();
  const int64_t classes = train_set.num_classes;
  // Everything that can be checked is checked before any training.
  config::check(options, "committee");  // the declared ranges and rules (CommitteeOptions)
  std::vector<std::unique_ptr<models::Model>> models;
  std::vector<Member> loaded(options.members.size());
  for (size_t i = 0; i < options.members.size(); ++i) {
    const MemberOptions& spec = options.members[i];
    const std::string where = "committee.members[" + std::to_string(i) + "] (" + spec.model.arch + ")";
    try {
      models.push_back(models::make_model(spec.model, channels, size, classes));
      if (!spec.checkpoint.empty()) {
        kd::TeacherOptions teacher;
        teacher.checkpoint = spec.checkpoint;
        teacher.model = spec.model;
        loaded[i].teacher = kd::load_teacher(teacher, channels, size, classes);
        loaded[i].teacher.forward(at::zeros({2, channels, size, size}));
      }
    } catch (const Error& e) {
      throw Error(where + ": " + e.what());
    } catch (const std::exception& e) {
      std::string what = e.what();
      throw Error(where + ": does not take the data's " + std::to_string(channels) + "x" +
                  std::to_string(size) + "x" + std::to_string(size) + " images (" +
                  what.substr(0, what.find('\n')) + ")");
    }
  }
  // Class-balanced held-out split: the accuracies that weight the votes are measured on images
  // no trained-here member saw (the test split stays untouched).
  at::Generator split_generator = make_generator(seed, streams::kCommitteeValSplit);
  const auto [fit_set, val_set] =
      data::hold_out_per_class(train_set, options.val_per_class, split_generator);
  at::Tensor fit_images = fit_set.images.to(device), fit_labels = fit_set.labels.to(device);
  at::Tensor val_images = val_set.images.to(device), val_labels = val_set.labels.to(device);
  at::Tensor test_images = test_set.images.to(device), test_labels = test_set.labels.to(device);

  CommitteeManifest manifest;
  manifest.dataset = dataset_name;
  manifest.channels = channels;
  manifest.image_size = size;
  manifest.num_classes = classes;
  at::Tensor mean = norm.mean.to(at::kDouble).contiguous(), std = norm.std.to(at::kDouble).contiguous();
  manifest.mean.assign(mean.data_ptr<double>(), mean.data_ptr<double>() + mean.numel());
  manifest.std.assign(std.data_ptr<double>(), std.data_ptr<double>() + std.numel());
  manifest.zca_eps = norm.zca ? norm.zca->eps() : 0.0;
  // Trains member i into out/member_i (model.pt, checkpoint.pt, metrics.jsonl); resumes an
  // interrupted one from its checkpoint.
  auto train_member = [&](size_t i, const MemberOptions& spec) {
    const models::Model& model = *models[i];
    const std::string dir = out + "/member_" + std::to_string(i);
    io::make_dirs(dir);
    train::Trainer trainer(model, options.train, mix_seed(seed, streams::kCommitteeMember, i));
    trainer.set_augment(train::make_augment(options.augment, size));
    trainer.set_test_set(val_images, val_labels);
    const std::string checkpoint = dir + "/checkpoint.pt";
    trainer.set_checkpoint(checkpoint);
    trainer.set_progress("committee " + member_name(i, spec), progress);
    const bool resuming = resume && fs::exists(checkpoint);
    train::TrainState state = resuming ? trainer.load_checkpoint(checkpoint) : trainer.init_state();
    io::MetricsLog metrics(dir + "/metrics.jsonl",
                           resuming ? std::optional<int64_t>(state.step) : std::nullopt);
    trainer.set_metrics(&metrics);
    state.params = state.params.to(device);
    state.buffers = state.buffers.to(device);
    trainer.fit(state, fit_images, fit_labels);
    save_model(dir + "/model.pt", model, state);
    return state;
  };
  // Several processes: rank r trains members r, r + W, ... (each on its own, with the seed it
  // has on one process, so the files are the single-process files); rank 0 then reads them all
  // and measures and writes the committee as below.
  std::vector<bool> trained_elsewhere(options.members.size(), false);
  if (group && group->distributed()) {
    for (size_t i = 0; i < options.members.size(); ++i) {
      const MemberOptions& spec = options.members[i];
      const std::string model_file = out + "/member_" + std::to_string(i) + "/model.pt";
      if (!spec.checkpoint.empty() || (resume && fs::exists(model_file))) continue;
      if (dist::owns_item(*group, static_cast<int64_t>(i))) train_member(i, spec);
      trained_elsewhere[i] = true;
    }
    // Members differ in cost (a ResNet-18 next to a LeNet): the others wait as long as it takes.
    group->wait_for_peers("committee members");
    if (!group->is_main()) return manifest;
  }
  for (size_t i = 0; i < options.members.size(); ++i) {
    MemberOptions spec = options.members[i];
    const models::Model& model = *models[i];
    const std::string folder = "member_" + std::to_string(i);
    const std::string dir = out + "/" + folder;
    io::make_dirs(dir);
    at::Tensor params, buffers;
    if (!spec.checkpoint.empty()) {
      params = loaded[i].teacher.params.to(device);
      buffers = loaded[i].teacher.buffers.to(device);
      spec.checkpoint = fs::absolute(spec.checkpoint).lexically_normal().string();
    } else {
      const std::string model_file = dir + "/model.pt";
      if (trained_elsewhere[i] || (resume && fs::exists(model_file))) {
        kd::TeacherOptions teacher;
        teacher.checkpoint = model_file;
        teacher.model = spec.model;
        kd::Teacher done = kd::load_teacher(teacher, channels, size, classes);
        params = done.params.to(device);
        buffers = done.buffers.to(device);
        if (!trained_elsewhere[i]) {
          std::cerr << "distill committee: " << member_name(i, spec) << " already trained ("
                    << model_file << ")\n";
        }
      } else {
        train::TrainState state = train_member(i, spec);
        params = state.ema.defined() ? state.ema : state.params;
        buffers = state.buffers;
      }
      spec.checkpoint = folder + "/model.pt";
    }
    spec.val_accuracy = train::evaluate(model, params, buffers, val_images, val_labels).accuracy;
    spec.test_accuracy = train::evaluate(model, params, buffers, test_images, test_labels).accuracy;
    if (!has_batch_norm(model)) {
      const int64_t n = std::min<int64_t>(options.stats_images, fit_images.size(0));
      save_feature_statistics(dir + "/feature_stats.pt",
                              real_feature_statistics(model, params, buffers,
                                                      fit_images.narrow(0, 0, n)));
      spec.feature_stats = folder + "/feature_stats.pt";
    } else {
      spec.feature_stats.clear();
    }
    std::cerr << "distill committee: " << member_name(i, spec) << " held-out accuracy "
              << 100.0 * spec.val_accuracy << " %, test accuracy " << 100.0 * spec.test_accuracy
              << " %\n";
    manifest.members.push_back(spec);
  }
  save_manifest(out + "/committee.toml", manifest);
  return manifest;
}

}  // namespace distill::synth
