#include "trajectories/trajectory_matcher.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/train/augment.h"
#include "tests/support/test_support.h"
#include "tests/trajectories/matching_fixture.h"

namespace distill::trajectories {
namespace {

// The shared small double-precision case (tests/trajectories/matching_fixture.h).
using Case = fixture::MatchingCase;
Case make_case() { return fixture::small_matching_case(); }

MatchingOptions small_options(const std::string& meta_grad) {
  MatchingOptions o;
  o.syn_steps = 4;
  o.batch_syn = 4;  // mini-batches: the permutation is refilled mid-run
  o.meta_grad = meta_grad;
  return o;
}

train::AugmentFn dsa() {
  train::AugmentOptions a;
  a.name = "dsa";
  return train::make_augment(a, 8);
}

double relative_difference(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).norm() / b.norm()).item<double>();
}

// Adjoint and unroll are the same double-precision gradient summed in another order, so they agree
// to rounding (~1e-14 relative over 4 steps); 1e-10 leaves room for that to accumulate while a
// wrong term fails by far (dropping the Hessian products, as tesla does, moves the gradient 1e-4).
constexpr double kSameGradient = 1e-10;

// Central differences (step 1e-5) of the matcher's loss in `pixels` and in the lr agree with the
// gradients `g` it computed at (images, labels, lr, task).
void expect_matches_finite_differences(const TrajectoryMatcher& matcher, const Case& c,
                                       const MatchingTask& task, double lr, const MetaGradient& g,
                                       std::initializer_list<int64_t> pixels,
                                       const std::string& what) {
  const double h = 1e-5;
  for (int64_t pixel : pixels) {
    at::Tensor plus = c.images.clone(), minus = c.images.clone();
    plus.view(-1)[pixel] += h;
    minus.view(-1)[pixel] -= h;
    const double numeric = (matcher.meta_gradient(plus, c.labels, lr, task).loss -
                            matcher.meta_gradient(minus, c.labels, lr, task).loss) /
                           (2 * h);
    EXPECT_NEAR(g.images_grad.view(-1)[pixel].item<double>(), numeric,
                1e-6 + 1e-4 * std::abs(numeric))
        << what << " pixel " << pixel;
  }
  const double numeric_lr = (matcher.meta_gradient(c.images, c.labels, lr + h, task).loss -
                             matcher.meta_gradient(c.images, c.labels, lr - h, task).loss) /
                            (2 * h);
  EXPECT_NEAR(g.lr_grad, numeric_lr, 1e-6 + 1e-4 * std::abs(numeric_lr)) << what;
}

// The matcher's mini-batches for the 6 images of make_case() with batch_syn 4, drawn here again
// from the task seed: chunks of 4 and 2 from each permutation.
std::vector<at::Tensor> reference_batches(uint64_t seed, int64_t steps) {
  at::Generator order = make_generator(seed, 31);
  std::vector<at::Tensor> batches;
  at::Tensor perm;
  int64_t used = 6;
  for (int64_t step = 0; step < steps; ++step) {
    if (used == 6) {
      perm = at::randperm(6, order, at::kLong);
      used = 0;
    }
    const int64_t size = std::min<int64_t>(4, 6 - used);
    batches.push_back(perm.narrow(0, used, size));
    used += size;
  }
  return batches;
}

// A student step's gradient as TESLA treats it: θ a constant, differentiable in the images x.
at::Tensor detached_step_gradient(const Case& c, const at::Tensor& x, const at::Tensor& theta,
                                  const at::Tensor& index) {
  at::Tensor leaf = theta.detach().requires_grad_(true);
  models::ForwardArgs args;
  args.train = true;
  at::Tensor loss = train::classification_loss(
      c.model->forward(x.index_select(0, index), leaf, args), c.labels.index_select(0, index));
  return torch::autograd::grad({loss}, {leaf}, {}, true, true)[0];
}

