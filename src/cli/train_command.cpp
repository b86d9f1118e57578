// `distill train`: train one model on a dataset (teachers, full-data baselines).
#include <ATen/ATen.h>

#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "src/cli/command.h"
#include "src/data/dataset.h"
#include "src/io/atomic_file.h"
#include "src/io/tensor_file.h"
#include "src/models/model.h"
#include "src/train/augment.h"
#include "src/train/trainer.h"

namespace distill::cli {
namespace {

struct TrainCommandOptions {
  static constexpr bool kHasPresets = false;
  config::RunOptions run;
  data::DataOptions data;
  models::ModelOptions model;
  train::TrainOptions train;
  train::AugmentOptions augment;

  TrainCommandOptions() {
    train.epochs = 10;
    train.eval_every = 1;
    train.schedule.name = "cosine";
    augment.name = "standard";
  }
  void visit(config::Visitor& v) {
    v.section("run", run);
    v.section("data", data);
    v.section("model", model);
    v.section("train", train);
    v.section("augment", augment);
  }
};


void run_train(TrainCommandOptions& o, const Invocation& invocation) {
  RunContext run = start_run(o.run, config::dump(o), invocation);
  auto [train_set, test_set, norm] = data::load_normalized(o.data);
  auto model = models::make_model(o.model, train_set.channels(), train_set.height(),
                                  train_set.num_classes);
  if (run.rank == 0) {
    std::cerr << "distill train: " << model->arch() << " (" << model->num_params()
              << " parameters) on " << train_set.size() << " images, " << o.train.epochs
              << " epochs, device " << run.device.str() << "\n";
  }
  train::Trainer trainer(*model, o.train, run.seed);
  trainer.set_augment(train::make_augment(o.augment, train_set.height()));
  trainer.set_test_set(test_set.images.to(run.device), test_set.labels.to(run.device));
  const std::string checkpoint = run.out + "/checkpoint.pt";
  trainer.set_checkpoint(checkpoint);
  trainer.set_progress("train " + model->arch(), run.progress);
  trainer.set_process_group(run.group);  // data-parallel when launched on several processes
  train::TrainState state = run.resume ? trainer.load_checkpoint(checkpoint) : trainer.init_state();
  io::MetricsLog metrics(run.out + "/metrics.jsonl",
                         run.resume ? std::optional<int64_t>(state.step) : std::nullopt,
                         run.rank == 0);
  trainer.set_metrics(&metrics);
  if (o.run.report_on_checkpoint && o.train.checkpoint_every > 0 && run.rank == 0) {
    trainer.on_epoch_end([&, every = o.train.checkpoint_every](const train::TrainState& s) {
      if (s.epoch % every == 0) std::cout << "report: " << refresh_run_report(run.out) << "\n";
    });
  }
  state.params = state.params.to(run.device);
  state.buffers = state.buffers.to(run.device);
  auto result = trainer.fit(state, train_set.images.to(run.device), train_set.labels.to(run.device));
  if (run.rank != 0) return;
  save_model_file(run.out + "/model.pt", *model, state,
                  {train_set.channels(), train_set.height(), train_set.width()});
  nlohmann::json json(result);
  io::write_file_atomic(run.out + "/results.json", json.dump(2) + "\n");
  std::cout << "test accuracy " << 100.0 * result["test_accuracy"] << " % after " << state.epoch
            << " epochs; run folder " << run.out << "\n";
  std::cout << "report: " << refresh_run_report(run.out) << "\n";
}

}  // namespace

// model.pt (declared in command.h): the flat vectors plus every tensor under its PyTorch state_dict name, so Python can
// `net.load_state_dict({k: v for k, v in torch.load(p).items() if k in net.state_dict()})`.
void save_model_file(const std::string& path, const models::Model& model,
                     const train::TrainState& state, const std::vector<int64_t>& input_shape) {
  // The weights that were scored: the EMA when the run kept one (train.ema_decay > 0).
  const at::Tensor weights = state.ema.defined() ? state.ema.cpu() : state.params.cpu();
  io::TensorDict dict = io::make_dict();
  dict.insert("arch", model.arch());
  dict.insert("params", weights);
  dict.insert("buffers", state.buffers.cpu());
  if (!input_shape.empty()) dict.insert("input_shape", at::tensor(input_shape, at::kLong));
  auto params = models::Model::unflatten(weights, model.param_specs());
  for (size_t i = 0; i < params.size(); ++i) dict.insert(model.param_specs()[i].name, params[i]);
  if (state.buffers.numel() > 0) {
    auto buffers = models::Model::unflatten(state.buffers.cpu(), model.buffer_specs());
    for (size_t i = 0; i < buffers.size(); ++i) dict.insert(model.buffer_specs()[i].name, buffers[i]);
  }
  io::save_dict(path, dict);
}

Command train_command() {
  return make_command<TrainCommandOptions>(
      "train", "train one model on a dataset (checkpoints, --resume, metrics.jsonl)",
      "distill train --set model.arch=convnet --epochs 5 --out runs/convnet",
      {{"epochs", "train.epochs"}, {"arch", "model.arch"}}, run_train);
}

}  // namespace distill::cli
