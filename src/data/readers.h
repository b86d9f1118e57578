#pragma once
#include <string>
#include <vector>

#include "src/data/dataset.h"

namespace distill::data {

// IDX files of the MNIST family (gzip-compressed or raw): `images_path` holds magic 0x00000803
// (uint8, N,H,W), `labels_path` magic 0x00000801 (uint8, N). Images become N,1,H,W in [0,1].
// Labels must lie in [0, num_classes) (10 for MNIST and Fashion-MNIST; EMNIST splits have more).
// Class names are "0", "1", ...
Dataset read_idx(const std::string& images_path, const std::string& labels_path,
                 int64_t num_classes = 10);

// The folder layout Debian's dataset-fashion-mnist ships (and MNIST's):
// {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].
TrainTestSplit read_idx_folder(const std::string& folder, int64_t num_classes = 10);

// CIFAR binary version: records of <label byte><3072 bytes R,G,B planes>, 10000 per file.
// CIFAR-10: data_batch_{1..5}.bin + test_batch.bin; CIFAR-100: train.bin + test.bin with records
// <coarse><fine><3072 bytes>, fine labels are used. The folder may also be the archive's
// cifar-10-batches-bin / cifar-100-binary sub-folder.
TrainTestSplit read_cifar10(const std::string& folder);
TrainTestSplit read_cifar100(const std::string& folder);

// folder/train/<class>/* and folder/test/<class>/* (PNG, JPEG, BMP, ...), classes sorted by name,
// resized to size x size with `channels` 1 or 3. Without a test/ folder, test is empty.
// Shrinking averages over each output pixel's area (torch's mode="area"), enlarging is bilinear
// (align_corners=False), so a 2x downscale gives exact 2x2 block means. Files and folders whose
// name starts with '.' are ignored.
TrainTestSplit read_image_folder(const std::string& folder, int64_t size, int64_t channels);

// One split on its own: folder/<class>/* (classes sorted by name), read like read_image_folder's
// splits. Distilled sets saved as images by the Python reference code (SRe2L, CV-DD) look so.
Dataset read_class_folders(const std::string& folder, int64_t size, int64_t channels);

// A .pt dict (torch.save or this project) with "images" (N,C,H,W float in [0,1] or uint8) and
// "labels" (N int), optional "test_images"/"test_labels", "num_classes" (else max label + 1)
// and "class_names" (list of strings). N,H,W images get a channel dimension.
TrainTestSplit read_tensor_file(const std::string& path);

// "0", "1", ..., for readers whose format carries no class names.
std::vector<std::string> numbered_class_names(int64_t num_classes);

}  // namespace distill::data
