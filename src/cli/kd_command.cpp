// `distill kd`: teacher-student knowledge distillation (offline, deep mutual learning,
// born-again generations, self-distillation with weighted ground truth) on the ordinary Trainer
// with a KD objective.
#include <ATen/ATen.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "src/cli/command.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/data/dataset.h"
#include "src/dist/process_group.h"
#include "src/io/atomic_file.h"
#include "src/kd/cohort.h"
#include "src/kd/kd_objective.h"
#include "src/kd/self_distillation.h"
#include "src/kd/student_search.h"
#include "src/kd/tgeo_kd.h"
#include "src/kd/teacher.h"
#include "src/train/augment.h"
#include "src/train/trainer.h"
#include "src/core/random_streams.h"

namespace distill::cli {
namespace {

struct KdSettings {
  std::string scheme = "offline";
  std::vector<kd::LossSpec> losses;
  double data_fraction = 1.0;
  int64_t cohort = 2;
  int64_t generations = 2;
  std::string ground_truth_weight_rule = "derived";
  double ground_truth_weight = 0.6;
  double validation_fraction = 0.1;
  bool cache_teacher = true;

  KdSettings() {
    kd::LossSpec hinton;
    hinton.name = "hinton";
    hinton.T = 4.0;
    hinton.weight = 0.9;
    kd::LossSpec ce;
    ce.name = "ce";
    ce.weight = 0.1;
    losses = {hinton, ce};
  }
  void visit(config::Visitor& v) {
    v.choice("scheme", scheme,
             "offline (frozen teacher), dml (deep mutual learning of `cohort` students), "
             "born_again (generations of the student architecture, each taught by the previous) "
             "or self_distillation (Borup & Andersen 2021: generations trained on the ground "
             "truth mixed with the previous generation's predictions)",
             {"offline", "dml", "born_again", "self_distillation"});
    v.items("losses", losses, "loss terms, summed with their weights");
    v.field("data_fraction", data_fraction,
            "class-balanced fraction of the training set the student sees (seeded by run.seed)",
            config::Range::above_up_to(0, 1));
    v.field("cohort", cohort, "dml: number of students (>= 2)");
    v.rule(scheme != "dml" || cohort >= 2,
           "kd.cohort must be >= 2 for scheme dml, found " + std::to_string(cohort));
    v.field("generations", generations,
            "born_again, self_distillation: students trained after generation 0 (the teacher; "
            "self_distillation: the student architecture trained on the labels)");
    v.rule((scheme != "born_again" && scheme != "self_distillation") || generations >= 1,
           "kd.generations must be >= 1 for scheme " + scheme + ", found " +
               std::to_string(generations));
    v.choice("ground_truth_weight_rule", ground_truth_weight_rule,
             "self_distillation: derived (each generation's weight estimated as the paper derives "
             "it, from a model trained with weight 0 and the generation-0 model on a held-out "
             "split) or fixed (kd.ground_truth_weight every generation)",
             {"derived", "fixed"});
    v.field("ground_truth_weight", ground_truth_weight,
            "self_distillation with the fixed rule: alpha, the weight of the one-hot labels in "
            "the targets alpha y + (1 - alpha) p_previous (the paper code's example: 0.6)",
            config::Range::between(0, 1));
    v.field("validation_fraction", validation_fraction,
            "self_distillation with the derived rule, and the tgeo term: class-balanced fraction "
            "of the student's training images held out to estimate the weight / to train tgeo's "
            "fusion network (not trained on by the student)",
            config::Range::strictly_between(0, 1));
    v.field("cache_teacher", cache_teacher,
            "compute the teacher's logits once when the student sees un-augmented images");
  }
};

// `distill kd search` (DisWOT): training-free ranking of candidate students ([search] settings).
struct SearchSettings {
  std::vector<std::string> candidates;
  kd::SearchSpace space;          // their defaults are the settings' defaults
  kd::EvolutionOptions evolution;
  int64_t batch_size = 64;
  int64_t max_params = 0;
  std::string semantic = "classes";
  std::string teacher_weights = "trained";
  int64_t top = 10;