TEST(TrajectoryMatcher, InnerBatchesCoverEveryImageIncludingAShortLastChunk) {
  auto model = models::make_model(models::ModelOptions{}, 1, 8, 3);
  MatchingOptions o;
  o.batch_syn = 4;
  o.syn_steps = 7;
  TrajectoryMatcher matcher(*model, o, train::AugmentFn());
  std::vector<at::Tensor> batches = matcher.batches(10, 5);
  ASSERT_EQ(batches.size(), 7u);
  std::vector<int64_t> sizes;
  for (const at::Tensor& b : batches) sizes.push_back(b.numel());
  EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4, 2, 4, 4, 2, 4}));
  for (int pass = 0; pass < 2; ++pass) {  // each permutation is used up exactly once
    at::Tensor seen = at::cat({batches[3 * pass], batches[3 * pass + 1], batches[3 * pass + 2]});
    EXPECT_TRUE(at::equal(std::get<0>(seen.sort()), at::arange(10, at::kLong)));
  }
  o.batch_syn = 0;  // the whole set every step
  TrajectoryMatcher whole(*model, o, train::AugmentFn());
  for (const at::Tensor& b : whole.batches(10, 5)) EXPECT_EQ(b.numel(), 10);
}

TEST(TrajectoryMatcher, AdjointEqualsUnrolledAutograd) {
  for (bool augment : {false, true}) {
    Case c = make_case();
    TrajectoryMatcher unroll(*c.model, small_options("unroll"), augment ? dsa() : train::AugmentFn());
    TrajectoryMatcher adjoint(*c.model, small_options("adjoint"), augment ? dsa() : train::AugmentFn());
    MetaGradient u = unroll.meta_gradient(c.images, c.labels, 0.1, c.task);
    MetaGradient a = adjoint.meta_gradient(c.images, c.labels, 0.1, c.task);
    EXPECT_NEAR(a.loss, u.loss, 1e-12 * std::abs(u.loss));
    EXPECT_LT(relative_difference(a.images_grad, u.images_grad), kSameGradient)
        << "augment " << augment;
    EXPECT_NEAR(a.lr_grad, u.lr_grad, kSameGradient * std::abs(u.lr_grad)) << "augment " << augment;
    EXPECT_GT(u.images_grad.abs().max().item<double>(), 0.0);
  }
}

TEST(TrajectoryMatcher, GradientsMatchCentralFiniteDifferences) {
  Case c = make_case();
  for (const std::string method : {"unroll", "adjoint"}) {
    TrajectoryMatcher matcher(*c.model, small_options(method), dsa());
    const double lr = 0.1;
    MetaGradient g = matcher.meta_gradient(c.images, c.labels, lr, c.task);
    expect_matches_finite_differences(matcher, c, c.task, lr, g, {3, 70, 200, 383}, method);
  }
}

TEST(TrajectoryMatcher, LossIsOneWhenTheStudentStaysAtTheStart) {
  Case c = make_case();
  MatchingOptions o = small_options("adjoint");
  // lr 0: the student stays at the start, so the distance to the target is the normaliser itself.
  TrajectoryMatcher matcher(*c.model, o, train::AugmentFn());
  EXPECT_NEAR(matcher.meta_gradient(c.images, c.labels, 0.0, c.task).loss, 1.0, 1e-12);
}

// A target placed where the student ends: its 4 SGD steps (no augmentation) redone here from the
// same batches. The loss is then 0 up to rounding, and so is its gradient: the student's end is
// the minimum of the distance to the target.
TEST(TrajectoryMatcher, LossIsZeroWhenTheStudentLandsOnTheTarget) {
  Case c = make_case();
  const double lr = 0.1;
  at::Tensor theta = c.task.start.clone();
  for (const at::Tensor& batch : reference_batches(c.task.seed, 4)) {
    theta = (theta - lr * detached_step_gradient(c, c.images, theta, batch)).detach();
  }
  MatchingTask landing = c.task;
  landing.target = theta;
  ASSERT_GT((theta - c.task.start).norm().item<double>(), 1e-3);  // the student does move
  for (const std::string method : {"unroll", "adjoint"}) {
    TrajectoryMatcher matcher(*c.model, small_options(method), train::AugmentFn());
    MetaGradient g = matcher.meta_gradient(c.images, c.labels, lr, landing);
    EXPECT_NEAR(g.loss, 0.0, 1e-20) << method;
    EXPECT_LT(g.images_grad.abs().max().item<double>(), 1e-10) << method;
    EXPECT_NEAR(g.lr_grad, 0.0, 1e-10) << method;
  }
}

