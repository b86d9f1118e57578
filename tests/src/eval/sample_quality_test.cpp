// Sample-quality metrics (src/eval/sample_quality.*, reference_statistics.*): the Fréchet distance
// against numpy on the same features and a diagonal closed form, k-NN precision/recall/density/
// coverage and class coverage on hand-computed cases, and the reference-statistics cache.
#include "src/eval/sample_quality.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "src/core/runtime.h"
#include "src/eval/reference_statistics.h"
#include "src/io/tensor_file.h"
#include "tests/support/test_support.h"

namespace distill::eval {
namespace {

using testing::error_of;

at::Tensor column(std::vector<double> values) {
  return at::tensor(values, at::kDouble).unsqueeze(1);
}

// Two differently shaped Gaussians (correlated, shifted), and a singular case with fewer
// samples than dimensions (the covariances are rank-deficient: FCD on small sample sets).
TEST(FrechetDistance, MatchesNumpyOnRandomFeatures) {
  DISTILL_REQUIRE_PYTHON();
  at::Generator gen = make_generator(3);
  struct Case {
    int64_t n1, n2, d;
  };
  for (const Case c : {Case{300, 200, 12}, Case{20, 25, 32}}) {
    at::Tensor mix = at::randn({c.d, c.d}, gen, at::kDouble);
    at::Tensor a = at::randn({c.n1, c.d}, gen, at::kDouble);
    at::Tensor b = at::matmul(at::randn({c.n2, c.d}, gen, at::kDouble), mix) + 0.5;
    testing::TempDir dir;
    io::TensorDict dict = io::make_dict();
    dict.insert("a", a);
    dict.insert("b", b);
    io::save_dict(dir.file("in.pt"), dict);
    testing::run_python_script("frechet_reference.py", {dir.file("in.pt"), dir.file("out.pt")});
    const double expected =
        io::get_tensor(io::load_dict(dir.file("out.pt")), "frechet", "out.pt").item<double>();
    const double ours = frechet_distance(feature_moments(a), feature_moments(b));
    EXPECT_NEAR(ours, expected, 1e-8 * std::abs(expected)) << c.n1 << " x " << c.d;
    EXPECT_GT(ours, 1.0);
  }
}

TEST(FrechetDistance, ZeroForIdenticalSetsAndSymmetric) {
  at::Generator gen = make_generator(4);
  at::Tensor a = at::randn({100, 40}, gen, at::kDouble) * 3;
  at::Tensor b = at::randn({80, 40}, gen, at::kDouble);
  FeatureMoments ma = feature_moments(a), mb = feature_moments(b);
  // Relative to the scale tr S ~ 40 * 9: a few ulps of rounding, no more.
  EXPECT_LT(frechet_distance(ma, ma), 1e-9);
  EXPECT_NEAR(frechet_distance(ma, mb), frechet_distance(mb, ma), 1e-9);
}

// Diagonal covariances commute: the distance is |m1 - m2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
TEST(FrechetDistance, DiagonalCovariancesClosedForm) {
  FeatureMoments a, b;
  a.mean = at::tensor({1.0, 2.0, 0.0}, at::kDouble);
  b.mean = at::tensor({0.0, 2.0, 3.0}, at::kDouble);
  a.covariance = at::diag(at::tensor({4.0, 1.0, 0.0}, at::kDouble));
  b.covariance = at::diag(at::tensor({1.0, 9.0, 2.0}, at::kDouble));
  const double expected = (1 + 0 + 9) + (1 + 4 + 2);  // (2-1)^2 + (1-3)^2 + (0-sqrt2)^2
  EXPECT_NEAR(frechet_distance(a, b), expected, 1e-10);
}

TEST(FrechetDistance, BadInputNamesWhatIsWrong) {
  EXPECT_EQ(error_of([] {
              feature_moments(at::zeros({1, 3}), "sample features");
            }),
            "sample features: a covariance needs at least 2 feature vectors, found 1");
  EXPECT_EQ(error_of([] { feature_moments(at::zeros({4})); }),
            "features: expected an N x D feature matrix, found 1 dimensions");
  FeatureMoments a = feature_moments(at::randn({5, 3})), b = feature_moments(at::randn({5, 2}));
  EXPECT_EQ(error_of([&] { frechet_distance(a, b); }),
            "Fréchet distance: feature dimensions differ (3 vs 2)");
}

// 1-D points, k = 1 (radius = distance to the nearest other point of the same set):
//   real 0 1 2 3 6 -> radii 1 1 1 1 3;  fake 0.5 2.2 3.5 10 11 -> radii 1.7 1.3 1.3 1 1.
//   precision: 0.5 (ball of 0), 2.2 (ball of 2), 3.5 (ball of 3) inside; 10, 11 not -> 3/5.
//   recall: 0, 1 in the ball of 0.5; 2, 3 in those of 2.2 / 3.5; 6 is 2.5 from 3.5 (radius
//   1.3) and 4 from 10 (radius 1) -> 4/5.
//   density: real balls holding 0.5: {0, 1}; 2.2: {2, 3}; 3.5: {3, 6}; 10, 11: none -> 6 / 5.
//   coverage: every real ball holds a fake point (6's holds 3.5) -> 1.
TEST(ManifoldMetrics, HandComputedOneDimensionalCase) {
  at::Tensor real = column({0, 1, 2, 3, 6});
  at::Tensor fake = column({0.5, 2.2, 3.5, 10, 11});
  EXPECT_TRUE(at::allclose(kth_neighbour_distances(real, 1),
                           at::tensor({1.0, 1.0, 1.0, 1.0, 3.0}, at::kDouble)));
  ManifoldMetrics m = manifold_metrics(real, fake, 1);
  EXPECT_DOUBLE_EQ(m.precision, 0.6);
  EXPECT_DOUBLE_EQ(m.recall, 0.8);
  EXPECT_DOUBLE_EQ(m.density, 1.2);
  EXPECT_DOUBLE_EQ(m.coverage, 1.0);
  // k = 2: real radii 2 1 1 2 4 (6's second neighbour is 2); the ball of 6 now reaches 2.2 and
  // 3.5, and 10 too (distance 4 <= radius 4: inside, "<=" as in both papers' code).
  ManifoldMetrics m2 = manifold_metrics(real, fake, 2);
  EXPECT_DOUBLE_EQ(m2.precision, 4.0 / 5);
}

TEST(ManifoldMetrics, IdenticalSetsAreCoveredAndDisjointOnesAreNot) {
  at::Generator gen = make_generator(5);
  at::Tensor real = at::randn({2500, 6}, gen);  // more rows than one distance chunk
  ManifoldMetrics same = manifold_metrics(real, real, 3);
  EXPECT_DOUBLE_EQ(same.precision, 1.0);
  EXPECT_DOUBLE_EQ(same.recall, 1.0);
  EXPECT_DOUBLE_EQ(same.coverage, 1.0);
  EXPECT_GE(same.density, 1.0);  // each point lies in its own ball and its neighbours'
  ManifoldMetrics far = manifold_metrics(real, real.narrow(0, 0, 500) + 100, 3);
  EXPECT_EQ(far.precision, 0.0);
  EXPECT_EQ(far.recall, 0.0);
  EXPECT_EQ(far.density, 0.0);
  EXPECT_EQ(far.coverage, 0.0);
}

TEST(ManifoldMetrics, KMustBeBelowBothSetSizes) {
  EXPECT_EQ(error_of([] {
              manifold_metrics(at::zeros({10, 2}), at::zeros({3, 2}), 3);
            }),
            "manifold metrics: k must be >= 1 and below both set sizes (10 real, 3 samples), "
            "found 3");
}

// Samples predicted 0 0 1 1 of 3 classes, real classes uniform: 2 of 3 covered, entropy log 2,
// KL(p || q) = 2 * 0.5 log(0.5 / (1/3)) = log 1.5.
TEST(ClassCoverage, HandComputedCase) {
  ClassCoverage c = class_coverage(at::tensor({0, 0, 1, 1}, at::kLong),
                                   at::tensor({0, 1, 2, 2, 1, 0}, at::kLong), 3);
  EXPECT_EQ(c.counts, (std::vector<int64_t>{2, 2, 0}));
  EXPECT_DOUBLE_EQ(c.covered, 2.0 / 3);
  EXPECT_NEAR(c.entropy, std::log(2.0), 1e-12);
  EXPECT_NEAR(c.reference_entropy, std::log(3.0), 1e-12);
  EXPECT_NEAR(c.kl_to_reference, std::log(1.5), 1e-12);
  EXPECT_EQ(error_of([] {
              class_coverage(at::tensor({0, 3}, at::kLong), at::tensor({0, 1}), 3);
            }),
            "class coverage: predicted labels hold class 3, expected ids in [0, 3)");
}

TEST(ReferenceStatistics, CacheReturnsTheSameStatisticsAndFollowsTheKey) {
  testing::TempDir dir;
  at::Generator gen = make_generator(6);
  int calls = 0;
  auto compute = [&] {
    ++calls;
    ReferenceStatistics s;
    s.features = at::randn({50, 4}, gen);
    s.moments = feature_moments(s.features);
    s.labels = at::arange(50, at::kLong).remainder(5);
    return s;
  };
  // The key a caller builds names the classifier by its bytes: rewriting the file changes it.
  const std::string classifier = dir.file("model.pt");
  testing::write_bytes(classifier, "weights v1");
  const std::string key1 = "fashion-mnist test 50 embedding " + file_fingerprint(classifier);
  bool hit = true;
  ReferenceStatistics first = cached_reference_statistics(dir.file("cache"), key1, compute, &hit);
  EXPECT_FALSE(hit);
  ReferenceStatistics again = cached_reference_statistics(dir.file("cache"), key1, compute, &hit);
  EXPECT_TRUE(hit);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(at::equal(first.moments.mean, again.moments.mean));
  EXPECT_TRUE(at::equal(first.moments.covariance, again.moments.covariance));
  EXPECT_TRUE(at::equal(first.features, again.features));
  EXPECT_TRUE(at::equal(first.labels, again.labels));
  EXPECT_EQ(again.moments.count, 50);

  testing::write_bytes(classifier, "weights v2");
  const std::string key2 = "fashion-mnist test 50 embedding " + file_fingerprint(classifier);
  EXPECT_NE(key1, key2);
  ReferenceStatistics retrained =
      cached_reference_statistics(dir.file("cache"), key2, compute, &hit);
  EXPECT_FALSE(hit);
  EXPECT_EQ(calls, 2);
  EXPECT_FALSE(at::equal(first.features, retrained.features));
  // The old classifier's statistics are still there under their own key.
  cached_reference_statistics(dir.file("cache"), key1, compute, &hit);
  EXPECT_TRUE(hit);
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace distill::eval
