#pragma once
#include <ATen/core/Tensor.h>

#include <string>

namespace distill::io {

// Tiles images (N,C,H,W, values in [0,1], C = 1 or 3) into one PNG, `columns` per row with a
// `padding`-pixel border, and writes it atomically. Values outside [0,1] are clipped.
void save_image_grid(const std::string& path, const at::Tensor& images, int64_t columns,
                     int64_t padding = 2);

// Undoes per-channel normalization: x * std + mean, for display.
at::Tensor denormalize(const at::Tensor& images, const at::Tensor& mean, const at::Tensor& std);

}  // namespace distill::io
