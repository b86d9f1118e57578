#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "src/config/options.h"
#include "src/models/model.h"

namespace distill::kd {

// One term of a KD objective, picked by name in the config, e.g.
//   losses = [{name = "hinton", T = 4, weight = 0.9}, {name = "ce", weight = 0.1}]
struct LossSpec {
  std::string name = "hinton";
  double weight = 1.0;
  double T = 4.0;
  double alpha = 1.0;
  double beta = 8.0;
  double p = 2.0;
  double eps = 1.0;
  int64_t branch_width = 0;
  double fusion_lr_scale = 100.0;
  std::string student_layer;
  std::string teacher_layer;

  void visit(config::Visitor& v) {
    v.choice("name", name,
             "ce (hard labels), hinton (KL of softened outputs x T^2), reverse_kl, dkd (decoupled "
             "KD), fitnet (hint regression), at (attention transfer), rkd_distance, rkd_angle, "
             "pld (Plackett-Luce list-wise KD: replaces ce + hinton), dhkd (dual-head KD: an "
             "auxiliary linear head on student_layer learns the teacher's logits by BinaryKL-Norm), "
             "nd (feature norm and direction: student_layer pulled toward the teacher's class-mean "
             "teacher_layer direction), ofa (One-for-All KD: the teacher's predictions with the "
             "target class enhanced by eps, on the output or, with student_layer, on a branch "
             "from that feature to the logits), tgeo (TGeo-KD: a per-example ratio of Hinton KD "
             "at T and ce, predicted from the trilateral geometry by a fusion network learned on "
             "a held-out split; the only term, offline scheme)",
             {"ce", "hinton", "reverse_kl", "dkd", "fitnet", "at", "rkd_distance", "rkd_angle",
              "pld", "dhkd", "nd", "ofa", "tgeo"});
    v.field("weight", weight, "weight of this term in the sum", config::Range::at_least(0));
    v.field("T", T, "hinton, reverse_kl, dkd, pld (teacher only; PLD CIFAR-100: 4), dhkd "
            "(DHKD code: 2), ofa (OFA code: 1), tgeo (TGeo-KD CIFAR code: 1): temperature",
            config::Range::above(0));
    v.field("alpha", alpha, "dkd: weight of the target-class part (TCKD)",
            config::Range::at_least(0));
    v.field("beta", beta, "dkd: weight of the non-target part (NCKD)", config::Range::at_least(0));
    v.field("p", p, "at: exponent of the attention map", config::Range::above(0));
    v.field("eps", eps,
            "ofa: target-enhancement exponent (1 = cross-entropy with the teacher's soft labels; "
            "OFA's CIFAR-100 example 1, ImageNet example 1.5)",
            config::Range::above(0));
    v.field("fusion_lr_scale", fusion_lr_scale,
            "tgeo: the fusion network's learning rate as a multiple of the student's (the TGeo "
            "code's Adam 0.1 against distill kd's default Adam 1e-3)",
            config::Range::above(0));
    v.field("branch_width", branch_width,
            "ofa with student_layer: hidden width of the branch (0 = the larger of the feature's "
            "width and the teacher's last feature's, as OFA sizes its branches)",
            config::Range::at_least(0));
    // The ranges let +inf through; an infinite weight, temperature or exponent is no loss.
    v.rule(std::isfinite(weight) && std::isfinite(T) && std::isfinite(alpha) &&
               std::isfinite(beta) && std::isfinite(p) && std::isfinite(eps) &&
               std::isfinite(fusion_lr_scale),
           "loss term '" + name + "': weight, T, alpha, beta, p, eps and fusion_lr_scale must "
               "be finite, found weight " + std::to_string(weight) + ", T " + std::to_string(T) +
               ", alpha " + std::to_string(alpha) + ", beta " + std::to_string(beta) + ", p " +
               std::to_string(p) + ", eps " + std::to_string(eps) + ", fusion_lr_scale " +
               std::to_string(fusion_lr_scale));
    v.field("student_layer", student_layer,
            "fitnet, at, rkd_*, dhkd, nd, ofa: student feature name (\"logits\" = output; rkd "
            "and ofa default; dhkd: the feature its auxiliary head reads, e.g. embedding; ofa: "
            "the feature its branch reads)");
    v.field("teacher_layer", teacher_layer,
            "fitnet, at, rkd_*, nd: teacher feature name (\"logits\" = output; rkd default)");
  }
};

// The configured terms for one student/teacher pair: checks them, owns the FitNets regressors
// (one flat auxiliary tensor) and evaluates the weighted sum.
class LossTerms {
 public:
  // Validates every term before any training: temperatures, weights, exponents and layer names
  // (against the models' feature_names() plus "logits"). `key` names the setting in errors
  // ("kd.losses"). `teacher` may be null when the terms do not need one (ce only).
  LossTerms(std::vector<LossSpec> specs, std::string key, const models::Model& student,
            const models::Model* teacher);

  // What one side (student or teacher) of a batch provides.
  struct Side {
    at::Tensor logits;
    const models::Features* features = nullptr;
  };

  bool needs_teacher() const;
  // True when a term reads an intermediate layer (the forward must record features).
  bool needs_features() const;
  // True when a term reads an intermediate teacher layer (its logits alone cannot be cached).
  bool needs_teacher_features() const;

  // Sizes the regressors and checks the feature shapes of every term on one probe batch, so
  // mismatches (e.g. attention maps of different sizes) fail before training.
  void prepare(const Side& student, const Side& teacher);

  // Layout and PyTorch-default initialization of the regressors (empty when there are none).
  const std::vector<models::TensorSpec>& aux_specs() const { return aux_specs_; }
  at::Tensor init_aux(at::Generator& generator) const;

  // Sum of weight x term. `values`, when given, receives each term's unweighted value.
  at::Tensor evaluate(const Side& student, const Side* teacher, const at::Tensor& targets,
                      const at::Tensor& aux, std::vector<double>* values = nullptr) const;

  // nd: the teacher layers whose class means the terms need, and setting them (K x D, from
  // class_mean_features) before training; evaluating an nd term without them is an error.
  std::vector<std::string> class_mean_layers() const;
  void set_class_means(const std::string& teacher_layer, const at::Tensor& means);

  // One metric name per term ("loss_hinton", "loss_ce", a suffix _2, _3 for repeats).
  const std::vector<std::string>& metric_names() const { return metric_names_; }
  const std::vector<LossSpec>& specs() const { return specs_; }

 private:
  at::Tensor layer(const Side& side, const std::string& name, bool student) const;

  std::vector<LossSpec> specs_;
  std::string key_;
  std::vector<std::string> metric_names_;
  std::vector<models::TensorSpec> aux_specs_;
  std::vector<int64_t> regressor_of_;  // per term: index of its first aux spec, or -1
  std::map<std::string, at::Tensor> class_means_;  // nd: per teacher layer
  bool prepared_ = false;
  bool probing_ = false;  // prepare()'s probe evaluation: nd runs on placeholder class means
};

// True for the terms that compare with a teacher (everything but ce).
bool uses_teacher(const LossSpec& spec);

}  // namespace distill::kd