// DATM/TESLA soft labels: the label logits get an exact gradient too (adjoint == unroll == FD).
TEST(TrajectoryMatcher, LabelLogitGradientsMatchUnrollAndFiniteDifferences) {
  Case c = make_case();
  at::Generator gen = make_generator(5);
  at::Tensor logits = at::randn({6, 3}, gen).to(at::kDouble);
  TrajectoryMatcher unroll(*c.model, small_options("unroll"), dsa());
  TrajectoryMatcher adjoint(*c.model, small_options("adjoint"), dsa());
  MetaGradient u = unroll.meta_gradient(c.images, logits, 0.1, c.task);
  MetaGradient a = adjoint.meta_gradient(c.images, logits, 0.1, c.task);
  ASSERT_TRUE(a.labels_grad.defined());
  EXPECT_LT(relative_difference(a.labels_grad, u.labels_grad), kSameGradient);
  EXPECT_LT(relative_difference(a.images_grad, u.images_grad), kSameGradient);
  const double h = 1e-5;
  for (int64_t entry : {0, 7, 17}) {
    at::Tensor plus = logits.clone(), minus = logits.clone();
    plus.view(-1)[entry] += h;
    minus.view(-1)[entry] -= h;
    double numeric = (adjoint.meta_gradient(c.images, plus, 0.1, c.task).loss -
                      adjoint.meta_gradient(c.images, minus, 0.1, c.task).loss) / (2 * h);
    EXPECT_NEAR(a.labels_grad.view(-1)[entry].item<double>(), numeric, 1e-7 + 1e-4 * std::abs(numeric))
        << "logit " << entry;
  }
  // Class ids are the limit of very confident logits: the loss approaches the hard-label one.
  at::Tensor confident = at::one_hot(c.labels, 3).to(at::kDouble) * 40.0;
  EXPECT_NEAR(adjoint.meta_gradient(c.images, confident, 0.1, c.task).loss,
              adjoint.meta_gradient(c.images, c.labels, 0.1, c.task).loss, 1e-9);
}

// TESLA's per-batch formulation: dL/dX = -η Σ_i (∂g_i/∂X)ᵀ λ_N with every θ_i a constant. The
// independent computation: θ_N = θ_0 - η Σ g_i(detached θ_i), differentiated by autograd.
TEST(TrajectoryMatcher, TeslaEqualsPerBatchGradientsWithDetachedParameters) {
  Case c = make_case();
  MatchingOptions o = small_options("tesla");
  TrajectoryMatcher tesla(*c.model, o, train::AugmentFn());
  const double lr = 0.1;
  MetaGradient t = tesla.meta_gradient(c.images, c.labels, lr, c.task);

  at::Tensor x = c.images.detach().requires_grad_(true);
  at::Tensor theta = c.task.start.clone();
  at::Tensor sum = at::zeros_like(theta);
  const std::vector<at::Tensor> batches = reference_batches(c.task.seed, o.syn_steps);
  for (int64_t step = 0; step < o.syn_steps; ++step) {
    at::Tensor g = detached_step_gradient(c, x, theta, batches[step]);
    sum = sum + g;
    theta = (theta - lr * g).detach();
  }
  at::Tensor final_params = c.task.start - lr * sum;
  at::Tensor matching = (final_params - c.task.target).pow(2).sum() /
                        (c.task.start - c.task.target).pow(2).sum();
  at::Tensor expected = torch::autograd::grad({matching}, {x})[0];
  EXPECT_NEAR(t.loss, matching.item<double>(), 1e-12);
  EXPECT_LT(relative_difference(t.images_grad, expected), 1e-9);
  // ...and it is an approximation: the exact gradient differs once there is more than one step.
  TrajectoryMatcher exact(*c.model, small_options("adjoint"), train::AugmentFn());
  EXPECT_GT(relative_difference(t.images_grad,
                                exact.meta_gradient(c.images, c.labels, lr, c.task).images_grad),
            1e-4);
  o.syn_steps = 1;
  TrajectoryMatcher one_tesla(*c.model, o, train::AugmentFn());
  o.meta_grad = "adjoint";
  TrajectoryMatcher one_exact(*c.model, o, train::AugmentFn());
  EXPECT_LT(relative_difference(one_tesla.meta_gradient(c.images, c.labels, lr, c.task).images_grad,
                                one_exact.meta_gradient(c.images, c.labels, lr, c.task).images_grad),
            1e-12);
}

