#pragma once
#include <memory>

#include "src/models/model.h"

// Constructors of each model family (one source file each); use make_model() instead.
namespace distill::models {

std::unique_ptr<Model> make_convnet(const ModelOptions& o, int64_t channels, int64_t image_size,
                                    int64_t num_classes);
std::unique_ptr<Model> make_mlp(const ModelOptions& o, int64_t channels, int64_t image_size,
                                int64_t num_classes);
std::unique_ptr<Model> make_lenet(const ModelOptions& o, int64_t channels, int64_t image_size,
                                  int64_t num_classes);
std::unique_ptr<Model> make_alexnet(const ModelOptions& o, int64_t channels, int64_t image_size,
                                    int64_t num_classes);
// o.arch: vgg11 (instance norm) or vgg11bn.
std::unique_ptr<Model> make_vgg(const ModelOptions& o, int64_t channels, int64_t image_size,
                                int64_t num_classes);
// o.arch: resnet18 (instance norm) or resnet18bn; o.stem: cifar or imagenet.
std::unique_ptr<Model> make_resnet(const ModelOptions& o, int64_t channels, int64_t image_size,
                                   int64_t num_classes);

}  // namespace distill::models
