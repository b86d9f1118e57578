#include "trajectories/experts.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "src/config/config_io.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/dist/process_group.h"
#include "src/io/atomic_file.h"
#include "src/io/metrics_log.h"
#include "src/core/random_streams.h"

namespace distill::trajectories {
namespace {

namespace fs = std::filesystem;

std::string expert_file(const std::string& folder, int64_t k) {
  char name[64];
  std::snprintf(name, sizeof name, "expert_%05lld.pt", static_cast<long long>(k));
  return folder + "/" + name;
}

// expert_NNNNN.pt, not the .partial.pt/.checkpoint.pt of an expert still training.
bool is_finished_expert(const std::string& name) {
  const std::string digits = name.substr(7, name.size() - 10);
  return !digits.empty() && std::all_of(digits.begin(), digits.end(), ::isdigit);
}

}  // namespace

std::pair<int64_t, int64_t> parse_range(const std::string& range, int64_t total) {
  if (range.empty()) return {0, total};
  auto colon = range.find(':');
  try {
    if (colon == std::string::npos) throw std::invalid_argument("no colon");
    size_t used = 0;
    int64_t begin = colon == 0 ? 0 : std::stoll(range.substr(0, colon), &used);
    int64_t end = colon + 1 == range.size() ? total : std::stoll(range.substr(colon + 1));
    if (begin < 0 || end > total || begin >= end) throw std::out_of_range("bad bounds");
    return {begin, end};
  } catch (const std::exception&) {
    throw Error("experts.range: expected \"begin:end\" with 0 <= begin < end <= " +
                std::to_string(total) + ", found \"" + range + "\"");
  }
}

void train_experts(const ExpertOptions& options, const data::Dataset& train,
                   const data::Dataset& test, uint64_t seed, const std::string& folder,
                   bool progress, const dist::ProcessGroup* group) {
  const dist::ProcessGroup single;
  const dist::ProcessGroup& ranks = group ? *group : single;
  config::check(options, "experts");  // the declared ranges and rules (ExpertOptions)
  auto [begin, end] = parse_range(options.range, options.num_experts);
  io::make_dirs(folder);
  auto model = models::make_model(options.model, train.channels(), train.height(), train.num_classes);
  train::AugmentFn augment = train::make_augment(options.augment, train.height());
  // Rank 0 writes the shared files.
  io::MetricsLog metrics(folder + "/metrics.jsonl", std::optional<int64_t>(INT64_MAX),
                         ranks.is_main());
  std::vector<double> logged_elsewhere;  // (k, test accuracy, train loss) of this rank's experts
  train::TrainOptions train_options = options.train;
  train_options.checkpoint_every = 1;  // an interrupted expert continues from its last epoch
  for (int64_t k = begin; k < end; ++k) {
    if (!dist::owns_item(ranks, k - begin)) continue;
    const std::string done = expert_file(folder, k);
    if (fs::exists(done)) continue;  // finished earlier (resume, other shard)
    // While expert k trains, its trainer checkpoint and its trajectory so far sit beside it.
    const std::string checkpoint = done.substr(0, done.size() - 3) + ".checkpoint.pt";
    const std::string partial = done.substr(0, done.size() - 3) + ".partial.pt";
    train::Trainer trainer(*model, train_options, mix_seed(seed, streams::kExpert, k));
    trainer.set_augment(augment);
    if (options.smoothing.enabled()) {
      trainer.set_objective(std::make_shared<SmoothExpertObjective>(options.smoothing));
    }
    trainer.set_test_set(test.images, test.labels);
    trainer.set_progress("expert " + std::to_string(k), progress);
    trainer.set_checkpoint(checkpoint);
    train::TrainState state = trainer.init_state();
    Trajectory trajectory{state.params.clone()};
    if (fs::exists(checkpoint) && fs::exists(partial)) {
      train::TrainState saved = trainer.load_checkpoint(checkpoint);
      Trajectory so_far = load_trajectories(partial, *model).at(0);
      // The snapshot of epoch e is written just before the checkpoint of epoch e: a stop in
      // between leaves one snapshot too many, which the checkpoint's epoch count drops.
      if (static_cast<int64_t>(so_far.size()) >= saved.epoch + 1) {
        so_far.resize(static_cast<size_t>(saved.epoch + 1));
        state = std::move(saved);
        trajectory = std::move(so_far);
        std::cerr << "expert " << k << ": continuing after epoch " << state.epoch << "\n";
      }
    }
    trainer.on_epoch_end([&](const train::TrainState& s) {
      trajectory.push_back(s.params.clone());
      save_trajectories(partial, {trajectory}, *model);
    });
    auto result = trainer.fit(state, train.images, train.labels);
    save_trajectories(done, {trajectory}, *model);
    fs::remove(checkpoint);
    fs::remove(partial);
    if (metrics.writes()) {
      metrics.log(k, {{"expert", static_cast<double>(k)},
                      {"test_accuracy", result["test_accuracy"]},
                      {"train_loss", result["train_loss"]}});
    } else {
      logged_elsewhere.insert(
          logged_elsewhere.end(),
          {static_cast<double>(k), result["test_accuracy"], result["train_loss"]});
    }
    std::cerr << "expert " << k << ": test accuracy " << 100 * result["test_accuracy"] << " %"
              << (ranks.distributed() ? " (rank " + std::to_string(ranks.rank()) + ")" : "")
              << "\n";
  }
  if (ranks.distributed()) {
    // Every rank's experts are done once these return (the wait lasts as long as the slowest
    // rank's experts take); rank 0 then logs the others' experts and packs.
    ranks.wait_for_peers("experts");
    auto gathered = ranks.all_gather(logged_elsewhere);
    if (!ranks.is_main()) return;
    for (const auto& lines : gathered) {
      for (size_t i = 0; i + 2 < lines.size(); i += 3) {
        metrics.log(
            static_cast<int64_t>(lines[i]),
            {{"expert", lines[i]}, {"test_accuracy", lines[i + 1]}, {"train_loss", lines[i + 2]}});
      }
    }
  }
  // Pack complete groups into the reference's replay_buffer_N.pt files.
  for (int64_t group = 0; group * options.save_interval < options.num_experts; ++group) {
    int64_t first = group * options.save_interval;
    int64_t last = std::min(options.num_experts, first + options.save_interval);
    std::string packed = folder + "/replay_buffer_" + std::to_string(group) + ".pt";
    if (fs::exists(packed)) continue;
    std::vector<Trajectory> experts;
    bool complete = true;
    for (int64_t k = first; k < last && complete; ++k) {
      if (!fs::exists(expert_file(folder, k))) {
        complete = false;
      } else {
        experts.push_back(load_trajectories(expert_file(folder, k), *model).at(0));
      }
    }
    if (complete) save_trajectories(packed, experts, *model);
  }
}

std::vector<Trajectory> load_expert_folder(const std::string& path, const models::Model& model) {
  if (!fs::exists(path)) throw Error("expert buffer '" + path + "': no such file or folder");
  if (!fs::is_directory(path)) return load_trajectories(path, model);
  std::vector<std::string> buffers, singles;
  for (const auto& entry : fs::directory_iterator(path)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("replay_buffer_", 0) == 0 && entry.path().extension() == ".pt") {
      buffers.push_back(entry.path().string());
    } else if (name.rfind("expert_", 0) == 0 && entry.path().extension() == ".pt" &&
               is_finished_expert(name)) {
      singles.push_back(entry.path().string());
    }
  }
  std::vector<std::string>& files = buffers.empty() ? singles : buffers;
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    throw Error("expert buffer folder '" + path +
                "' holds no replay_buffer_*.pt or expert_*.pt files (run `distill experts` first)");
  }
  std::vector<Trajectory> experts;
  for (const auto& file : files) {
    for (auto& t : load_trajectories(file, model)) experts.push_back(std::move(t));
  }
  return experts;
}

}  // namespace distill::trajectories
