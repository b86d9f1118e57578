// `distill subset` (class-balanced real subsets) and `distill eval` (train students on a set).
#include <ATen/ATen.h>

#include <cmath>
#include <memory>
#include <optional>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <vector>

#include "src/cli/command.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/data/dataset.h"
#include "src/eval/evaluator.h"
#include "src/eval/reference_statistics.h"
#include "src/eval/student_log.h"
#include "src/eval/synthetic_set.h"
#include "src/io/atomic_file.h"
#include "src/core/random_streams.h"
#include "synth/committee.h"
#include "synth/recover.h"

namespace distill::cli {
namespace {

struct SubsetOptions {
  int64_t ipc = 10;
  void visit(config::Visitor& v) { v.field("ipc", ipc, "images per class"); }
};

struct SubsetCommandOptions {
  static constexpr bool kHasPresets = false;
  config::RunOptions run;
  data::DataOptions data;
  SubsetOptions subset;
  void visit(config::Visitor& v) {
    v.section("run", run);
    v.section("data", data);
    v.section("subset", subset);
  }
};

void run_subset(SubsetCommandOptions& o, const Invocation& invocation) {
  refuse_resume(invocation, "subset");
  require_single_process("subset");
  RunContext run = start_run(o.run, config::dump(o), invocation);
  auto [train_set, test_set, norm] = data::load_normalized(o.data);
  at::Generator generator = make_generator(run.seed, streams::kSubset);
  at::Tensor train_index;
  eval::SyntheticSet set = eval::Evaluator::random_real_set(train_set, norm, o.subset.ipc,
                                                            generator, o.data.name, &train_index);
  std::filesystem::remove(run.out + "/results.json");  // an earlier run's would look finished
  eval::save_synthetic_set(run.out + "/syn.pt", set);
  eval::save_set_grid(run.out + "/grid.png", set, norm.zca.get());
  // Which training images were picked (positions in the training split, in the set's order), so
  // the subset can be rebuilt from the raw data by other tools; and, as every finished run,
  // a results.json that tells experiment scripts the run is done.
  train_index = train_index.to(at::kLong).cpu().contiguous();
  const int64_t* index = train_index.data_ptr<int64_t>();
  nlohmann::json results;
  results["dataset"] = o.data.name;
  results["ipc"] = o.subset.ipc;
  results["images"] = set.images.size(0);
  results["seed"] = run.seed;
  results["train_indices"] = std::vector<int64_t>(index, index + train_index.numel());
  io::write_file_atomic(run.out + "/results.json", results.dump(2) + "\n");
  std::cout << "wrote " << set.images.size(0) << " images (" << o.subset.ipc << " per class) to "
            << run.out << "/syn.pt and " << run.out << "/grid.png\n";
}

// Teacher-in-the-loop evaluation: soft labels from a committee (synth/) on every augmented batch.
struct CommitteeLabelOptions {
  std::string committee;
  double T = 4.0;
  double temperature = 0.05;
  bool batch_statistics = false;
  void visit(config::Visitor& v) {
    v.field("committee", committee,
            "committee manifest (committee.toml): when set, every student (set, random real, full "
            "data) learns from the committee's soft labels computed on each augmented and "
            "CutMixed batch instead of stored labels; empty = stored labels");
    v.field("T", T, "temperature of the members' softened outputs and of the students' KL loss",
            config::Range::above(0));
    v.field("temperature", temperature,
            "voting weights softmax(val_accuracy / temperature), as synth.temperature",
            config::Range::above(0));
    v.field("batch_statistics", batch_statistics,
            "CV-DD's batch-specific soft labels: members' batch norm uses the statistics of each "
            "training batch it labels (train mode) instead of its running statistics");
  }
};

struct EvalCommandOptions {
  static constexpr bool kHasPresets = true;
  config::RunOptions run;
  data::DataOptions data;
  eval::EvalOptions eval;
  CommitteeLabelOptions committee_labels;
  void apply_presets() { eval::apply_protocol(eval.protocol, eval); }
  void visit(config::Visitor& v) {
    v.section("run", run);
    v.section("data", data);
    v.section("eval", eval);
    v.section("committee_labels", committee_labels);
  }
};

void check_normalization(const eval::SyntheticSet& set, const data::Normalization& norm,
                         const std::string& path) {
  if (set.mean.numel() != norm.mean.numel() || !at::allclose(set.mean, norm.mean, 1e-4, 1e-4) ||
      !at::allclose(set.std, norm.std, 1e-4, 1e-4)) {
    throw Error("'" + path + "' was normalized with mean/std different from the evaluation data's "
                "(check data.name / data.mean / data.std match the run that made the set)");
  }
  const double data_eps = norm.zca ? norm.zca->eps() : 0.0;
  if (std::abs(set.zca_eps - data_eps) > 1e-6) {
    throw Error("'" + path + "' " +
                (set.zca_eps > 0 ? "holds ZCA-whitened images (zca_eps " + std::to_string(set.zca_eps) + ")"
                                 : std::string("holds images that are not ZCA-whitened")) +
                " but the evaluation data has " +
                (data_eps > 0 ? "data.zca = true, zca_eps " + std::to_string(data_eps)
                              : std::string("data.zca = false")) +
                ": set data.zca/zca_eps as in the run that made the set");
  }
}

// The [data], [eval] and [committee_labels] settings as TOML text.
std::string settings_students_depend_on(EvalCommandOptions& o) {
  struct Settings {
    data::DataOptions& data;
    eval::EvalOptions& eval;
    CommitteeLabelOptions& committee_labels;
    void visit(config::Visitor& v) {
      v.section("data", data);
      v.section("eval", eval);
      v.section("committee_labels", committee_labels);
    }
  } settings{o.data, o.eval, o.committee_labels};
  return config::dump(settings);
}

// What an eval's students depend on, recorded in students.jsonl: a resumed eval must match it.
// The set file and the committee manifest are fingerprinted by content, so a set rewritten in place
// (or a retrained committee, whose manifest records new accuracies) is not mistaken for the one
// the recorded students learned from.
std::string student_settings(EvalCommandOptions& o, uint64_t seed) {
  std::string files;
  for (const auto& [key, file] :
       {std::pair{"eval.syn", o.eval.syn},
        std::pair{"committee_labels.committee", o.committee_labels.committee}}) {
    if (!file.empty())
      files += std::string(key) + " content = " + eval::file_fingerprint(file) + "\n";
  }
  return "[run]\nseed = " + std::to_string(seed) + "\n\n[fingerprints]\n" + files + "\n" +
         settings_students_depend_on(o);
}

// The settings of an eval with every setting at its default (no protocol preset applied): a
// setting a later version added is accepted on resume at this value.
std::string default_student_settings() {
  EvalCommandOptions defaults;
  return settings_students_depend_on(defaults);
}

// DD-Ranking's full-data accuracy depends on the data, the protocol, the architecture, the runs
// and the seed, not on the set: the cache key lists exactly those settings.
std::string full_data_key(EvalCommandOptions& o, const std::string& arch, int64_t seed) {
  eval::EvalOptions& e = o.eval;
  return "seed = " + std::to_string(seed) + "\narch = '" + arch + "'\nruns = " +
         std::to_string(e.runs) + "\nprotocol = '" + e.protocol + "'\n[data]\n" +
         config::dump(o.data) + "[model]\n" + config::dump(e.model) + "[train]\n" +
         config::dump(e.train) + "[augment]\n" + config::dump(e.augment) + "[cutmix]\n" +
         config::dump(e.cutmix) + "[mixup]\n" + config::dump(e.mixup);
}

std::string full_data_cache_file(const std::string& folder, const std::string& arch,
                                 const std::string& key) {
  if (folder.empty()) return "";
  return folder + "/" + arch + "-" + eval::text_fingerprint(key) + ".json";
}

// The set with hard labels (the argmax of soft ones), without what only soft labels use.
eval::SyntheticSet with_hard_labels(const eval::SyntheticSet& set) {
  eval::SyntheticSet hard = set;
  hard.labels = set.class_ids();
  hard.label_temperature.reset();
  hard.labels_are_logits = false;
  hard.view_boxes = at::Tensor();
  hard.view_labels = at::Tensor();
  return hard;
}

void run_eval(EvalCommandOptions& o, const Invocation& invocation) {
  // The resume is checked first, so a refused one fails before any data is loaded. More (or
  // fewer) runs, models or baselines only add (or leave out) students: a resume may change those
  // and keeps the students both runs have.
  eval::StudentLog log(o.run.out + "/students.jsonl",
                       student_settings(o, static_cast<uint64_t>(o.run.seed)),
                       {"eval.runs", "eval.models", "eval.random_real", "eval.full_data",
                        "eval.scores", "eval.ddranking.w", "eval.ddranking.gamma",
                        "eval.full_data_cache"},
                       default_student_settings());
  std::vector<eval::StudentResult> finished;
  // Every rank: each skips its recorded students. An eval stopped before its first student has
  // nothing to resume and starts over (claim_run_folder).
  if (invocation.resumes()) finished = log.read();
  RunContext run = start_run(o.run, config::dump(o), invocation);
  std::optional<eval::SyntheticSet> set;
  if (!o.eval.syn.empty()) set = eval::load_synthetic_set(o.eval.syn);
  const bool ddranking = !o.eval.scores.empty();  // the one score eval.scores knows
  if (ddranking && !set) {
    throw Error("eval.scores = [\"ddranking\"] scores a set: give it as eval.syn (--syn)");
  }
  if (ddranking && set->soft_labels() && o.committee_labels.committee.empty()) {
    throw Error("eval.scores = [\"ddranking\"]: '" + o.eval.syn +
                "' has soft labels, and DD-Ranking's random-real baseline must be labelled by "
                "the same source: give the committee (or teacher) that made them as "
                "committee_labels.committee");
  }
  auto [train_set, test_set, norm] = data::load_normalized(o.data);
  if (set) check_normalization(*set, norm, o.eval.syn);
  // The evaluated set's images, per class, for the run's report.
  if (set && run.rank == 0) eval::save_set_grid(run.out + "/set_grid.png", *set, norm.zca.get());
  int64_t ipc = o.eval.ipc > 0 ? o.eval.ipc : (set ? set->images_per_class() : 0);
  if (!set && !o.eval.random_real && !o.eval.full_data) {
    throw Error("eval: nothing to evaluate: set eval.syn, eval.random_real or eval.full_data");
  }
  if (!set && o.eval.random_real && ipc <= 0) {
    throw Error("eval.ipc: set the random-real size (images per class) when no eval.syn is given");
  }
  // Committee labels on the fly: the committee is loaded and checked against the data first.
  std::shared_ptr<const std::vector<synth::Member>> committee;
  const CommitteeLabelOptions& cl = o.committee_labels;
  if (!cl.committee.empty()) {
    committee = std::make_shared<const std::vector<synth::Member>>(synth::load_committee(
        cl.committee, train_set.channels(), train_set.height(), train_set.num_classes, run.device));
    synth::check_normalization(cl.committee, norm.mean, norm.std, norm.zca ? norm.zca->eps() : 0.0,
                               "the data (data.*)");
  }
  // Every Evaluator of this eval (DD-Ranking adds some with other settings) shares the ranks,
  // the recorded students and the student log; `committee_labels`: students learn from the
  // committee on the fly (the set's label source) rather than from stored labels.
  std::vector<eval::StudentResult> recorded_students = finished;
  std::vector<eval::Scores> scores;
  int64_t trained = 0;
  auto make_evaluator = [&](const eval::EvalOptions& options, bool committee_labels) {
    auto evaluator = std::make_unique<eval::Evaluator>(options, train_set, test_set, norm, run.seed,
                                                       run.device, run.progress);
    evaluator->set_process_group(run.group);  // students spread over the ranks, if several
    if (committee && committee_labels) {
      evaluator->set_online_labels(
          [committee, weights = cl.temperature, T = cl.T,
           batch_statistics = cl.batch_statistics](const at::Tensor& images) {
            // With batch statistics the whole training batch is one batch, as the student sees it.
            const int64_t batch = batch_statistics ? std::max<int64_t>(1, images.size(0)) : 256;
            return synth::committee_soft_labels(*committee, images, weights, T, batch,
                                                batch_statistics);
          },
          cl.T);
    }
    evaluator->set_finished_students(recorded_students);
    evaluator->set_on_student([&](const eval::StudentResult& s) {
      ++trained;
      if (run.rank == 0) log.append(s);  // rank 0 writes the run folder
    });
    return evaluator;
  };
  std::unique_ptr<eval::Evaluator> main_evaluator = make_evaluator(o.eval, true);
  eval::Evaluator& evaluator = *main_evaluator;
  if (run.rank == 0) {  // rank 0 writes the run folder
    // An earlier results.json would pass for this run's until it ends (scripts take it as done).
    std::filesystem::remove(run.out + "/results.json");
    log.start(finished);
  }
  const size_t recorded = finished.size();
  // DD-Ranking's baselines per architecture: the set with hard labels (when its own are not),
  // random real unless scored anyway, both without augmentation, full data with hard labels
  // unless scored anyway (or cached).
  const bool hard_differs = ddranking && (set->soft_labels() || committee);
  const int64_t baselines =
      ddranking ? (hard_differs ? 1 : 0) + (o.eval.random_real ? 0 : 1) + 2 +
                      (o.eval.full_data && !committee ? 0 : 1)
                : 0;
  const int64_t sets =
      (set ? 1 : 0) + (o.eval.random_real && ipc > 0 ? 1 : 0) + (o.eval.full_data ? 1 : 0);
  evaluator.set_student_count((sets + baselines) * static_cast<int64_t>(o.eval.models.size()) *
                              o.eval.runs);
  std::vector<eval::DDRankingRow> ddranking_rows;
  // The accuracies DD-Ranking needs beyond the ones this eval scores anyway.
  auto score_ddranking = [&](const std::string& arch, const eval::Scores& own,
                             std::optional<eval::Scores> random) {
    eval::DDRankingAccuracies a;
    a.set_own = own.last_mean();
    if (!random) {
      random = evaluator.score_random_real(ipc, arch);
      scores.push_back(*random);
    }
    a.random_own = random->last_mean();
    std::unique_ptr<eval::Evaluator> hard = make_evaluator(o.eval, false);
    hard->set_student_count(evaluator.student_count());
    hard->set_students_done(evaluator.students_done());
    if (hard_differs) {
      scores.push_back(hard->score_set(with_hard_labels(*set), o.eval.syn + " [hard labels]", arch));
      a.set_hard = scores.back().last_mean();
    } else {
      a.set_hard = a.set_own;
    }
    const eval::Scores* full = nullptr;
    for (const auto& s : scores) {
      if (!committee && s.set == "full-data" && s.model == arch) full = &s;
    }
    if (full) {
      a.full_hard = full->last_mean();
    } else {
      const std::string key = full_data_key(o, arch, static_cast<uint64_t>(run.seed));
      const std::string file = full_data_cache_file(o.eval.full_data_cache, arch, key);
      eval::Scores f{"full-data [hard labels]", arch, 0, {}, {}, {}};
      if (std::optional<eval::CachedRuns> cached = eval::read_cached_runs(file, key)) {
        f.set += " (cached)";
        f.last = cached->last;
        f.best = cached->best;
        f.seconds.assign(f.last.size(), std::nan(""));
      } else {
        f = hard->score_full_data(arch, "full-data [hard labels]");
        if (run.rank == 0) eval::write_cached_runs(file, key, {f.last, f.best});
      }
      scores.push_back(f);
      a.full_hard = f.last_mean();
    }
    eval::EvalOptions bare_options = o.eval;  // DD-Ranking's ARS: no data augmentation at all
    bare_options.augment.name = "none";
    bare_options.cutmix.prob = 0;
    bare_options.mixup.prob = 0;
    std::unique_ptr<eval::Evaluator> bare = make_evaluator(bare_options, true);
    bare->set_student_count(evaluator.student_count());
    bare->set_students_done(hard->students_done());
    scores.push_back(bare->score_set(*set, o.eval.syn + " [no augmentation]", arch));
    a.set_no_aug = scores.back().last_mean();
    scores.push_back(bare->score_random_real(ipc, arch, "random-real [no augmentation]"));
    a.random_no_aug = scores.back().last_mean();
    evaluator.set_students_done(bare->students_done());
    eval::DDRankingRow row{o.eval.syn, arch,
                           committee ? "committee " + cl.committee : std::string("hard labels"),
                           a, eval::ddranking_scores(a, o.eval.ddranking)};
    ddranking_rows.push_back(row);
  };
  try {
    for (const std::string& arch : o.eval.models) {
      std::optional<eval::Scores> own, random;
      if (set) scores.push_back(*(own = evaluator.score_set(*set, o.eval.syn, arch)));
      if (o.eval.random_real && ipc > 0) {
        scores.push_back(*(random = evaluator.score_random_real(ipc, arch)));
      }
      if (o.eval.full_data) scores.push_back(evaluator.score_full_data(arch));
      if (ddranking) score_ddranking(arch, *own, random);
    }
  } catch (const Interrupted& e) {
    throw Interrupted(std::string(e.what()) + "; " + std::to_string(recorded + trained) +
                      " students are recorded in " + log.path() + ": continue with --resume");
  }
  if (run.rank != 0) return;
  // Written once every student is scored: an existing results.json means a finished eval.
  io::write_file_atomic(run.out + "/results.json",
                        eval::scores_json(scores, o.eval.protocol, o.eval.train.eval_every,
                                          ddranking_rows, o.eval.ddranking));
  std::cout << eval::format_scores_table(scores);
  if (!ddranking_rows.empty()) {
    std::cout << "DD-Ranking (HLR, IOR in accuracy points; LRS, ARS in [0, 1]):\n"
              << eval::format_ddranking_table(ddranking_rows);
  }
  std::cout << "results: " << run.out << "/results.json\n";
  std::cout << "report: " << refresh_run_report(run.out) << "\n";
}

}  // namespace

Command subset_command() {
  return make_command<SubsetCommandOptions>(
      "subset", "write a class-balanced random real subset as a set file + PNG grid",
      "distill subset --ipc 10 --out runs/real10", {{"ipc", "subset.ipc"}}, run_subset);
}

Command eval_command() {
  return make_command<EvalCommandOptions>(
      "eval",
      "train fresh students on a set; mean ± std test accuracy vs random-real; --resume "
      "trains only the students not yet recorded",
      "distill eval --syn runs/real10/syn.pt --models convnet --runs 5 --out runs/eval",
      {{"syn", "eval.syn"}, {"models", "eval.models"}, {"runs", "eval.runs"},
       {"epochs", "eval.train.epochs"}, {"ipc", "eval.ipc"}, {"protocol", "eval.protocol"}},
      run_eval);
}

}  // namespace distill::cli
