#pragma once
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

#include "src/data/zca.h"

namespace distill::eval {

// A distilled (or random-real) training set as one `.pt` file that Python reads with torch.load:
//   images      float N,C,H,W, normalized like the dataset it stands for
//   labels      int64 N (class ids) or float N,K (soft labels: rows of probabilities)
//   num_classes int
//   mean, std   float C, the normalization (to display the images)
//   lr          float scalar, optional: a learned student learning rate (trajectory matching)
//   zca_eps     float scalar, optional: the images live in the ZCA-whitened space of the data
//               (data.zca with this eps); evaluation must whiten the real data the same way
//   dataset, method  strings describing where it came from
struct SyntheticSet {
  at::Tensor images;
  at::Tensor labels;
  int64_t num_classes = 0;
  at::Tensor mean;
  at::Tensor std;
  std::optional<double> lr;
  double zca_eps = 0.0;  // > 0: images are ZCA-whitened (see above)
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

// A PNG grid with one column per class, denormalized for display (and un-whitened by `zca`
// when the set lives in a ZCA space).
void save_set_grid(const std::string& path, const SyntheticSet& set,
                   const data::Zca* zca = nullptr);

}  // namespace distill::eval