  void visit(config::Visitor& v) {
    v.field("candidates", candidates,
            "students to score, e.g. [\"convnet-w16-d2\", \"mlp-128-64\"] (empty = evolve in "
            "the space below)");
    v.field("families", space.families, "families the evolution draws from: convnet, mlp");
    for (const auto& f : space.families) {
      v.rule(f == "convnet" || f == "mlp",
             "search.families: '" + f + "' is not a family of the search (convnet, mlp)");
    }
    v.rule(!space.families.empty(),
           "search.families must name at least one family (convnet, mlp)");
    v.field("convnet_widths", space.convnet_widths, "convnet channels the evolution may pick");
    v.field("convnet_depths", space.convnet_depths, "convnet block counts the evolution may pick");
    v.field("mlp_widths", space.mlp_widths, "mlp hidden widths the evolution may pick");
    v.field("mlp_depths", space.mlp_depths, "mlp hidden-layer counts the evolution may pick");
    auto positive = [&](const std::vector<int64_t>& values, const std::string& key) {
      bool ok = !values.empty();
      for (int64_t x : values) ok = ok && x >= 1;
      v.rule(ok, "search." + key + " must be a non-empty list of integers >= 1");
    };
    positive(space.convnet_widths, "convnet_widths");
    positive(space.convnet_depths, "convnet_depths");
    positive(space.mlp_widths, "mlp_widths");
    positive(space.mlp_depths, "mlp_depths");
    v.field("population", evolution.population, "evolution: population size",
            config::Range::at_least(1));
    v.field("sample", evolution.sample,
            "evolution: members compared to pick each parent (<= population)",
            config::Range::at_least(1));
    v.rule(evolution.sample <= evolution.population,
           "search.sample must be <= search.population, found " +
               std::to_string(evolution.sample) + " > " + std::to_string(evolution.population));
    v.field("cycles", evolution.cycles, "evolution: mutations after the first population",
            config::Range::at_least(0));
    v.field("batch_size", batch_size, "training images of the one scoring batch (DisWOT code: 64)",
            config::Range::at_least(2));
    v.field("max_params", max_params,
            "candidates with more parameters are not ranked (0 = no limit)",
            config::Range::at_least(0));
    v.choice("semantic", semantic,
             "semantic distance: classes (K x K Gram of the classifier gradients: any widths) or "
             "channels (the code's per-class C x C correlations: needs the teacher's width)",
             {"classes", "channels"});
    v.choice("teacher_weights", teacher_weights,
             "trained (the teacher checkpoint) or random (a fresh teacher of that architecture, "
             "as the DisWOT code scores)",
             {"trained", "random"});
    v.field("top", top, "candidates printed", config::Range::at_least(1));
  }
};

struct KdCommandOptions {
  static constexpr bool kHasPresets = false;
  config::RunOptions run;
  data::DataOptions data;
  models::ModelOptions model;
  kd::TeacherOptions teacher;
  train::TrainOptions train;
  train::AugmentOptions augment;
  KdSettings kd;
  SearchSettings search;

