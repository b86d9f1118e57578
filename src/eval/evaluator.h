#pragma once
#include <algorithm>
#include <c10/core/Device.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "src/config/options.h"
#include "src/data/dataset.h"
#include "src/eval/online_labels.h"
#include "src/eval/student_log.h"
#include "src/eval/ddranking.h"
#include "src/eval/synthetic_set.h"
#include "src/models/model.h"
#include "src/train/augment.h"
#include "src/train/cutmix.h"
#include "src/train/trainer.h"

namespace distill::dist {
class ProcessGroup;
}

namespace distill::eval {

// How students are trained on a (synthetic) set and scored on the real test split.
struct EvalOptions {
  std::string syn;  // the set to evaluate; "" = baselines only
  std::vector<std::string> models = {"convnet"};
  int64_t runs = 5;
  int64_t batch_students = 0;
  std::string protocol = "dc";
  int64_t ipc = 0;  // random-real baseline size when there is no set (0 = the set's)
  bool random_real = true;
  bool full_data = false;
  bool learned_lr = true;
  bool set_label_temperature = true;
  std::vector<std::string> scores;  // extra scores per set: "ddranking"
  DDRankingOptions ddranking;
  std::string full_data_cache = "runs/cache/full-data";
  models::ModelOptions model;
  train::TrainOptions train;
  train::AugmentOptions augment;
  train::CutMixOptions cutmix;
  train::MixupOptions mixup;

  void visit(config::Visitor& v) {
    v.field("syn", syn, "synthetic set (.pt) to evaluate; empty = random-real baseline only");
    v.field("models", models, "student architectures (model.arch names), each trained `runs` times");
    v.field("runs", runs, "students per model (mean ± std over them)", config::Range::at_least(1));
    v.field("batch_students", batch_students,
            "students of one architecture trained together in one pass (stacked parameters, "
            "grouped convolutions; each computes what it computes alone, up to float rounding): "
            "0 = auto (all runs at once on a GPU; one at a time on a CPU, where `distill bench "
            "eval` measured no gain), 1 = one at a time, K = up to K (refused up front when K "
            "training steps cannot fit in memory)",
            config::Range::at_least(0));
    v.choice("protocol", protocol,
             "preset for the student training below: dc = DC/DSA/MTT (SGD .01 mom .9 wd 5e-4, "
             "x0.1 at half, batch 256, 300 epochs, DSA); custom = only what is set here",
             {"dc", "custom"});
    v.field("ipc", ipc, "random-real images per class when no set is given (0 = the set's)");
    v.field("random_real", random_real, "also score a class-balanced random real subset");
    v.field("full_data", full_data, "also score students trained on the whole training split");
    v.field("learned_lr", learned_lr, "train with the set's learned lr when it carries one");
    v.field("set_label_temperature", set_label_temperature,
            "train on soft labels at the temperature the set records they were made at (committee "
            "relabel) instead of train.label_temperature");
    v.field("scores", scores,
            "extra scores of the set: [\"ddranking\"] = DD-Ranking's HLR, IOR, LRS and ARS, which "
            "train the baselines they need (the set with hard labels, random real with the "
            "set's label source, both without augmentation, the full training split with hard "
            "labels, cached in full_data_cache)");
    v.rule(std::all_of(scores.begin(), scores.end(),
                       [](const std::string& s) { return s == "ddranking"; }),
           "eval.scores: the scores known are [\"ddranking\"]");
    v.section("ddranking", ddranking);
    v.field("full_data_cache", full_data_cache,
            "folder of cached full-data accuracies (DD-Ranking's HLR), one file per dataset, "
            "architecture and protocol settings (\"\" = no cache)");
    v.section("model", model);
    v.section("train", train);
    v.section("augment", augment);
    v.section("cutmix", cutmix);
    v.section("mixup", mixup);
  }
};

// Sets the training defaults of a named protocol (before the user's settings are read).
void apply_protocol(const std::string& name, EvalOptions& options);

// Scores of one set under one student architecture.
struct Scores {
  std::string set;    // "syn.pt", "random-real", "full-data"
  std::string model;  // architecture
  int64_t ipc = 0;
  std::vector<double> last;  // last-epoch test accuracy per run
  std::vector<double> best;  // best test accuracy seen at eval_every checkpoints per run
  std::vector<double> seconds;  // wall time of each run's training (NaN when not recorded)
  // Per run: the last test evaluation's confusion matrix (rows true class, columns predicted)
  // and the test accuracy by epoch; empty when not recorded (students of another rank, or
  // recorded by an earlier version).
  std::vector<std::vector<std::vector<int64_t>>> confusion;
  std::vector<std::vector<std::pair<int64_t, double>>> curves;
  double last_mean() const;
  double last_std() const;
  double best_mean() const;
};

class Evaluator {
 public:
  // `train`/`test` normalized; `norm` describes that normalization.
  Evaluator(EvalOptions options, const data::Dataset& train, const data::Dataset& test,
            data::Normalization norm, uint64_t seed, c10::Device device, bool progress);

