#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace distill::eval {

// Sample-quality metrics between a set of generated samples and real data, on feature vectors
// (N x D) from any embedding. Nothing here knows where the features come from: `distill diffusion
// score` feeds a classifier's penultimate layer (FCD), the toy-data tests feed raw 2-D points.

// First and second moments of a feature set, in double (the covariance product's square root
// loses digits in float for D in the thousands).
struct FeatureMoments {
  at::Tensor mean;        // D, double
  at::Tensor covariance;  // D x D, double, unbiased (N - 1), as numpy.cov and the FID code
  int64_t count = 0;
};

// features: N x D with N >= 2. Error naming `what` otherwise.
FeatureMoments feature_moments(const at::Tensor& features, const char* what = "features");

// Squared Fréchet (2-Wasserstein) distance between the Gaussians N(m1, S1) and N(m2, S2)
// (Dowson & Landau 1982; the formula of FID, Heusel et al. 2017):
//   |m1 - m2|^2 + tr S1 + tr S2 - 2 tr (S1^1/2 S2 S1^1/2)^1/2.
// Both square roots come from symmetric eigendecompositions (eigenvalues clamped at 0), so the
// result is real and stable for singular covariances (fewer samples than dimensions), where
// scipy.linalg.sqrtm of the non-symmetric S1 S2 can go complex. With a classifier's features this
// is FCD (Fréchet Classifier Distance), not FID: the embedding is not Inception.
double frechet_distance(const FeatureMoments& a, const FeatureMoments& b);

// k-NN manifold metrics. Each point's ball has the radius of its k-th nearest neighbour within
// its own set (the point itself excluded).
//   precision: fraction of fake points inside at least one real ball (Kynkäänniemi et al. 2019)
//   recall:    fraction of real points inside at least one fake ball (same paper)
//   density:   (1 / kM) sum over fake points of the number of real balls holding them
//              (Naeem et al. 2020, eq. 3; ~1 when fake and real follow one distribution)
//   coverage:  fraction of real balls holding at least one fake point (Naeem et al. 2020, eq. 4)
// "Inside" is distance <= radius, as in both reference implementations.
struct ManifoldMetrics {
  double precision = 0, recall = 0, density = 0, coverage = 0;
};

// real: N x D, fake: M x D, 1 <= k < min(N, M). Distances in double, in row chunks so N, M in
// the tens of thousands fit in memory.
ManifoldMetrics manifold_metrics(const at::Tensor& real, const at::Tensor& fake, int64_t k);

// Distance of every row of `points` to its k-th nearest neighbour among the other rows.
at::Tensor kth_neighbour_distances(const at::Tensor& points, int64_t k);

// Which classes a classifier sees in the samples, against the real class distribution.
struct ClassCoverage {
  std::vector<int64_t> counts;   // predicted class histogram of the samples
  double covered = 0;            // fraction of classes predicted at least once
  double entropy = 0;            // of the predicted histogram, nats (log C when uniform)
  double reference_entropy = 0;  // of the real class distribution, nats
  double kl_to_reference = 0;    // KL(predicted || real), nats; 0 when they match
};

// predicted: M class ids in [0, num_classes); reference: N real class ids (their histogram is
// the target; every class must occur there, else the KL is undefined and this throws).
ClassCoverage class_coverage(const at::Tensor& predicted, const at::Tensor& reference,
                             int64_t num_classes);

}  // namespace distill::eval
