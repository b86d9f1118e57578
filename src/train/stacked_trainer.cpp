#include "src/train/stacked_trainer.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/io/progress.h"

namespace distill::train {

std::string StackedTrainer::unsupported(const TrainOptions& options,
                                        const models::ModelOptions& model) {
  if (options.ema_decay > 0) return "train.ema_decay > 0";
  if (options.precision != "fp32") return "train.precision = " + options.precision;
  if (options.channels_last) return "train.channels_last = true";
  if (model.arch == "mlp" && (model.dropout > 0 || model.input_dropout > 0)) {
    return "an mlp with dropout (masks are drawn per student)";
  }
  return "";
}

StackedTrainer::StackedTrainer(const models::Model& model, TrainOptions options,
                               std::vector<Student> students)
    : model_(model), options_(std::move(options)), students_(std::move(students)) {
  if (students_.empty()) throw Error("stacked students: no students");
  const std::string reason = unsupported(options_, models::ModelOptions{});
  if (!reason.empty()) throw Error("stacked students cannot reproduce " + reason);
  const int64_t n = students_[0].images.size(0);
  std::vector<at::Tensor> params, buffers;
  for (const Student& s : students_) {
    if (s.images.size(0) != n || s.images.sizes() != students_[0].images.sizes()) {
      throw Error("stacked students need training sets of one shape, found " +
                  std::to_string(s.images.size(0)) + " and " + std::to_string(n) + " images");
    }
    lanes_.push_back(std::make_unique<Trainer>(model_, options_, s.seed));
    optimizers_.push_back(Optimizer::make(options_.optimizer));
    TrainState state = lanes_.back()->init_state();
    params.push_back(state.params.to(s.images.device()));
    buffers.push_back(state.buffers.to(s.images.device()));
  }
  params_ = at::stack(params);
  buffers_ = at::stack(buffers);
  sums_.resize(students_.size());
  results_.resize(students_.size());
  best_test_.assign(students_.size(), 0.0);
  test_confusions_.resize(students_.size());
  test_curves_.resize(students_.size());
}

void StackedTrainer::set_augment(AugmentFn augment) {
  for (auto& lane : lanes_) lane->set_augment(augment);
}

void StackedTrainer::set_batch_mix(Trainer::BatchMixFn mix) {
  for (auto& lane : lanes_) lane->set_batch_mix(mix);
}

void StackedTrainer::set_batch_source(Trainer::BatchSource source) {
  for (auto& lane : lanes_) lane->set_batch_source(source);
}

void StackedTrainer::set_test_set(const at::Tensor& images, const at::Tensor& labels) {
  lanes_.front()->set_test_set(images, labels);  // the lone trainer's checks (an empty split)
  test_images_ = images;
  test_labels_ = labels;
}

std::vector<std::map<std::string, double>> StackedTrainer::fit() {
  const int64_t n = students_[0].images.size(0);
  if (n == 0) throw Error("training set is empty");
  const int64_t batch_size = std::min(options_.batch_size, n);
  const int64_t batches = (n + batch_size - 1) / batch_size;
  io::Progress progress(progress_label_, options_.epochs * batches, 0, progress_enabled_);
  for (int64_t epoch = 0; epoch < options_.epochs; ++epoch) {
    std::vector<at::Tensor> orders;
    for (size_t k = 0; k < students_.size(); ++k) {
      orders.push_back(lanes_[k]->epoch_order(epoch, n, students_[k].images.device()));
    }
    for (auto& sums : sums_) sums = EpochSums{};
    for (int64_t b = 0; b < batches; ++b) {
      step(epoch, b, batches, orders);
      double loss = 0;
      for (const auto& sums : sums_) loss += sums.loss_sum / static_cast<double>(sums.seen);
      progress.update(epoch * batches + b + 1,
                      "mean loss " +
                          std::to_string(loss / static_cast<double>(sums_.size())).substr(0, 6));
      if (interrupt_requested()) {
        throw Interrupted("interrupted at step " + std::to_string(step_) + " of " +
                          std::to_string(students_.size()) + " stacked students");
      }
    }
    end_epoch(epoch, batches);
  }
  progress.finish();
  return results_;
}

void StackedTrainer::step(int64_t epoch, int64_t batch, int64_t batches,
                          const std::vector<at::Tensor>& orders) {
  const int64_t k_count = static_cast<int64_t>(students_.size());
  const int64_t batch_size = std::min(options_.batch_size, students_[0].images.size(0));
  std::vector<at::Tensor> inputs, targets;
  for (int64_t k = 0; k < k_count; ++k) {
    Trainer::DrawnBatch drawn = lanes_[k]->draw_batch(
        students_[k].images, students_[k].targets, orders[k], batch, batch_size, epoch, step_);
    inputs.push_back(drawn.x);
    targets.push_back(drawn.y);
  }
  at::Tensor params = params_.detach().requires_grad_(true);
  models::ForwardArgs args;
  args.train = true;
  args.buffers = buffers_;
  const at::Tensor logits = models::unstack_student_logits(
      model_.forward(models::stack_student_inputs(inputs), params, args), k_count);
  // The sum of the students' mean losses: student k's parameters get exactly its own gradient.
  std::vector<at::Tensor> losses;
  for (int64_t k = 0; k < k_count; ++k) {
    losses.push_back(classification_loss(logits[k], targets[k], options_.label_temperature,
                                         options_.soft_targets == "logits"));
  }
  const at::Tensor loss_values = at::stack(losses);
  const at::Tensor grads = torch::autograd::grad({loss_values.sum()}, {params})[0];
  const at::Tensor values = loss_values.detach().to(at::kDouble).cpu();
  const double lr = Trainer::learning_rate(options_, epoch, batch, batches);
  at::NoGradGuard no_grad;
  for (int64_t k = 0; k < k_count; ++k) {
    const double loss = values[k].item<double>();
    if (!std::isfinite(loss)) {
      throw RuntimeFailure("training loss of stacked student " + std::to_string(k + 1) + " of " +
                           std::to_string(k_count) + " (seed " + std::to_string(students_[k].seed) +
                           ") became " + std::to_string(loss) + " at step " +
                           std::to_string(step_) + " (epoch " + std::to_string(epoch) + ", lr " +
                           std::to_string(lr) + ")");
    }
    at::Tensor row = params_[k];  // a view: the optimizer updates it in place
    optimizers_[k]->step(row, grads[k], lr);
    const at::Tensor& y = targets[k];
    const at::Tensor truth = y.dim() == 2 ? y.argmax(1) : y;
    EpochSums& sums = sums_[k];
    const int64_t count = inputs[k].size(0);
    sums.loss_sum += loss * static_cast<double>(count);
    sums.seen += count;
    sums.correct += logits[k].argmax(1).eq(truth).sum().item<int64_t>();
  }
  ++step_;
}

void StackedTrainer::end_epoch(int64_t epoch, int64_t batches) {
  const int64_t done = epoch + 1;
  const bool last = done == options_.epochs;
  const bool eval_now = options_.eval_every > 0 && done % options_.eval_every == 0;
  std::vector<EvalResult> test;
  if (test_images_.defined() && (eval_now || last)) {
    // K students see each test image at once: batches K times smaller hold the memory of a lone
    // student's evaluation (the accuracies are the same; the loss adds other batch means).
    const int64_t rows = std::max<int64_t>(1, 500 / static_cast<int64_t>(students_.size()));
    test = evaluate(model_, params_, buffers_, test_images_, test_labels_, rows);
  }
  for (size_t k = 0; k < students_.size(); ++k) {
    std::map<std::string, double>& metrics = results_[k];
    const EpochSums& sums = sums_[k];
    metrics["train_loss"] = sums.loss_sum / static_cast<double>(sums.seen);
    metrics["train_accuracy"] =
        static_cast<double>(sums.correct) / static_cast<double>(sums.seen);
    // What the lone Trainer logs: the rate at the start of the next epoch.
    metrics["lr"] = Trainer::learning_rate(options_, done, 0, batches);
    if (!test.empty()) {
      metrics["test_accuracy"] = test[k].accuracy;
      metrics["test_loss"] = test[k].loss;
      best_test_[k] = std::max(best_test_[k], test[k].accuracy);
      test_confusions_[k] = test[k].confusion;
      test_curves_[k].emplace_back(done, test[k].accuracy);
      metrics["best_test_accuracy"] = best_test_[k];
    }
    metrics["epoch"] = static_cast<double>(done);
  }
}

std::vector<EvalResult> StackedTrainer::evaluate(const models::Model& model,
                                                 const at::Tensor& params,
                                                 const at::Tensor& buffers,
                                                 const at::Tensor& images, const at::Tensor& labels,
                                                 int64_t batch_size) {
  at::NoGradGuard no_grad;
  const int64_t k_count = params.size(0);
  const int64_t n = images.size(0);
  std::vector<EvalResult> results(k_count);
  if (n == 0) return results;
  std::vector<double> loss_sums(k_count, 0.0);
  std::vector<int64_t> correct(k_count, 0);
  models::ForwardArgs args;
  args.buffers = buffers;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t count = std::min(batch_size, n - start);
    const at::Tensor x = images.narrow(0, start, count);
    const at::Tensor y = labels.narrow(0, start, count);
    const at::Tensor logits = models::unstack_student_logits(
        model.forward(models::repeat_for_students(x, k_count), params.detach(), args), k_count);
    for (int64_t k = 0; k < k_count; ++k) {
      loss_sums[k] +=
          at::cross_entropy_loss(logits[k], y).item<double>() * static_cast<double>(count);
      const at::Tensor predicted = logits[k].argmax(1);
      correct[k] += predicted.eq(y).sum().item<int64_t>();
      add_confusion(results[k].confusion, y, predicted, logits.size(2));
    }
  }
  for (int64_t k = 0; k < k_count; ++k) {
    results[k].accuracy = static_cast<double>(correct[k]) / static_cast<double>(n);
    results[k].loss = loss_sums[k] / static_cast<double>(n);
  }
  return results;
}

}  // namespace distill::train
