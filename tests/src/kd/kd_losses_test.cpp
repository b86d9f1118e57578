#include "src/kd/kd_losses.h"

#include "src/kd/dhkd_loss.h"
#include "src/kd/nd_loss.h"
#include "src/kd/ofa_loss.h"
#include "src/kd/pld_loss.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <functional>
#include <vector>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/io/tensor_file.h"
#include "tests/support/test_support.h"

namespace distill::kd {
namespace {

using Matrix = std::vector<std::vector<double>>;

Matrix rows(const at::Tensor& t) {
  Matrix m(t.size(0), std::vector<double>(t.size(1)));
  for (int64_t i = 0; i < t.size(0); ++i) {
    for (int64_t k = 0; k < t.size(1); ++k) m[i][k] = t[i][k].item<double>();
  }
  return m;
}

std::vector<double> softmax(const std::vector<double>& z, double T) {
  double m = -1e300, s = 0;
  for (double v : z) m = std::max(m, v / T);
  std::vector<double> p;
  for (double v : z) s += std::exp(v / T - m);
  for (double v : z) p.push_back(std::exp(v / T - m) / s);
  return p;
}

double kl(const std::vector<double>& p, const std::vector<double>& q) {
  double sum = 0;
  for (size_t k = 0; k < p.size(); ++k) sum += p[k] * std::log(p[k] / q[k]);
  return sum;
}

double huber(double x) { return std::abs(x) < 1 ? 0.5 * x * x : std::abs(x) - 0.5; }

// Hand-made logits: 2 examples, 3 classes; labels 2 and 0.
const at::Tensor kStudent = at::tensor({1.0, -0.5, 2.0, 0.2, 0.3, -1.0}, at::kDouble).view({2, 3});
const at::Tensor kTeacher = at::tensor({0.5, 0.1, 3.0, 2.5, -0.4, 0.0}, at::kDouble).view({2, 3});
const at::Tensor kLabels = at::tensor({2, 0}, at::kLong);

// Central differences of f at x (double), against autograd.
void expect_gradient_matches_differences(const std::function<at::Tensor(const at::Tensor&)>& f,
                                         const at::Tensor& x, double tolerance = 1e-7) {
  at::Tensor leaf = x.clone().requires_grad_(true);
  at::Tensor grad = torch::autograd::grad({f(leaf)}, {leaf})[0];
  const double h = 1e-6;
  for (int64_t j = 0; j < x.numel(); ++j) {
    at::Tensor plus = x.clone(), minus = x.clone();
    plus.view(-1)[j] += h;
    minus.view(-1)[j] -= h;
    double numeric = (f(plus).item<double>() - f(minus).item<double>()) / (2 * h);
    EXPECT_NEAR(grad.view(-1)[j].item<double>(), numeric, tolerance) << "element " << j;
  }
}

using testing::error_of;

TEST(KdLosses, HintonIsTSquaredKlOfSoftenedOutputs) {
  const double T = 4.0;
  Matrix s = rows(kStudent), t = rows(kTeacher);
  double expected = 0;
  for (int i = 0; i < 2; ++i) expected += kl(softmax(t[i], T), softmax(s[i], T));
  expected *= T * T / 2;
  EXPECT_NEAR(hinton_loss(kStudent, kTeacher, T).item<double>(), expected, 1e-12);
  // Identical outputs: zero loss and zero gradient.
  EXPECT_NEAR(hinton_loss(kTeacher, kTeacher, T).item<double>(), 0.0, 1e-14);
}

TEST(KdLosses, ReverseKlSwapsTheDistributions) {
  const double T = 2.0;
  Matrix s = rows(kStudent), t = rows(kTeacher);
  double expected = 0;
  for (int i = 0; i < 2; ++i) expected += kl(softmax(s[i], T), softmax(t[i], T));
  expected *= T * T / 2;
  EXPECT_NEAR(reverse_kl_loss(kStudent, kTeacher, T).item<double>(), expected, 1e-12);
}

TEST(KdLosses, DkdIsAlphaTckdPlusBetaNckd) {
  const double T = 3.0, alpha = 0.7, beta = 2.5;
  Matrix s = rows(kStudent), t = rows(kTeacher);
  const int labels[2] = {2, 0};
  double tckd = 0, nckd = 0;
  for (int i = 0; i < 2; ++i) {
    auto ps = softmax(s[i], T), pt = softmax(t[i], T);
    const int g = labels[i];
    tckd += kl({pt[g], 1 - pt[g]}, {ps[g], 1 - ps[g]});
    std::vector<double> zs, zt;  // non-target logits only
    for (int k = 0; k < 3; ++k) {
      if (k == g) continue;
      zs.push_back(s[i][k]);
      zt.push_back(t[i][k]);
    }
    nckd += kl(softmax(zt, T), softmax(zs, T));
  }
  double expected = (alpha * tckd + beta * nckd) * T * T / 2;
  EXPECT_NEAR(dkd_loss(kStudent, kTeacher, kLabels, alpha, beta, T).item<double>(), expected,
              1e-12);
  // DKD paper eq. 7 with alpha = beta = 1 is not classical KD (that is TCKD + (1 - p_t) NCKD),
  // but with the teacher's target probability weight it is: check that identity.
  double weighted = 0;
  for (int i = 0; i < 2; ++i) {
    auto pt = softmax(t[i], T);
    const int g = labels[i];
    at::Tensor one_s = kStudent.narrow(0, i, 1), one_t = kTeacher.narrow(0, i, 1);
    at::Tensor one_y = kLabels.narrow(0, i, 1);
    weighted += dkd_loss(one_s, one_t, one_y, 1.0, 1.0 - pt[g], T).item<double>();
  }
  EXPECT_NEAR(weighted / 2, hinton_loss(kStudent, kTeacher, T).item<double>(), 1e-12);
}

TEST(KdLosses, AttentionTransferFollowsTheNormalisedMapFormula) {
  at::Generator gen = make_generator(5);
  at::Tensor fs = at::randn({2, 3, 2, 2}, gen, at::kDouble);
  at::Tensor ft = at::randn({2, 4, 2, 2}, gen, at::kDouble);  // channel counts may differ
  double expected = 0;
  for (int64_t n = 0; n < 2; ++n) {
    std::vector<double> qs(4, 0), qt(4, 0);
    for (int64_t j = 0; j < 4; ++j) {
      for (int64_t c = 0; c < 3; ++c) qs[j] += std::pow(fs[n][c].view(-1)[j].item<double>(), 2) / 3;
      for (int64_t c = 0; c < 4; ++c) qt[j] += std::pow(ft[n][c].view(-1)[j].item<double>(), 2) / 4;
    }
    double ns = 0, nt = 0;
    for (int j = 0; j < 4; ++j) {
      ns += qs[j] * qs[j];
      nt += qt[j] * qt[j];
    }
    for (int j = 0; j < 4; ++j)
      expected += std::pow(qs[j] / std::sqrt(ns) - qt[j] / std::sqrt(nt), 2);
  }
  expected /= 8;  // mean over N x H*W
  EXPECT_NEAR(attention_transfer_loss(fs, ft, 2.0).item<double>(), expected, 1e-12);
}

TEST(KdLosses, RkdDistanceAndAngleFollowTheirDefinitions) {
  // Three 2-D points: a right triangle (student) and a stretched one (teacher).
  at::Tensor es = at::tensor({0.0, 0.0, 3.0, 0.0, 0.0, 4.0}, at::kDouble).view({3, 2});
  at::Tensor et = at::tensor({0.0, 0.0, 1.0, 0.0, 0.0, 1.0}, at::kDouble).view({3, 2});
  auto dist = [](const Matrix& e, int i, int j) {
    return std::hypot(e[i][0] - e[j][0], e[i][1] - e[j][1]);
  };
  Matrix s = rows(es), t = rows(et);
  double mu_s = 0, mu_t = 0;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      if (i == j) continue;
      mu_s += dist(s, i, j) / 6;
      mu_t += dist(t, i, j) / 6;
    }
  }
  double expected = 0;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) expected += huber(dist(s, i, j) / mu_s - dist(t, i, j) / mu_t) / 9;
  }
  EXPECT_NEAR(rkd_distance_loss(es, et).item<double>(), expected, 1e-12);

  auto cosine = [](const Matrix& e, int i, int j, int k) {
    double ax = e[i][0] - e[j][0], ay = e[i][1] - e[j][1];
    double bx = e[k][0] - e[j][0], by = e[k][1] - e[j][1];
    double na = std::hypot(ax, ay), nb = std::hypot(bx, by);
    if (na == 0 || nb == 0) return 0.0;  // degenerate triplet
    return (ax * bx + ay * by) / (na * nb);
  };
  double angle = 0;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      for (int k = 0; k < 3; ++k) angle += huber(cosine(s, i, j, k) - cosine(t, i, j, k)) / 27;
    }
  }
  EXPECT_NEAR(rkd_angle_loss(es, et).item<double>(), angle, 1e-12);
  // Both are invariant to scaling and translating the student: a similar triangle costs 0.
  EXPECT_NEAR(rkd_distance_loss(et * 7.0 + 2.0, et).item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(rkd_angle_loss(et * 7.0 + 2.0, et).item<double>(), 0.0, 1e-12);
}

