#pragma once
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <utility>

#include "src/data/zca.h"
#include "src/train/resized_crop.h"

namespace distill::eval {

// A distilled (or random-real) training set as one `.pt` file that Python reads with torch.load:
//   images      float N,C,H,W, normalized like the dataset it stands for
//   labels      int64 N (class ids) or float N,K (soft labels: rows of probabilities)
//   num_classes int
//   mean, std   float C, the normalization (to display the images)
//   lr          float scalar, optional: a learned student learning rate (trajectory matching)
//   label_temperature  float scalar, optional: the temperature the soft labels were made at
//               (committee relabel); students are trained with KL at that temperature
//   zca_eps     float scalar, optional: the images live in the ZCA-whitened space of the data
//               (data.zca with this eps); evaluation must whiten the real data the same way
//   dataset, method  strings describing where it came from
//   view_boxes  int64 N,V,5, optional: V stored augmentations per image (FKD-style), each a
//               crop (top, left, height, width) resized back to H,W, then a flip when the 5th is 1
//   view_labels float N,V,K, optional with view_boxes: the soft label of each stored view
//   classes     int64 N, optional: the class each image stands for, kept when its labels became
//               soft (committee relabel), so grids and exports follow it rather than the argmax
//   label_form  string, optional: "logits" when the N,K labels are logits, not probabilities
//               (INFER's interpolated labels: batch mixing blends the logits and the student's
//               target is softmax(logits / label_temperature)); absent = probabilities
struct SyntheticSet {
  at::Tensor images;
  at::Tensor labels;
  int64_t num_classes = 0;
  at::Tensor mean;
  at::Tensor std;
  std::optional<double> lr;
  std::optional<double> label_temperature;
  double zca_eps = 0.0;  // > 0: images are ZCA-whitened (see above)
  std::string dataset;
  std::string method;
  at::Tensor view_boxes;
  at::Tensor view_labels;
  at::Tensor classes;
  bool labels_are_logits = false;  // label_form "logits" (see above)

  bool soft_labels() const { return labels.dim() == 2; }
  bool has_views() const { return view_boxes.defined() && view_boxes.numel() > 0; }
  // Images per class (hard labels: the largest class count; soft labels: ceil(N / classes)).
  int64_t images_per_class() const;
  // Class ids: `classes` when the set records them, else the labels or the argmax of soft labels.
  at::Tensor class_ids() const;
};

void save_synthetic_set(const std::string& path, const SyntheticSet& set);
// Error naming the file and key on any missing or inconsistent field.
SyntheticSet load_synthetic_set(const std::string& path);

// Crops x (N,C,H,W) to boxes (N,5: top, left, height, width, flip) and resizes them back
// (src/train/resized_crop.h).
using train::crop_resize_flip;

// FKD-style replay: the images at `index` as their stored view number epoch % V shows them, and
// that view's soft labels (Error when the set has no views).
std::pair<at::Tensor, at::Tensor> replay_views(const SyntheticSet& set, const at::Tensor& index,
                                               int64_t epoch);

// A PNG grid with one column per class (the image's own class, class_ids()), denormalized for
// display (and un-whitened by `zca` when the set lives in a ZCA space).
void save_set_grid(const std::string& path, const SyntheticSet& set,
                   const data::Zca* zca = nullptr);

}  // namespace distill::eval
