#pragma once
#include <string>

#include "src/config/options.h"
#include "src/train/dsa_augment.h"
#include "src/train/standard_augment.h"
#include "src/train/trainer.h"

namespace distill::train {

// Which augmentation a training run applies to each batch, chosen by name.
struct AugmentOptions {
  std::string name = "dsa";
  DsaOptions dsa;
  StandardAugmentOptions standard;

  void visit(config::Visitor& v) {
    v.choice("name", name, "dsa (differentiable siamese augmentation), standard (crop + flip) or none",
             {"dsa", "standard", "none"});
    v.section("dsa", dsa);
    v.section("standard", standard);
  }
};

// The batch transformation for `options` (an empty function for "none").
AugmentFn make_augment(const AugmentOptions& options, int64_t image_size);

}  // namespace distill::train