TEST(KdLosses, FitnetHintIsMseOfTheRegressedFeature) {
  at::Tensor fs = at::tensor({1.0, 2.0, -1.0, 0.5}, at::kDouble).view({1, 2, 1, 2});  // N,C,H,W
  at::Tensor w = at::tensor({2.0, -1.0}, at::kDouble).view({1, 2, 1, 1});
  at::Tensor b = at::tensor({0.5}, at::kDouble);
  at::Tensor ft = at::tensor({1.0, 1.0}, at::kDouble).view({1, 1, 1, 2});
  // regressed: pixel 0: 2*1 - 1*(-1) + .5 = 3.5; pixel 1: 2*2 - 1*.5 + .5 = 4.
  double expected = (std::pow(3.5 - 1, 2) + std::pow(4.0 - 1, 2)) / 2;
  EXPECT_NEAR(hint_loss(regress(fs, w, b), ft).item<double>(), expected, 1e-12);
}

TEST(KdLosses, GradientsMatchCentralDifferences) {
  at::Generator gen = make_generator(9);
  const at::Tensor t = at::randn({4, 5}, gen, at::kDouble) * 2;
  const at::Tensor labels = at::tensor({0, 3, 4, 1}, at::kLong);
  const at::Tensor s = at::randn({4, 5}, gen, at::kDouble) * 2;
  expect_gradient_matches_differences([&](const at::Tensor& x) { return hinton_loss(x, t, 3.0); },
                                      s);
  expect_gradient_matches_differences(
      [&](const at::Tensor& x) { return reverse_kl_loss(x, t, 2.0); }, s);
  expect_gradient_matches_differences(
      [&](const at::Tensor& x) { return dkd_loss(x, t, labels, 1.0, 8.0, 4.0); }, s);
  const at::Tensor ft = at::randn({2, 3, 3, 3}, gen, at::kDouble);
  const at::Tensor fs = at::randn({2, 2, 3, 3}, gen, at::kDouble);
  expect_gradient_matches_differences(
      [&](const at::Tensor& x) { return attention_transfer_loss(x, ft, 2.0); }, fs);
  const at::Tensor et = at::randn({5, 3}, gen, at::kDouble);
  const at::Tensor es = at::randn({5, 4}, gen, at::kDouble);
  expect_gradient_matches_differences([&](const at::Tensor& x) { return rkd_distance_loss(x, et); },
                                      es);
  expect_gradient_matches_differences([&](const at::Tensor& x) { return rkd_angle_loss(x, et); },
                                      es);
  const at::Tensor w = at::randn({3, 2, 1, 1}, gen, at::kDouble);
  const at::Tensor b = at::randn({3}, gen, at::kDouble);
  expect_gradient_matches_differences(
      [&](const at::Tensor& x) { return hint_loss(regress(x, w, b), ft); }, fs);
  expect_gradient_matches_differences(
      [&](const at::Tensor& x) { return hint_loss(regress(fs, x, b), ft); }, w);
  expect_gradient_matches_differences([&](const at::Tensor& x) { return pld_loss(x, t, labels, 2.0); },
                                      s);
  expect_gradient_matches_differences(
      [&](const at::Tensor& x) { return binary_kl_norm_loss(x, t, 2.0); }, s);
  const at::Tensor means = at::randn({5, 3}, gen, at::kDouble);
  expect_gradient_matches_differences(
      [&](const at::Tensor& x) { return nd_loss(x, et.narrow(0, 0, 4) * 0.5, means, labels); },
      es.narrow(0, 0, 4).narrow(1, 0, 3).contiguous());
  expect_gradient_matches_differences(
      [&](const at::Tensor& x) { return ofa_loss(x, t, labels, 1.4, 2.0); }, s);
  // The branch, through a map and a flat feature, in its input and its weights.
  const at::Tensor map = at::randn({4, 2, 3, 3}, gen, at::kDouble);
  std::vector<at::Tensor> branch = {at::randn({6, 2, 1, 1}, gen, at::kDouble),
                                    at::randn({6}, gen, at::kDouble),
                                    at::randn({5, 6}, gen, at::kDouble),
                                    at::randn({5}, gen, at::kDouble)};
  auto through_branch = [&](const at::Tensor& feature, const std::vector<at::Tensor>& w) {
    return ofa_loss(ofa_branch(feature, w), t, labels, 1.4, 2.0);
  };
  expect_gradient_matches_differences([&](const at::Tensor& x) { return through_branch(x, branch); },
                                      map);
  expect_gradient_matches_differences(
      [&](const at::Tensor& x) {
        return through_branch(map, {x, branch[1], branch[2], branch[3]});
      },
      branch[0]);
  std::vector<at::Tensor> flat_branch = {at::randn({6, 3}, gen, at::kDouble), branch[1],
                                         branch[2], branch[3]};
  expect_gradient_matches_differences(
      [&](const at::Tensor& x) { return through_branch(x, flat_branch); },
      es.narrow(0, 0, 4).narrow(1, 0, 3).contiguous());
  expect_gradient_matches_differences(
      [&](const at::Tensor& x) {
        return through_branch(es.narrow(0, 0, 4).narrow(1, 0, 3),
                              {flat_branch[0], flat_branch[1], x, flat_branch[3]});
      },
      branch[2]);
}

