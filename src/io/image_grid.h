#pragma once
#include <ATen/core/Tensor.h>

#include <string>

namespace distill::io {

// A PNG grid of equal tiles (`columns` per row, a `padding`-pixel white border), filled one image
// at a time: it holds only the grid's 8-bit pixels, so a large set is never copied whole as
// floats. Images are C,H,W with values in [0,1] (clipped), C = 1 or 3.
class ImageGrid {
 public:
  ImageGrid(int64_t tiles, int64_t columns, int64_t channels, int64_t height, int64_t width,
            int64_t padding = 2);
  void place(int64_t tile, const at::Tensor& image);
  void save(const std::string& path) const;  // written atomically

 private:
  int64_t tiles_, columns_, channels_, height_, width_, padding_;
  at::Tensor pixels_;  // grid height, grid width, C; uint8
};

// Tiles images (N,C,H,W, values in [0,1], C = 1 or 3) into one PNG, `columns` per row with a
// `padding`-pixel border, and writes it atomically. Values outside [0,1] are clipped.
void save_image_grid(const std::string& path, const at::Tensor& images, int64_t columns,
                     int64_t padding = 2);

// Undoes per-channel normalization: x * std + mean, for display.
at::Tensor denormalize(const at::Tensor& images, const at::Tensor& mean, const at::Tensor& std);

}  // namespace distill::io
