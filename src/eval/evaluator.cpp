#include "src/eval/evaluator.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/dist/process_group.h"
#include "src/io/progress.h"
#include "src/core/random_streams.h"
#include "src/train/stacked_trainer.h"

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

std::vector<std::vector<int64_t>> confusion_rows(const at::Tensor& confusion) {
  std::vector<std::vector<int64_t>> rows;
  if (!confusion.defined()) return rows;
  const at::Tensor counts = confusion.to(at::kLong).contiguous();
  for (int64_t i = 0; i < counts.size(0); ++i) {
    const int64_t* row = counts[i].data_ptr<int64_t>();
    rows.emplace_back(row, row + counts.size(1));
  }
  return rows;
}

}  // namespace

// A trained student's scores: the final metrics, its confusion matrix and test curve.
Evaluator::StudentOutcome Evaluator::outcome_of(const std::map<std::string, double>& metrics,
                                                const at::Tensor& confusion,
                                                const train::TestCurve& curve) {
  StudentOutcome outcome;
  outcome.last = metrics.at("test_accuracy");
  outcome.best =
      metrics.count("best_test_accuracy") ? metrics.at("best_test_accuracy") : outcome.last;
  outcome.confusion = confusion_rows(confusion);
  outcome.curve = curve;
  return outcome;
}

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

train::Trainer::BatchMixFn Evaluator::batch_mix() const {
  // After eval.augment or the replayed views; soft labels are mixed by the box's area.
  if (options_.cutmix.prob > 0) {
    return [options = options_.cutmix, classes = train_.num_classes](
               const at::Tensor& x, const at::Tensor& y, at::Generator& g) {
      return train::cutmix(x, y, classes, options, g);
    };
  }
  if (options_.mixup.prob > 0) {
    return [options = options_.mixup, classes = train_.num_classes](
               const at::Tensor& x, const at::Tensor& y, at::Generator& g) {
      return train::mixup(x, y, classes, options, g);
    };
  }
  return {};
}

models::ModelOptions Evaluator::student_model_options(const std::string& arch) const {
  models::ModelOptions model_options = options_.model;
  model_options.arch = arch;
  return model_options;
}

std::unique_ptr<models::Model> Evaluator::student_model(const std::string& arch) const {
  return models::make_model(student_model_options(arch), train_.channels(), train_.height(),
                            train_.num_classes);
}

// What a lone Trainer and a StackedTrainer are given alike: batches (the set's replayed views, or
// the images under eval.augment), the batch mix, the test set and the progress label.
template <typename StudentTrainer>
void Evaluator::configure(StudentTrainer& trainer, const StudentJob& job,
                          const std::string& label) const {
  if (job.set && job.set->has_views()) {
    trainer.set_batch_source([set = job.set, device = device_](const at::Tensor& index,
                                                               int64_t epoch) {
      auto [x, y] = replay_views(*set, index.cpu(), epoch);
      return std::make_pair(x.to(device), y.to(device));
    });
  } else {
    trainer.set_augment(train::make_augment(options_.augment, job.images.size(2)));
  }
  if (auto mix = batch_mix()) trainer.set_batch_mix(mix);
  trainer.set_test_set(test_images_, test_labels_);
  trainer.set_progress(label, progress_);
}

train::TrainOptions Evaluator::student_options(const StudentJob& job) const {
  train::TrainOptions train_options = options_.train;
  train_options.optimizer.lr = job.lr;
  if (job.set && job.set->label_temperature && options_.set_label_temperature) {
    train_options.label_temperature = *job.set->label_temperature;
  }
  // The set says what its label rows are; a set of class ids has no soft targets to read.
  if (job.set && job.set->soft_labels()) {
    train_options.soft_targets = job.set->labels_are_logits ? "logits" : "probabilities";
  }
  return train_options;
}