  // Spreads the students of each score_* call over the ranks of `group` (run i on rank i mod W)
  // and gathers their accuracies on every rank: the same Scores as one process.
  void set_process_group(std::shared_ptr<const dist::ProcessGroup> group) {
    group_ = std::move(group);
  }

  // Every student (set, random real, full data) then learns from soft labels that `label_fn`
  // computes on each augmented (and CutMixed) batch, at `temperature`, instead of the stored
  // labels: the teacher-in-the-loop (KD) evaluation.
  void set_online_labels(LabelFn label_fn, double temperature) {
    online_labels_ = std::move(label_fn);
    online_temperature_ = temperature;
  }

  // Students already trained (a resumed run): a student whose set, model, run and seed match one
  // of these is not trained again; its recorded accuracies are used.
  void set_finished_students(std::vector<StudentResult> finished) {
    finished_ = std::move(finished);
  }
  // Called for each newly trained student (not for reused ones). One process: right after the
  // student. Several ranks: on every rank, for each round of world-size students once the round
  // is gathered (so an interruption loses at most the round under way).
  void set_on_student(std::function<void(const StudentResult&)> on_student) {
    on_student_ = std::move(on_student);
  }

  // How many students this evaluation scores over all its score_* calls: one process then labels
  // each student's progress with its place in the evaluation and the time the rest should take.
  void set_student_count(int64_t count) { student_count_ = count; }
  int64_t student_count() const { return student_count_; }

  Scores score_set(const SyntheticSet& set, const std::string& name, const std::string& arch);
  // `name` tells apart baselines trained several ways (DD-Ranking's without augmentation); the
  // students and subsets depend on (seed, arch, run) only, as the default name's do.
  Scores score_random_real(int64_t ipc, const std::string& arch,
                           const std::string& name = "random-real");
  Scores score_full_data(const std::string& arch, const std::string& name = "full-data");

  // Students scored so far by this process; evaluations that use several Evaluators (DD-Ranking's
  // baselines) hand the count on, so progress labels count the whole evaluation.
  int64_t students_done() const { return students_done_; }
  void set_students_done(int64_t done) { students_done_ = done; }

  // The training images at `index` (int64 positions in `train`) as a SyntheticSet.
  static SyntheticSet real_set(const data::Dataset& train, const data::Normalization& norm,
                               const at::Tensor& index, const std::string& dataset_name);
  // A class-balanced random real subset, as a SyntheticSet (what `distill subset` writes).
  // `train_index`, when given, receives the positions of the picked images in `train`.
  static SyntheticSet random_real_set(const data::Dataset& train, const data::Normalization& norm,
                                      int64_t ipc, at::Generator& generator,
                                      const std::string& dataset_name,
                                      at::Tensor* train_index = nullptr);

 private:
  // What one student trains on: the images and labels, its learning rate, and the set they come
  // from (none for real data). When the set stores FKD-style views, batches are its replayed
  // views and labels, which take the place of eval.augment; when it records its soft labels'
  // temperature, students train at it.
  struct StudentJob {
    at::Tensor images, labels;
    double lr = 0.0;
    const SyntheticSet* set = nullptr;
  };
  using MakeJob = std::function<StudentJob(int64_t run)>;
  // What training one student gives.
  struct StudentOutcome {
    double last = 0, best = 0;
    std::vector<std::vector<int64_t>> confusion;
    std::vector<std::pair<int64_t, double>> curve;
  };

