#pragma once
// DisWOT: Dong, Li & Wei, "DisWOT: Student Architecture Search for Distillation WithOut Training"
// (CVPR 2023; code lliai/DisWOT-CVPR2023). Candidate students are ranked before any training by
// how much their randomly initialised networks already resemble the teacher on one batch:
//   semantic distance M_s: the gradients of the cross-entropy with respect to each network's
//     classifier weights (K x C: row k is the batch mean of (p_k - y_k) x feature, the
//     classifier-level class activation the code calls Grad-CAM), compared through row-normalised
//     Gram matrices. The code (distiller_zoo/ICKD.py) compares per class the C x C outer product
//     g_k g_k^T, which needs teacher and student of one width C ("channels"); candidates of other
//     widths are compared here through the K x K Gram G G^T of the class rows ("classes").
//   relation distance M_r: the row-normalised B x B Gram of the flattened features feeding the
//     classifier (similarity-preserving KD, distiller_zoo/SP.py), ||G_t - G_s||^2 / B^2.
//   score = -(M_s + M_r): higher = closer to the teacher = expected to distil better.
// The search over candidates is regularised ("aging") evolution, as the code runs it on
// NAS-Bench-201: a population, a tournament sample, one mutation per cycle, the oldest member
// removed.
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "src/kd/teacher.h"
#include "src/models/model.h"

namespace distill::kd {

// Row-normalised Gram distance of the relation metric: ||norm(f_t f_t^T) - norm(f_s f_s^T)||^2
// / B^2 on flattened features (any widths, one batch size B).
at::Tensor relation_distance(const at::Tensor& teacher_features, const at::Tensor& student_features);

// Semantic distance between classifier-weight gradients (K x C_t and K x C_s).
// "classes": ||norm(G_t G_t^T) - norm(G_s G_s^T)||^2 / K^2 (any widths).
// "channels": the code's sum_k ||norm(g_tk g_tk^T) - norm(g_sk g_sk^T)||^2 / (K C), C_t == C_s.
at::Tensor semantic_distance(const at::Tensor& teacher_gradient, const at::Tensor& student_gradient,
                             const std::string& form);

// What a network shows the score on one batch: the cross-entropy gradient with respect to its
// classifier weight (the last linear layer: the model's second-to-last parameter, K x C) and the
// flattened features feeding that layer (the last recorded feature).
struct Probe {
  at::Tensor classifier_gradient;
  at::Tensor features;
};
Probe probe_network(const models::Model& model, const at::Tensor& params, const at::Tensor& buffers,
                    const at::Tensor& images, const at::Tensor& labels);

struct DiswotScore {
  double semantic = 0;  // M_s
  double relation = 0;  // M_r
  double score = 0;     // -(M_s + M_r)
};
DiswotScore diswot_score(const Probe& teacher, const Probe& student, const std::string& form);

// Candidate students: a family and its shape, written "convnet-w16-d2" or "mlp-128-64".
struct Candidate {
  std::string arch;             // "convnet" or "mlp"
  int64_t width = 0, depth = 0;  // convnet
  std::vector<int64_t> hidden;  // mlp
  std::string name() const;
  // `base` with this candidate's family and shape (norm, pool and the rest stay the base's).
  models::ModelOptions options(const models::ModelOptions& base) const;
};
// Error naming `key` and the text when it is not such a name.
Candidate parse_candidate(const std::string& text, const std::string& key);

// The space the evolution moves in.
struct SearchSpace {
  std::vector<std::string> families = {"convnet", "mlp"};
  std::vector<int64_t> convnet_widths = {8, 16, 32, 64};
  std::vector<int64_t> convnet_depths = {1, 2, 3};
  std::vector<int64_t> mlp_widths = {32, 64, 128, 256};
  std::vector<int64_t> mlp_depths = {1, 2, 3};  // hidden layers

  Candidate random(at::Generator& generator) const;
  // One change: a convnet's width or depth to a neighbouring value, an mlp layer's width to a
  // neighbouring value, an mlp layer added or removed, or (1 in 8) a random candidate of another
  // family. Always returns a candidate of the space different from `parent` when one exists.
  Candidate mutate(const Candidate& parent, at::Generator& generator) const;
  bool contains(const Candidate& candidate) const;
};

struct EvolutionOptions {
  int64_t population = 20;
  int64_t sample = 5;
  int64_t cycles = 100;
};

// Regularised evolution: fill the population with random candidates, then every cycle take the
// best of `sample` random members, mutate it, score the child and drop the oldest member.
// `score` is called once per distinct candidate (results are remembered by name); returns every
// scored candidate's name with its score, in the order first scored.
std::vector<std::pair<std::string, double>> evolve(
    const SearchSpace& space, const EvolutionOptions& options,
    const std::function<double(const Candidate&)>& score, at::Generator& generator);

// Spearman's rank correlation (ties get their mean rank); NaN when either side is constant.
double spearman(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace distill::kd
