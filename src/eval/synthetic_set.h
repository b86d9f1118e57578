#pragma once
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

namespace distill::eval {

// A distilled (or random-real) training set as one `.pt` file that Python reads with torch.load:
//   images      float N,C,H,W, normalized like the dataset it stands for
//   labels      int64 N (class ids) or float N,K (soft labels: rows of probabilities)
//   num_classes int
//   mean, std   float C, the normalization (to display the images)
//   lr          float scalar, optional: a learned student learning rate (trajectory matching)
//   dataset, method  strings describing where it came from
struct SyntheticSet {
  at::Tensor images;
  at::Tensor labels;
  int64_t num_classes = 0;
  at::Tensor mean;
  at::Tensor std;
  std::optional<double> lr;
  std::string dataset;
  std::string method;

  bool soft_labels() const { return labels.dim() == 2; }
  // Images per class (for hard labels: the largest class count).
  int64_t images_per_class() const;
  // Class ids: the labels, or the argmax of soft labels.
  at::Tensor class_ids() const;
};

void save_synthetic_set(const std::string& path, const SyntheticSet& set);
// Error naming the file and key on any missing or inconsistent field.
SyntheticSet load_synthetic_set(const std::string& path);

// A PNG grid with one row per class (images sorted by class), denormalized for display.
void save_set_grid(const std::string& path, const SyntheticSet& set);

}  // namespace distill::eval
