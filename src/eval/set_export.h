#pragma once
#include <string>
#include <vector>

#include "src/data/zca.h"
#include "src/eval/synthetic_set.h"

namespace distill::eval {

// Writes a set as an image folder that data::read_image_folder (and torchvision's ImageFolder)
// reads back: dir/train/<class>/<i>.png, one folder per class named by its zero-padded index (so
// that sorting the names, as the readers do, gives the class order) and files numbered within the
// class in set order. Images are denormalized (and un-whitened by `zca` for a ZCA set; an Error
// without it) and rounded to 8 bits. The folder is the image's own class (SyntheticSet::class_ids):
// soft labels are not written. Returns the class folder names.
std::vector<std::string> export_image_folder(const SyntheticSet& set, const std::string& dir,
                                             const data::Zca* zca = nullptr);

}  // namespace distill::eval
