#include "src/train/augment.h"

#include "src/core/error.h"

namespace distill::train {

AugmentFn make_augment(const AugmentOptions& options, int64_t image_size) {
  if (options.name == "none") return {};
  if (options.name == "dsa") {
    DsaAugment dsa(options.dsa);
    if (!dsa.enabled()) return {};
    return [dsa](const at::Tensor& x, at::Generator& generator) { return dsa(x, generator); };
  }
  if (options.name == "standard") {
    StandardAugment standard(options.standard);
    return [standard](const at::Tensor& x, at::Generator& generator) {
      return standard(x, generator);
    };
  }
  if (options.name == "resized_crop") {
    ResizedCropAugment crop(options.resized_crop);
    return [crop](const at::Tensor& x, at::Generator& generator) { return crop(x, generator); };
  }
  throw Error("augment.name: unknown augmentation '" + options.name +
              "' (dsa, standard, resized_crop, none)");
}

}  // namespace distill::train
