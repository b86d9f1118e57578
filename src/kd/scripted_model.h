#pragma once
#include <memory>
#include <string>

#include "src/models/model.h"

namespace distill::kd {

// A teacher exported from Python with torch.jit.script / torch.jit.trace and saved with
// `.save(path)`: forward(images N,C,H,W) -> logits N,K. Wrapped as a Model without parameters
// (the module holds its own weights), so every KD path treats it like any other teacher. It
// reports no intermediate features, so only response-based terms (hinton, reverse_kl, dkd,
// rkd_* on "logits") can use it. Loading checks the output shape on a probe batch.
std::unique_ptr<models::Model> load_scripted_model(const std::string& path, int64_t channels,
                                                   int64_t image_size, int64_t num_classes);

}  // namespace distill::kd