Evaluator::StudentOutcome Evaluator::train_student(const StudentJob& job, const std::string& arch,
                                                   uint64_t seed, const std::string& label) {
  auto model = student_model(arch);
  train::Trainer trainer(*model, student_options(job), seed);
  if (online_labels_) {
    trainer.set_objective(
        std::make_shared<OnlineLabelObjective>(online_labels_, online_temperature_));
  }
  configure(trainer, job, label);
  train::TrainState state = trainer.init_state();
  state.params = state.params.to(device_);
  state.buffers = state.buffers.to(device_);
  auto metrics = trainer.fit(state, job.images.to(device_), job.labels.to(device_));
  return outcome_of(metrics, trainer.test_confusion(), trainer.test_curve());
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
  score_runs(scores, "set/" + arch, [&](int64_t) {
    return StudentJob{set.images, set.labels, lr, &set};
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
  score_runs(scores, "random-real/" + arch, [&](int64_t run) {
    // A fresh subset per run (the same subsets for every architecture): the spread then covers
    // both the draw of real images and the student's initialization.
    at::Generator generator = make_generator(seed_, streams::kEvalRealSubset, run);
    SyntheticSet set = random_real_set(train_, norm_, ipc, generator, "");
    return StudentJob{set.images, set.labels, options_.train.optimizer.lr, nullptr};
  });
  return scores;
}

Scores Evaluator::score_full_data(const std::string& arch, const std::string& name) {
  Scores scores{name, arch, 0, {}, {}};
  score_runs(scores, "full-data/" + arch, [&](int64_t) {
    return StudentJob{train_.images, train_.labels, options_.train.optimizer.lr, nullptr};
  });
  return scores;
}

void Evaluator::score_runs(Scores& scores, const std::string& stream_name,
                           const MakeJob& make_job) {
  const uint64_t stream = std::hash<std::string>{}(stream_name);
  if (group_ && group_->distributed()) return score_runs_distributed(scores, stream, make_job);
  scores.last.assign(options_.runs, std::nan(""));
  scores.best.assign(options_.runs, std::nan(""));
  scores.seconds.assign(options_.runs, std::nan(""));
  scores.confusion.assign(options_.runs, {});
  scores.curves.assign(options_.runs, {});
  std::vector<uint64_t> seeds;
  std::vector<int64_t> pending;
  for (int64_t run = 0; run < options_.runs; ++run) {
    seeds.push_back(mix_seed(seed_, streams::kEvalStudent ^ stream, run));
    if (const StudentResult* done = finished_student(scores, run, seeds.back())) {
      use_recorded(scores, run, *done);
    } else {
      pending.push_back(run);
    }
  }
  // The students still to train, in run order, a stack of them at a time (stacks are formed from
  // the runs left, so a resumed evaluation interrupted between stacks forms the stacks a straight
  // one formed).
  size_t next = 0;
  while (next < pending.size()) {
    const int64_t first = pending[next];
    const StudentJob first_job = make_job(first);
    const int64_t size =
        stack_size(first_job, scores.model, static_cast<int64_t>(pending.size() - next));
    std::vector<int64_t> runs(pending.begin() + next, pending.begin() + next + size);
    next += size;
    const std::string label = progress_label(scores, runs);
    const auto start = std::chrono::steady_clock::now();
    std::vector<StudentOutcome> results;
    if (size == 1) {
      results.push_back(train_student(first_job, scores.model, seeds[first], label));
    } else {
      std::vector<StudentJob> jobs = {first_job};
      std::vector<uint64_t> stack_seeds = {seeds[first]};
      for (size_t i = 1; i < runs.size(); ++i) {
        jobs.push_back(make_job(runs[i]));
        stack_seeds.push_back(seeds[runs[i]]);
      }
      results = train_stacked(jobs, scores.model, stack_seeds, label);
    }
    // A stack's wall time is shared by its students.
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
        static_cast<double>(size);
    for (size_t i = 0; i < runs.size(); ++i) {
      record_trained(scores, runs[i], std::move(results[i]), seconds);
    }
    if (!on_student_) continue;
    for (int64_t run : runs) on_student_(student_result(scores, run, seeds[run]));
  }
}

void Evaluator::record_trained(Scores& scores, int64_t run, StudentOutcome outcome,
                               double seconds) {
  ++students_done_;
  ++students_trained_;
  trained_seconds_ += seconds;
  scores.last[run] = outcome.last;
  scores.best[run] = outcome.best;
  scores.seconds[run] = seconds;
  scores.confusion[run] = std::move(outcome.confusion);
  scores.curves[run] = std::move(outcome.curve);
}

void Evaluator::use_recorded(Scores& scores, int64_t run, const StudentResult& done) {
  scores.last[run] = done.last;
  scores.best[run] = done.best;
  scores.seconds[run] = done.seconds;
  scores.confusion[run] = done.confusion;
  scores.curves[run] = done.curve;
  ++students_done_;
}

StudentResult Evaluator::student_result(const Scores& scores, int64_t run, uint64_t seed) {
  return {scores.set,         scores.model,       run,
          seed,               scores.last[run],   scores.best[run],
          scores.seconds[run], scores.confusion[run], scores.curves[run]};
}

void Evaluator::score_runs_distributed(Scores& scores, uint64_t stream, const MakeJob& make_job) {
  // Several ranks train a round of world-size students at a time (run i on rank i mod W) and
  // gather each round, so an interruption loses at most the round under way.
  const int64_t round = group_->world_size();
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
        skip_run(scores);
        use_recorded(scores, run, *done);
      } else {
        const auto start = std::chrono::steady_clock::now();
        StudentOutcome outcome =
            train_student(make_job(run), scores.model, seed, progress_label(scores, {run}));
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        skip_run(scores);
        record_trained(scores, run, std::move(outcome), seconds);
      }
    }
    gather_runs(scores);  // the runs so far, from their owners
    if (!on_student_) continue;
    for (int64_t run = first; run < end; ++run) {
      if (trained[run - first]) on_student_(student_result(scores, run, seeds[run - first]));
    }
  }
}

