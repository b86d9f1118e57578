// k-means (representative) initialisation: k-means++ seeding, Lloyd iterations and the pick of the
// real image nearest each centroid, on hand-made features whose clusters are known.
#include "src/data/kmeans.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "src/core/runtime.h"
#include "tests/support/test_support.h"

namespace distill::data {
namespace {

// `groups` well-separated 2-D groups (centres 100 apart), `per_group` points each with offsets in
// [-1, 1], interleaved (point i belongs to group i % groups) so that order reveals nothing.
at::Tensor separated_groups(int64_t groups, int64_t per_group, at::Generator& gen) {
  at::Tensor centres = at::zeros({groups, 2}, at::kDouble);
  for (int64_t g = 0; g < groups; ++g) {
    centres[g][0] = 100.0 * static_cast<double>(g);
    centres[g][1] = g % 2 == 0 ? 0.0 : 100.0;
  }
  at::Tensor group = at::arange(groups * per_group, at::kLong).remainder(groups);
  return centres.index_select(0, group) +
         (at::rand({groups * per_group, 2}, gen, at::kDouble) * 2 - 1);
}

TEST(KMeans, WellSeparatedGroupsAreTheClustersAndEachGivesTheImageNearestItsMean) {
  at::Generator gen = make_generator(21);
  const int64_t groups = 4, per_group = 9;
  at::Tensor x = separated_groups(groups, per_group, gen);
  at::Generator seed = make_generator(3);
  KMeans km = kmeans(x, groups, 50, seed);
  // Every cluster is exactly one group (points i and j share a cluster iff i = j mod groups).
  at::Tensor group = at::arange(groups * per_group, at::kLong).remainder(groups);
  at::Tensor same_cluster = km.assignment.unsqueeze(0).eq(km.assignment.unsqueeze(1));
  at::Tensor same_group = group.unsqueeze(0).eq(group.unsqueeze(1));
  EXPECT_TRUE(at::equal(same_cluster, same_group));
  EXPECT_LE(km.iterations, 3);  // converged, not stopped by the cap
  // Lloyd's fixed point: each centroid is its group's mean, and the picked point is the group
  // member nearest that mean (found here by brute force).
  at::Tensor picked = nearest_distinct(x, km.centroids);
  std::set<int64_t> groups_picked;
  for (int64_t j = 0; j < groups; ++j) {
    const int64_t g = group[picked[j].item<int64_t>()].item<int64_t>();
    groups_picked.insert(g);
    at::Tensor members = group.eq(g).nonzero().squeeze(1);
    at::Tensor mean = x.index_select(0, members).mean(0);
    EXPECT_TRUE(at::allclose(km.centroids[j], mean, 1e-12, 1e-12)) << "cluster " << j;
    at::Tensor d = (x.index_select(0, members) - mean).pow(2).sum(1);
    EXPECT_EQ(picked[j].item<int64_t>(), members[d.argmin().item<int64_t>()].item<int64_t>());
  }
  EXPECT_EQ(groups_picked.size(), static_cast<size_t>(groups));  // one image per group
  // Deterministic for the seed.
  at::Generator again = make_generator(3);
  KMeans km2 = kmeans(x, groups, 50, again);
  EXPECT_TRUE(at::equal(km2.centroids, km.centroids));
  EXPECT_TRUE(at::equal(km2.assignment, km.assignment));
}

TEST(KMeans, SeedingSpreadsOverGroupsEvenWithoutLloydIterations) {
  // k-means++ with zero Lloyd iterations: the centres are data points, one in each group (a
  // point of an already-covered group has weight <= 8 against >= ~9800 for an uncovered one).
  at::Generator gen = make_generator(22);
  at::Tensor x = separated_groups(3, 5, gen);
  at::Generator seed = make_generator(4);
  KMeans km = kmeans(x, 3, 0, seed);
  EXPECT_EQ(km.iterations, 0);
  std::set<int64_t> covered;
  for (int64_t j = 0; j < 3; ++j) {
    at::Tensor d = (x - km.centroids[j]).pow(2).sum(1);
    EXPECT_EQ(d.min().item<double>(), 0.0);  // a data point
    covered.insert(d.argmin().item<int64_t>() % 3);
  }
  EXPECT_EQ(covered.size(), 3u);
}

// The D^2 draw itself (k-means++, Arthur & Vassilvitskii 2007): points 0, 1, 3 on a line, k = 2,
// seeding only. The first centre is uniform; the second is drawn with probability proportional
// to the squared distance to it, so the pair {0, 1} comes out with probability
// (1/3)(1/10 + 1/5) = 0.1 and {0, 3} with (1/3)(9/10 + 9/13) = 0.531 (farthest-point seeding,
// which the tests above would also accept, never gives {0, 1}). 3000 seeded runs, 4 standard
// errors of tolerance.
TEST(KMeans, SeedingDrawsWithProbabilityProportionalToSquaredDistance) {
  const at::Tensor points = at::tensor({0.0, 1.0, 3.0}, at::kDouble).view({3, 1});
  const int runs = 3000;
  int near_pair = 0, far_pair = 0;
  for (int i = 0; i < runs; ++i) {
    at::Generator generator = make_generator(static_cast<uint64_t>(i));
    KMeans result = kmeans(points, 2, 0, generator);
    const double lo = result.centroids.min().item<double>();
    const double hi = result.centroids.max().item<double>();
    near_pair += lo == 0.0 && hi == 1.0;
    far_pair += lo == 0.0 && hi == 3.0;
  }
  const double p_near = 0.1, p_far = (0.9 + 9.0 / 13.0) / 3.0;
  EXPECT_NEAR(near_pair / double(runs), p_near, 4 * std::sqrt(p_near * (1 - p_near) / runs));
  EXPECT_NEAR(far_pair / double(runs), p_far, 4 * std::sqrt(p_far * (1 - p_far) / runs));
}

TEST(KMeans, PerClassPicksOneImagePerGroupOrderedByClass) {
  // Two classes, each made of two separated groups; class c's points are rows with label c.
  at::Generator gen = make_generator(23);
  at::Tensor a = separated_groups(2, 6, gen), b = separated_groups(2, 6, gen) + 1000.0;
  at::Tensor features = at::cat({a, b}, 0).to(at::kFloat);
  at::Tensor labels = at::cat({at::zeros({12}, at::kLong), at::ones({12}, at::kLong)});
  // Shuffle the rows so that class membership comes from the labels only.
  at::Tensor perm = at::randperm(24, gen, at::kLong);
  features = features.index_select(0, perm);
  labels = labels.index_select(0, perm);
  at::Generator seed = make_generator(5);
  at::Tensor index = kmeans_per_class(features, labels, 2, 2, 20, seed);
  ASSERT_EQ(index.numel(), 4);
  for (int64_t c = 0; c < 2; ++c) {
    std::set<int64_t> groups;
    for (int64_t j = 0; j < 2; ++j) {
      const int64_t i = index[c * 2 + j].item<int64_t>();
      EXPECT_EQ(labels[i].item<int64_t>(), c);
      // Group of the picked row: its original position in a or b, mod 2.
      groups.insert(perm[i].item<int64_t>() % 12 % 2);
    }
    EXPECT_EQ(groups.size(), 2u) << "class " << c;
  }
  at::Generator seed2 = make_generator(5);
  EXPECT_TRUE(at::equal(kmeans_per_class(features, labels, 2, 2, 20, seed2), index));
  at::Generator seed3 = make_generator(5);
  EXPECT_EQ(testing::error_of([&] { kmeans_per_class(features, labels, 2, 13, 20, seed3); }),
            "k-means initialisation: class 0 has only 12 training images, 13 asked per class");
}

}  // namespace
}  // namespace distill::data