// TESLA with AST's switches: heavy-ball velocities and an intermediate target, all as functions of
// X with every θ_i a constant: θ_n = θ_0 - η Σ_{i<n} b_i, b_i = μ b_{i-1} + g_i(θ_i, X).
TEST(TrajectoryMatcher, TeslaWithMomentumAndIntermediateMatchingUsesDetachedParameters) {
  Case c = make_case();
  at::Generator gen = make_generator(12);
  c.task.intermediate_targets = {c.task.start +
                                 0.03 * at::randn(c.task.start.sizes(), gen).to(at::kDouble)};
  MatchingOptions o = small_options("tesla");
  o.student_momentum = 0.9;
  o.intermediate = "sum";  // expert_epochs 2: the student after 4 / 2 = 2 steps
  TrajectoryMatcher tesla(*c.model, o, train::AugmentFn());
  const double lr = 0.1, mu = 0.9;
  MetaGradient t = tesla.meta_gradient(c.images, c.labels, lr, c.task);

  at::Tensor x = c.images.detach().requires_grad_(true);
  at::Tensor theta = c.task.start.clone();
  at::Tensor velocity = at::zeros_like(theta), moved = at::zeros_like(theta), at_two;
  const std::vector<at::Tensor> batches = reference_batches(c.task.seed, o.syn_steps);
  for (int64_t step = 0; step < o.syn_steps; ++step) {
    if (step == 2) at_two = c.task.start - lr * moved;
    at::Tensor g = detached_step_gradient(c, x, theta, batches[step]);
    velocity = mu * velocity + g;
    moved = moved + velocity;
    theta = (theta - lr * velocity).detach();
  }
  auto term = [&](const at::Tensor& student, const at::Tensor& target) {
    return (student - target).pow(2).sum() / (c.task.start - target).pow(2).sum();
  };
  at::Tensor matching =
      term(c.task.start - lr * moved, c.task.target) + term(at_two, c.task.intermediate_targets[0]);
  at::Tensor expected = torch::autograd::grad({matching}, {x})[0];
  EXPECT_NEAR(t.loss, matching.item<double>(), 1e-12);
  EXPECT_LT(relative_difference(t.images_grad, expected), 1e-9);
}

// DATM's window: [min, max) growing linearly to final_max over the growth iterations.
TEST(TrajectoryMatcher, StartEpochWindowGrowsLinearly) {
  MatchingOptions o;
  o.min_start_epoch = 1;
  o.max_start_epoch = 10;
  auto window = [&](int64_t it, int64_t total) { return start_epoch_window(o, it, total); };
  EXPECT_EQ(window(0, 100).begin, 1);
  EXPECT_EQ(window(0, 100).end, 10);
  EXPECT_EQ(window(99, 100).end, 10);  // fixed window without final_max_start_epoch
  o.final_max_start_epoch = 30;
  EXPECT_EQ(window(0, 100).end, 10);
  EXPECT_EQ(window(50, 100).end, 20);
  EXPECT_EQ(window(100, 100).end, 30);
  o.window_growth_iterations = 40;  // grows faster, then stays
  EXPECT_EQ(window(10, 100).end, 15);
  EXPECT_EQ(window(40, 100).end, 30);
  EXPECT_EQ(window(90, 100).end, 30);
  EXPECT_EQ(final_window_end(o), 30);
  o.min_start_epoch = 10;  // empty window: a clear error
  try {
    TrajectoryMatcher bad(*make_case().model, o, train::AugmentFn());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("min_start_epoch"), std::string::npos) << e.what();
  }
}

