// Run folders written by hand for the report tests (no LibTorch needed).
#pragma once
#include <stb_image_write.h>

#include <filesystem>
#include <string>

#include "tests/support/test_support.h"

namespace distill::report::fixture {

// A real PNG (stb's encoder, as the project's grids use) of a colour ramp.
inline std::string tiny_png(int width, int height) {
  std::string pixels(static_cast<size_t>(width * height * 3), '\0');
  for (int i = 0; i < width * height; ++i) {
    pixels[3 * i] = static_cast<char>(255 * (i % width) / width);
    pixels[3 * i + 1] = static_cast<char>(255 * (i / width) / height);
    pixels[3 * i + 2] = static_cast<char>(128);
  }
  std::string png;
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), size);
  };
  stbi_write_png_to_func(append, &png, width, height, 3, pixels.data(), width * 3);
  return png;
}

inline void write(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  testing::write_bytes(path, bytes);
}

// `distill eval`'s results.json layout (src/eval/evaluator.cpp scores_json).
inline const char* kEvalResults = R"({
  "protocol": "dc", "eval_every": 100,
  "results": [
    {"set": "runs/mtt/syn.pt", "model": "convnet", "ipc": 10, "runs": 5,
     "last_accuracy": [0.71, 0.72], "best_accuracy": [0.73, 0.74],
     "last_mean": 0.73874, "last_std": 0.019649, "best_mean": 0.745},
    {"set": "random-real", "model": "convnet", "ipc": 0, "runs": 2,
     "last_accuracy": [0.5], "best_accuracy": [0.5],
     "last_mean": 0.5043, "last_std": 0.0558, "best_mean": 0.51}
  ]
})";

}  // namespace distill::report::fixture