  train::TrainOptions student_options(const StudentJob& job) const;
  models::ModelOptions student_model_options(const std::string& arch) const;  // eval.model, arch
  std::unique_ptr<models::Model> student_model(const std::string& arch) const;
  template <typename StudentTrainer>
  void configure(StudentTrainer& trainer, const StudentJob& job, const std::string& label) const;
  train::Trainer::BatchMixFn batch_mix() const;  // eval.cutmix / eval.mixup, or none
  // Trains one student.
  StudentOutcome train_student(const StudentJob& job, const std::string& arch, uint64_t seed,
                               const std::string& label);
  // Trains the students of `jobs` (one architecture) together.
  std::vector<StudentOutcome> train_stacked(const std::vector<StudentJob>& jobs,
                                            const std::string& arch,
                                            const std::vector<uint64_t>& seeds,
                                            const std::string& label);
  // Why the students of `arch` train one at a time ("" when they can be stacked).
  std::string stacking_unsupported(const std::string& arch) const;
  // How many students of `job`'s kind train together (eval.batch_students; an Error when that
  // many cannot fit in memory): a function of the settings and the device only, so a student's
  // numbers do not depend on the memory free at the time.
  int64_t stack_size(const StudentJob& job, const std::string& arch, int64_t pending);

  // The runs of one score_* call: each run's student seed, a recorded result when it has one,
  // else training on `make_job(run)`.
  void score_runs(Scores& scores, const std::string& stream_name, const MakeJob& make_job);
  void score_runs_distributed(Scores& scores, uint64_t stream, const MakeJob& make_job);
  const StudentResult* finished_student(const Scores& scores, int64_t run, uint64_t seed) const;
  std::string progress_label(const Scores& scores, const std::vector<int64_t>& runs) const;
  static StudentOutcome outcome_of(const std::map<std::string, double>& metrics,
                                   const at::Tensor& confusion, const train::TestCurve& curve);
  // Records a trained student (seconds: its share of the training wall time).
  void record_trained(Scores& scores, int64_t run, StudentOutcome outcome, double seconds);
  // A student recorded earlier (a resumed evaluation) takes the place of training run `run`.
  void use_recorded(Scores& scores, int64_t run, const StudentResult& done);
  // Scores' entries of `run` as the log records them.
  static StudentResult student_result(const Scores& scores, int64_t run, uint64_t seed);

  // Multi-process: whether this rank trains student `run`; a placeholder for one it does not;
  // every rank's results merged after the loop.
  bool owns_run(int64_t run) const;
  static void skip_run(Scores& scores);
  void gather_runs(Scores& scores) const;

  std::shared_ptr<const dist::ProcessGroup> group_;
  std::set<std::string> stacking_note_;   // fallbacks to one student at a time already reported
  std::set<std::string> checked_stacks_;  // stack sizes already checked against the memory
  std::vector<StudentResult> finished_;
  int64_t student_count_ = 0;
  int64_t students_done_ = 0;     // this process's students scored so far (trained or recorded)
  int64_t students_trained_ = 0;  // of which trained by this process, taking trained_seconds_
  double trained_seconds_ = 0;
  std::function<void(const StudentResult&)> on_student_;
  LabelFn online_labels_;
  double online_temperature_ = 1.0;
  EvalOptions options_;
  const data::Dataset& train_;
  const data::Dataset& test_;
  data::Normalization norm_;
  uint64_t seed_;
  c10::Device device_;
  bool progress_;
  at::Tensor test_images_, test_labels_;
};

// The table printed by `distill eval`: one row per (set, model), mean ± std in percent.
std::string format_scores_table(const std::vector<Scores>& scores);
// results.json content.
// With DD-Ranking rows (eval.scores = ["ddranking"]) under "ddranking".
std::string scores_json(const std::vector<Scores>& scores, const std::string& protocol,
                        int64_t eval_every, const std::vector<DDRankingRow>& ddranking = {},
                        const DDRankingOptions& ddranking_options = {});

}  // namespace distill::eval
