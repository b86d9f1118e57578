#include "src/io/image_grid.h"

#include <ATen/ATen.h>
#include <stb_image_write.h>

#include <sstream>

#include "src/core/error.h"
#include "src/io/atomic_file.h"

namespace distill::io {
namespace {

std::string shape_text(const at::Tensor& t) {
  std::ostringstream shape;
  shape << t.sizes();
  return shape.str();
}

}  // namespace

at::Tensor denormalize(const at::Tensor& images, const at::Tensor& mean, const at::Tensor& std) {
  auto shape = std::vector<int64_t>{1, -1, 1, 1};
  return images * std.to(images.options()).view(shape) + mean.to(images.options()).view(shape);
}

ImageGrid::ImageGrid(int64_t tiles, int64_t columns, int64_t channels, int64_t height,
                     int64_t width, int64_t padding)
    : tiles_(tiles),
      columns_(std::max<int64_t>(1, std::min(columns, tiles))),
      channels_(channels),
      height_(height),
      width_(width),
      padding_(padding) {
  if (tiles < 1) throw Error("image grid: no images to write");
  if (channels != 1 && channels != 3) {
    throw Error("image grid: expected 1 or 3 channels, found " + std::to_string(channels));
  }
  const int64_t rows = (tiles + columns_ - 1) / columns_;
  pixels_ = at::full(
      {rows * (height + padding) + padding, columns_ * (width + padding) + padding, channels}, 255,
      at::kByte);
}

void ImageGrid::place(int64_t tile, const at::Tensor& image) {
  if (tile < 0 || tile >= tiles_ || image.dim() != 3 || image.size(0) != channels_ ||
      image.size(1) != height_ || image.size(2) != width_) {
    throw Error("image grid: tile " + std::to_string(tile) + " of " + std::to_string(tiles_) +
                " expects an image of " + std::to_string(channels_) + "x" +
                std::to_string(height_) + "x" + std::to_string(width_) + ", found " +
                shape_text(image));
  }
  const int64_t top = padding_ + (tile / columns_) * (height_ + padding_);
  const int64_t left = padding_ + (tile % columns_) * (width_ + padding_);
  at::Tensor bytes = (image.detach().to(at::kCPU, at::kFloat).clamp(0, 1) * 255.0f + 0.5f)
                         .to(at::kByte)
                         .permute({1, 2, 0});
  pixels_.narrow(0, top, height_).narrow(1, left, width_).copy_(bytes);
}

void ImageGrid::save(const std::string& path) const {
  std::string png;
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), size);
  };
  const int64_t grid_h = pixels_.size(0), grid_w = pixels_.size(1);
  int ok = stbi_write_png_to_func(append, &png, static_cast<int>(grid_w), static_cast<int>(grid_h),
                                  static_cast<int>(channels_), pixels_.data_ptr<uint8_t>(),
                                  static_cast<int>(grid_w * channels_));
  if (!ok) throw RuntimeFailure("image grid '" + path + "': PNG encoding failed");
  write_file_atomic(path, png);
}

void save_image_grid(const std::string& path, const at::Tensor& images, int64_t columns,
                     int64_t padding) {
  if (images.dim() != 4 || (images.size(1) != 1 && images.size(1) != 3)) {
    throw Error("image grid '" + path + "': expected images shaped N,C,H,W with C 1 or 3, found " +
                shape_text(images));
  }
  if (images.size(0) == 0) throw Error("image grid '" + path + "': no images to write");
  ImageGrid grid(images.size(0), columns, images.size(1), images.size(2), images.size(3), padding);
  for (int64_t i = 0; i < images.size(0); ++i) grid.place(i, images[i]);
  grid.save(path);
}

}  // namespace distill::io