// ND by hand: 1 - <s, c_y / |c_y|> / max(|s|, |t|), averaged; 0 when s points along c_y and is
// at least as long as t, 2 when it points the other way.
TEST(KdLosses, NdPullsTowardTheClassMeanDirectionAndTheTeachersNorm) {
  const at::Tensor means = at::tensor({3.0, 4.0, 0.0, 0.0, 0.0, 2.0}, at::kDouble).view({2, 3});
  const at::Tensor s = at::tensor({1.0, 2.0, 2.0, 0.0, 1.0, 0.0}, at::kDouble).view({2, 3});
  const at::Tensor t = at::tensor({0.0, 0.0, 6.0, 0.0, 0.5, 0.0}, at::kDouble).view({2, 3});
  const at::Tensor y = at::tensor({0, 1}, at::kLong);
  // Example 0: <s, (0.6, 0.8, 0)> = 2.2, |s| = 3, |t| = 6 -> 1 - 2.2 / 6. Example 1: <s, (0,0,1)>
  // = 0, |s| = 1, |t| = 0.5 -> 1.
  EXPECT_NEAR(nd_loss(s, t, means, y).item<double>(), ((1 - 2.2 / 6) + 1) / 2, 1e-12);
  const at::Tensor along = at::tensor({6.0, 8.0, 0.0}, at::kDouble).view({1, 3});
  const at::Tensor short_teacher = at::tensor({1.0, 0.0, 0.0}, at::kDouble).view({1, 3});
  const at::Tensor zero = at::tensor({0}, at::kLong);
  EXPECT_NEAR(nd_loss(along, short_teacher, means, zero).item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(nd_loss(-along, short_teacher, means, zero).item<double>(), 2.0, 1e-12);
  // Along c_y but shorter than the teacher (|s| = 0.5, |t| = 10): 1 - 0.5 / 10, more norm wanted.
  EXPECT_NEAR(nd_loss(along * 0.05, short_teacher * 10, means, zero).item<double>(), 0.95, 1e-12);
}

// PLD by hand on the 2 x 3 case: example 0 (label 2, teacher 0.5 0.1 3.0) ranks 2, 0, 1;
// example 1 (label 0, teacher 2.5 -0.4 0.0) ranks 0, 2, 1. Each position k adds
// alpha_k (log sum_{l >= k} e^{s_l} - s_k), alpha = the teacher's softmax at T.
TEST(KdLosses, PldIsTheTeacherWeightedPlackettLuceLikelihoodOfItsRanking) {
  const double T = 2.0;
  const Matrix s = rows(kStudent), t = rows(kTeacher);
  const std::vector<std::vector<int>> ranking = {{2, 0, 1}, {0, 2, 1}};
  double expected = 0;
  for (int i = 0; i < 2; ++i) {
    const std::vector<double> p = softmax(t[i], T);
    for (int k = 0; k < 3; ++k) {
      double rest = 0;
      for (int l = k; l < 3; ++l) rest += std::exp(s[i][ranking[i][l]]);
      expected += p[ranking[i][k]] * (std::log(rest) - s[i][ranking[i][k]]);
    }
  }
  expected /= 2;
  EXPECT_NEAR(pld_loss(kStudent, kTeacher, kLabels, T).item<double>(), expected, 1e-12);
  // A teacher sure of the true label (T -> 0, label on top) leaves cross-entropy.
  const at::Tensor sure = kTeacher + at::one_hot(kLabels, 3).to(at::kDouble) * 10;
  EXPECT_NEAR(pld_loss(kStudent, sure, kLabels, 0.01).item<double>(),
              at::cross_entropy_loss(kStudent, kLabels).item<double>(), 1e-12);
  // Shifting the student's logits changes nothing (a Plackett-Luce model of choices).
  EXPECT_NEAR(pld_loss(kStudent + 3.0, kTeacher, kLabels, T).item<double>(), expected, 1e-12);
  EXPECT_NE(error_of([] { pld_loss(kStudent, kTeacher, kLabels.to(at::kFloat), 1.0); })
                .find("pld needs int64 class ids"),
            std::string::npos);
}

// BinaryKL-Norm by hand: per logit 0.5 log(0.5 / p) + 0.5 log(0.5 / (1 - p)) with
// p = sigmoid((z - t) / T), summed, over N, times T^2; zero at z = t.
TEST(KdLosses, DhkdBinaryKlNormIsTheBernoulliKlPerLogit) {
  const double T = 2.0;
  const Matrix s = rows(kStudent), t = rows(kTeacher);
  double expected = 0;
  for (int i = 0; i < 2; ++i) {
    for (int k = 0; k < 3; ++k) {
      const double p = 1 / (1 + std::exp(-(s[i][k] - t[i][k]) / T));
      expected += 0.5 * std::log(0.5 / p) + 0.5 * std::log(0.5 / (1 - p));
    }
  }
  expected *= T * T / 2;
  EXPECT_NEAR(binary_kl_norm_loss(kStudent, kTeacher, T).item<double>(), expected, 1e-12);
  EXPECT_NEAR(binary_kl_norm_loss(kTeacher, kTeacher, T).item<double>(), 0.0, 1e-15);
  // Not shift-invariant: the head must learn the teacher's logits themselves.
  EXPECT_GT(binary_kl_norm_loss(kTeacher + 1.0, kTeacher, T).item<double>(), 0.1);
}

// OFA by hand: weights (p + m)^eps - m against log softmax(z / T), summed over classes, batch
// mean; the target class weighs (1 + p_y)^eps - 1, the others p_c^eps.
TEST(KdLosses, OfaEnhancesTheTargetClassOfTheTeachersPrediction) {
  const double T = 2.0, eps = 1.5;
  const Matrix s = rows(kStudent), t = rows(kTeacher);
  const std::vector<int> y = {2, 0};
  double expected = 0;
  for (int i = 0; i < 2; ++i) {
    const std::vector<double> p = softmax(t[i], T), q = softmax(s[i], T);
    for (int c = 0; c < 3; ++c) {
      const double w = c == y[i] ? std::pow(1 + p[c], eps) - 1 : std::pow(p[c], eps);
      expected -= w * std::log(q[c]);
    }
  }
  expected /= 2;
  EXPECT_NEAR(ofa_loss(kStudent, kTeacher, kLabels, eps, T).item<double>(), expected, 1e-12);
  // eps = 1: cross-entropy with the teacher's soft labels, i.e. KL + the teacher's entropy.
  double entropy = 0;
  for (int i = 0; i < 2; ++i) {
    for (double p : softmax(t[i], T)) entropy -= p * std::log(p) / 2;
  }
  EXPECT_NEAR(ofa_loss(kStudent, kTeacher, kLabels, 1.0, T).item<double>(),
              hinton_loss(kStudent, kTeacher, T).item<double>() / (T * T) + entropy, 1e-12);
  // Soft labels name their argmax as the target class (OFA under Mixup/CutMix).
  const at::Tensor soft = at::tensor({0.1, 0.2, 0.7, 0.6, 0.3, 0.1}, at::kDouble).view({2, 3});
  EXPECT_NEAR(ofa_loss(kStudent, kTeacher, soft, eps, T).item<double>(), expected, 1e-12);
  EXPECT_NE(error_of([] { ofa_loss(kStudent, kTeacher, kLabels.to(at::kFloat), 1.0, 1.0); })
                .find("ofa needs int64 class ids (N) or soft labels (N,K)"),
            std::string::npos);
  EXPECT_NE(error_of([] { ofa_loss(kStudent, kTeacher, kLabels, 0.0, 1.0); })
                .find("eps must be > 0, found 0"),
            std::string::npos);
}

// The branch: linear - ReLU - linear on a flat feature; 1x1 conv - ReLU - mean over H,W - linear
// on a map; by hand on one example each.
TEST(KdLosses, OfaBranchIsHiddenReluPoolThenLinear) {
  const at::Tensor flat = at::tensor({1.0, -2.0}, at::kDouble).view({1, 2});
  const at::Tensor w1 = at::tensor({1.0, 1.0, 2.0, 0.5, -1.0, 0.0}, at::kDouble).view({3, 2});
  const at::Tensor b1 = at::tensor({0.5, 0.0, 0.0}, at::kDouble);
  const at::Tensor w2 = at::tensor({1.0, 2.0, 3.0, -1.0, 0.0, 1.0}, at::kDouble).view({2, 3});
  const at::Tensor b2 = at::tensor({0.0, 1.0}, at::kDouble);
  // hidden = relu(-1 + .5, 2 - 1, -1) = (0, 1, 0); output = (2, 0 + 1).
  at::Tensor out = ofa_branch(flat, {w1, b1, w2, b2});
  EXPECT_NEAR(out[0][0].item<double>(), 2.0, 1e-12);
  EXPECT_NEAR(out[0][1].item<double>(), 1.0, 1e-12);
  // A 2-channel 1x2 map with pixels (1, -2) and (3, 0): hidden per pixel relu(w1 x + b1) =
  // (0, 1, 0) and (3.5, 6, 0); mean (1.75, 3.5, 0); output (1.75 + 7, -1.75 + 1).
  const at::Tensor map = at::tensor({1.0, 3.0, -2.0, 0.0}, at::kDouble).view({1, 2, 1, 2});
  out = ofa_branch(map, {w1.view({3, 2, 1, 1}), b1, w2, b2});
  EXPECT_NEAR(out[0][0].item<double>(), 8.75, 1e-12);
  EXPECT_NEAR(out[0][1].item<double>(), -0.75, 1e-12);
}

TEST(KdLosses, MatchPython) {
  DISTILL_REQUIRE_PYTHON();
  testing::TempDir dir;
  at::Generator gen = make_generator(21);
  io::TensorDict in = io::make_dict();
  const int64_t n = 6, k = 7;
  in.insert("s", at::randn({n, k}, gen, at::kDouble) * 2);
  in.insert("t", at::randn({n, k}, gen, at::kDouble) * 2);
  in.insert("labels", at::randint(k, {n}, gen));
  in.insert("T", 3.0);
  in.insert("alpha", 1.5);
  in.insert("beta", 6.0);
  in.insert("fs", at::randn({n, 3, 4, 4}, gen, at::kDouble));
  in.insert("ft", at::randn({n, 5, 4, 4}, gen, at::kDouble));
  in.insert("es", at::randn({n, 8}, gen, at::kDouble));
  in.insert("et", at::randn({n, 4}, gen, at::kDouble));
  in.insert("conv_w", at::randn({5, 3, 1, 1}, gen, at::kDouble));
  in.insert("conv_b", at::randn({5}, gen, at::kDouble));
  in.insert("lin_w", at::randn({4, 8}, gen, at::kDouble));
  in.insert("lin_b", at::randn({4}, gen, at::kDouble));
  in.insert("nd_means", at::randn({k, 8}, gen, at::kDouble));
  in.insert("nd_t", at::randn({n, 8}, gen, at::kDouble) * 1.5);
  io::save_dict(dir.file("in.pt"), in);
  testing::run_python_script("kd_losses_reference.py", {dir.file("in.pt"), dir.file("out.pt")});
  io::TensorDict expected = io::load_dict(dir.file("out.pt"));

  auto get = [&](const std::string& key) { return io::get_tensor(in, key, "in.pt"); };
  struct Case {
    std::string name;
    std::vector<std::string> students;
    std::function<at::Tensor(const std::vector<at::Tensor>&)> loss;
  };
  const at::Tensor t = get("t"), labels = get("labels"), ft = get("ft"), et = get("et");
  std::vector<Case> cases = {
      {"hinton", {"s"}, [&](auto& x) { return hinton_loss(x[0], t, 3.0); }},
      {"reverse_kl", {"s"}, [&](auto& x) { return reverse_kl_loss(x[0], t, 3.0); }},
      {"dkd", {"s"}, [&](auto& x) { return dkd_loss(x[0], t, labels, 1.5, 6.0, 3.0); }},
      {"at", {"fs"}, [&](auto& x) { return attention_transfer_loss(x[0], ft, 2.0); }},
      {"rkd_distance", {"es"}, [&](auto& x) { return rkd_distance_loss(x[0], et); }},
      {"rkd_angle", {"es"}, [&](auto& x) { return rkd_angle_loss(x[0], et); }},
      {"fitnet_conv",
       {"fs", "conv_w", "conv_b"},
       [&](auto& x) { return hint_loss(regress(x[0], x[1], x[2]), ft); }},
      {"fitnet_linear",
       {"es", "lin_w", "lin_b"},
       [&](auto& x) { return hint_loss(regress(x[0], x[1], x[2]), et); }},
      {"pld", {"s"}, [&](auto& x) { return pld_loss(x[0], t, labels, 3.0); }},
      {"dhkd", {"s"}, [&](auto& x) { return binary_kl_norm_loss(x[0], t, 3.0); }},
      {"nd", {"es"}, [&](auto& x) { return nd_loss(x[0], get("nd_t"), get("nd_means"), labels); }},
      {"ofa", {"s"}, [&](auto& x) { return ofa_loss(x[0], t, labels, 1.5, 3.0); }},
  };
  for (const auto& c : cases) {
    std::vector<at::Tensor> leaves;
    for (const auto& key : c.students) leaves.push_back(get(key).clone().requires_grad_(true));
    at::Tensor loss = c.loss(leaves);
    at::Tensor reference = io::get_tensor(expected, c.name, "out.pt");
    EXPECT_NEAR(loss.item<double>(), reference.item<double>(), 1e-10) << c.name;
    std::vector<at::Tensor> grads = torch::autograd::grad({loss}, leaves);
    for (size_t i = 0; i < grads.size(); ++i) {
      at::Tensor g = io::get_tensor(expected, c.name + ".grad" + std::to_string(i), "out.pt");
      EXPECT_TRUE(at::allclose(grads[i], g, 1e-8, 1e-10))
          << c.name << " grad " << i << ": max diff " << (grads[i] - g).abs().max().item<double>();
    }
  }
}

TEST(KdLosses, BadInputsNameTheProblem) {
  EXPECT_NE(error_of([] { hinton_loss(kStudent, kTeacher, 0.0); }).find("T must be > 0, found 0"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              hinton_loss(kStudent, kTeacher.narrow(1, 0, 2), 1.0);
            }).find("same shape, found [2, 3] and [2, 2]"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              dkd_loss(kStudent, kTeacher, kLabels.to(at::kFloat), 1, 8, 4);
            }).find("needs int64 class ids"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              attention_transfer_loss(at::zeros({2, 3, 4, 4}), at::zeros({2, 3, 2, 2}), 2);
            }).find("same N, H and W, found [2, 3, 4, 4] and [2, 3, 2, 2]"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              attention_map(at::zeros({2, 3}), 2);
            }).find("N,C,H,W"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              rkd_distance_loss(at::zeros({1, 3}), at::zeros({1, 3}));
            }).find("batch size >= 2"),
            std::string::npos);
}

}  // namespace
}  // namespace distill::kd