// AST's balanced inner loss: the factor at a few start epochs (values of AST's formula for
// max_start_epoch 20, computed by hand: log5(8), log5(17), 1 / log5(18), 1 / log5(9)), and its
// effect: scaling every student loss by f is the same run as the lr scaled by f, so the loss and
// image gradient equal those at lr * f, and d/d lr is f times the gradient there.
TEST(TrajectoryMatcher, BalancedInnerLossIsAScaledStudentLearningRate) {
  EXPECT_NEAR(balanced_loss_scale(10, 20), 1.2920, 1e-4);
  EXPECT_NEAR(balanced_loss_scale(19, 20), 1.7604, 1e-4);
  EXPECT_NEAR(balanced_loss_scale(0, 20), 0.5568, 1e-4);
  EXPECT_NEAR(balanced_loss_scale(9, 20), 0.7325, 1e-4);
  EXPECT_NEAR(balanced_loss_scale(15, 31), balanced_loss_scale(15, 30), 1e-15);  // h = 15 both

  for (const std::string method : {"unroll", "adjoint"}) {
    Case c = make_case();
    TrajectoryMatcher matcher(*c.model, small_options(method), dsa());
    const double f = balanced_loss_scale(3, 20), lr = 0.1;
    MatchingTask scaled = c.task;
    scaled.loss_scale = f;
    MetaGradient a = matcher.meta_gradient(c.images, c.labels, lr, scaled);
    MetaGradient b = matcher.meta_gradient(c.images, c.labels, lr * f, c.task);
    EXPECT_NEAR(a.loss, b.loss, 1e-10 * b.loss) << method;
    EXPECT_LT(relative_difference(a.images_grad, b.images_grad), 1e-8) << method;
    EXPECT_NEAR(a.lr_grad, f * b.lr_grad, 1e-8 * std::abs(b.lr_grad)) << method;
  }
}

// AST's weight perturbation: only the 4-D parameters (conv kernels) change, each by d * W with d
// of unit Frobenius norm; the same generator state gives the same perturbation.
TEST(TrajectoryMatcher, WeightPerturbationScalesEachConvKernelByUnitNormNoise) {
  Case c = make_case();
  at::Generator a = make_generator(9), b = make_generator(9);
  at::Tensor perturbed = perturb_conv_kernels(c.task.start, *c.model, a);
  EXPECT_TRUE(at::equal(perturbed, perturb_conv_kernels(c.task.start, *c.model, b)));
  EXPECT_FALSE(at::equal(perturbed, c.task.start));
  std::vector<at::Tensor> before = models::Model::unflatten(c.task.start, c.model->param_specs());
  std::vector<at::Tensor> after = models::Model::unflatten(perturbed, c.model->param_specs());
  int kernels = 0;
  for (size_t k = 0; k < before.size(); ++k) {
    if (before[k].dim() != 4) {
      EXPECT_TRUE(at::equal(before[k], after[k])) << c.model->param_specs()[k].name;
      continue;
    }
    ++kernels;
    at::Tensor d = (after[k] - before[k]) / before[k];  // init weights are never exactly 0
    EXPECT_NEAR(d.norm().item<double>(), 1.0, 1e-6) << c.model->param_specs()[k].name;
  }
  EXPECT_EQ(kernels, 1);  // a one-block ConvNet: one conv layer
  // A student without convolutions has nothing to perturb: an error, not a silent no-op.
  models::ModelOptions mlp;
  mlp.arch = "mlp";
  auto no_conv = models::make_model(mlp, 1, 8, 3);
  MatchingOptions o = small_options("adjoint");
  o.weight_perturbation = true;
  EXPECT_EQ(testing::error_of([&] { TrajectoryMatcher m(*no_conv, o, dsa()); }),
            "mtt.matching.weight_perturbation perturbs convolution kernels, and the student "
            "'mlp' has none");
}

