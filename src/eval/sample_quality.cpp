#include "src/eval/sample_quality.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "src/core/error.h"

namespace distill::eval {
namespace {

// Rows per chunk of a distance matrix: 1024 x 10000 doubles is 80 MB.
constexpr int64_t kChunkRows = 1024;

at::Tensor as_matrix(const at::Tensor& features, const char* what) {
  if (!features.defined() || features.dim() != 2) {
    throw Error(std::string(what) + ": expected an N x D feature matrix, found " +
                (features.defined() ? std::to_string(features.dim()) + " dimensions"
                                    : std::string("no tensor")));
  }
  return features.to(at::kDouble).contiguous();
}

// Symmetric positive semi-definite square root through eigh, eigenvalues clamped at 0 (they are
// only negative by rounding).
at::Tensor psd_sqrt(const at::Tensor& s) {
  auto [values, vectors] = at::linalg_eigh(s);
  return at::matmul(vectors * values.clamp_min(0).sqrt().unsqueeze(0), vectors.transpose(0, 1));
}

// Pairwise Euclidean distances of a chunk of rows against all of `b`, in double.
at::Tensor distances(const at::Tensor& a, const at::Tensor& b) {
  // |a|^2 + |b|^2 - 2ab clamped at 0: at::cdist's matmul path does the same; doing it here keeps
  // the rounding identical for every chunk size.
  at::Tensor sq = a.pow(2).sum(1, true) + b.pow(2).sum(1).unsqueeze(0) - 2 * at::matmul(a, b.t());
  return sq.clamp_min(0).sqrt();
}

}  // namespace

FeatureMoments feature_moments(const at::Tensor& features, const char* what) {
  at::Tensor x = as_matrix(features, what);
  if (x.size(0) < 2) {
    throw Error(std::string(what) + ": a covariance needs at least 2 feature vectors, found " +
                std::to_string(x.size(0)));
  }
  FeatureMoments m;
  m.count = x.size(0);
  m.mean = x.mean(0);
  at::Tensor centred = x - m.mean.unsqueeze(0);
  m.covariance = at::matmul(centred.t(), centred) / static_cast<double>(m.count - 1);
  return m;
}

double frechet_distance(const FeatureMoments& a, const FeatureMoments& b) {
  if (a.mean.numel() != b.mean.numel()) {
    throw Error("Fréchet distance: feature dimensions differ (" + std::to_string(a.mean.numel()) +
                " vs " + std::to_string(b.mean.numel()) + ")");
  }
  at::Tensor s1 = a.covariance.to(at::kDouble), s2 = b.covariance.to(at::kDouble);
  // tr (S1 S2)^1/2 = tr (S1^1/2 S2 S1^1/2)^1/2: the inner matrix is symmetric PSD, so its square
  // root's trace is the sum of the square roots of its (real, >= 0) eigenvalues.
  at::Tensor root1 = psd_sqrt(s1);
  at::Tensor inner = at::matmul(at::matmul(root1, s2), root1);
  inner = (inner + inner.t()) / 2;  // symmetric up to rounding; eigvalsh reads one triangle
  const double cross = at::linalg_eigvalsh(inner).clamp_min(0).sqrt().sum().item<double>();
  const double mean_term =
      (a.mean.to(at::kDouble) - b.mean.to(at::kDouble)).pow(2).sum().item<double>();
  const double value =
      mean_term + s1.trace().item<double>() + s2.trace().item<double>() - 2 * cross;
  // Identical sets give +-1e-12-ish rounding; a distance is not negative.
  return std::max(value, 0.0);
}

at::Tensor kth_neighbour_distances(const at::Tensor& points, int64_t k) {
  at::Tensor x = as_matrix(points, "k-NN points");
  if (k < 1 || k >= x.size(0)) {
    throw Error("k-NN radius: k must be in [1, " + std::to_string(x.size(0) - 1) + "] for " +
                std::to_string(x.size(0)) + " points, found " + std::to_string(k));
  }
  std::vector<at::Tensor> radii;
  for (int64_t start = 0; start < x.size(0); start += kChunkRows) {
    const int64_t rows = std::min(kChunkRows, x.size(0) - start);
    at::Tensor d = distances(x.narrow(0, start, rows), x);
    // k + 1 smallest: the point itself (distance 0) is the first of them.
    at::Tensor smallest = std::get<0>(d.topk(k + 1, 1, /*largest=*/false, /*sorted=*/true));
    radii.push_back(smallest.select(1, k));
  }
  return at::cat(radii);
}

ManifoldMetrics manifold_metrics(const at::Tensor& real_features, const at::Tensor& fake_features,
                                 int64_t k) {
  at::Tensor real = as_matrix(real_features, "real features");
  at::Tensor fake = as_matrix(fake_features, "sample features");
  if (real.size(1) != fake.size(1)) {
    throw Error("manifold metrics: real features have " + std::to_string(real.size(1)) +
                " dimensions, sample features " + std::to_string(fake.size(1)));
  }
  const int64_t n = real.size(0), m = fake.size(0);
  if (k < 1 || k >= std::min(n, m)) {
    throw Error("manifold metrics: k must be >= 1 and below both set sizes (" + std::to_string(n) +
                " real, " + std::to_string(m) + " samples), found " + std::to_string(k));
  }
  at::Tensor real_radii = kth_neighbour_distances(real, k);  // N
  at::Tensor fake_radii = kth_neighbour_distances(fake, k);  // M

  // One pass over fake-vs-real distance chunks gives all four counts.
  at::Tensor real_covered = at::zeros({n}, at::kBool);  // real ball holds some fake point
  at::Tensor real_in_fake = at::zeros({n}, at::kBool);  // real point inside some fake ball
  int64_t fake_in_real = 0;
  double balls_holding = 0;
  for (int64_t start = 0; start < m; start += kChunkRows) {
    const int64_t rows = std::min(kChunkRows, m - start);
    at::Tensor d = distances(fake.narrow(0, start, rows), real);  // rows x N
    at::Tensor inside_real = d <= real_radii.unsqueeze(0);
    fake_in_real += inside_real.any(1).sum().item<int64_t>();
    balls_holding += inside_real.sum().item<double>();
    real_covered |= inside_real.any(0);
    real_in_fake |= (d <= fake_radii.narrow(0, start, rows).unsqueeze(1)).any(0);
  }
  ManifoldMetrics r;
  r.precision = static_cast<double>(fake_in_real) / m;
  r.recall = real_in_fake.sum().item<double>() / n;
  r.density = balls_holding / (static_cast<double>(k) * m);
  r.coverage = real_covered.sum().item<double>() / n;
  return r;
}

ClassCoverage class_coverage(const at::Tensor& predicted, const at::Tensor& reference,
                             int64_t num_classes) {
  if (num_classes < 1) throw Error("class coverage: num_classes must be >= 1");
  auto histogram = [num_classes](const at::Tensor& ids, const char* what) {
    at::Tensor flat = ids.reshape({-1}).to(at::kLong);
    if (flat.numel() == 0) throw Error(std::string("class coverage: no ") + what);
    const int64_t lo = flat.min().item<int64_t>(), hi = flat.max().item<int64_t>();
    if (lo < 0 || hi >= num_classes) {
      throw Error(std::string("class coverage: ") + what + " hold class " +
                  std::to_string(lo < 0 ? lo : hi) + ", expected ids in [0, " +
                  std::to_string(num_classes) + ")");
    }
    return at::bincount(flat, {}, num_classes).to(at::kDouble);
  };
  at::Tensor counts = histogram(predicted, "predicted labels");
  at::Tensor real = histogram(reference, "reference labels");
  if ((real == 0).any().item<bool>()) {
    throw Error("class coverage: the reference labels miss some of the " +
                std::to_string(num_classes) + " classes; the KL to them is undefined");
  }
  at::Tensor p = counts / counts.sum();
  at::Tensor q = real / real.sum();
  // 0 log 0 = 0: only classes the samples hit contribute.
  at::Tensor p_log_p = at::where(p > 0, p * p.log(), at::zeros_like(p));
  ClassCoverage c;
  for (int64_t i = 0; i < num_classes; ++i) {
    c.counts.push_back(static_cast<int64_t>(counts[i].item<double>()));
  }
  c.covered = (counts > 0).sum().item<double>() / num_classes;
  c.entropy = -p_log_p.sum().item<double>();
  c.reference_entropy = -(q * q.log()).sum().item<double>();
  c.kl_to_reference =
      (p_log_p - at::where(p > 0, p * q.log(), at::zeros_like(p))).sum().item<double>();
  return c;
}

}  // namespace distill::eval
