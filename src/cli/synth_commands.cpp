// `distill committee train` (teachers of several families and their held-out accuracies) and
// `distill synth recover|relabel` (committee soft-labeling, synth/).
#include <ATen/ATen.h>

#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>

#include "src/cli/command.h"
#include "src/core/error.h"
#include "src/data/dataset.h"
#include "src/eval/set_export.h"
#include "src/eval/synthetic_set.h"
#include "src/io/atomic_file.h"
#include "synth/committee.h"
#include "synth/recover.h"

namespace distill::cli {
namespace {

struct CommitteeCommandOptions {
  static constexpr bool kHasPresets = false;
  config::RunOptions run;
  data::DataOptions data;
  synth::CommitteeOptions committee;
  void visit(config::Visitor& v) {
    v.section("run", run);
    v.section("data", data);
    v.section("committee", committee);
  }
};

void run_committee(CommitteeCommandOptions& o, const Invocation& invocation) {
  const std::string usage = "usage: distill committee train [--set committee.members=[...]]";
  if (invocation.positional.size() != 1 || invocation.positional[0] != "train") {
    throw Error(usage);
  }
  if (o.committee.members.empty()) throw Error("committee.members: committee of size 0");
  RunContext run = start_run(o.run, config::dump(o), invocation);
  auto [train_set, test_set, norm] = data::load_normalized(o.data);
  synth::CommitteeManifest manifest = synth::train_committee(
      o.committee, train_set, test_set, norm, o.data.name, run.seed, run.out, run.resume,
      run.progress, run.device,
      [shape = std::vector<int64_t>{train_set.channels(), train_set.height(), train_set.width()}](
          const std::string& path, const models::Model& model, const train::TrainState& state) {
        save_model_file(path, model, state, shape);
      },
      run.group);
  if (run.rank != 0) return;
  nlohmann::json results = nlohmann::json::array();
  for (const auto& m : manifest.members) {
    results.push_back({{"arch", m.model.arch},
                       {"val_accuracy", m.val_accuracy},
                       {"test_accuracy", m.test_accuracy},
                       {"checkpoint", m.checkpoint}});
  }
  io::write_file_atomic(run.out + "/results.json",
                        nlohmann::json{{"members", results}}.dump(2) + "\n");
  std::cout << "committee of " << manifest.members.size() << ": " << run.out
            << "/committee.toml\n";
}

struct SynthCommandOptions {
  static constexpr bool kHasPresets = false;
  config::RunOptions run;
  data::DataOptions data;
  synth::SynthOptions synth;
  void visit(config::Visitor& v) {
    v.section("run", run);
    v.section("data", data);
    v.section("synth", synth);
  }
};

void run_recover(SynthCommandOptions& o, const Invocation& invocation) {
  auto [train_set, test_set, norm] = data::load_normalized(o.data);
  RunContext run = start_run(o.run, config::dump(o), invocation);
  // Committee, draw, IPC: all checked before the first step.
  std::vector<synth::Member> committee =
      synth::load_committee(o.synth.committee, train_set.channels(), train_set.height(),
                            train_set.num_classes, run.device);
  synth::check_recover_options(o.synth, static_cast<int64_t>(committee.size()), train_set);
  synth::check_normalization(o.synth.committee, norm.mean, norm.std,
                             norm.zca ? norm.zca->eps() : 0.0, "the data (data.*)");
  if (run.rank == 0)
    std::cerr << "distill synth recover: " << o.synth.recover.ipc
              << " images per class, committee of " << committee.size() << " (" << o.synth.draw
              << " drawn per step), " << o.synth.recover.iterations << " steps per batch\n";
  eval::SyntheticSet set =
      synth::recover_images(o.synth, committee, train_set, norm, o.data.name, run.seed, run.out,
                            run.resume, run.progress, run.device, run.group);
  if (run.rank != 0) return;
  std::cout << "recovered set: " << run.out << "/syn.pt (" << set.images.size(0)
            << " images, hard labels; `distill synth relabel` adds soft labels), grid: "
            << run.out << "/grid.png\n";
  std::cout << "report: " << refresh_run_report(run.out) << "\n";
}

void run_infer(SynthCommandOptions& o, const Invocation& invocation) {
  require_single_process("synth infer");
  auto [train_set, test_set, norm] = data::load_normalized(o.data);
  RunContext run = start_run(o.run, config::dump(o), invocation);
  std::vector<synth::Member> committee =
      synth::load_committee(o.synth.committee, train_set.channels(), train_set.height(),
                            train_set.num_classes, run.device);
  synth::check_infer_options(o.synth.infer, static_cast<int64_t>(committee.size()), train_set);
  synth::check_normalization(o.synth.committee, norm.mean, norm.std,
                             norm.zca ? norm.zca->eps() : 0.0, "the data (data.*)");
  const synth::InferOptions& infer = o.synth.infer;
  const int64_t members = static_cast<int64_t>(committee.size());
  const int64_t k = synth::infer_real_batches(infer, train_set.num_classes, members);
  std::cerr << "distill synth infer: budget " << infer.ipc << " images per class = " << k
            << " real batches x (" << train_set.num_classes << " images + " << members
            << " compensators), " << infer.iterations << " steps per compensator\n";
  eval::SyntheticSet set =
      synth::infer_compensate(infer, committee, train_set, norm, o.data.name, run.seed, run.out,
                              run.resume, run.progress, run.device);
  std::cout << "INFER set: " << run.out << "/syn.pt (" << set.images.size(0)
            << " training images from " << k * (train_set.num_classes + members)
            << " stored; labels: "
            << (set.labels_are_logits ? "committee mean logits, T = " + std::to_string(infer.T)
                                      : std::string("hard"))
            << "), stored form: " << run.out << "/compensators.pt, grid: " << run.out
            << "/grid.png\n";
  std::cout << "report: " << refresh_run_report(run.out) << "\n";
}

void run_relabel(SynthCommandOptions& o, const Invocation& invocation) {
  require_single_process("synth relabel");
  if (o.synth.relabel.syn.empty()) {
    throw Error("synth.relabel.syn is empty: name the set to relabel (--syn runs/x/syn.pt)");
  }
  eval::SyntheticSet set = eval::load_synthetic_set(o.synth.relabel.syn);
  RunContext run = start_run(o.run, config::dump(o), invocation);
  std::vector<synth::Member> committee = synth::load_committee(
      o.synth.committee, set.images.size(1), set.images.size(2), set.num_classes, run.device);
  synth::check_normalization(o.synth.committee, set.mean, set.std, set.zca_eps,
                             "'" + o.synth.relabel.syn + "'");
  const at::Tensor classes = set.class_ids();
  const bool logits = o.synth.relabel.form == "logits";
  at::Tensor images = set.images.to(run.device);
  at::Tensor labels =
      (logits ? synth::committee_mean_logits(committee, images)
              : synth::committee_soft_labels(committee, images, o.synth.temperature,
                                             o.synth.relabel.T))
          .cpu();
  const at::Tensor soft = logits ? at::softmax(labels / o.synth.relabel.T, 1) : labels;
  set.labels = labels;
  set.labels_are_logits = logits;
  set.classes = classes.cpu();  // the class each image stands for, for grids and exports
  set.label_temperature = o.synth.relabel.T;  // eval trains its students at this temperature
  if (o.synth.relabel.views > 0) {
    synth::add_replay_views(set, committee, o.synth.relabel, o.synth.temperature, run.seed,
                            run.device);
  } else {
    set.view_boxes = at::Tensor();  // views of the source set belong to its old labels
    set.view_labels = at::Tensor();
  }
  set.method = (set.method.empty() ? std::string("set") : set.method) + "+committee-relabel";
  eval::save_synthetic_set(run.out + "/syn.pt", set);
  if (set.zca_eps == 0) eval::save_set_grid(run.out + "/grid.png", set);  // by each image's class
  nlohmann::json results;
  results["source"] = o.synth.relabel.syn;
  results["T"] = o.synth.relabel.T;
  results["form"] = o.synth.relabel.form;
  results["images"] = set.images.size(0);
  results["views"] = o.synth.relabel.views;
  // How often the committee's vote agrees with the class the image stands for.
  results["agreement"] = soft.argmax(1).eq(classes.cpu()).to(at::kFloat).mean().item<double>();
  results["mean_max_probability"] = std::get<0>(soft.max(1)).mean().item<double>();
  io::write_file_atomic(run.out + "/results.json", results.dump(2) + "\n");
  std::cout << "relabeled set: " << run.out << "/syn.pt (" << set.images.size(0)
            << " images, " << (logits ? "mean logits" : "soft labels") << " at T = "
            << o.synth.relabel.T
            << ", recorded in the set: distill eval trains at that temperature"
            << "), committee agrees with the image's class on "
            << 100.0 * results["agreement"].get<double>() << " %\n";
}

void run_export(SynthCommandOptions& o, const Invocation& invocation) {
  require_single_process("synth export");
  const std::string& path = o.synth.export_set.syn;
  if (path.empty()) {
    throw Error("synth.export.syn is empty: name the set to export (--set synth.export.syn=FILE)");
  }
  eval::SyntheticSet set = eval::load_synthetic_set(path);
  RunContext run = start_run(o.run, config::dump(o), invocation);
  // A ZCA set is shown in pixel space: its whitening is refitted from the data settings.
  std::shared_ptr<const data::Zca> zca;
  if (set.zca_eps > 0) {
    data::Normalization norm = data::load_normalized(o.data).norm;
    // The refitted whitening is only the set's if the data settings are the ones it was made
    // with: same normalization and ZCA strength.
    const bool same = norm.zca && std::abs(norm.zca->eps() - set.zca_eps) < 1e-12 &&
                      set.mean.defined() && set.std.defined() &&
                      at::allclose(norm.mean.to(at::kDouble), set.mean.to(at::kDouble)) &&
                      at::allclose(norm.std.to(at::kDouble), set.std.to(at::kDouble));
    if (!same) {
      throw Error(
          "'" + path + "' is a ZCA set (zca_eps " + std::to_string(set.zca_eps) +
          "); the data settings (data.*) give " +
          (norm.zca ? "zca_eps " + std::to_string(norm.zca->eps()) : std::string("no ZCA")) +
          " and another normalization or strength would un-whiten it wrongly: pass the "
          "data settings the set was made with");
    }
    zca = norm.zca;
  }
  const std::vector<std::string> names = eval::export_image_folder(set, run.out, zca.get());
  eval::save_set_grid(run.out + "/grid.png", set, zca.get());
  std::cout << "exported " << set.images.size(0) << " images in " << names.size()
            << " class folders: " << run.out << "/train/<class>/<i>.png (read it with "
            << "data.format=image-folder data.path=" << run.out
            << " data.image_size=" << set.images.size(2) << " data.channels=" << set.images.size(1)
            << "), grid: " << run.out << "/grid.png\n";
}

void run_synth(SynthCommandOptions& o, const Invocation& invocation) {
  const std::string usage =
      "usage: distill synth recover|infer|relabel|export [--committee FILE] [...]";
  if (invocation.positional.size() != 1) throw Error(usage);
  const std::string& which = invocation.positional[0];
  if (which == "recover") return run_recover(o, invocation);
  if (which == "infer") return run_infer(o, invocation);
  if (which == "relabel" || which == "export") refuse_resume(invocation, "synth " + which);
  if (which == "relabel") return run_relabel(o, invocation);
  if (which == "export") return run_export(o, invocation);
  throw Error("unknown synth step '" + which + "'; " + usage);
}

}  // namespace

Command committee_command() {
  Command command = make_command<CommitteeCommandOptions>(
      "committee", "train a committee of teachers of several families (committee.toml)",
      "distill committee train --out runs/committee", {}, run_committee);
  command.takes_positional = true;
  return command;
}

Command synth_command() {
  Command command = make_command<SynthCommandOptions>(
      "synth",
      "committee soft-labeling: recover images, INFER compensators, relabel any set by "
      "committee vote, export a set",
      "distill synth recover --committee runs/committee/committee.toml --ipc 10 --out runs/syn",
      {{"committee", "synth.committee"},
       {"ipc", "synth.{0}.ipc"},
       {"iterations", "synth.{0}.iterations"},
       {"draw", "synth.draw"},
       {"syn", "synth.{0}.syn"}},
      run_synth);
  command.takes_positional = true;
  return command;
}

}  // namespace distill::cli