// AST's intermediate matching: with expert_epochs E = 3 and 4 student steps, the student after
// (4 / 3) * i = i steps is matched to the expert's epoch t + i (i = 1, 2). At lr 0 every term is
// 1, so the loss is 1 + the weights' sum (sum: 3; adaptive: 1 + 1/3 + 2/3). The gradients of the
// adjoint sweep equal the unrolled autograd's and central finite differences.
TEST(TrajectoryMatcher, IntermediateMatchingGradientsMatchUnrollAndFiniteDifferences) {
  Case c = make_case();
  at::Generator gen = make_generator(4);
  for (int i = 1; i <= 2; ++i) {
    c.task.intermediate_targets.push_back(
        c.task.start + 0.02 * i * at::randn(c.task.start.sizes(), gen).to(at::kDouble));
  }
  for (const std::string mode : {"sum", "adaptive"}) {
    MatchingOptions o = small_options("unroll");
    o.expert_epochs = 3;
    o.intermediate = mode;
    TrajectoryMatcher unroll(*c.model, o, dsa());
    o.meta_grad = "adjoint";
    TrajectoryMatcher adjoint(*c.model, o, dsa());
    const auto points = adjoint.intermediate_points(2);
    ASSERT_EQ(points.size(), 2u);
    EXPECT_EQ(points[0].step, 1);
    EXPECT_EQ(points[1].step, 2);
    EXPECT_NEAR(adjoint.meta_gradient(c.images, c.labels, 0.0, c.task).loss,
                mode == "sum" ? 3.0 : 2.0, 1e-12)
        << mode;

    const double lr = 0.1;
    MetaGradient u = unroll.meta_gradient(c.images, c.labels, lr, c.task);
    MetaGradient a = adjoint.meta_gradient(c.images, c.labels, lr, c.task);
    EXPECT_NEAR(a.loss, u.loss, 1e-12 * u.loss) << mode;
    EXPECT_LT(relative_difference(a.images_grad, u.images_grad), kSameGradient) << mode;
    EXPECT_NEAR(a.lr_grad, u.lr_grad, kSameGradient * std::abs(u.lr_grad)) << mode;
    expect_matches_finite_differences(adjoint, c, c.task, lr, a, {5, 90, 301}, mode);
  }
  // One expert epoch leaves no epoch between start and target.
  MatchingOptions one = small_options("adjoint");
  one.expert_epochs = 1;
  one.intermediate = "adaptive";
  EXPECT_EQ(testing::error_of([&] { TrajectoryMatcher m(*c.model, one, dsa()); }),
            "settings: mtt.matching.intermediate = adaptive needs expert_epochs >= 2 (an expert epoch "
            "between the start and the target), found expert_epochs 1");
  // Fewer student steps than expert epochs leave no step for an intermediate target.
  MatchingOptions o = small_options("adjoint");
  o.expert_epochs = 5;
  o.intermediate = "sum";
  try {
    TrajectoryMatcher bad(*c.model, o, train::AugmentFn());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mtt.matching.intermediate = sum needs syn_steps"),
              std::string::npos)
        << e.what();
  }
}

// AST's student steps with heavy-ball momentum: the adjoint sweep (exact, and with intermediate
// matching) equals the unrolled autograd and central finite differences; momentum 0 is plain SGD.
TEST(TrajectoryMatcher, StudentMomentumGradientsMatchUnrollAndFiniteDifferences) {
  Case c = make_case();
  at::Generator gen = make_generator(6);
  MatchingTask with_intermediate = c.task;
  with_intermediate.intermediate_targets = {
      c.task.start + 0.03 * at::randn(c.task.start.sizes(), gen).to(at::kDouble)};
  for (bool intermediate : {false, true}) {
    const MatchingTask& task = intermediate ? with_intermediate : c.task;
    MatchingOptions o = small_options("unroll");
    o.student_momentum = 0.9;
    if (intermediate) o.intermediate = "sum";
    TrajectoryMatcher unroll(*c.model, o, dsa());
    o.meta_grad = "adjoint";
    TrajectoryMatcher adjoint(*c.model, o, dsa());
    const double lr = 0.05;
    MetaGradient u = unroll.meta_gradient(c.images, c.labels, lr, task);
    MetaGradient a = adjoint.meta_gradient(c.images, c.labels, lr, task);
    EXPECT_NEAR(a.loss, u.loss, 1e-12 * u.loss) << intermediate;
    EXPECT_LT(relative_difference(a.images_grad, u.images_grad), kSameGradient) << intermediate;
    EXPECT_NEAR(a.lr_grad, u.lr_grad, kSameGradient * std::abs(u.lr_grad)) << intermediate;
    expect_matches_finite_differences(adjoint, c, task, lr, a, {11, 150, 333},
                                      intermediate ? "intermediate" : "end only");
    // Momentum moves the student differently from plain SGD at the same lr.
    MatchingOptions plain = small_options("adjoint");
    if (intermediate) plain.intermediate = "sum";
    EXPECT_GT(std::abs(TrajectoryMatcher(*c.model, plain, dsa())
                           .meta_gradient(c.images, c.labels, lr, task)
                           .loss -
                       a.loss),
              1e-6);
  }
  MatchingOptions bad = small_options("adjoint");
  bad.student_momentum = 1.0;
  EXPECT_EQ(testing::error_of([&] { TrajectoryMatcher m(*c.model, bad, dsa()); }),
            "key 'mtt.matching.student_momentum' must be in [0, 1), found 1");
}

}  // namespace
}  // namespace distill::trajectories
