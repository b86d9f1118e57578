#pragma once
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

#include "src/config/options.h"
#include "src/models/model.h"

namespace distill::kd {

// Where a frozen teacher comes from: a `distill train` model.pt or checkpoint.pt, plus the model
// settings it was trained with (checked against the file before any training).
struct TeacherOptions {
  std::string checkpoint;
  std::string torchscript;
  models::ModelOptions model;

  void visit(config::Visitor& v) {
    v.field("checkpoint", checkpoint,
            "teacher weights: model.pt or checkpoint.pt written by `distill train` (empty = none)");
    v.field("torchscript", torchscript,
            "or a TorchScript teacher saved by Python (torch.jit.script(m).save(path)): "
            "forward(images) -> logits; response-based losses only");
    v.section("model", model);
  }
  bool configured() const { return !checkpoint.empty() || !torchscript.empty(); }
};

// A frozen model: evaluated in eval mode, never updated.
struct Teacher {
  std::unique_ptr<models::Model> model;
  at::Tensor params;
  at::Tensor buffers;

  // Logits (and the named features when `features` is set) without autograd.
  at::Tensor forward(const at::Tensor& images, models::Features* features = nullptr) const;
  // The logits of a whole image set, computed `batch_size` images at a time.
  at::Tensor forward_in_batches(const at::Tensor& images, int64_t batch_size = 500) const;
};

// Builds the configured architecture for the data's shape and loads the file into it (or loads
// the TorchScript module). Errors (before training) name the file and say what differs: another
// architecture, another class count (the classifier's shape), or another parameter count.
// `file_label` and `model_key` are how those messages name the file and the model settings (other
// commands load classifiers too: `distill diffusion score`).
Teacher load_teacher(const TeacherOptions& options, int64_t channels, int64_t image_size,
                     int64_t num_classes, const std::string& file_label = "teacher checkpoint",
                     const std::string& model_key = "teacher.model");

// The same checks and loading for an existing model (born-again generations).
Teacher teacher_from_state(std::unique_ptr<models::Model> model, const at::Tensor& params,
                           const at::Tensor& buffers);

}  // namespace distill::kd