std::string Evaluator::stacking_unsupported(const std::string& arch) const {
  if (online_labels_) return "the teacher labels every batch in the loop";
  return train::StackedTrainer::unsupported(options_.train, student_model_options(arch));
}

int64_t Evaluator::stack_size(const StudentJob& job, const std::string& arch, int64_t pending) {
  const int64_t setting = options_.batch_students > 0 ? options_.batch_students
                          : device_.is_cuda()        ? options_.runs
                                                     : 1;
  const int64_t wanted = std::min(pending, setting);
  if (wanted <= 1) return 1;
  const std::string reason = stacking_unsupported(arch);
  if (!reason.empty()) {
    if (stacking_note_.insert(arch + ": " + reason).second) {
      std::cerr << "eval: " << arch << " students train one at a time (" << reason << ")\n";
    }
    return 1;
  }
  // The largest stack of this call, checked once per architecture and set shape.
  const std::string key = arch + " " + c10::str(job.images.sizes()) + " " + std::to_string(setting);
  if (checked_stacks_.insert(key).second) {
    train::check_training_memory(
        *student_model(arch), job.images.to(device_), std::min(options_.train.batch_size, job.images.size(0)),
        "eval.batch_students = " + std::to_string(options_.batch_students) +
            " (set 1 to train one student at a time)",
        static_cast<double>(std::min(setting, options_.runs)));
  }
  return wanted;
}

std::vector<Evaluator::StudentOutcome> Evaluator::train_stacked(
    const std::vector<StudentJob>& jobs, const std::string& arch,
    const std::vector<uint64_t>& seeds, const std::string& label) {
  auto model = student_model(arch);
  std::vector<train::StackedTrainer::Student> students;
  for (size_t i = 0; i < jobs.size(); ++i) {
    students.push_back({seeds[i], jobs[i].images.to(device_), jobs[i].labels.to(device_)});
  }
  // One score_* call's jobs share their set, learning rate and label temperature.
  const StudentJob& job = jobs.front();
  train::StackedTrainer trainer(*model, student_options(job), std::move(students));
  configure(trainer, job, label);
  const auto metrics = trainer.fit();
  std::vector<StudentOutcome> results;
  for (size_t i = 0; i < metrics.size(); ++i) {
    results.push_back(
        outcome_of(metrics[i], trainer.test_confusions()[i], trainer.test_curves()[i]));
  }
  return results;
}

std::string Evaluator::progress_label(const Scores& scores, const std::vector<int64_t>& runs) const {
  const int64_t count = static_cast<int64_t>(runs.size());
  const bool consecutive = runs.back() - runs.front() + 1 == count;
  std::string which = count == 1 ? "run " + std::to_string(runs.front() + 1)
                      : consecutive
                          ? "runs " + std::to_string(runs.front() + 1) + "-" +
                                std::to_string(runs.back() + 1)
                          : "runs ";
  if (count > 1 && !consecutive) {
    for (size_t i = 0; i < runs.size(); ++i) which += (i ? "," : "") + std::to_string(runs[i] + 1);
  }
  std::string label = scores.set + " " + scores.model + " " + which + "/" +
                      std::to_string(options_.runs);
  // Several ranks split the students unevenly over the calls: no evaluation-wide estimate there.
  if (student_count_ <= 0 || (group_ && group_->distributed())) return label;
  label += count > 1 ? ", students " + std::to_string(students_done_ + 1) + "-" +
                           std::to_string(students_done_ + count)
                     : ", student " + std::to_string(students_done_ + 1);
  label += "/" + std::to_string(student_count_);
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
  scores.confusion.emplace_back();
  scores.curves.emplace_back();
}

