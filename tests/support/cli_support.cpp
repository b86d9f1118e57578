#include "tests/support/cli_support.h"

#include <ATen/ATen.h>

#include "src/core/runtime.h"
#include "src/io/tensor_file.h"

namespace distill::testing {

CommandResult distill_cli(const std::string& args) {
  return run_command(distill_binary() + " " + args);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string write_tiny_dataset(const TempDir& dir, int64_t classes, int64_t band_rows) {
  at::Generator gen = make_generator(9);
  auto make = [&](int64_t n) {
    at::Tensor labels = at::arange(n, at::kLong).remainder(classes);
    at::Tensor images = at::rand({n, 1, 8, 8}, gen) * 0.3;
    for (int64_t i = 0; i < n; ++i) {
      images[i][0].narrow(0, labels[i].item<int64_t>() * 2, band_rows).add_(0.7);
    }
    return std::make_pair(images.clamp(0, 1), labels);
  };
  auto [train_images, train_labels] = make(60);
  auto [test_images, test_labels] = make(30);
  io::TensorDict dict = io::make_dict();
  dict.insert("images", train_images);
  dict.insert("labels", train_labels);
  dict.insert("test_images", test_images);
  dict.insert("test_labels", test_labels);
  std::string path = dir.file("tiny" + std::to_string(classes) + ".pt");
  io::save_dict(path, dict);
  return path;
}

std::string tiny_flags(const std::string& data) {
  return "--set data.format=tensor --set data.path=" + data +
         " --set data.name=tiny --threads 1 --no-progress ";
}

}  // namespace distill::testing
