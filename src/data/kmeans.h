#pragma once
// k-means and representative selection of real images (the k-means initialisations of synth/
// recovery and of trajectory matching).
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace distill::data {

// k-means on the rows of `points` (N,D): k-means++ seeding (Arthur & Vassilvitskii 2007: the first
// centre uniform, each next one drawn with probability proportional to the squared distance to the
// nearest chosen centre), then Lloyd iterations until no point changes cluster or `iterations`
// are done. An emptied cluster keeps its centre. Deterministic for the generator's state.
struct KMeans {
  at::Tensor centroids;    // k,D (double)
  at::Tensor assignment;   // N (int64): each point's cluster
  int64_t iterations = 0;  // Lloyd iterations run
};
KMeans kmeans(const at::Tensor& points, int64_t k, int64_t iterations, at::Generator& generator);

// For each centroid in order, the index of the nearest row of `points` not taken by an earlier
// centroid (so `k` distinct rows; needs k <= N).
at::Tensor nearest_distinct(const at::Tensor& points, const at::Tensor& centroids);

// Representative (k-means) initialisation: per class, cluster that class's feature rows into
// `per_class` clusters and take the real image nearest each centroid. Returns indices into
// `features` ordered by class (class 0's `per_class` first), as data::sample_per_class does.
// Error naming the class when it has fewer than `per_class` rows.
at::Tensor kmeans_per_class(const at::Tensor& features, const at::Tensor& labels,
                            int64_t num_classes, int64_t per_class, int64_t iterations,
                            at::Generator& generator);

}  // namespace distill::data
