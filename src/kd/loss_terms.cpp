#include "src/kd/loss_terms.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>

#include "src/config/config_io.h"
#include "src/core/error.h"
#include "src/kd/dhkd_loss.h"
#include "src/kd/kd_losses.h"
#include "src/kd/nd_loss.h"
#include "src/kd/ofa_loss.h"
#include "src/kd/pld_loss.h"
#include "src/train/trainer.h"

namespace distill::kd {
namespace {

bool reads_layers(const LossSpec& spec) {
  return spec.name == "fitnet" || spec.name == "at" || spec.name == "rkd_distance" ||
         spec.name == "rkd_angle" || spec.name == "dhkd" || spec.name == "nd" ||
         spec.name == "ofa";
}

// dhkd and ofa read a student feature only: their heads' outputs are compared with the teacher's
// logits.
bool reads_teacher_layer(const LossSpec& spec) {
  return reads_layers(spec) && spec.name != "dhkd" && spec.name != "ofa";
}

// The width a branch or map sees: channels of an N,C,H,W map, else the flattened size.
int64_t width_of(const at::Tensor& feature) {
  return feature.dim() == 4 ? feature.size(1) : feature.flatten(1).size(1);
}

}  // namespace

bool uses_teacher(const LossSpec& spec) { return spec.name != "ce"; }

LossTerms::LossTerms(std::vector<LossSpec> specs, std::string key, const models::Model& student,
                     const models::Model* teacher)
    : specs_(std::move(specs)), key_(std::move(key)) {
  if (specs_.empty()) {
    throw Error(key_ +
                " is empty: give at least one term, e.g. [{name = \"hinton\", T = 4, "
                "weight = 0.9}, {name = \"ce\", weight = 0.1}]");
  }
  std::map<std::string, int> seen;
  for (size_t i = 0; i < specs_.size(); ++i) {
    LossSpec& spec = specs_[i];
    const std::string item = key_ + "[" + std::to_string(i) + "]";
    const std::string what = " (" + spec.name + ")";
    config::check(spec, item);  // the declared ranges and rules (LossSpec)
    // A setting this term does not read is a mistake (e.g. T on "ce"): say so rather than
    // ignore it. Detectable when it differs from the default.
    const LossSpec defaults;
    const bool tempered = spec.name == "hinton" || spec.name == "reverse_kl" ||
                          spec.name == "dkd" || spec.name == "pld" || spec.name == "dhkd" ||
                          spec.name == "ofa" || spec.name == "tgeo";
    auto unused = [&](bool set, const std::string& field, const std::string& used_by) {
      if (set) {
        throw Error(item + "." + field + " does not apply to '" + spec.name + "' (used by " +
                    used_by + ")");
      }
    };
    unused(!tempered && spec.T != defaults.T, "T", "hinton, reverse_kl, dkd, pld, dhkd, ofa, tgeo");
    unused(spec.name != "dkd" && spec.alpha != defaults.alpha, "alpha", "dkd");
    unused(spec.name != "dkd" && spec.beta != defaults.beta, "beta", "dkd");
    unused(spec.name != "at" && spec.p != defaults.p, "p", "at");
    unused(spec.name != "ofa" && spec.eps != defaults.eps, "eps", "ofa");
    unused(spec.name != "tgeo" && spec.fusion_lr_scale != defaults.fusion_lr_scale,
           "fusion_lr_scale", "tgeo");
    unused(spec.name != "ofa" && spec.branch_width != defaults.branch_width, "branch_width",
           "ofa with a student_layer");
    unused(!reads_layers(spec) && !spec.student_layer.empty(), "student_layer",
           "fitnet, at, rkd_distance, rkd_angle, dhkd, nd, ofa");
    unused(!reads_teacher_layer(spec) && !spec.teacher_layer.empty(), "teacher_layer",
           "fitnet, at, rkd_distance, rkd_angle, nd");
    if (uses_teacher(spec) && !teacher) {
      throw Error(item + what + " compares with a teacher, but none is configured");
    }
    if (spec.name == "tgeo" && specs_.size() > 1) {
      throw Error(item + what + " weighs hard and soft supervision per example itself and must "
                  "be the only term of " + key_ + ", found " + std::to_string(specs_.size()) +
                  " terms");
    }
    if (reads_layers(spec)) {
      // rkd compares outputs by default; ofa without a layer scores the student's own output.
      const bool relational =
          spec.name == "rkd_distance" || spec.name == "rkd_angle" || spec.name == "ofa";
      auto check_layer = [&](std::string& layer, const models::Model& model, const char* side) {
        const std::string field = std::string(side) + "_layer";
        if (layer.empty()) {
          if (!relational) {
            throw Error(item + "." + field + what + " is required: name a feature of the " + side +
                        " (" + model.arch() + ")");
          }
          layer = "logits";
        }
        std::vector<std::string> names = model.feature_names();
        names.push_back("logits");
        if (std::find(names.begin(), names.end(), layer) == names.end()) {
          std::string list;
          for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
          std::string hint = config::closest_match(layer, names);
          throw Error(item + "." + field + what + ": the " + side + " (" + model.arch() +
                      ") has no feature '" + layer + "'" +
                      (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
                      "; available: " + list);
        }
      };
      check_layer(spec.student_layer, student, "student");
      if (teacher && reads_teacher_layer(spec)) check_layer(spec.teacher_layer, *teacher, "teacher");
      if (spec.name == "ofa" && spec.student_layer == "logits" &&
          spec.branch_width != defaults.branch_width) {
        throw Error(item + ".branch_width" + what +
                    " sizes a branch, and this term has none: it scores the student's output "
                    "(set student_layer to an intermediate feature for a branch)");
      }
    }
    int count = ++seen[spec.name];
    metric_names_.push_back("loss_" + spec.name + (count > 1 ? "_" + std::to_string(count) : ""));
  }
  regressor_of_.assign(specs_.size(), -1);
}

bool LossTerms::needs_teacher() const {
  for (const auto& spec : specs_) {
    if (uses_teacher(spec)) return true;
  }
  return false;
}

bool LossTerms::needs_features() const {
  for (const auto& spec : specs_) {
    if (reads_layers(spec) && spec.student_layer != "logits") return true;
  }
  return needs_teacher_features();
}

bool LossTerms::needs_teacher_features() const {
  for (const auto& spec : specs_) {
    if (reads_teacher_layer(spec) && spec.teacher_layer != "logits") return true;
  }
  return false;
}

at::Tensor LossTerms::layer(const Side& side, const std::string& name, bool student) const {
  if (name == "logits") return side.logits;
  if (side.features) {
    for (const auto& [feature, tensor] : *side.features) {
      if (feature == name) return tensor;
    }
  }
  throw RuntimeFailure(std::string("the ") + (student ? "student" : "teacher") +
                       " forward did not record feature '" + name + "'");
}

std::vector<std::string> LossTerms::class_mean_layers() const {
  std::vector<std::string> layers;
  for (const auto& spec : specs_) {
    if (spec.name == "nd" &&
        std::find(layers.begin(), layers.end(), spec.teacher_layer) == layers.end()) {
      layers.push_back(spec.teacher_layer);
    }
  }
  return layers;
}

void LossTerms::set_class_means(const std::string& teacher_layer, const at::Tensor& means) {
  class_means_[teacher_layer] = means;
}

void LossTerms::prepare(const Side& student, const Side& teacher) {
  aux_specs_.clear();
  regressor_of_.assign(specs_.size(), -1);
  // Term i's own map: weight `out` x `in` (then `trailing` 1-sized dims: 1x1 conv) and a bias,
  // initialised as PyTorch's layers (fan-in uniform). A term's maps are consecutive; the first
  // one's index is the term's.
  auto add_map = [&](size_t i, const std::string& name, int64_t out, int64_t in,
                     std::vector<int64_t> trailing = {}) {
    const std::string prefix = "losses." + std::to_string(i) + "." + name;
    std::vector<int64_t> weight = {out, in};
    weight.insert(weight.end(), trailing.begin(), trailing.end());
    if (regressor_of_[i] < 0) regressor_of_[i] = static_cast<int64_t>(aux_specs_.size());
    aux_specs_.push_back({prefix + ".weight", weight, models::TensorSpec::Init::kFanInUniform, in});
    aux_specs_.push_back({prefix + ".bias", {out}, models::TensorSpec::Init::kFanInUniform, in});
  };
  for (size_t i = 0; i < specs_.size(); ++i) {
    const LossSpec& spec = specs_[i];
    if (spec.name == "nd") {  // a linear map when the student's feature has another size
      const int64_t ds = layer(student, spec.student_layer, true).flatten(1).size(1);
      const int64_t dt = layer(teacher, spec.teacher_layer, false).flatten(1).size(1);
      if (ds != dt) add_map(i, "projection", dt, ds);
      continue;
    }
    if (spec.name == "ofa") {  // a branch from an intermediate feature to the logits
      if (spec.student_layer == "logits") continue;
      const at::Tensor s = layer(student, spec.student_layer, true);
      int64_t width = spec.branch_width;
      if (width == 0) {
        width = width_of(s);
        if (teacher.features && !teacher.features->empty()) {
          width = std::max(width, width_of(teacher.features->back().second));
        }
      }
      if (s.dim() == 4) {
        add_map(i, "branch.hidden", width, s.size(1), {1, 1});
      } else {
        add_map(i, "branch.hidden", width, width_of(s));
      }
      add_map(i, "branch.output", teacher.logits.size(1), width);
      continue;
    }
    if (spec.name == "dhkd") {  // the auxiliary head: classes x flattened student feature
      add_map(i, "auxiliary_head", teacher.logits.size(1),
              layer(student, spec.student_layer, true).flatten(1).size(1));
      continue;
    }
    if (spec.name != "fitnet") continue;
    const std::string item = key_ + "[" + std::to_string(i) + "] (fitnet)";
    at::Tensor s = layer(student, spec.student_layer, true);
    at::Tensor t = layer(teacher, spec.teacher_layer, false);
    if (s.dim() == 4 && t.dim() == 4) {
      if (s.size(2) != t.size(2) || s.size(3) != t.size(3)) {
        throw Error(
            item + ": student feature '" + spec.student_layer + "' is " +
            std::to_string(s.size(2)) + "x" + std::to_string(s.size(3)) + " but teacher feature '" +
            spec.teacher_layer + "' is " + std::to_string(t.size(2)) + "x" +
            std::to_string(t.size(3)) +
            "; pick layers with the same spatial size (a 1x1 regressor maps channels only)");
      }
      add_map(i, "regressor", t.size(1), s.size(1), {1, 1});
    } else {
      add_map(i, "regressor", t.flatten(1).size(1), s.flatten(1).size(1));
    }
  }
  prepared_ = true;
  // One evaluation on the probe: shape errors of any term surface now, naming the term.
  at::NoGradGuard no_grad;
  at::Tensor aux = at::zeros({[&] {
                               int64_t n = 0;
                               for (const auto& a : aux_specs_) n += a.numel();
                               return n;
                             }()},
                             student.logits.options());
  at::Tensor labels = at::zeros({student.logits.size(0)}, at::kLong).to(student.logits.device());
  probing_ = true;
  try {
    evaluate(student, &teacher, labels, aux);
  } catch (...) {
    probing_ = false;
    throw;
  }
  probing_ = false;
}

at::Tensor LossTerms::init_aux(at::Generator& generator) const {
  // PyTorch's Conv2d/Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
  return models::Model::init_flat(aux_specs_, generator);
}

at::Tensor LossTerms::evaluate(const Side& student, const Side* teacher, const at::Tensor& targets,
                               const at::Tensor& aux, std::vector<double>* values) const {
  std::vector<at::Tensor> regressors;
  if (!aux_specs_.empty()) {
    if (!prepared_) throw RuntimeFailure("LossTerms::evaluate before prepare()");
    regressors = models::Model::unflatten(aux, aux_specs_);
  }
  if (values) values->assign(specs_.size(), 0.0);
  at::Tensor total;
  for (size_t i = 0; i < specs_.size(); ++i) {
    const LossSpec& spec = specs_[i];
    if (uses_teacher(spec) && !teacher) {
      throw RuntimeFailure(key_ + "[" + std::to_string(i) + "] evaluated without a teacher");
    }
    at::Tensor term;
    try {
      if (spec.name == "ce") {
        term = train::classification_loss(student.logits, targets);
      } else if (spec.name == "hinton") {
        term = hinton_loss(student.logits, teacher->logits, spec.T);
      } else if (spec.name == "reverse_kl") {
        term = reverse_kl_loss(student.logits, teacher->logits, spec.T);
      } else if (spec.name == "dkd") {
        term = dkd_loss(student.logits, teacher->logits, targets, spec.alpha, spec.beta, spec.T);
      } else if (spec.name == "tgeo") {
        throw RuntimeFailure("tgeo is its own objective (kd::TgeoObjective), not a summed term");
      } else if (spec.name == "pld") {
        term = pld_loss(student.logits, teacher->logits, targets, spec.T);
      } else if (spec.name == "ofa") {
        at::Tensor logits = student.logits;
        if (regressor_of_[i] >= 0) {
          const size_t r = static_cast<size_t>(regressor_of_[i]);
          logits = ofa_branch(layer(student, spec.student_layer, true),
                              {regressors[r], regressors[r + 1], regressors[r + 2],
                               regressors[r + 3]});
        }
        term = ofa_loss(logits, teacher->logits, targets, spec.eps, spec.T);
      } else if (spec.name == "dhkd") {
        const size_t r = static_cast<size_t>(regressor_of_[i]);
        at::Tensor feature = layer(student, spec.student_layer, true).flatten(1);
        term = binary_kl_norm_loss(regress(feature, regressors[r], regressors[r + 1]),
                                   teacher->logits, spec.T);
      } else {
        at::Tensor s = layer(student, spec.student_layer, true);
        at::Tensor t = layer(*teacher, spec.teacher_layer, false);
        if (spec.name == "fitnet") {
          const size_t r = static_cast<size_t>(regressor_of_[i]);
          term = hint_loss(regress(s, regressors[r], regressors[r + 1]), t);
        } else if (spec.name == "nd") {
          at::Tensor feature = s.flatten(1);
          if (regressor_of_[i] >= 0) {
            const size_t r = static_cast<size_t>(regressor_of_[i]);
            feature = regress(feature, regressors[r], regressors[r + 1]);
          }
          auto found = class_means_.find(spec.teacher_layer);
          at::Tensor means;
          if (found != class_means_.end()) {
            means = found->second;
          } else if (probing_) {  // shapes only: any direction will do
            means = at::ones({student.logits.size(1), feature.size(1)}, feature.options());
          } else {
            throw RuntimeFailure("nd: the teacher's class means of '" + spec.teacher_layer +
                                 "' were not computed before training");
          }
          term = nd_loss(feature, t, means, targets);
        } else if (spec.name == "at") {
          term = attention_transfer_loss(s, t, spec.p);
        } else if (spec.name == "rkd_distance") {
          term = rkd_distance_loss(s, t);
        } else {
          term = rkd_angle_loss(s, t);
        }
      }
    } catch (const Error& e) {
      throw Error(key_ + "[" + std::to_string(i) + "] (" + spec.name + "): " + e.what());
    }
    if (values) (*values)[i] = term.item<double>();
    at::Tensor weighted = term * spec.weight;
    total = total.defined() ? total + weighted : weighted;
  }
  return total;
}

}  // namespace distill::kd