void Evaluator::gather_runs(Scores& scores) const {
  if (!group_ || !group_->distributed()) return;
  std::vector<double> mine = scores.last;
  mine.insert(mine.end(), scores.best.begin(), scores.best.end());
  mine.insert(mine.end(), scores.seconds.begin(), scores.seconds.end());
  // Then per run its confusion matrix and curve, each as a length and the values (lengths differ:
  // a placeholder has none).
  const size_t runs = scores.last.size();
  for (size_t run = 0; run < runs; ++run) {
    const auto& matrix = scores.confusion[run];
    mine.push_back(static_cast<double>(matrix.size()));
    for (const auto& row : matrix) {
      for (int64_t count : row) mine.push_back(static_cast<double>(count));
    }
    const auto& curve = scores.curves[run];
    mine.push_back(static_cast<double>(curve.size()));
    for (const auto& [epoch, accuracy] : curve) {
      mine.push_back(static_cast<double>(epoch));
      mine.push_back(accuracy);
    }
  }
  // A round's students may differ in cost (a resumed run has some recorded already): wait for
  // the slowest rank's as long as it takes.
  group_->wait_for_peers("students");
  auto all = group_->all_gather(mine);
  // Where each rank's per-run parts start.
  std::vector<std::vector<size_t>> part_at(all.size());
  for (size_t r = 0; r < all.size(); ++r) {
    size_t at = 3 * runs;
    for (size_t run = 0; run < runs; ++run) {
      part_at[r].push_back(at);
      const auto classes = static_cast<size_t>(all[r].at(at));
      at += 1 + classes * classes;
      at += 1 + 2 * static_cast<size_t>(all[r].at(at));
    }
  }
  for (size_t run = 0; run < runs; ++run) {
    const size_t owner_rank = run % all.size();
    const auto& owner = all.at(owner_rank);
    scores.last[run] = owner.at(run);
    scores.best[run] = owner.at(runs + run);
    scores.seconds[run] = owner.at(2 * runs + run);
    size_t at = part_at[owner_rank][run];
    const auto classes = static_cast<size_t>(owner.at(at++));
    scores.confusion[run].assign(classes, std::vector<int64_t>(classes));
    for (auto& row : scores.confusion[run]) {
      for (int64_t& count : row) count = std::llround(owner.at(at++));
    }
    const auto points = static_cast<size_t>(owner.at(at++));
    scores.curves[run].clear();
    for (size_t i = 0; i < points; ++i, at += 2) {
      scores.curves[run].emplace_back(std::llround(owner.at(at)), owner.at(at + 1));
    }
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

namespace {

// The runs' confusion matrices summed (those recorded), per-class accuracy from the sum, and each
// run's test curve: what the eval report draws.
void add_confusion_and_curves(nlohmann::json& row, const Scores& s) {
  std::vector<std::vector<int64_t>> total;
  int64_t counted = 0;
  for (const auto& matrix : s.confusion) {
    if (matrix.empty()) continue;
    if (total.empty()) total.assign(matrix.size(), std::vector<int64_t>(matrix.size(), 0));
    if (matrix.size() != total.size()) continue;  // cannot happen within one row
    for (size_t i = 0; i < matrix.size(); ++i) {
      for (size_t j = 0; j < matrix[i].size() && j < total.size(); ++j) total[i][j] += matrix[i][j];
    }
    ++counted;
  }
  if (counted > 0) {
    row["confusion"] = total;
    row["confusion_runs"] = counted;
    nlohmann::json per_class = nlohmann::json::array();
    for (size_t i = 0; i < total.size(); ++i) {
      int64_t sum = 0;
      for (int64_t c : total[i]) sum += c;
      per_class.push_back(sum > 0 ? nlohmann::json(static_cast<double>(total[i][i]) /
                                                   static_cast<double>(sum))
                                  : nlohmann::json(nullptr));
    }
    row["per_class_accuracy"] = per_class;
  }
  if (std::any_of(s.curves.begin(), s.curves.end(), [](const auto& c) { return !c.empty(); })) {
    nlohmann::json curves = nlohmann::json::array();
    for (const auto& curve : s.curves) {
      nlohmann::json points = nlohmann::json::array();
      for (const auto& [epoch, accuracy] : curve) points.push_back({epoch, accuracy});
      curves.push_back(points);
    }
    row["curves"] = curves;
  }
}

}  // namespace

std::string scores_json(const std::vector<Scores>& scores, const std::string& protocol,
                        int64_t eval_every, const std::vector<DDRankingRow>& ddranking,
                        const DDRankingOptions& ddranking_options) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& s : scores) {
    nlohmann::json row{{"set", s.set},
                       {"model", s.model},
                       {"ipc", s.ipc},
                       {"runs", s.last.size()},
                       {"last_accuracy", s.last},
                       {"best_accuracy", s.best},
                       {"seconds", s.seconds},
                       {"last_mean", s.last_mean()},
                       {"last_std", s.last_std()},
                       {"best_mean", s.best_mean()}};
    add_confusion_and_curves(row, s);
    rows.push_back(row);
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
