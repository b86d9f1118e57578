#pragma once
#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "src/models/model.h"
#include "src/train/trainer.h"

namespace distill::train {

// K students of one architecture trained together in one pass (eval.batch_students): their flat
// parameters stacked [K, P], the model run on the stacked batch (grouped convolutions, batched
// matrix products: models::Model::forward), one backward pass for the sum of the K losses.
// Each student keeps everything it has when trained alone by a Trainer of its seed: its
// initialisation, epoch orders, augmentation and mixing draws (drawn by that Trainer), optimizer
// state, learning rate and batch-norm statistics. It computes what the lone student computes,
// up to float rounding of the grouped kernels (tests/src/train/stacked_trainer_test.cpp).
//
// Why: students of the DC/MTT protocol train on 10-500 images; at those sizes a CPU (and more so
// a GPU) runs one small model's kernels far below its throughput, and K models in one kernel
// come close to one model on a K-times larger batch.
class StackedTrainer {
 public:
  struct Student {
    uint64_t seed = 0;
    at::Tensor images;   // N,C,H,W; the same N for every student
    at::Tensor targets;  // class ids or soft labels
  };

  // The Trainer settings a stacked run cannot reproduce ("" when it can): what the caller then
  // trains one student at a time.
  static std::string unsupported(const TrainOptions& options, const models::ModelOptions& model);

  StackedTrainer(const models::Model& model, TrainOptions options, std::vector<Student> students);

  // Per-student draws and batch sources, as the lone Trainer's setters.
  void set_augment(AugmentFn augment);
  void set_batch_mix(Trainer::BatchMixFn mix);
  void set_batch_source(Trainer::BatchSource source);
  void set_test_set(const at::Tensor& images, const at::Tensor& labels);
  void set_progress(const std::string& label, bool enabled) {
    progress_label_ = label;
    progress_enabled_ = enabled;
  }

  // Trains all students for options.epochs. Returns, per student, the final metrics a lone
  // Trainer::fit returns (train_loss, train_accuracy, lr, test_accuracy, test_loss,
  // best_test_accuracy, epoch). Throws RuntimeFailure on a non-finite loss (naming the student)
  // and Interrupted on Ctrl-C (no checkpoint: students are short and are trained again).
  std::vector<std::map<std::string, double>> fit();

  // Test accuracy and loss of the K stacked students ([K, P] params, [K, B] buffers) in eval
  // mode, what train::evaluate gives for each.
  static std::vector<EvalResult> evaluate(const models::Model& model, const at::Tensor& params,
                                          const at::Tensor& buffers, const at::Tensor& images,
                                          const at::Tensor& labels, int64_t batch_size = 500);

  // Per student, as Trainer::test_confusion() and test_curve() of the lone student.
  const std::vector<at::Tensor>& test_confusions() const { return test_confusions_; }
  const std::vector<TestCurve>& test_curves() const { return test_curves_; }

  // The stacked state, for tests: [K, P] parameters and [K, B] buffers.
  const at::Tensor& params() const { return params_; }
  const at::Tensor& buffers() const { return buffers_; }

 private:
  void step(int64_t epoch, int64_t batch, int64_t batches, const std::vector<at::Tensor>& orders);
  void end_epoch(int64_t epoch, int64_t batches);

  const models::Model& model_;
  TrainOptions options_;
  std::vector<Student> students_;
  std::vector<std::unique_ptr<Trainer>> lanes_;  // each student's own draws
  std::vector<std::unique_ptr<Optimizer>> optimizers_;
  at::Tensor params_, buffers_;
  at::Tensor test_images_, test_labels_;
  std::string progress_label_ = "students";
  bool progress_enabled_ = true;
  int64_t step_ = 0;
  std::vector<EpochSums> sums_;
  std::vector<std::map<std::string, double>> results_;
  std::vector<double> best_test_;
  std::vector<at::Tensor> test_confusions_;
  std::vector<TestCurve> test_curves_;
};

}  // namespace distill::train