  KdCommandOptions() {
    model.arch = "mlp";
    teacher.model.arch = "convnet";
    train.epochs = 15;
    train.batch_size = 128;
    train.optimizer.name = "adam";
    train.optimizer.lr = 1e-3;
    train.optimizer.weight_decay = 0.0;
    train.schedule.name = "cosine";
    augment.name = "none";
  }
  void visit(config::Visitor& v) {
    v.section("run", run);
    v.section("data", data);
    v.section("model", model);
    v.section("teacher", teacher);
    v.section("train", train);
    v.section("augment", augment);
    v.section("kd", kd);
    v.section("search", search);
  }
};

// What one training run (a student, a cohort, a generation) reads and writes.
struct Job {
  const models::Model* model;
  std::shared_ptr<train::StepObjective> objective;
  std::string out;
  std::string label;
};

std::map<std::string, double> run_job(const Job& job, const KdCommandOptions& o,
                                      const RunContext& run, const data::Dataset& train_set,
                                      const data::Dataset& test_set, bool resume,
                                      train::TrainState* final_state) {
  io::make_dirs(job.out);
  train::Trainer trainer(*job.model, o.train, run.seed);
  trainer.set_objective(job.objective);
  trainer.set_augment(train::make_augment(o.augment, train_set.height()));
  trainer.set_test_set(test_set.images.to(run.device), test_set.labels.to(run.device));
  const std::string checkpoint = job.out + "/checkpoint.pt";
  trainer.set_checkpoint(checkpoint);
  trainer.set_progress(job.label, run.progress);
  trainer.set_process_group(run.group);  // data-parallel when launched on several processes
  const bool resuming = resume && std::filesystem::exists(checkpoint);
  train::TrainState state = resuming ? trainer.load_checkpoint(checkpoint) : trainer.init_state();
  io::MetricsLog metrics(job.out + "/metrics.jsonl",
                         resuming ? std::optional<int64_t>(state.step) : std::nullopt,
                         run.rank == 0);
  trainer.set_metrics(&metrics);
  state.params = state.params.to(run.device);
  state.buffers = state.buffers.to(run.device);
  if (state.aux.defined()) state.aux = state.aux.to(run.device);
  auto result =
      trainer.fit(state, train_set.images.to(run.device), train_set.labels.to(run.device));
  if (!result.count("test_accuracy")) {  // resumed after the last epoch: nothing ran, score now
    train::EvalResult test =
        train::evaluate(*job.model, state.params, state.buffers, test_set.images.to(run.device),
                        test_set.labels.to(run.device));
    result["test_accuracy"] = test.accuracy;
    result["test_loss"] = test.loss;
  }
  if (run.rank == 0) {
    save_model_file(job.out + "/model.pt", *job.model, state,
                    {train_set.channels(), train_set.height(), train_set.width()});
  }
  *final_state = state;
  return result;
}

std::shared_ptr<kd::KdObjective> offline_objective(const KdCommandOptions& o,
                                                   const models::Model& student,
                                                   std::shared_ptr<const kd::Teacher> teacher,
                                                   const data::Dataset& train_set,
                                                   const RunContext& run) {
  at::Tensor probe = train_set.images.narrow(0, 0, std::min<int64_t>(8, train_set.size()));
  auto objective = std::make_shared<kd::KdObjective>(o.kd.losses, "kd.losses", student, teacher,
                                                     probe.to(run.device));
  objective->compute_class_means(train_set.images.to(run.device), train_set.labels.to(run.device),
                                 train_set.num_classes);
  if (teacher && o.kd.cache_teacher && o.augment.name == "none" &&
      !objective->terms().needs_teacher_features()) {
    objective->cache_teacher_logits(train_set.images.to(run.device));
  }
  return objective;
}

// Settings of one scheme given to another are mistakes: say so (detectable when they differ from
// the defaults).
void check_scheme_settings(const KdCommandOptions& o) {
  const KdSettings defaults;
  const bool self = o.kd.scheme == "self_distillation";
  auto refuse = [&](bool set, const std::string& key, const std::string& why) {
    if (set) throw Error("kd." + key + " " + why);
  };
  const std::string only_self = "applies to scheme self_distillation only (kd.scheme is " +
                                o.kd.scheme + ")";
  refuse(!self && o.kd.ground_truth_weight_rule != defaults.ground_truth_weight_rule,
         "ground_truth_weight_rule", only_self);
  refuse(!self && o.kd.ground_truth_weight != defaults.ground_truth_weight, "ground_truth_weight",
         only_self);
  const bool tgeo = std::any_of(o.kd.losses.begin(), o.kd.losses.end(),
                                [](const kd::LossSpec& l) { return l.name == "tgeo"; });
  refuse(tgeo && o.kd.scheme != "offline", "losses",
         "(tgeo) learns its fusion network against a fixed teacher: scheme offline only (kd.scheme "
         "is " + o.kd.scheme + ")");
  refuse(tgeo && (o.model.dropout > 0 || o.model.input_dropout > 0), "losses",
         "(tgeo) differentiates through a virtual training step of the student, which would draw "
         "dropout masks outside the run's seeded streams: set model.dropout and "
         "model.input_dropout to 0");
  refuse(!self && !tgeo && o.kd.validation_fraction != defaults.validation_fraction,
         "validation_fraction",
         "applies to scheme self_distillation and to the tgeo term only (kd.scheme is " +
             o.kd.scheme + ")");
  if (!self) return;
  const bool fixed = o.kd.ground_truth_weight_rule == "fixed";
  refuse(!fixed && o.kd.ground_truth_weight != defaults.ground_truth_weight,
         "ground_truth_weight",
         "is the fixed rule's weight, and kd.ground_truth_weight_rule is \"derived\" (set it to "
         "\"fixed\" to train every generation with " + std::to_string(o.kd.ground_truth_weight) +
             ")");
  refuse(fixed && o.kd.validation_fraction != defaults.validation_fraction,
         "validation_fraction",
         "holds out images to derive the weight, and kd.ground_truth_weight_rule is \"fixed\"");
  bool default_losses = o.kd.losses.size() == defaults.losses.size();
  for (size_t i = 0; default_losses && i < o.kd.losses.size(); ++i) {
    const kd::LossSpec &a = o.kd.losses[i], &b = defaults.losses[i];
    default_losses = a.name == b.name && a.weight == b.weight && a.T == b.T;
  }
  refuse(!default_losses, "losses",
         "does not apply to scheme self_distillation: every generation trains on alpha y + "
         "(1 - alpha) p_previous (ce and hinton at T 1 weighted by alpha)");
  refuse(o.teacher.configured(), "scheme",
         "self_distillation starts from the student architecture trained on the labels; "
         "teacher.* does not apply (for a configured teacher as generation 0 use born_again)");
}

// Held-out split for the derived weight: `fraction` of each class of `set` (at least one image
// each, at least one left to train on), drawn from the run's seed. Returns {train, held out}.
std::pair<data::Dataset, data::Dataset> hold_out(const data::Dataset& set, double fraction,
                                                 uint64_t seed) {
  const int64_t per_class = std::max<int64_t>(
      1, std::llround(fraction * static_cast<double>(set.size()) /
                      static_cast<double>(set.num_classes)));
  at::Tensor counts = at::bincount(set.labels, {}, set.num_classes);
  const int64_t smallest = counts.min().item<int64_t>();
  if (smallest <= per_class) {
    throw Error("kd.validation_fraction " + std::to_string(fraction) + " holds out " +
                std::to_string(per_class) + " images per class, but a class of the student's "
                "training images has only " + std::to_string(smallest) +
                ": raise kd.data_fraction or lower kd.validation_fraction");
  }
  at::Generator generator = make_generator(seed, streams::kKdValidation);
  return data::hold_out_per_class(set, per_class, generator);
}

// Borup & Andersen's self-distillation: generation 0 fits the labels; generation g trains a fresh
// student on alpha y + (1 - alpha) p_{g-1}, alpha fixed or derived per generation from a student
// trained with alpha = 0 and generation 0 (kd/self_distillation.h).
void run_self_distillation(const KdCommandOptions& o, const RunContext& run,
                           const data::Dataset& all_train, const data::Dataset& test_set,
                           nlohmann::json& results) {
  const bool derived = o.kd.ground_truth_weight_rule == "derived";
  data::Dataset train_set = all_train, held_out;
  if (derived) {
    std::tie(train_set, held_out) = hold_out(all_train, o.kd.validation_fraction, run.seed);
    results["held_out_images"] = held_out.size();
    results["train_images"] = train_set.size();
  }
  const int64_t channels = train_set.channels(), size = train_set.height();
  auto train_generation = [&](const std::vector<kd::LossSpec>& losses,
                              std::shared_ptr<const kd::Teacher> teacher, const std::string& out,
                              const std::string& label, nlohmann::json& record) {
    auto student = models::make_model(o.model, channels, size, train_set.num_classes);
    KdCommandOptions generation = o;
    generation.kd.losses = losses;
    auto objective = offline_objective(generation, *student, teacher, train_set, run);
    train::TrainState state;
    auto r = run_job({student.get(), objective, out, label}, generation, run, train_set, test_set,
                     run.resume, &state);
    record = r["test_accuracy"];
    return std::make_shared<kd::Teacher>(
        kd::teacher_from_state(std::move(student), state.params, state.buffers));
  };
  std::shared_ptr<const kd::Teacher> fitted = train_generation(
      {kd::LossSpec{"ce"}}, nullptr, run.out + "/gen0", "self-distillation gen 0",
      results["gen0_test_accuracy"]);
  results["test_accuracy"] = results["gen0_test_accuracy"];
  std::shared_ptr<const kd::Teacher> previous = fitted;
  at::Tensor targets, fitted_probabilities;
  if (derived) {
    targets = at::one_hot(held_out.labels, held_out.num_classes).to(at::kFloat).to(run.device);
    at::NoGradGuard no_grad;
    fitted_probabilities = at::softmax(fitted->forward(held_out.images.to(run.device)), 1);
  }
  for (int64_t g = 1; g <= o.kd.generations; ++g) {
    const std::string name = "gen" + std::to_string(g);
    double alpha = o.kd.ground_truth_weight;
    if (derived) {
      auto distilled = train_generation(kd::weighted_ground_truth_losses(0.0), previous,
                                        run.out + "/" + name + "/alpha0",
                                        "self-distillation " + name + " (alpha 0)",
                                        results[name + "_alpha0_test_accuracy"]);
      at::NoGradGuard no_grad;
      at::Tensor p0 = at::softmax(distilled->forward(held_out.images.to(run.device)), 1);
      kd::GroundTruthWeight w =
          kd::estimate_ground_truth_weight(p0, fitted_probabilities, targets);
      alpha = w.weight;
      results[name + "_ground_truth_weight_unclipped"] = w.unclipped;
      if (run.rank == 0) {
        std::cerr << "distill kd: " << name << " ground-truth weight " << w.weight
                  << " (least squares " << w.unclipped << ")\n";
      }
    }
    results[name + "_ground_truth_weight"] = alpha;
    previous = train_generation(kd::weighted_ground_truth_losses(alpha), previous,
                                run.out + "/" + name,
                                "self-distillation " + name, results[name + "_test_accuracy"]);
    results["test_accuracy"] = results[name + "_test_accuracy"];
  }
}

// `distill kd search`: DisWOT's training-free ranking of candidate students against the teacher
// (kd/student_search.h); prints the ranking and writes search.json.
void run_search(KdCommandOptions& o, const Invocation& invocation) {
  refuse_resume(invocation, "kd search");
  require_single_process("kd search");
  const SearchSettings& s = o.search;
  if (o.teacher.checkpoint.empty()) {
    throw Error("kd search scores students against a teacher model: set teacher.checkpoint (a "
                "model.pt or checkpoint.pt written by `distill train`; a TorchScript teacher has "
                "no classifier weights to read)");
  }
  std::vector<kd::Candidate> listed;
  for (size_t i = 0; i < s.candidates.size(); ++i) {
    listed.push_back(
        kd::parse_candidate(s.candidates[i], "search.candidates[" + std::to_string(i) + "]"));
  }
  RunContext run = start_run(o.run, config::dump(o), invocation);
  auto [train_set, test_set, norm] = data::load_normalized(o.data);
  const int64_t channels = train_set.channels(), size = train_set.height();
  const int64_t classes = train_set.num_classes;
  if (s.batch_size > train_set.size()) {
    throw Error("search.batch_size " + std::to_string(s.batch_size) + " exceeds the " +
                std::to_string(train_set.size()) + " training images");
  }
  kd::Teacher teacher = kd::load_teacher(o.teacher, channels, size, classes);
  if (s.teacher_weights == "random") {
    at::Generator g = make_generator(run.seed, streams::kKdSearchInit);
    teacher.params = teacher.model->init_params(g);
    teacher.buffers = teacher.model->init_buffers();
  }
  at::Generator batch_generator = make_generator(run.seed, streams::kKdSearchBatch);
  at::Tensor index = at::randperm(train_set.size(), batch_generator).narrow(0, 0, s.batch_size);
  const at::Tensor images = train_set.images.index_select(0, index).to(run.device);
  const at::Tensor labels = train_set.labels.index_select(0, index).to(run.device);
  const kd::Probe teacher_probe =
      kd::probe_network(*teacher.model, teacher.params.to(run.device),
                        teacher.buffers.defined() ? teacher.buffers.to(run.device) : teacher.buffers,
                        images, labels);

  // A candidate is ranked unless excluded: over search.max_params, not buildable for this data
  // (e.g. a ConvNet deeper than the image allows) or, for the "channels" semantic form, of another
  // classifier width than the teacher's. A listed candidate that cannot be scored is an error.
  struct Scored {
    std::string name;
    int64_t params = 0;
    kd::DiswotScore score;
    std::string excluded;
  };
  const int64_t teacher_width = teacher_probe.classifier_gradient.size(1);
  std::map<std::string, Scored> scored;
  auto score_as = [&](const kd::Candidate& candidate, const std::string& key) {
    Scored entry;
    entry.name = candidate.name();
    std::unique_ptr<models::Model> model;
    try {
      model = models::make_model(candidate.options(o.model), channels, size, classes);
    } catch (const Error& e) {
      if (!key.empty()) throw Error(key + " ('" + entry.name + "'): " + e.what());
      entry.excluded = std::string("not buildable: ") + e.what();
    }
    if (model) {
      entry.params = model->num_params();
      const auto& specs = model->param_specs();
      const int64_t width = specs.size() >= 2 && specs[specs.size() - 2].shape.size() == 2
                                ? specs[specs.size() - 2].shape[1]
                                : -1;
      if (s.semantic == "channels" && width != teacher_width) {
        const std::string why = "its classifier reads " + std::to_string(width) +
                                " values, the teacher's " + std::to_string(teacher_width) +
                                " (search.semantic = \"channels\" compares equal widths only; "
                                "\"classes\" compares any)";
        if (!key.empty()) throw Error(key + " ('" + entry.name + "'): " + why);
        entry.excluded = why;
      } else if (s.max_params > 0 && entry.params > s.max_params) {
        entry.excluded = "over search.max_params";
      } else {
        // Indexed by the name's hash: a candidate starts from the same weights whether it is
        // scored alone, in a list or during the evolution.
        at::Generator g = make_generator(run.seed, streams::kKdSearchInit, fnv1a(entry.name));
        entry.score = kd::diswot_score(
            teacher_probe,
            kd::probe_network(*model, model->init_params(g).to(run.device),
                              model->init_buffers().to(run.device), images, labels),
            s.semantic);
      }
    }
    scored[entry.name] = entry;
    return entry.excluded.empty() ? entry.score.score : -std::numeric_limits<double>::infinity();
  };
  auto score = [&](const kd::Candidate& candidate) { return score_as(candidate, ""); };
  if (!listed.empty()) {
    for (size_t i = 0; i < listed.size(); ++i) {
      score_as(listed[i], "search.candidates[" + std::to_string(i) + "]");
    }
  } else {
    at::Generator generator = make_generator(run.seed, streams::kKdSearchEvolution);
    kd::evolve(s.space, s.evolution, score, generator);
  }
  std::vector<Scored> ranking;
  for (const auto& [name, entry] : scored) ranking.push_back(entry);
  std::stable_sort(ranking.begin(), ranking.end(), [](const Scored& a, const Scored& b) {
    if (a.excluded.empty() != b.excluded.empty()) return a.excluded.empty();
    return a.score.score > b.score.score;
  });
  nlohmann::json out;
  out["teacher"] = teacher.model->arch();
  out["teacher_weights"] = s.teacher_weights;
  out["semantic"] = s.semantic;
  out["batch_size"] = s.batch_size;
  out["mode"] = listed.empty() ? "evolution" : "candidates";
  out["scored"] = scored.size();
  out["ranking"] = nlohmann::json::array();
  for (const auto& r : ranking) {
    nlohmann::json row = {{"name", r.name}, {"params", r.params}};
    if (!r.excluded.empty()) {
      row["excluded"] = r.excluded;
    } else {
      row["score"] = r.score.score;
      row["semantic_distance"] = r.score.semantic;
      row["relation_distance"] = r.score.relation;
    }
    out["ranking"].push_back(row);
  }
  io::write_file_atomic(run.out + "/search.json", out.dump(2) + "\n");
  nlohmann::json results = {{"mode", out["mode"]}, {"scored", scored.size()}};
  if (!ranking.empty() && ranking[0].excluded.empty()) {
    results["best"] = ranking[0].name;
    results["best_score"] = ranking[0].score.score;
  }
  io::write_file_atomic(run.out + "/results.json", results.dump(2) + "\n");
  std::cout << "rank  candidate            params     score   semantic  relation\n";
  for (size_t i = 0; i < ranking.size() && static_cast<int64_t>(i) < s.top; ++i) {
    const Scored& r = ranking[i];
    char line[160];
    if (!r.excluded.empty()) {
      std::snprintf(line, sizeof line, "%4zu  %-18s %8lld  excluded: %.80s\n", i + 1,
                    r.name.c_str(), static_cast<long long>(r.params), r.excluded.c_str());
    } else {
      std::snprintf(line, sizeof line, "%4zu  %-18s %8lld  %8.5f  %8.5f  %8.5f\n", i + 1,
                    r.name.c_str(), static_cast<long long>(r.params), r.score.score,
                    r.score.semantic, r.score.relation);
    }
    std::cout << line;
  }
  std::cout << scored.size() << " candidates scored; ranking in " << run.out << "/search.json\n";
}

void run_kd(KdCommandOptions& o, const Invocation& invocation) {
  if (!invocation.positional.empty()) {
    if (invocation.positional.size() == 1 && invocation.positional[0] == "search") {
      return run_search(o, invocation);
    }
    throw Error("distill kd search takes no further arguments, found '" +
                invocation.positional.back() + "'");
  }
  SearchSettings search_defaults;
  if (config::dump(o.search) != config::dump(search_defaults)) {
    throw Error("the [search] settings apply to `distill kd search` only");
  }
  // Settings that can be checked without data fail first (the reader checked the declared
  // ranges and rules; a teacher is another section's).
  bool needs_teacher = false;
  for (size_t i = 0; i < o.kd.losses.size(); ++i) {
    if (kd::uses_teacher(o.kd.losses[i]) && o.kd.scheme == "offline" && !o.teacher.configured()) {
      throw Error("kd.losses[" + std::to_string(i) + "] (" + o.kd.losses[i].name +
                  ") needs a teacher: set teacher.checkpoint to a model.pt or checkpoint.pt "
                  "written by `distill train`, or teacher.torchscript (or use only "
                  "{name = \"ce\"} for a baseline)");
    }
    needs_teacher = needs_teacher || kd::uses_teacher(o.kd.losses[i]);
  }

  check_scheme_settings(o);
  const int64_t world_size = dist::read_launch_env().world_size;
  for (size_t i = 0; i < o.kd.losses.size(); ++i) {
    // Relational losses compare the samples of a batch: split over ranks they would see only a
    // rank's part (and a 1-image part cannot form a pair), so the run would not be the
    // single-process one.
    if (world_size > 1 && o.kd.losses[i].name == "tgeo") {
      throw Error("kd.losses[" + std::to_string(i) + "] (tgeo) steps its fusion network on one "
                  "process's held-out batches and runs as one process (WORLD_SIZE is " +
                  std::to_string(world_size) + ")");
    }
    if (world_size > 1 && o.kd.losses[i].name.rfind("rkd", 0) == 0) {
      throw Error("kd.losses[" + std::to_string(i) + "] (" + o.kd.losses[i].name +
                  ") relates the samples of a batch and runs as one process (WORLD_SIZE is " +
                  std::to_string(world_size) + "); the per-sample losses run data-parallel");
    }
  }
  RunContext run = start_run(o.run, config::dump(o), invocation);
  auto [train_set, test_set, norm] = data::load_normalized(o.data);
  if (o.kd.data_fraction < 1) {
    const int64_t per_class = std::max<int64_t>(
        1, std::llround(o.kd.data_fraction * static_cast<double>(train_set.size()) /
                        static_cast<double>(train_set.num_classes)));
    at::Generator generator = make_generator(run.seed, streams::kKdSubset);
    at::Tensor index =
        data::sample_per_class(train_set.labels, train_set.num_classes, per_class, generator);
    train_set.images = train_set.images.index_select(0, index);
    train_set.labels = train_set.labels.index_select(0, index);
  }
  const int64_t channels = train_set.channels(), size = train_set.height();
  const int64_t classes = train_set.num_classes;
  nlohmann::json results;
  results["scheme"] = o.kd.scheme;
  results["train_images"] = train_set.size();
  results["data_fraction"] = o.kd.data_fraction;

  std::shared_ptr<const kd::Teacher> teacher;
  if (o.teacher.configured() &&
      ((needs_teacher && o.kd.scheme == "offline") || o.kd.scheme == "born_again")) {
    kd::Teacher loaded = kd::load_teacher(o.teacher, channels, size, classes);
    // On the run's device once: the objectives feed it batches that already are.
    if (loaded.params.defined()) loaded.params = loaded.params.to(run.device);
    if (loaded.buffers.defined()) loaded.buffers = loaded.buffers.to(run.device);
    teacher = std::make_shared<kd::Teacher>(std::move(loaded));
    train::EvalResult t = train::evaluate(
        *teacher->model, teacher->params.to(run.device), teacher->buffers.to(run.device),
        test_set.images.to(run.device), test_set.labels.to(run.device));
    results["teacher_test_accuracy"] = t.accuracy;
    if (run.rank == 0)
      std::cerr << "distill kd: teacher " << teacher->model->arch() << " test accuracy "
                << 100.0 * t.accuracy << " %\n";
  }

  train::TrainState state;
  if (o.kd.scheme == "offline") {
    auto student = models::make_model(o.model, channels, size, classes);
    std::shared_ptr<train::StepObjective> objective;
    if (o.kd.losses.size() == 1 && o.kd.losses[0].name == "tgeo") {
      // TGeo-KD's fusion network learns on a held-out split the student does not train on.
      const kd::LossSpec& spec = o.kd.losses[0];
      kd::LossTerms checked(o.kd.losses, "kd.losses", *student, teacher->model.get());
      data::Dataset held_out;
      std::tie(train_set, held_out) = hold_out(train_set, o.kd.validation_fraction, run.seed);
      results["held_out_images"] = held_out.size();
      results["train_images"] = train_set.size();
      objective = std::make_shared<kd::TgeoObjective>(
          *student, teacher, spec.T, spec.weight, spec.fusion_lr_scale,
          train_set.images.to(run.device), train_set.labels.to(run.device), classes,
          held_out.images.to(run.device), held_out.labels.to(run.device), o.train.batch_size,
          run.seed, o.kd.cache_teacher && o.augment.name == "none");
    } else {
      objective = offline_objective(o, *student, teacher, train_set, run);
    }
    if (run.rank == 0)
      std::cerr << "distill kd: student " << student->arch() << " (" << student->num_params()
                << " parameters) on " << train_set.size() << " images, " << o.train.epochs
                << " epochs\n";
    auto r = run_job({student.get(), objective, run.out, "kd " + student->arch()}, o, run,
                     train_set, test_set, run.resume, &state);
    for (const auto& [k, v] : r) results[k] = v;
  } else if (o.kd.scheme == "dml") {
    std::vector<std::unique_ptr<models::Model>> members;
    for (int64_t i = 0; i < o.kd.cohort; ++i) {
      members.push_back(models::make_model(o.model, channels, size, classes));
    }
    kd::Cohort cohort(std::move(members));
    at::Tensor probe = train_set.images.narrow(0, 0, std::min<int64_t>(8, train_set.size()));
    auto objective = std::make_shared<kd::MutualObjective>(o.kd.losses, "kd.losses", cohort,
                                                           probe.to(run.device));
    auto r = run_job({&cohort, objective, run.out, "dml x" + std::to_string(cohort.size())}, o, run,
                     train_set, test_set, run.resume, &state);
    for (const auto& [k, v] : r) results[k] = v;
    double sum = 0;
    for (size_t i = 0; i < cohort.size(); ++i) {
      train::EvalResult m =
          train::evaluate(cohort.member(i), cohort.member_params(state.params, i),
                          cohort.member_buffers(state.buffers, i), test_set.images.to(run.device),
                          test_set.labels.to(run.device));
      results["member" + std::to_string(i) + "_test_accuracy"] = m.accuracy;
      sum += m.accuracy;
    }
    results["test_accuracy"] = sum / static_cast<double>(cohort.size());  // members' mean
  } else if (o.kd.scheme == "self_distillation") {
    run_self_distillation(o, run, train_set, test_set, results);
  } else {
    // Born-again networks (Furlanello et al. 2018): generation 0 is the configured teacher, or
    // the student architecture trained on hard labels; generation g learns from g - 1.
    std::shared_ptr<const kd::Teacher> previous = teacher;
    for (int64_t g = previous ? 1 : 0; g <= o.kd.generations; ++g) {
      auto student = models::make_model(o.model, channels, size, classes);
      KdCommandOptions generation = o;
      if (g == 0) generation.kd.losses = {kd::LossSpec{"ce"}};
      auto objective = offline_objective(generation, *student, previous, train_set, run);
      const std::string out = run.out + "/gen" + std::to_string(g);
      auto r = run_job({student.get(), objective, out, "born-again gen " + std::to_string(g)},
                       generation, run, train_set, test_set, run.resume, &state);
      results["gen" + std::to_string(g) + "_test_accuracy"] = r["test_accuracy"];
      results["test_accuracy"] = r["test_accuracy"];
      previous = std::make_shared<kd::Teacher>(
          kd::teacher_from_state(std::move(student), state.params, state.buffers));
    }
  }
  if (run.rank != 0) return;
  io::write_file_atomic(run.out + "/results.json", results.dump(2) + "\n");
  std::cout << "test accuracy " << 100.0 * results["test_accuracy"].get<double>() << " %"
            << (results.contains("teacher_test_accuracy")
                    ? " (teacher " +
                          std::to_string(100.0 * results["teacher_test_accuracy"].get<double>()) +
                          " %)"
                    : std::string())
            << "; run folder " << run.out << "\n";
  std::cout << "report: " << refresh_run_report(run.out) << "\n";
}

}  // namespace

Command kd_command() {
  Command command = make_command<KdCommandOptions>(
      "kd",
      "knowledge distillation from a teacher checkpoint (offline, dml, born_again, "
      "self_distillation); `kd search`: rank candidate students without training (DisWOT)",
      "distill kd --set teacher.checkpoint=runs/teacher/model.pt --set model.hidden=[100,100] "
      "--out runs/kd",
      {{"epochs", "train.epochs"}, {"teacher", "teacher.checkpoint"}}, run_kd);
  command.takes_positional = true;
  command.optional_steps = {"search"};
  return command;
}

}  // namespace distill::cli
