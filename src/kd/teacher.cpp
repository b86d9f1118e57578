#include "src/kd/teacher.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <sstream>
#include <vector>

#include "src/core/error.h"
#include "src/io/tensor_file.h"
#include "src/kd/scripted_model.h"

namespace distill::kd {
namespace {

std::string shape_text(at::IntArrayRef shape) {
  std::ostringstream out;
  out << shape;
  return out.str();
}

}  // namespace

at::Tensor Teacher::forward(const at::Tensor& images, models::Features* features) const {
  at::NoGradGuard no_grad;
  models::ForwardArgs args;
  args.train = false;
  args.buffers = buffers;
  args.features = features;
  return model->forward(images, params, args);
}

at::Tensor Teacher::forward_in_batches(const at::Tensor& images, int64_t batch_size) const {
  std::vector<at::Tensor> chunks;
  for (int64_t start = 0; start < images.size(0); start += batch_size) {
    chunks.push_back(forward(images.narrow(0, start, std::min(batch_size, images.size(0) - start))));
  }
  return at::cat(chunks);
}

Teacher load_teacher(const TeacherOptions& options, int64_t channels, int64_t image_size,
                     int64_t num_classes, const std::string& file_label,
                     const std::string& model_key) {
  if (!options.checkpoint.empty() && !options.torchscript.empty()) {
    throw Error("teacher.checkpoint and teacher.torchscript are both set ('" + options.checkpoint +
                "', '" + options.torchscript + "'); set one");
  }
  if (!options.torchscript.empty()) {
    Teacher teacher;
    teacher.model = load_scripted_model(options.torchscript, channels, image_size, num_classes);
    teacher.params = at::empty({0});
    teacher.buffers = at::empty({0});
    return teacher;
  }
  const std::string& path = options.checkpoint;
  if (path.empty()) throw Error("teacher.checkpoint is empty: name a model.pt or checkpoint.pt");
  Teacher teacher;
  teacher.model = models::make_model(options.model, channels, image_size, num_classes);
  const models::Model& model = *teacher.model;
  io::TensorDict dict = io::load_dict(path);
  const std::string arch =
      dict.contains("arch") && dict.at("arch").isString() ? dict.at("arch").toStringRef() : "";
  if (arch.empty()) {
    throw Error(file_label + " '" + path +
                "' has no 'arch' entry: not a file written by "
                "`distill train` (model.pt or checkpoint.pt)");
  }
  if (arch != model.arch()) {
    throw Error(file_label + " '" + path + "' holds a '" + arch + "', but " + model_key +
                ".arch builds a '" + model.arch() + "'; set " + model_key +
                " to the settings it was trained with");
  }
  // model.pt records the input shape it was trained on (files from before it do not): a model
  // whose parameters do not depend on the image size (global pooling) would otherwise load.
  if (dict.contains("input_shape")) {
    at::Tensor shape = io::get_tensor(dict, "input_shape", path).to(at::kLong).contiguous();
    const std::vector<int64_t> want = {channels, image_size, image_size};
    if (shape.dim() != 1 || shape.numel() != 3 ||
        std::vector<int64_t>(shape.data_ptr<int64_t>(), shape.data_ptr<int64_t>() + 3) != want) {
      std::string found;
      for (int64_t i = 0; i < shape.numel(); ++i) {
        found += (i ? "x" : "") + std::to_string(shape.view({-1})[i].item<int64_t>());
      }
      throw Error(file_label + " '" + path + "' was trained on " + found + " images, the data is " +
                  std::to_string(channels) + "x" + std::to_string(image_size) + "x" +
                  std::to_string(image_size));
    }
  }
  // model.pt also stores every tensor under its state_dict name: compare shapes one by one, so a
  // class-count or width mismatch is named precisely. The classifier comes last.
  const auto& specs = model.param_specs();
  const models::TensorSpec& classifier_bias = specs.back();  // every family ends with it
  if (dict.contains(classifier_bias.name)) {
    at::Tensor saved = io::get_tensor(dict, classifier_bias.name, path);
    if (saved.dim() == 1 && saved.size(0) != num_classes) {
      throw Error(file_label + " '" + path + "' was trained for " + std::to_string(saved.size(0)) +
                  " classes (" + classifier_bias.name + " " + shape_text(saved.sizes()) +
                  "), the data has " + std::to_string(num_classes));
    }
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!dict.contains(specs[i].name)) continue;
    at::Tensor saved = io::get_tensor(dict, specs[i].name, path);
    if (saved.sizes().vec() == specs[i].shape) continue;
    throw Error(file_label + " '" + path + "': '" + specs[i].name + "' has shape " +
                shape_text(saved.sizes()) + ", " + model_key + " builds " +
                shape_text(specs[i].shape) + "; set " + model_key +
                " to the settings it was trained with");
  }
  teacher.params = io::get_tensor(dict, "params", path).to(at::kFloat).contiguous();
  if (teacher.params.dim() != 1 || teacher.params.numel() != model.num_params()) {
    throw Error(file_label + " '" + path + "' holds " + std::to_string(teacher.params.numel()) +
                " parameters, " + model_key + " ('" + model.arch() + "', " +
                std::to_string(num_classes) + " classes) has " +
                std::to_string(model.num_params()) + "; check " + model_key +
                " and the class count of the data");
  }
  teacher.buffers = dict.contains("buffers") ? io::get_tensor(dict, "buffers", path).to(at::kFloat)
                                             : at::empty({0});
  if (teacher.buffers.numel() != model.num_buffers()) {
    throw Error(file_label + " '" + path + "' holds " + std::to_string(teacher.buffers.numel()) +
                " buffer values, " + model_key + " has " + std::to_string(model.num_buffers()));
  }
  return teacher;
}

Teacher teacher_from_state(std::unique_ptr<models::Model> model, const at::Tensor& params,
                           const at::Tensor& buffers) {
  if (params.numel() != model->num_params()) {
    throw Error("teacher state has " + std::to_string(params.numel()) + " parameters, the model " +
                std::to_string(model->num_params()));
  }
  Teacher teacher;
  teacher.model = std::move(model);
  teacher.params = params.detach().clone();
  teacher.buffers = buffers.defined() ? buffers.detach().clone() : at::empty({0});
  return teacher;
}

}  // namespace distill::kd
