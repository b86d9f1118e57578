#include "diffusion/mixture_distance.h"

#include <ATen/ATen.h>

#include <cmath>
#include <string>

#include "src/core/error.h"

namespace distill::diffusion {
namespace {

// N x K: log w_k + log N(x; mu_k, Sigma_k), through the Cholesky factor L_k of Sigma_k:
// (x - mu)^T Sigma^-1 (x - mu) = |L^-1 (x - mu)|^2, log det Sigma = 2 sum log diag L.
at::Tensor joint_log_density(const GaussianMixture& mixture, const at::Tensor& x) {
  const at::Tensor& means = mixture.means();
  if (x.dim() != 2 || x.size(1) != means.size(1)) {
    throw Error("mixture score: samples must be N x " + std::to_string(means.size(1)) + ", found " +
                c10::str(x.sizes()));
  }
  const int64_t d = means.size(1);
  at::Tensor chol = at::linalg_cholesky(mixture.covariances());                      // K x D x D
  at::Tensor centred = x.to(means.scalar_type()).unsqueeze(0) - means.unsqueeze(1);  // K x N x D
  at::Tensor solved = at::linalg_solve_triangular(chol, centred.transpose(1, 2), /*upper=*/false);
  at::Tensor mahalanobis = solved.pow(2).sum(1);                 // K x N
  at::Tensor log_det = 2 * chol.diagonal(0, 1, 2).log().sum(1);  // K
  at::Tensor log_normal =
      -0.5 * (mahalanobis + log_det.unsqueeze(1) + d * std::log(2 * M_PI));  // K x N
  return (log_normal + mixture.weights().log().unsqueeze(1)).t();            // N x K
}

}  // namespace

at::Tensor mixture_log_density(const GaussianMixture& mixture, const at::Tensor& x) {
  return at::logsumexp(joint_log_density(mixture, x), 1);
}

at::Tensor mixture_component(const GaussianMixture& mixture, const at::Tensor& x) {
  return joint_log_density(mixture, x).argmax(1);
}

MixtureScore score_mixture_samples(const GaussianMixture& mixture, const at::Tensor& samples,
                                   int64_t reference_count, at::Generator& generator) {
  if (reference_count < 2) {
    throw Error("mixture score: reference_count must be >= 2, found " +
                std::to_string(reference_count));
  }
  at::Tensor q = samples.to(mixture.means().scalar_type());
  at::Tensor exact = mixture.sample(reference_count, generator);
  MixtureScore s;
  eval::FeatureMoments truth;
  truth.mean = mixture.mean();
  truth.covariance = mixture.covariance();
  truth.count = 0;  // exact, not estimated
  s.frechet_to_moments = eval::frechet_distance(truth, eval::feature_moments(q, "mixture samples"));
  s.cross_entropy = -mixture_log_density(mixture, q).mean().item<double>();
  s.entropy = -mixture_log_density(mixture, exact).mean().item<double>();
  s.cross_entropy_gap = s.cross_entropy - s.entropy;
  s.modes = eval::class_coverage(mixture_component(mixture, q), mixture_component(mixture, exact),
                                 mixture.weights().size(0));
  return s;
}

}  // namespace distill::diffusion
