#pragma once
#include <string>

#include "src/data/dataset.h"

namespace distill::data {

// IDX files of the MNIST family (gzip-compressed or raw): `images_path` holds magic 0x00000803
// (uint8, N,H,W), `labels_path` magic 0x00000801 (uint8, N). Images become N,1,H,W in [0,1].
Dataset read_idx(const std::string& images_path, const std::string& labels_path);

// The folder layout Debian's dataset-fashion-mnist ships (and MNIST's):
// {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].
TrainTestSplit read_idx_folder(const std::string& folder);

// CIFAR binary version: records of <label byte><3072 bytes R,G,B planes>, 10000 per file.
// CIFAR-10: data_batch_{1..5}.bin + test_batch.bin; CIFAR-100: train.bin + test.bin with records
// <coarse><fine><3072 bytes>, fine labels are used. The folder may also be the archive's
// cifar-10-batches-bin / cifar-100-binary sub-folder.
TrainTestSplit read_cifar10(const std::string& folder);
TrainTestSplit read_cifar100(const std::string& folder);

// folder/train/<class>/* and folder/test/<class>/* (PNG, JPEG, BMP, ...), classes sorted by name,
// resized to size x size with `channels` 1 or 3. Without a test/ folder, test is empty.
TrainTestSplit read_image_folder(const std::string& folder, int64_t size, int64_t channels);

// A .pt dict (torch.save or this project) with "images" (N,C,H,W float in [0,1] or uint8) and
// "labels" (N int), optional "test_images"/"test_labels" and "num_classes".
TrainTestSplit read_tensor_file(const std::string& path);

}  // namespace distill::data
