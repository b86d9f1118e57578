#include "src/data/kmeans.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>
#include <string>

#include "src/core/error.h"

namespace distill::data {
namespace {

// Squared Euclidean distances N,k between rows of x (N,D) and c (k,D), in double, never negative.
at::Tensor squared_distances(const at::Tensor& x, const at::Tensor& c) {
  at::Tensor d = x.pow(2).sum(1, true) - 2.0 * at::matmul(x, c.t()) + c.pow(2).sum(1).unsqueeze(0);
  return d.clamp_min(0.0);
}

}  // namespace

KMeans kmeans(const at::Tensor& points, int64_t k, int64_t iterations, at::Generator& generator) {
  const at::Tensor x = points.detach().to(at::kCPU, at::kDouble).reshape({points.size(0), -1});
  const int64_t n = x.size(0);
  if (k < 1 || k > n) {
    throw Error("k-means: " + std::to_string(k) + " clusters asked of " + std::to_string(n) +
                " points (need 1 <= k <= points)");
  }
  // k-means++ seeding. Draws are uniform numbers mapped through the cumulative weights (rather
  // than at::multinomial) so that the choice is plain arithmetic on the generator's stream.
  std::vector<int64_t> chosen;
  at::Tensor u = at::rand({k}, generator, at::kDouble);
  const double* r = u.data_ptr<double>();
  chosen.push_back(std::min<int64_t>(n - 1, static_cast<int64_t>(r[0] * static_cast<double>(n))));
  at::Tensor nearest = squared_distances(x, x.narrow(0, chosen[0], 1)).squeeze(1);
  for (int64_t j = 1; j < k; ++j) {
    at::Tensor cumulative = nearest.cumsum(0);
    const double total = cumulative[n - 1].item<double>();
    int64_t pick;
    if (total > 0) {
      const double target = r[j] * total;
      // First index whose cumulative weight exceeds the target (points at distance 0 never win).
      pick = std::min(cumulative.le(target).sum().item<int64_t>(), n - 1);
    } else {
      // Every point coincides with a centre: take the first one not chosen yet.
      pick = 0;
      while (std::find(chosen.begin(), chosen.end(), pick) != chosen.end()) ++pick;
    }
    chosen.push_back(pick);
    nearest = at::minimum(nearest, squared_distances(x, x.narrow(0, pick, 1)).squeeze(1));
  }
  KMeans out;
  out.centroids = x.index_select(0, at::tensor(chosen, at::kLong)).clone();
  out.assignment = squared_distances(x, out.centroids).argmin(1);
  // Lloyd: centres to the means of their points, points to their nearest centre.
  for (int64_t it = 0; it < iterations; ++it) {
    at::Tensor sums = at::zeros({k, x.size(1)}, at::kDouble).index_add_(0, out.assignment, x);
    at::Tensor counts = at::bincount(out.assignment, {}, k).to(at::kDouble);
    at::Tensor filled = counts.gt(0);
    out.centroids =
        at::where(filled.unsqueeze(1), sums / counts.clamp_min(1.0).unsqueeze(1), out.centroids);
    at::Tensor assignment = squared_distances(x, out.centroids).argmin(1);
    ++out.iterations;
    const bool stable = at::equal(assignment, out.assignment);
    out.assignment = assignment;
    if (stable) break;
  }
  return out;
}

at::Tensor nearest_distinct(const at::Tensor& points, const at::Tensor& centroids) {
  const at::Tensor x = points.detach().to(at::kCPU, at::kDouble).reshape({points.size(0), -1});
  const int64_t k = centroids.size(0);
  if (k > x.size(0)) {
    throw Error("k-means: " + std::to_string(k) + " centres but only " + std::to_string(x.size(0)) +
                " points to pick from");
  }
  at::Tensor d = squared_distances(x, centroids.to(at::kCPU, at::kDouble));  // N,k
  std::vector<int64_t> picked;
  for (int64_t j = 0; j < k; ++j) {
    at::Tensor column = d.select(1, j).clone();
    for (int64_t p : picked) column[p] = std::numeric_limits<double>::infinity();
    picked.push_back(column.argmin().item<int64_t>());
  }
  return at::tensor(picked, at::kLong);
}

at::Tensor kmeans_per_class(const at::Tensor& features, const at::Tensor& labels,
                            int64_t num_classes, int64_t per_class, int64_t iterations,
                            at::Generator& generator) {
  const at::Tensor cpu_labels = labels.to(at::kCPU, at::kLong);
  std::vector<at::Tensor> picked;
  for (int64_t c = 0; c < num_classes; ++c) {
    at::Tensor members = cpu_labels.eq(c).nonzero().squeeze(1);
    if (members.size(0) < per_class) {
      throw Error("k-means initialisation: class " + std::to_string(c) + " has only " +
                  std::to_string(members.size(0)) + " training images, " +
                  std::to_string(per_class) + " asked per class");
    }
    at::Tensor rows = features.index_select(0, members.to(features.device()));
    KMeans km = kmeans(rows, per_class, iterations, generator);
    picked.push_back(members.index_select(0, nearest_distinct(rows, km.centroids)));
  }
  return at::cat(picked, 0);
}

}  // namespace distill::data
