#include "trajectories/expert_init.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <string>

#include "src/core/error.h"
#include "src/data/kmeans.h"

namespace distill::trajectories {

std::vector<at::Tensor> label_parameters(const std::vector<Trajectory>& experts,
                                         int64_t label_epoch, int64_t window_end) {
  std::vector<at::Tensor> params;
  for (size_t k = 0; k < experts.size(); ++k) {
    const int64_t last = static_cast<int64_t>(experts[k].size()) - 1;
    const int64_t epoch = label_epoch == -1 ? last : label_epoch == 0 ? std::min(window_end, last)
                                                                       : label_epoch;
    if (label_epoch < -1 || epoch > last) {
      throw Error("mtt.matching.label_epoch = " + std::to_string(label_epoch) +
                  ": expected -1 (last epoch), 0 (the window's end) or an epoch 1.." +
                  std::to_string(last) + " of expert " + std::to_string(k));
    }
    params.push_back(experts[k][epoch]);
  }
  return params;
}

at::Tensor expert_logits(const models::Model& model, const at::Tensor& params,
                         const at::Tensor& images) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> parts;
  for (int64_t start = 0; start < images.size(0); start += 256) {
    models::ForwardArgs args;
    args.train = model.num_buffers() > 0;  // batch statistics: experts keep no running ones
    if (args.train) args.buffers = model.init_buffers().to(images.device());
    parts.push_back(
        model.forward(images.narrow(0, start, std::min<int64_t>(256, images.size(0) - start)),
                      params, args));
  }
  return at::cat(parts).detach();
}

at::Tensor correctly_classified_index(const models::Model& model,
                                      const std::vector<at::Tensor>& experts,
                                      const data::Dataset& train, int64_t ipc,
                                      at::Generator& generator) {
  if (ipc < 1) throw Error("images per class must be >= 1, found " + std::to_string(ipc));
  const at::Tensor labels = train.labels.cpu();
  std::vector<at::Tensor> picks;
  for (int64_t c = 0; c < train.num_classes; ++c) {
    at::Tensor members = at::nonzero(labels == c).view(-1);
    members = members.index_select(0, at::randperm(members.size(0), generator, at::kLong));
    std::vector<int64_t> chosen;
    std::vector<bool> taken(members.size(0), false);
    for (size_t k = 0; k < experts.size() && static_cast<int64_t>(chosen.size()) < ipc; ++k) {
      // Batches of 256 candidates in the visiting order, until the class has its ipc images.
      for (int64_t start = 0; start < members.size(0) && static_cast<int64_t>(chosen.size()) < ipc;
           start += 256) {
        const int64_t count = std::min<int64_t>(256, members.size(0) - start);
        at::Tensor index = members.narrow(0, start, count);
        at::Tensor predicted =
            expert_logits(model, experts[k], train.images.index_select(0, index)).argmax(1).cpu();
        for (int64_t i = 0; i < count && static_cast<int64_t>(chosen.size()) < ipc; ++i) {
          if (!taken[start + i] && predicted[i].item<int64_t>() == c) {
            taken[start + i] = true;
            chosen.push_back(index[i].item<int64_t>());
          }
        }
      }
    }
    if (static_cast<int64_t>(chosen.size()) < ipc) {
      throw Error("mtt.init = \"real_correct\": the experts classify only " +
                  std::to_string(chosen.size()) + " images of class " + std::to_string(c) +
                  " correctly, fewer than the " + std::to_string(ipc) + " per class asked for");
    }
    picks.push_back(at::tensor(chosen, at::kLong));
  }
  return at::cat(picks);
}

at::Tensor correct_experts_logits(const models::Model& model, const std::vector<at::Tensor>& experts,
                                  const at::Tensor& images, const at::Tensor& classes) {
  at::Tensor correct_sum, correct_count, all_sum;
  for (const at::Tensor& params : experts) {
    at::Tensor logits = expert_logits(model, params, images);
    at::Tensor right = logits.argmax(1).eq(classes.to(logits.device())).to(logits.dtype());
    at::Tensor kept = logits * right.unsqueeze(1);
    correct_sum = correct_sum.defined() ? correct_sum + kept : kept;
    correct_count = correct_count.defined() ? correct_count + right : right;
    all_sum = all_sum.defined() ? all_sum + logits : logits;
  }
  at::Tensor all_mean = all_sum / static_cast<double>(experts.size());
  at::Tensor correct_mean = correct_sum / correct_count.clamp_min(1).unsqueeze(1);
  return at::where(correct_count.gt(0).unsqueeze(1), correct_mean, all_mean);
}

at::Tensor representative_index(const models::Model& model, const at::Tensor& expert,
                                const data::Dataset& train, int64_t ipc, int64_t iterations,
                                at::Generator& generator) {
  // AST clusters the expert's logits (not penultimate features), each class on its own.
  at::Tensor logits = expert_logits(model, expert, train.images);
  return data::kmeans_per_class(logits, train.labels, train.num_classes, ipc, iterations,
                                generator);
}

}  // namespace distill::trajectories
