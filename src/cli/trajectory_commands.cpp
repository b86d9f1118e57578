// `distill experts` (expert trajectories) and `distill mtt` (trajectory matching).
#include <iostream>

#include "src/cli/command.h"
#include "src/data/dataset.h"
#include "trajectories/experts.h"
#include "trajectories/trajectory_distillation.h"

namespace distill::cli {
namespace {

struct ExpertsCommandOptions {
  static constexpr bool kHasPresets = false;
  config::RunOptions run;
  data::DataOptions data;
  trajectories::ExpertOptions experts;
  void visit(config::Visitor& v) {
    v.section("run", run);
    v.section("data", data);
    v.section("experts", experts);
  }
};

void run_experts(ExpertsCommandOptions& o, const Invocation& invocation) {
  RunContext run = start_run(o.run, config::dump(o), invocation);
  auto [train_set, test_set, norm] = data::load_normalized(o.data);
  train_set.images = train_set.images.to(run.device);
  train_set.labels = train_set.labels.to(run.device);
  test_set.images = test_set.images.to(run.device);
  test_set.labels = test_set.labels.to(run.device);
  // Expert files are resumable by construction: finished experts are skipped.
  trajectories::train_experts(o.experts, train_set, test_set, run.seed, run.out, run.progress,
                              run.group.get());
  if (run.rank == 0) {
    std::cout << "expert trajectories in " << run.out << "\n";
    std::cout << "report: " << refresh_run_report(run.out) << "\n";
  }
}

struct MttCommandOptions {
  static constexpr bool kHasPresets = false;
  config::RunOptions run;
  data::DataOptions data;
  trajectories::MttOptions mtt;
  void visit(config::Visitor& v) {
    v.section("run", run);
    v.section("data", data);
    v.section("mtt", mtt);
  }
};

void run_mtt(MttCommandOptions& o, const Invocation& invocation) {
  RunContext run = start_run(o.run, config::dump(o), invocation);
  auto [train_set, test_set, norm] = data::load_normalized(o.data);
  std::function<void()> on_checkpoint;
  if (o.run.report_on_checkpoint) {
    on_checkpoint = [&] { std::cout << "report: " << refresh_run_report(run.out) << "\n"; };
  }
  eval::SyntheticSet set = trajectories::run_trajectory_matching(
      o.mtt, train_set, test_set, norm, o.data.name, run.seed, run.out, run.resume,
      run.progress, on_checkpoint, run.group);
  if (run.rank != 0) return;
  std::cout << "distilled set: " << run.out << "/syn.pt (" << set.images.size(0)
            << " images, learned lr " << (set.lr ? *set.lr : 0.0) << "), grid: " << run.out
            << "/grid.png\n";
  std::cout << "report: " << refresh_run_report(run.out) << "\n";
}

}  // namespace

Command experts_command() {
  return make_command<ExpertsCommandOptions>(
      "experts", "train expert trajectories (MTT buffer layout; resumable, --set experts.range=a:b)",
      "distill experts --set experts.num_experts=5 --set experts.train.epochs=10 --out runs/experts",
      {{"experts", "experts.range"}}, run_experts);
}

Command mtt_command() {
  return make_command<MttCommandOptions>(
      "mtt", "distill a set by matching expert trajectories (MTT); --resume continues",
      "distill mtt --set mtt.buffer=runs/experts --set mtt.ipc=10 --out runs/mtt",
      {{"ipc", "mtt.ipc"}, {"iterations", "mtt.iterations"}, {"buffer", "mtt.buffer"}}, run_mtt);
}

}  // namespace distill::cli
