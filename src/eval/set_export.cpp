#include "src/eval/set_export.h"

#include <ATen/ATen.h>

#include <filesystem>

#include "src/core/error.h"
#include "src/io/atomic_file.h"
#include "src/io/image_grid.h"

namespace distill::eval {
namespace {

std::string zero_padded(int64_t value, int64_t count) {
  const size_t width = std::to_string(std::max<int64_t>(0, count - 1)).size();
  std::string text = std::to_string(value);
  return std::string(width > text.size() ? width - text.size() : 0, '0') + text;
}

}  // namespace

std::vector<std::string> export_image_folder(const SyntheticSet& set, const std::string& dir,
                                             const data::Zca* zca) {
  const int64_t channels = set.images.size(1);
  if (channels != 1 && channels != 3) {
    throw Error("image-folder export to '" + dir + "': PNG needs 1 or 3 channels, the set has " +
                std::to_string(channels));
  }
  at::Tensor images = set.images.detach().cpu();
  if (set.zca_eps > 0) {
    if (!zca || !zca->fitted()) {
      throw Error("image-folder export to '" + dir + "': the set is ZCA-whitened (zca_eps " +
                  std::to_string(set.zca_eps) +
                  "); export it with the data settings it was made with (data.zca = true)");
    }
    images = zca->inverse(images);
  }
  images = io::denormalize(images, set.mean, set.std);
  const int64_t classes = std::max<int64_t>(1, set.num_classes);
  at::Tensor ids = set.class_ids().to(at::kCPU, at::kLong);
  at::Tensor counts = at::bincount(ids, {}, classes);
  std::vector<std::string> names;
  for (int64_t c = 0; c < classes; ++c) {
    names.push_back(zero_padded(c, classes));
    io::make_dirs(dir + "/train/" + names.back());
  }
  std::vector<int64_t> next(classes, 0);
  for (int64_t i = 0; i < images.size(0); ++i) {
    const int64_t c = ids[i].item<int64_t>();
    const std::string file = dir + "/train/" + names[c] + "/" +
                             zero_padded(next[c]++, counts[c].item<int64_t>()) + ".png";
    io::save_image_grid(file, images.narrow(0, i, 1), 1, /*padding=*/0);
  }
  return names;
}

}  // namespace distill::eval
