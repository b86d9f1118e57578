#include "src/io/image_grid.h"

#include <ATen/ATen.h>
#include <stb_image_write.h>

#include "src/core/error.h"
#include "src/io/atomic_file.h"

namespace distill::io {

at::Tensor denormalize(const at::Tensor& images, const at::Tensor& mean, const at::Tensor& std) {
  auto shape = std::vector<int64_t>{1, -1, 1, 1};
  return images * std.to(images.options()).view(shape) + mean.to(images.options()).view(shape);
}

void save_image_grid(const std::string& path, const at::Tensor& images, int64_t columns,
                     int64_t padding) {
  if (images.dim() != 4 || (images.size(1) != 1 && images.size(1) != 3)) {
    throw Error("image grid '" + path + "': expected images shaped N,C,H,W with C 1 or 3, found " +
                std::to_string(images.dim()) + " dims");
  }
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  if (n == 0) throw Error("image grid '" + path + "': no images to write");
  columns = std::max<int64_t>(1, std::min(columns, n));
  const int64_t rows = (n + columns - 1) / columns;
  const int64_t grid_h = rows * (h + padding) + padding, grid_w = columns * (w + padding) + padding;
  at::Tensor pixels = (images.detach().to(at::kCPU, at::kFloat).clamp(0, 1) * 255.0f + 0.5f)
                          .to(at::kByte)
                          .permute({0, 2, 3, 1})
                          .contiguous();
  at::Tensor grid = at::full({grid_h, grid_w, c}, 255, at::kByte);
  for (int64_t i = 0; i < n; ++i) {
    int64_t top = padding + (i / columns) * (h + padding);
    int64_t left = padding + (i % columns) * (w + padding);
    grid.narrow(0, top, h).narrow(1, left, w).copy_(pixels[i]);
  }
  std::string png;
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), size);
  };
  int ok = stbi_write_png_to_func(append, &png, static_cast<int>(grid_w), static_cast<int>(grid_h),
                                  static_cast<int>(c), grid.data_ptr<uint8_t>(),
                                  static_cast<int>(grid_w * c));
  if (!ok) throw RuntimeFailure("image grid '" + path + "': PNG encoding failed");
  write_file_atomic(path, png);
}

}  // namespace distill::io
