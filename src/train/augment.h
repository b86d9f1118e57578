#pragma once
#include <string>

#include "src/config/options.h"
#include "src/train/dsa_augment.h"
#include "src/train/resized_crop.h"
#include "src/train/standard_augment.h"
#include "src/train/trainer.h"

namespace distill::train {

// Which augmentation a training run applies to each batch, chosen by name.
struct AugmentOptions {
  std::string name = "dsa";
  DsaOptions dsa;
  StandardAugmentOptions standard;
  ResizedCropOptions resized_crop;

  void visit(config::Visitor& v) {
    v.choice("name", name,
             "dsa (differentiable siamese augmentation), standard (padded crop + flip), "
             "resized_crop (torchvision's RandomResizedCrop + flip, per image: the SRe2L/CV-DD "
             "post-evaluation) or none",
             {"dsa", "standard", "resized_crop", "none"});
    v.section("dsa", dsa);
    v.section("standard", standard);
    v.section("resized_crop", resized_crop);
  }
};

// The batch transformation for `options` (an empty function for "none").
AugmentFn make_augment(const AugmentOptions& options, int64_t image_size);

}  // namespace distill::train
