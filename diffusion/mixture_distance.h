#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "diffusion/exact_denoisers.h"
#include "src/eval/sample_quality.h"

namespace distill::diffusion {

// Sample quality against a known Gaussian mixture (the 2-D toy data): no classifier, no
// reference set standing in for the truth — the distribution itself is the reference.

// log p(x) under the mixture, N (x: N x D): logsumexp_k [log w_k + log N(x; mu_k, Sigma_k)].
at::Tensor mixture_log_density(const GaussianMixture& mixture, const at::Tensor& x);

// Index of the most probable component of each point (argmax_k w_k N(x; mu_k, Sigma_k)), N.
at::Tensor mixture_component(const GaussianMixture& mixture, const at::Tensor& x);

struct MixtureScore {
  // Squared Fréchet distance between the samples' moments and the mixture's exact mean and
  // covariance (only the first two moments: a mixture and a Gaussian of the same moments score 0).
  double frechet_to_moments = 0;
  // Cross-entropy E_q[-log p] of the samples q under the true mixture p, nats.
  double cross_entropy = 0;
  // H(p) = E_p[-log p], estimated from `reference_count` exact samples (Monte Carlo).
  double entropy = 0;
  // cross_entropy - entropy = KL(q || p) + H(q) - H(p): ~0 when q = p, > 0 for samples off the
  // mixture's mass, but NEGATIVE for samples collapsed onto the modes' peaks (H(q) < H(p)). Read
  // it with the moments and the mode coverage below, never alone.
  double cross_entropy_gap = 0;
  // Component assignment of the samples against that of exact samples (eval::class_coverage):
  // fraction of modes hit, entropy and KL of the mode histogram to the mixture's.
  eval::ClassCoverage modes;
};

// samples: M x D (M >= 2). Exact reference samples are drawn with `generator`.
MixtureScore score_mixture_samples(const GaussianMixture& mixture, const at::Tensor& samples,
                                   int64_t reference_count, at::Generator& generator);

}  // namespace distill::diffusion
