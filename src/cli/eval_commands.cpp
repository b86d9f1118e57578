// `distill subset` (class-balanced real subsets) and `distill eval` (train students on a set).
#include <ATen/ATen.h>

#include <cmath>
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
    v.field("T", T, "temperature of the members' softened outputs and of the students' KL loss");
    v.field("temperature", temperature,
            "voting weights softmax(val_accuracy / temperature), as synth.temperature");
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

void run_eval(EvalCommandOptions& o, const Invocation& invocation) {
  // The resume is checked first, so a refused one fails before any data is loaded. More (or
  // fewer) runs, models or baselines only add (or leave out) students: a resume may change those
  // and keeps the students both runs have.
  eval::StudentLog log(o.run.out + "/students.jsonl",
                       student_settings(o, static_cast<uint64_t>(o.run.seed)),
                       {"eval.runs", "eval.models", "eval.random_real", "eval.full_data"},
                       default_student_settings());
  std::vector<eval::StudentResult> finished;
  // Every rank: each skips its recorded students. An eval stopped before its first student has
  // nothing to resume and starts over (claim_run_folder).
  if (invocation.resumes()) finished = log.read();
  RunContext run = start_run(o.run, config::dump(o), invocation);
  std::optional<eval::SyntheticSet> set;
  if (!o.eval.syn.empty()) set = eval::load_synthetic_set(o.eval.syn);
  auto [train_set, test_set, norm] = data::load_normalized(o.data);
  if (set) check_normalization(*set, norm, o.eval.syn);
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
    if (!(cl.T > 0)) throw Error("committee_labels.T must be > 0, found " + std::to_string(cl.T));
    if (!(cl.temperature > 0)) {
      throw Error("committee_labels.temperature must be > 0, found " +
                  std::to_string(cl.temperature));
    }
    committee = std::make_shared<const std::vector<synth::Member>>(synth::load_committee(
        cl.committee, train_set.channels(), train_set.height(), train_set.num_classes, run.device));
    synth::check_normalization(cl.committee, norm.mean, norm.std, norm.zca ? norm.zca->eps() : 0.0,
                               "the data (data.*)");
  }
  eval::Evaluator evaluator(o.eval, train_set, test_set, norm, run.seed, run.device, run.progress);
  evaluator.set_process_group(run.group);  // students spread over the ranks, if several
  if (committee) {
    evaluator.set_online_labels(
        [committee, weights = cl.temperature, T = cl.T,
         batch_statistics = cl.batch_statistics](const at::Tensor& images) {
          // With batch statistics the whole training batch is one batch, as the student sees it.
          const int64_t batch = batch_statistics ? std::max<int64_t>(1, images.size(0)) : 256;
          return synth::committee_soft_labels(*committee, images, weights, T, batch,
                                              batch_statistics);
        },
        cl.T);
  }
  if (run.rank == 0) {  // rank 0 writes the run folder
    // An earlier results.json would pass for this run's until it ends (scripts take it as done).
    std::filesystem::remove(run.out + "/results.json");
    log.start(finished);
  }
  const size_t recorded = finished.size();
  const int64_t sets =
      (set ? 1 : 0) + (o.eval.random_real && ipc > 0 ? 1 : 0) + (o.eval.full_data ? 1 : 0);
  evaluator.set_student_count(sets * static_cast<int64_t>(o.eval.models.size()) * o.eval.runs);
  evaluator.set_finished_students(std::move(finished));
  std::vector<eval::Scores> scores;
  int64_t trained = 0;
  evaluator.set_on_student([&](const eval::StudentResult& s) {
    ++trained;
    if (run.rank == 0) log.append(s);  // rank 0 writes the run folder
  });
  try {
    for (const std::string& arch : o.eval.models) {
      if (set) scores.push_back(evaluator.score_set(*set, o.eval.syn, arch));
      if (o.eval.random_real && ipc > 0) scores.push_back(evaluator.score_random_real(ipc, arch));
      if (o.eval.full_data) scores.push_back(evaluator.score_full_data(arch));
    }
  } catch (const Interrupted& e) {
    throw Interrupted(std::string(e.what()) + "; " + std::to_string(recorded + trained) +
                      " students are recorded in " + log.path() + ": continue with --resume");
  }
  if (run.rank != 0) return;
  // Written once every student is scored: an existing results.json means a finished eval.
  io::write_file_atomic(run.out + "/results.json",
                        eval::scores_json(scores, o.eval.protocol, o.eval.train.eval_every));
  std::cout << eval::format_scores_table(scores);
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
