#include "src/kd/student_search.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <numeric>
#include <regex>

#include "src/core/error.h"

namespace distill::kd {
namespace {

// Each row divided by its L2 norm (F.normalize's default).
at::Tensor normalise_rows(const at::Tensor& m) {
  return m / m.norm(2, {1}, true).clamp_min(1e-12);
}

int64_t draw(int64_t n, at::Generator& generator) {
  return at::randint(n, {1}, generator).item<int64_t>();
}

template <class T>
int64_t index_of(const std::vector<T>& values, const T& value) {
  auto it = std::find(values.begin(), values.end(), value);
  return it == values.end() ? -1 : static_cast<int64_t>(it - values.begin());
}

std::string join(const std::vector<int64_t>& values, const std::string& separator) {
  std::string out;
  for (int64_t v : values) out += (out.empty() ? "" : separator) + std::to_string(v);
  return out;
}

}  // namespace

at::Tensor relation_distance(const at::Tensor& teacher_features, const at::Tensor& student_features) {
  if (teacher_features.size(0) != student_features.size(0)) {
    throw Error("diswot: teacher and student features must come from one batch");
  }
  const at::Tensor t = teacher_features.flatten(1), s = student_features.flatten(1);
  const double b = static_cast<double>(t.size(0));
  const at::Tensor gt = normalise_rows(at::matmul(t, t.t()));
  const at::Tensor gs = normalise_rows(at::matmul(s, s.t()));
  return (gt - gs).pow(2).sum() / (b * b);
}

at::Tensor semantic_distance(const at::Tensor& teacher_gradient, const at::Tensor& student_gradient,
                             const std::string& form) {
  if (teacher_gradient.dim() != 2 || student_gradient.dim() != 2 ||
      teacher_gradient.size(0) != student_gradient.size(0)) {
    throw Error("diswot: classifier gradients must be K x C with the same class count K");
  }
  const double k = static_cast<double>(teacher_gradient.size(0));
  if (form == "classes") {
    const at::Tensor gt = normalise_rows(at::matmul(teacher_gradient, teacher_gradient.t()));
    const at::Tensor gs = normalise_rows(at::matmul(student_gradient, student_gradient.t()));
    return (gt - gs).pow(2).sum() / (k * k);
  }
  if (form != "channels") throw Error("diswot: unknown semantic form '" + form + "'");
  if (teacher_gradient.size(1) != student_gradient.size(1)) {
    throw Error("diswot: the semantic form \"channels\" compares per-class channel correlations "
                "and needs the teacher's and the student's classifier inputs of one width, found " +
                std::to_string(teacher_gradient.size(1)) + " and " +
                std::to_string(student_gradient.size(1)) + " (use \"classes\")");
  }
  const double c = static_cast<double>(teacher_gradient.size(1));
  // Per class k, the C x C outer product g_k g_k^T, each row normalised.
  auto per_class = [](const at::Tensor& g) {
    at::Tensor outer = g.unsqueeze(2) * g.unsqueeze(1);  // K,C,C
    return outer / outer.norm(2, {2}, true).clamp_min(1e-12);
  };
  return (per_class(teacher_gradient) - per_class(student_gradient)).pow(2).sum() / (k * c);
}

Probe probe_network(const models::Model& model, const at::Tensor& params, const at::Tensor& buffers,
                    const at::Tensor& images, const at::Tensor& labels) {
  const auto& specs = model.param_specs();
  if (specs.size() < 2 || specs[specs.size() - 2].shape.size() != 2) {
    throw Error("diswot: the " + model.arch() +
                " does not end in a linear classifier (weight, bias), which the score reads");
  }
  int64_t offset = 0;
  for (size_t i = 0; i + 2 < specs.size(); ++i) offset += specs[i].numel();
  const auto& classifier = specs[specs.size() - 2];
  at::Tensor p = params.detach().clone().requires_grad_(true);
  models::Features features;
  models::ForwardArgs args;
  args.buffers = buffers.defined() ? buffers.clone() : buffers;
  args.features = &features;
  at::Tensor logits = model.forward(images, p, args);
  if (features.empty()) throw Error("diswot: the " + model.arch() + " records no features");
  at::Tensor loss = at::cross_entropy_loss(logits, labels);
  at::Tensor gradient = torch::autograd::grad({loss}, {p})[0];
  Probe probe;
  probe.classifier_gradient =
      gradient.narrow(0, offset, classifier.numel()).view(classifier.shape).detach();
  probe.features = features.back().second.detach().flatten(1);
  return probe;
}

DiswotScore diswot_score(const Probe& teacher, const Probe& student, const std::string& form) {
  DiswotScore s;
  s.semantic =
      semantic_distance(teacher.classifier_gradient, student.classifier_gradient, form).item<double>();
  s.relation = relation_distance(teacher.features, student.features).item<double>();
  s.score = -(s.semantic + s.relation);
  return s;
}

std::string Candidate::name() const {
  if (arch == "convnet") return "convnet-w" + std::to_string(width) + "-d" + std::to_string(depth);
  return "mlp-" + join(hidden, "-");
}

models::ModelOptions Candidate::options(const models::ModelOptions& base) const {
  models::ModelOptions o = base;
  o.arch = arch;
  if (arch == "convnet") {
    o.width = width;
    o.depth = depth;
  } else {
    o.hidden = hidden;
  }
  return o;
}

Candidate parse_candidate(const std::string& text, const std::string& key) {
  static const std::regex convnet(R"(convnet-w([1-9][0-9]{0,5})-d([1-9][0-9]?))");
  static const std::regex mlp(R"(mlp((-[1-9][0-9]{0,5})+))");
  std::smatch m;
  Candidate c;
  if (std::regex_match(text, m, convnet)) {
    c.arch = "convnet";
    c.width = std::stoll(m[1]);
    c.depth = std::stoll(m[2]);
    return c;
  }
  if (std::regex_match(text, m, mlp)) {
    c.arch = "mlp";
    std::string rest = m[1];
    for (size_t start = 1; start < rest.size();) {
      size_t end = rest.find('-', start);
      if (end == std::string::npos) end = rest.size();
      c.hidden.push_back(std::stoll(rest.substr(start, end - start)));
      start = end + 1;
    }
    return c;
  }
  throw Error(key + ": '" + text +
              "' is not a candidate student; expected \"convnet-w<width>-d<depth>\" (e.g. "
              "convnet-w16-d2) or \"mlp-<hidden>-<hidden>...\" (e.g. mlp-128-64)");
}

bool SearchSpace::contains(const Candidate& c) const {
  if (index_of(families, c.arch) < 0) return false;
  if (c.arch == "convnet") {
    return index_of(convnet_widths, c.width) >= 0 && index_of(convnet_depths, c.depth) >= 0;
  }
  if (index_of(mlp_depths, static_cast<int64_t>(c.hidden.size())) < 0) return false;
  for (int64_t w : c.hidden) {
    if (index_of(mlp_widths, w) < 0) return false;
  }
  return true;
}

Candidate SearchSpace::random(at::Generator& generator) const {
  Candidate c;
  c.arch = families[draw(static_cast<int64_t>(families.size()), generator)];
  if (c.arch == "convnet") {
    c.width = convnet_widths[draw(static_cast<int64_t>(convnet_widths.size()), generator)];
    c.depth = convnet_depths[draw(static_cast<int64_t>(convnet_depths.size()), generator)];
  } else {
    const int64_t depth = mlp_depths[draw(static_cast<int64_t>(mlp_depths.size()), generator)];
    for (int64_t i = 0; i < depth; ++i) {
      c.hidden.push_back(mlp_widths[draw(static_cast<int64_t>(mlp_widths.size()), generator)]);
    }
  }
  return c;
}

Candidate SearchSpace::mutate(const Candidate& parent, at::Generator& generator) const {
  std::vector<Candidate> neighbours;
  auto step = [](const std::vector<int64_t>& values, int64_t value, int64_t by) -> int64_t {
    const int64_t i = index_of(values, value) + by;
    return i >= 0 && i < static_cast<int64_t>(values.size()) ? values[i] : -1;
  };
  if (parent.arch == "convnet") {
    for (int64_t by : {-1, 1}) {
      Candidate c = parent;
      if ((c.width = step(convnet_widths, parent.width, by)) > 0) neighbours.push_back(c);
      c = parent;
      if ((c.depth = step(convnet_depths, parent.depth, by)) > 0) neighbours.push_back(c);
    }
  } else {
    const int64_t depth = static_cast<int64_t>(parent.hidden.size());
    for (int64_t i = 0; i < depth; ++i) {
      for (int64_t by : {-1, 1}) {
        Candidate c = parent;
        if ((c.hidden[i] = step(mlp_widths, parent.hidden[i], by)) > 0) neighbours.push_back(c);
      }
      if (index_of(mlp_depths, depth - 1) >= 0) {  // drop layer i
        Candidate c = parent;
        c.hidden.erase(c.hidden.begin() + i);
        neighbours.push_back(c);
      }
    }
    if (index_of(mlp_depths, depth + 1) >= 0 && depth > 0) {  // repeat the last layer
      Candidate c = parent;
      c.hidden.push_back(parent.hidden.back());
      neighbours.push_back(c);
    }
  }
  std::vector<std::string> others;
  for (const auto& f : families) {
    if (f != parent.arch) others.push_back(f);
  }
  const bool jump = !others.empty() && (neighbours.empty() || draw(8, generator) == 0);
  if (jump) {
    Candidate c;
    do {
      c = random(generator);
    } while (c.arch == parent.arch);
    return c;
  }
  if (neighbours.empty()) return parent;
  return neighbours[draw(static_cast<int64_t>(neighbours.size()), generator)];
}

std::vector<std::pair<std::string, double>> evolve(
    const SearchSpace& space, const EvolutionOptions& options,
    const std::function<double(const Candidate&)>& score, at::Generator& generator) {
  if (options.population < 1 || options.sample < 1 || options.sample > options.population ||
      options.cycles < 0) {
    throw Error("diswot: evolution needs population >= 1, 1 <= sample <= population, cycles >= 0");
  }
  std::map<std::string, double> known;
  std::vector<std::pair<std::string, double>> scored;
  auto evaluate = [&](const Candidate& c) {
    const std::string name = c.name();
    auto found = known.find(name);
    if (found != known.end()) return found->second;
    const double s = score(c);
    known[name] = s;
    scored.emplace_back(name, s);
    return s;
  };
  std::deque<std::pair<Candidate, double>> population;
  while (static_cast<int64_t>(population.size()) < options.population) {
    Candidate c = space.random(generator);
    population.emplace_back(c, evaluate(c));
  }
  for (int64_t cycle = 0; cycle < options.cycles; ++cycle) {
    at::Tensor members = at::randperm(options.population, generator).narrow(0, 0, options.sample);
    int64_t best = -1;
    for (int64_t i = 0; i < options.sample; ++i) {
      const int64_t m = members[i].item<int64_t>();
      if (best < 0 || population[m].second > population[best].second) best = m;
    }
    Candidate child = space.mutate(population[best].first, generator);
    population.emplace_back(child, evaluate(child));
    population.pop_front();
  }
  return scored;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size() || a.size() < 2) {
    throw Error("spearman: needs two lists of one length >= 2");
  }
  auto ranks = [](const std::vector<double>& v) {
    std::vector<size_t> order(v.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t i, size_t j) { return v[i] < v[j]; });
    std::vector<double> r(v.size());
    for (size_t i = 0; i < order.size();) {
      size_t j = i;
      while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
      const double mean_rank = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
      for (size_t k = i; k <= j; ++k) r[order[k]] = mean_rank;
      i = j + 1;
    }
    return r;
  };
  const std::vector<double> ra = ranks(a), rb = ranks(b);
  const double n = static_cast<double>(a.size());
  const double ma = std::accumulate(ra.begin(), ra.end(), 0.0) / n;
  const double mb = std::accumulate(rb.begin(), rb.end(), 0.0) / n;
  double cov = 0, va = 0, vb = 0;
  for (size_t i = 0; i < ra.size(); ++i) {
    cov += (ra[i] - ma) * (rb[i] - mb);
    va += (ra[i] - ma) * (ra[i] - ma);
    vb += (rb[i] - mb) * (rb[i] - mb);
  }
  if (va == 0 || vb == 0) return std::numeric_limits<double>::quiet_NaN();
  return cov / std::sqrt(va * vb);
}

}  // namespace distill::kd
