#include "src/eval/evaluator.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/dist/process_group.h"
#include "src/io/progress.h"
#include "src/core/random_streams.h"

namespace distill::eval {
namespace {


double mean_of(const std::vector<double>& v) {
  if (v.empty()) return std::nan("");
  double sum = 0;
  for (double x : v) sum += x;
  return sum / static_cast<double>(v.size());
}

// Population std over runs, as the DC/MTT code reports (np.std).
double std_of(const std::vector<double>& v) {
  if (v.empty()) return std::nan("");
  double m = mean_of(v), sum = 0;
  for (double x : v) sum += (x - m) * (x - m);
  return std::sqrt(sum / static_cast<double>(v.size()));
}

}  // namespace

double Scores::last_mean() const { return mean_of(last); }
double Scores::last_std() const { return std_of(last); }
double Scores::best_mean() const { return mean_of(best); }

void apply_protocol(const std::string& name, EvalOptions& options) {
  if (name == "custom") return;
  if (name != "dc") throw Error("eval.protocol: unknown protocol '" + name + "' (dc, custom)");
  // DC/DSA/MTT evaluation (Zhao et al. 2021; Cazenavette et al. 2022).
  train::TrainOptions& t = options.train;
  t.epochs = 300;
  t.batch_size = 256;
  t.optimizer = train::OptimizerOptions{};
  t.optimizer.name = "sgd";
  t.optimizer.lr = 0.01;
  t.optimizer.momentum = 0.9;
  t.optimizer.weight_decay = 5e-4;
  t.schedule = train::ScheduleOptions{};
  t.schedule.name = "multistep";
  t.schedule.milestones = {0.5};
  t.schedule.gamma = 0.1;
  // The test set is scored at epochs 100, 200 and 300: the last is the reported figure, the best
  // of the three is the "best" column (MTT-style tables print best-so-far figures).
  t.eval_every = 100;
  options.augment.name = "dsa";
}

Evaluator::Evaluator(EvalOptions options, const data::Dataset& train, const data::Dataset& test,
                     data::Normalization norm, uint64_t seed, c10::Device device, bool progress)
    : options_(std::move(options)),
      train_(train),
      test_(test),
      norm_(std::move(norm)),
      seed_(seed),
      device_(device),
      progress_(progress) {
  if (options_.runs < 1) throw Error("eval.runs must be >= 1, found " + std::to_string(options_.runs));
  if (!(options_.cutmix.prob >= 0 && options_.cutmix.prob <= 1)) {
    throw Error("eval.cutmix.prob must be in [0, 1], found " +
                std::to_string(options_.cutmix.prob));
  }
  if (!(options_.cutmix.beta > 0)) {
    throw Error("eval.cutmix.beta must be > 0, found " + std::to_string(options_.cutmix.beta));
  }
  if (!(options_.mixup.prob >= 0 && options_.mixup.prob <= 1)) {
    throw Error("eval.mixup.prob must be in [0, 1], found " + std::to_string(options_.mixup.prob));
  }
  if (!(options_.mixup.alpha > 0)) {
    throw Error("eval.mixup.alpha must be > 0, found " + std::to_string(options_.mixup.alpha));
  }
  if (options_.cutmix.prob > 0 && options_.mixup.prob > 0) {
    throw Error("eval.cutmix.prob = " + std::to_string(options_.cutmix.prob) +
                " and eval.mixup.prob = " + std::to_string(options_.mixup.prob) +
                ": one batch mix at a time (set the other's prob to 0)");
  }
  if (options_.models.empty()) throw Error("eval.models is empty: name at least one architecture");
  test_images_ = test.images.to(device_);
  test_labels_ = test.labels.to(device_);
}

std::pair<double, double> Evaluator::train_student(const at::Tensor& images, const at::Tensor& labels,
                                                   const std::string& arch, double lr,
                                                   uint64_t seed, const std::string& label,
                                                   const SyntheticSet* set) {
  models::ModelOptions model_options = options_.model;
  model_options.arch = arch;
  auto model = models::make_model(model_options, train_.channels(), train_.height(),
                                  train_.num_classes);
  train::TrainOptions train_options = options_.train;
  train_options.optimizer.lr = lr;
  if (set && set->label_temperature && options_.set_label_temperature) {
    train_options.label_temperature = *set->label_temperature;
  }
  train::Trainer trainer(*model, train_options, seed);
  if (set && set->has_views()) {
    trainer.set_batch_source([set, device = device_](const at::Tensor& index, int64_t epoch) {
      auto [x, y] = replay_views(*set, index.cpu(), epoch);
      return std::make_pair(x.to(device), y.to(device));
    });
  } else {
    trainer.set_augment(train::make_augment(options_.augment, images.size(2)));
  }
  if (online_labels_) {
    trainer.set_objective(
        std::make_shared<OnlineLabelObjective>(online_labels_, online_temperature_));
  }
  if (options_.cutmix.prob > 0) {
    // After eval.augment or the replayed views; soft labels are mixed by the box's area.
    trainer.set_batch_mix([options = options_.cutmix, classes = train_.num_classes](
                              const at::Tensor& x, const at::Tensor& y, at::Generator& g) {
      return train::cutmix(x, y, classes, options, g);
    });
  } else if (options_.mixup.prob > 0) {
    trainer.set_batch_mix([options = options_.mixup, classes = train_.num_classes](
                              const at::Tensor& x, const at::Tensor& y, at::Generator& g) {
      return train::mixup(x, y, classes, options, g);
    });
  }
  trainer.set_test_set(test_images_, test_labels_);
  trainer.set_progress(label, progress_);
  train::TrainState state = trainer.init_state();
  state.params = state.params.to(device_);
  state.buffers = state.buffers.to(device_);
  auto metrics = trainer.fit(state, images.to(device_), labels.to(device_));
  double last = metrics.at("test_accuracy");
  double best = metrics.count("best_test_accuracy") ? metrics.at("best_test_accuracy") : last;
  return {last, best};
}

Scores Evaluator::score_set(const SyntheticSet& set, const std::string& name, const std::string& arch) {
  if (set.images.size(1) != train_.channels() || set.images.size(2) != train_.height() ||
      set.images.size(3) != train_.width()) {
    throw Error("'" + name + "': images are " + std::to_string(set.images.size(1)) + "x" +
                std::to_string(set.images.size(2)) + "x" + std::to_string(set.images.size(3)) +
                " but the test data is " + std::to_string(train_.channels()) + "x" +
                std::to_string(train_.height()) + "x" + std::to_string(train_.width()));
  }
  if (set.num_classes != train_.num_classes) {
    throw Error("'" + name + "': " + std::to_string(set.num_classes) + " classes, the data has " +
                std::to_string(train_.num_classes));
  }
  Scores scores{name, arch, set.images_per_class(), {}, {}};
  double lr = options_.learned_lr && set.lr ? *set.lr : options_.train.optimizer.lr;
  // Students depend on (seed, arch, run) only, not on where the set file lies: the same set
  // scores the same from any path, and different sets meet the same student draws.
  score_runs(scores, "set/" + arch, [&](int64_t, uint64_t seed, const std::string& label) {
    return train_student(set.images, set.labels, arch, lr, seed, label, &set);
  });
  return scores;
}

SyntheticSet Evaluator::random_real_set(const data::Dataset& train, const data::Normalization& norm,
                                        int64_t ipc, at::Generator& generator,
                                        const std::string& dataset_name, at::Tensor* train_index) {
  at::Tensor index = data::sample_per_class(train.labels, train.num_classes, ipc, generator);
  if (train_index) *train_index = index;
  SyntheticSet set = real_set(train, norm, index, dataset_name);
  set.method = "random-real";
  return set;
}

SyntheticSet Evaluator::real_set(const data::Dataset& train, const data::Normalization& norm,
                                 const at::Tensor& index, const std::string& dataset_name) {
  SyntheticSet set;
  set.images = train.images.index_select(0, index);
  set.labels = train.labels.index_select(0, index);
  set.num_classes = train.num_classes;
  set.mean = norm.mean;
  set.std = norm.std;
  set.zca_eps = norm.zca ? norm.zca->eps() : 0.0;
  set.dataset = dataset_name;
  set.method = "real";
  return set;
}

Scores Evaluator::score_random_real(int64_t ipc, const std::string& arch,
                                    const std::string& name) {
  Scores scores{name, arch, ipc, {}, {}};
  score_runs(scores, "random-real/" + arch,
             [&](int64_t run, uint64_t seed, const std::string& label) {
               // A fresh subset per run (the same subsets for every architecture): the spread then
               // covers both the draw of real images and the student's initialization.
               at::Generator generator = make_generator(seed_, streams::kEvalRealSubset, run);
               SyntheticSet set = random_real_set(train_, norm_, ipc, generator, "");
               return train_student(set.images, set.labels, arch, options_.train.optimizer.lr,
                                    seed, label);
             });
  return scores;
}

Scores Evaluator::score_full_data(const std::string& arch, const std::string& name) {
  Scores scores{name, arch, 0, {}, {}};
  score_runs(scores, "full-data/" + arch, [&](int64_t, uint64_t seed, const std::string& label) {
    return train_student(train_.images, train_.labels, arch, options_.train.optimizer.lr, seed,
                         label);
  });
  return scores;
}

void Evaluator::score_runs(Scores& scores, const std::string& stream_name,
                           const TrainRun& train_run) {
  const uint64_t stream = std::hash<std::string>{}(stream_name);
  const bool distributed = group_ && group_->distributed();
  // Several ranks train a round of world-size students at a time (run i on rank i mod W) and
  // gather each round, so an interruption loses at most the round under way.
  const int64_t round = distributed ? group_->world_size() : 1;
  for (int64_t first = 0; first < options_.runs; first += round) {
    const int64_t end = std::min(options_.runs, first + round);
    // Per run of the round: its student seed, and whether this job trains it (no earlier record).
    std::vector<uint64_t> seeds;
    std::vector<bool> trained;
    for (int64_t run = first; run < end; ++run) {
      const uint64_t seed = mix_seed(seed_, streams::kEvalStudent ^ stream, run);
      const StudentResult* done = finished_student(scores, run, seed);
      seeds.push_back(seed);
      trained.push_back(done == nullptr);
      if (!owns_run(run)) {
        skip_run(scores);
      } else if (done) {
        scores.last.push_back(done->last);
        scores.best.push_back(done->best);
        scores.seconds.push_back(done->seconds);
        ++students_done_;
      } else {
        const auto start = std::chrono::steady_clock::now();
        auto [last, best] = train_run(run, seed, progress_label(scores, run));
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        ++students_done_;
        ++students_trained_;
        trained_seconds_ += seconds;
        scores.last.push_back(last);
        scores.best.push_back(best);
        scores.seconds.push_back(seconds);
      }
    }
    gather_runs(scores);  // the runs so far, from their owners (nothing to do in one process)
    if (!on_student_) continue;
    for (int64_t run = first; run < end; ++run) {
      if (trained[run - first]) {
        on_student_({scores.set, scores.model, run, seeds[run - first], scores.last[run],
                     scores.best[run], scores.seconds[run]});
      }
    }
  }
}

std::string Evaluator::progress_label(const Scores& scores, int64_t run) const {
  std::string label = scores.set + " " + scores.model + " run " + std::to_string(run + 1) + "/" +
                      std::to_string(options_.runs);
  // Several ranks split the students unevenly over the calls: no evaluation-wide estimate there.
  if (student_count_ <= 0 || (group_ && group_->distributed())) return label;
  label += ", student " + std::to_string(students_done_ + 1) + "/" + std::to_string(student_count_);
  if (students_trained_ > 0) {
    // The mean over the students trained so far, whatever their architecture or set: rough while
    // an evaluation mixes cheap and costly students.
    const double per_student = trained_seconds_ / static_cast<double>(students_trained_);
    label +=
        ", eval left ~" + io::Progress::format_duration(
                              per_student * static_cast<double>(student_count_ - students_done_));
  }
  return label;
}

const StudentResult* Evaluator::finished_student(const Scores& scores, int64_t run,
                                                 uint64_t seed) const {
  for (const StudentResult& s : finished_) {
    if (s.set == scores.set && s.model == scores.model && s.run == run && s.seed == seed) return &s;
  }
  return nullptr;
}

bool Evaluator::owns_run(int64_t run) const { return !group_ || dist::owns_item(*group_, run); }

void Evaluator::skip_run(Scores& scores) {
  scores.last.push_back(std::nan(""));
  scores.best.push_back(std::nan(""));
  scores.seconds.push_back(std::nan(""));
}

void Evaluator::gather_runs(Scores& scores) const {
  if (!group_ || !group_->distributed()) return;
  std::vector<double> mine = scores.last;
  mine.insert(mine.end(), scores.best.begin(), scores.best.end());
  mine.insert(mine.end(), scores.seconds.begin(), scores.seconds.end());
  // A round's students may differ in cost (a resumed run has some recorded already): wait for
  // the slowest rank's as long as it takes.
  group_->wait_for_peers("students");
  auto all = group_->all_gather(mine);
  const size_t runs = scores.last.size();
  for (size_t run = 0; run < runs; ++run) {
    const auto& owner = all.at(run % all.size());
    scores.last[run] = owner.at(run);
    scores.best[run] = owner.at(runs + run);
    scores.seconds[run] = owner.at(2 * runs + run);
  }
}

std::string format_scores_table(const std::vector<Scores>& scores) {
  size_t set_width = 5;
  for (const auto& s : scores) set_width = std::max(set_width, s.set.size());
  std::ostringstream out;
  out << std::left << std::setw(static_cast<int>(set_width + 2)) << "set" << std::setw(12) << "model"
      << std::setw(6) << "ipc" << std::setw(6) << "runs" << std::setw(18) << "last-epoch acc %"
      << "best acc %\n";
  for (const auto& s : scores) {
    std::ostringstream acc, best;
    acc << std::fixed << std::setprecision(2) << 100 * s.last_mean() << " ± " << 100 * s.last_std();
    best << std::fixed << std::setprecision(2) << 100 * s.best_mean();
    out << std::left << std::setw(static_cast<int>(set_width + 2)) << s.set << std::setw(12)
        << s.model << std::setw(6) << (s.ipc > 0 ? std::to_string(s.ipc) : "all") << std::setw(6)
        << s.last.size() << std::setw(19) << acc.str() << best.str() << "\n";
  }
  return out.str();
}

std::string scores_json(const std::vector<Scores>& scores, const std::string& protocol,
                        int64_t eval_every, const std::vector<DDRankingRow>& ddranking,
                        const DDRankingOptions& ddranking_options) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& s : scores) {
    rows.push_back({{"set", s.set},
                    {"model", s.model},
                    {"ipc", s.ipc},
                    {"runs", s.last.size()},
                    {"last_accuracy", s.last},
                    {"best_accuracy", s.best},
                    {"seconds", s.seconds},
                    {"last_mean", s.last_mean()},
                    {"last_std", s.last_std()},
                    {"best_mean", s.best_mean()}});
  }
  nlohmann::json out{{"protocol", protocol}, {"eval_every", eval_every}, {"results", rows}};
  if (!ddranking.empty()) {
    nlohmann::json terms = nlohmann::json::array();
    for (const auto& r : ddranking) {
      const DDRankingAccuracies& a = r.accuracies;
      terms.push_back({{"set", r.set},
                       {"model", r.model},
                       {"label_source", r.label_source},
                       {"hlr", r.scores.hlr},
                       {"ior", r.scores.ior},
                       {"alpha", r.scores.alpha},
                       {"lrs", r.scores.lrs},
                       {"beta", r.scores.beta},
                       {"ars", r.scores.ars},
                       {"accuracies",
                        {{"full_hard", a.full_hard},
                         {"set_hard", a.set_hard},
                         {"set_own", a.set_own},
                         {"random_own", a.random_own},
                         {"set_no_aug", a.set_no_aug},
                         {"random_no_aug", a.random_no_aug}}}});
    }
    out["ddranking"] = terms;
    out["ddranking_settings"] = {{"w", ddranking_options.w}, {"gamma", ddranking_options.gamma}};
  }
  return out.dump(2) + "\n";
}

}  // namespace distill::eval
