// CPU against CUDA on identical inputs: every model's forward and backward, DSA, the MTT
// meta-gradient, the diffusion samplers, one step of progressive and consistency distillation, and
// `distill eval` end to end. The CPU results are the independent reference: every CPU path here is
// checked against finite differences, closed forms or Python elsewhere in the suite, so a CUDA
// result that agrees with them is right too. Each case skips without a GPU;
// experiments/gpu/check.sh runs them on one (and counts a skip as a failure).
//
// Tolerances: the devices differ only by summation order (cuDNN and cuBLAS kernels, parallel
// reductions, atomic adds): ~1e-7 relative per float32 operation, a few 1e-6 on the logits of the
// deepest nets, more where a computation cancels. Each case states its bound and why; the bounds
// were set from measured rounding (float32 against float64, or inputs perturbed at 1e-13) with a
// margin of 10x or more. Differences are judged against the CPU tensor's largest magnitude (or
// its norm), not entry by entry, so that entries near zero count on their tensor's scale.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "diffusion/consistency_distillation.h"
#include "diffusion/exact_denoisers.h"
#include "diffusion/mlp_denoiser.h"
#include "diffusion/noise_schedule.h"
#include "diffusion/parameterization.h"
#include "diffusion/progressive_distillation.h"
#include "diffusion/samplers.h"
#include "src/core/runtime.h"
#include "src/io/atomic_file.h"
#include "src/models/model.h"
#include "src/train/augment.h"
#include "src/train/dsa_augment.h"
#include "src/train/trainer.h"
#include "tests/diffusion/mixture_fixture.h"
#include "tests/support/cli_support.h"
#include "tests/support/test_support.h"
#include "tests/trajectories/matching_fixture.h"
#include "trajectories/trajectory_matcher.h"

namespace distill {
namespace {

const c10::Device kCpu(c10::kCPU);
const c10::Device kCuda(c10::kCUDA, 0);
const auto kDouble = at::TensorOptions().dtype(at::kDouble);

// Ampere and later GPUs run float32 convolutions in TF32 by default (PyTorch's
// cudnn.allow_tf32 = True): a 10-bit mantissa, ~1e-3 relative error per product, which would
// swamp every float32 bound below. The cases compare full float32 on both devices.
void full_fp32_on_cuda() {
  at::globalContext().setAllowTF32CuDNN(false);
  at::globalContext().setAllowTF32CuBLAS(false);
}

// How close a CUDA tensor must be to its CPU counterpart. Entrywise (the default):
// max |cuda - cpu| <= rtol * scale, with scale the CPU tensor's largest magnitude (at least
// `floor`); rtol 0 demands equality. In norm: ||cuda - cpu|| <= rtol * ||cpu||, for results whose
// rounding concentrates in a few ill-conditioned entries (see EveryModelForwardAndBackward).
struct Tolerance {
  double rtol = 0;
  double floor = 0;
  bool in_norm = false;
};

// The one comparison every case makes: the CUDA result was computed on the GPU (not silently on
// the CPU), has the CPU result's shape and dtype, and agrees within `tolerance`.
void expect_agree(const at::Tensor& on_cuda, const at::Tensor& on_cpu, Tolerance tolerance,
                  const std::string& what) {
  ASSERT_TRUE(on_cuda.defined() && on_cpu.defined()) << what << ": a result is missing";
  EXPECT_TRUE(on_cuda.is_cuda()) << what << ": the CUDA result lies on " << on_cuda.device();
  EXPECT_TRUE(on_cpu.is_cpu()) << what << ": the CPU result lies on " << on_cpu.device();
  ASSERT_EQ(on_cuda.sizes(), on_cpu.sizes()) << what;
  EXPECT_EQ(on_cuda.scalar_type(), on_cpu.scalar_type()) << what;
  if (on_cpu.numel() == 0) return;
  const at::Tensor a = on_cuda.detach().cpu().to(at::kDouble);
  const at::Tensor b = on_cpu.detach().to(at::kDouble);
  const double scale = tolerance.in_norm ? b.norm().item<double>()
                                         : std::max(b.abs().max().item<double>(), tolerance.floor);
  const double difference =
      tolerance.in_norm ? (a - b).norm().item<double>() : (a - b).abs().max().item<double>();
  EXPECT_LE(difference, tolerance.rtol * scale)
      << what << ": " << (tolerance.in_norm ? "||cuda - cpu|| = " : "max |cuda - cpu| = ")
      << difference << " on a scale of " << scale << " (relative " << difference / scale
      << ", allowed " << tolerance.rtol << ")";
}

void expect_agree(double on_cuda, double on_cpu, double rtol, const std::string& what) {
  EXPECT_NEAR(on_cuda, on_cpu, rtol * std::abs(on_cpu))
      << what << " (relative bound " << rtol << ")";
}

// ||a - b|| / ||b|| (the matcher's own test measures adjoint against unroll this way).
double relative_difference(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).norm() / b.norm()).item<double>();
}

// ------------------------------------------------------------------ models

struct ModelCase {
  std::string name;
  models::ModelOptions options;
  int64_t image_size = 32;
};

// Every architecture make_model accepts, plus the knobs that change the computation: batch norm
// in the ConvNet (the DC code's ConvNetBN; norm is a convnet setting, not an arch name),
// torchvision's ResNet stem, and dropout in the MLP. Deeper ConvNets get the image sizes they are
// meant for, so their last instance norm sees 2x2 maps rather than a degenerate 1x1.
std::vector<ModelCase> every_model() {
  std::vector<ModelCase> cases;
  for (const std::string arch :
       {"convnet", "mlp", "lenet", "alexnet", "vgg11", "vgg11bn", "resnet18", "resnet18bn"}) {
    models::ModelOptions o;
    o.arch = arch;
    cases.push_back({arch, o});
  }
  models::ModelOptions d4, d5, bn, imagenet, dropout;
  d4.arch = "convnetd4";
  cases.push_back({"convnetd4", d4, 32});
  d5.arch = "convnetd5";
  cases.push_back({"convnetd5", d5, 64});
  bn.norm = "batchnorm";
  cases.push_back({"convnet norm=batchnorm", bn});
  imagenet.arch = "resnet18bn";
  imagenet.stem = "imagenet";
  cases.push_back({"resnet18bn stem=imagenet", imagenet});
  // The dropout masks come from the caller's CPU generator, so a CUDA pass must drop the same
  // units as the CPU pass (drawn on the generator's device and moved, as diffusion/noise.h does).
  dropout.arch = "mlp";
  dropout.dropout = 0.5;
  dropout.input_dropout = 0.2;
  cases.push_back({"mlp dropout=0.5 input_dropout=0.2", dropout});
  return cases;
}

struct ForwardBackward {
  at::Tensor logits;
  at::Tensor grad;     // d cross-entropy / d params
  at::Tensor buffers;  // running statistics after the train-mode pass
};

// One train-mode pass on whatever device the inputs are on. The seed feeds dropout only.
ForwardBackward forward_backward(const models::Model& model, const at::Tensor& params,
                                 const at::Tensor& buffers, const at::Tensor& images,
                                 const at::Tensor& labels, uint64_t dropout_seed) {
  at::Generator dropout = make_generator(dropout_seed);
  at::Tensor leaf = params.detach().clone().requires_grad_(true);
  models::ForwardArgs args;
  args.train = true;
  args.buffers = buffers.clone();  // updated in place by batch norm
  args.generator = &dropout;
  at::Tensor logits = model.forward(images, leaf, args);
  at::Tensor loss = train::classification_loss(logits, labels);
  at::Tensor grad = torch::autograd::grad({loss}, {leaf})[0];
  return {logits.detach(), grad, args.buffers};
}

TEST(CudaAgreement, EveryModelForwardAndBackward) {
  if (!at::hasCUDA())
    GTEST_SKIP() << "no CUDA device (experiments/gpu/check.sh runs these on a GPU)";
  full_fp32_on_cuda();
  // Each model twice: in float32, as runs train, and in float64, where rounding is out of the way
  // and every parameter tensor's gradient can be held to a tight bound.
  //
  // float32: logits and running statistics entrywise to relative 1e-4. Their rounding error
  // (measured against float64 on the CPU) is at most 4e-6 (ResNet-18 with the ImageNet stem,
  // VGG-11), so two devices, each that far from the exact value, stay 10x inside; a wrong kernel
  // is off by O(1). The gradient only in norm, to relative 5e-3: the backward passes of batch and
  // instance norm subtract the incoming gradient's mean and its projection on the normalized
  // input, and where those nearly cancel, rounding grows up to 1e5-fold in a few tensors.
  // float32 against float64 gives up to 1e-2 entrywise in some tensors of ConvNet-BN and of
  // ConvNet-D5 (instance norm over 2x2 maps), and in norm over the whole gradient 4e-4 (D5),
  // 1e-4 (ConvNet-BN), below 2e-5 for the others.
  // float64: logits and running statistics to relative 1e-10, each parameter tensor's gradient
  // entrywise to relative 1e-8, judged on at least 1 % of the whole gradient's scale (a conv
  // bias under batch norm has a gradient that is zero up to rounding). With float64's rounding
  // of 1e-16 and the amplification above, the devices differ by ~1e-11.
  for (const ModelCase& c : every_model()) {
    SCOPED_TRACE(c.name);
    auto model = models::make_model(c.options, 3, c.image_size, 10);
    at::Generator gen = make_generator(1);
    const at::Tensor params = model->init_params(gen);
    const at::Tensor buffers = model->init_buffers();
    const at::Tensor images = at::randn({8, 3, c.image_size, c.image_size}, gen);
    const at::Tensor labels = at::randint(10, {8}, gen, at::kLong);
    for (const bool single : {true, false}) {
      const at::ScalarType dtype = single ? at::kFloat : at::kDouble;
      const std::string what = c.name + (single ? " float32 " : " float64 ");
      const ForwardBackward cpu = forward_backward(*model, params.to(dtype), buffers.to(dtype),
                                                   images.to(dtype), labels, 5);
      ForwardBackward cuda;
      try {
        cuda = forward_backward(*model, params.to(kCuda, dtype), buffers.to(kCuda, dtype),
                                images.to(kCuda, dtype), labels.to(kCuda), 5);
      } catch (const std::exception& e) {
        ADD_FAILURE() << what << "on CUDA threw: " << e.what();
        continue;
      }
      const Tolerance values{single ? 1e-4 : 1e-10, 1e-6};
      expect_agree(cuda.logits, cpu.logits, values, what + "logits");
      expect_agree(cuda.buffers, cpu.buffers, values, what + "running statistics");
      if (single) {
        expect_agree(cuda.grad, cpu.grad, Tolerance{5e-3, 0, /*in_norm=*/true}, what + "gradient");
        continue;
      }
      const double gradient_scale = cpu.grad.abs().max().item<double>();
      ASSERT_GT(gradient_scale, 0.0) << what;
      const auto& specs = model->param_specs();
      const std::vector<at::Tensor> cpu_grads = models::Model::unflatten(cpu.grad, specs);
      const std::vector<at::Tensor> cuda_grads = models::Model::unflatten(cuda.grad, specs);
      for (size_t i = 0; i < specs.size(); ++i) {
        expect_agree(cuda_grads[i], cpu_grads[i], Tolerance{1e-8, 1e-2 * gradient_scale},
                     what + "d loss / d " + specs[i].name);
      }
    }
  }
}

// ------------------------------------------------------------------ DSA

TEST(CudaAgreement, DsaAugmentation) {
  if (!at::hasCUDA())
    GTEST_SKIP() << "no CUDA device (experiments/gpu/check.sh runs these on a GPU)";
  full_fp32_on_cuda();
  // DsaAugment::draw samples every parameter from the CPU generator on the CPU, whatever the
  // images' device, and apply() moves them to the images (dsa_augment.h): the same seed gives the
  // same transformation on both devices, and a CUDA run needs no CUDA generator.
  //
  // float32, images in [0, 1]. crop (a gather), cutout (a 0/1 mask) and flip (a select) move or
  // zero values without arithmetic: equal on both devices, images and image gradients alike.
  // color: elementwise maps and channel/image means, relative 1e-5 (its float32 rounding,
  // measured against float64: 1.5e-7). scale and rotate resample through a grid each device
  // computes itself (affine_grid, grid_sample): a coordinate rounding of ~1e-7 x 16 pixels moves
  // the bilinear weights by ~1e-6 per unit of contrast (measured: 2e-6), so relative 1e-4; a wrong
  // corner or axis is off by O(0.1). The whole strategy ("multiple": all groups in turn) 1e-4.
  struct GroupCase {
    std::string strategy;
    std::string mode;
    double rtol;
  };
  const std::vector<GroupCase> cases = {{"crop", "single", 0.0},
                                        {"cutout", "single", 0.0},
                                        {"flip", "single", 0.0},
                                        {"color", "single", 1e-5},
                                        {"scale", "single", 1e-4},
                                        {"rotate", "single", 1e-4},
                                        {train::DsaOptions().strategy, "multiple", 1e-4}};
  at::Generator data = make_generator(2);
  const at::Tensor images = at::rand({8, 3, 16, 16}, data);
  const at::Tensor weights = at::randn({8, 3, 16, 16}, data);  // d(sum(out * w))/d images
  for (const GroupCase& c : cases) {
    SCOPED_TRACE(c.strategy);
    train::DsaOptions o;
    o.strategy = c.strategy;
    o.mode = c.mode;
    const train::DsaAugment dsa(o);
    auto augment = [&](c10::Device device) {
      at::Generator gen = make_generator(11);
      at::Tensor x = images.clone().to(device).requires_grad_(true);
      at::Tensor out = dsa(x, gen);
      at::Tensor grad = torch::autograd::grad({(out * weights.to(device)).sum()}, {x})[0];
      return std::make_pair(out.detach(), grad);
    };
    const auto [cpu_out, cpu_grad] = augment(kCpu);
    const auto [cuda_out, cuda_grad] = augment(kCuda);
    EXPECT_FALSE(at::equal(cpu_out, images)) << "the draw left the images unchanged";
    expect_agree(cuda_out, cpu_out, Tolerance{c.rtol}, c.strategy + " images");
    expect_agree(cuda_grad, cpu_grad, Tolerance{c.rtol}, c.strategy + " image gradient");
  }
}

// ------------------------------------------------------------------ MTT

// The setup of tests/trajectories/trajectory_matcher_test.cpp: 6 images of 1x8x8 in 3 classes, a
// one-block ConvNet of width 4, in double; 4 student steps on mini-batches of 4.
struct MttCase {
  std::unique_ptr<models::Model> model;
  at::Tensor images, class_ids, logits;
  trajectories::MatchingTask task;
};

MttCase make_mtt_case() {
  trajectories::fixture::MatchingCase shared = trajectories::fixture::small_matching_case();
  MttCase c;
  c.model = std::move(shared.model);
  c.images = shared.images;
  c.class_ids = shared.labels;
  c.task = shared.task;
  at::Generator label_gen = make_generator(5);
  c.logits = at::randn({6, 3}, label_gen).to(at::kDouble);  // DATM's learnable soft labels
  return c;
}

TEST(CudaAgreement, MttMetaGradientAdjointEqualsUnroll) {
  if (!at::hasCUDA())
    GTEST_SKIP() << "no CUDA device (experiments/gpu/check.sh runs these on a GPU)";
  full_fp32_on_cuda();
  // double. Adjoint against unroll on CUDA: relative 1e-5, the bound the CPU test sets for the
  // two formulations (they sum the same terms in another order). CUDA against CPU for the same
  // method: relative 1e-8 on the gradients and 1e-10 on the loss. In double, reordered sums
  // differ by ~1e-15 relative; four SGD steps with their Hessian-vector products amplify that by
  // far less than the 1e6 of room left, while a device bug (a wrong batch, a different
  // augmentation draw, a missing term) changes the gradient at O(1).
  const MttCase c = make_mtt_case();
  train::AugmentOptions dsa_options;
  dsa_options.name = "dsa";
  for (bool augment : {false, true}) {
    for (bool soft : {false, true}) {
      const std::string what = std::string(augment ? "dsa" : "no augmentation") +
                               (soft ? ", soft labels" : ", class ids");
      SCOPED_TRACE(what);
      const at::Tensor labels = soft ? c.logits : c.class_ids;
      auto meta_gradient = [&](const std::string& method, c10::Device device) {
        trajectories::MatchingOptions o;
        o.syn_steps = 4;
        o.batch_syn = 4;  // the permutation is refilled mid-run
        o.meta_grad = method;
        trajectories::TrajectoryMatcher matcher(
            *c.model, o, augment ? train::make_augment(dsa_options, 8) : train::AugmentFn());
        trajectories::MatchingTask task = c.task;
        task.start = c.task.start.to(device);
        task.target = c.task.target.to(device);
        return matcher.meta_gradient(c.images.to(device), labels.to(device), 0.1, task);
      };
      const trajectories::MetaGradient cpu_unroll = meta_gradient("unroll", kCpu);
      const trajectories::MetaGradient cpu_adjoint = meta_gradient("adjoint", kCpu);
      const trajectories::MetaGradient cuda_unroll = meta_gradient("unroll", kCuda);
      const trajectories::MetaGradient cuda_adjoint = meta_gradient("adjoint", kCuda);

      EXPECT_NEAR(cuda_adjoint.loss, cuda_unroll.loss, 1e-12 * std::abs(cuda_unroll.loss));
      EXPECT_LT(relative_difference(cuda_adjoint.images_grad, cuda_unroll.images_grad), 1e-5);
      EXPECT_NEAR(cuda_adjoint.lr_grad, cuda_unroll.lr_grad, 1e-5 * std::abs(cuda_unroll.lr_grad));
      if (soft) {
        EXPECT_LT(relative_difference(cuda_adjoint.labels_grad, cuda_unroll.labels_grad), 1e-5);
      }
      EXPECT_GT(cpu_adjoint.images_grad.abs().max().item<double>(), 0.0);

      const std::pair<const trajectories::MetaGradient*, const trajectories::MetaGradient*>
          pairs[] = {{&cuda_unroll, &cpu_unroll}, {&cuda_adjoint, &cpu_adjoint}};
      for (const auto& [cuda, cpu] : pairs) {
        const std::string method = cuda == &cuda_unroll ? "unroll" : "adjoint";
        expect_agree(cuda->loss, cpu->loss, 1e-10, method + " loss");
        expect_agree(cuda->lr_grad, cpu->lr_grad, 1e-8, method + " d loss / d lr");
        expect_agree(cuda->images_grad, cpu->images_grad, Tolerance{1e-8},
                     method + " d loss / d images");
        if (soft) {
          expect_agree(cuda->labels_grad, cpu->labels_grad, Tolerance{1e-8},
                       method + " d loss / d label logits");
        }
      }
    }
  }
}

// ------------------------------------------------------------------ diffusion

// A mixture's tensors on `device` (the same mixture, moved).
diffusion::GaussianMixture mixture_on(const diffusion::GaussianMixture& g, c10::Device device) {
  return diffusion::GaussianMixture(g.weights().to(device), g.means().to(device),
                                    g.covariances().to(device));
}

TEST(CudaAgreement, EverySampler) {
  if (!at::hasCUDA())
    GTEST_SKIP() << "no CUDA device (experiments/gpu/check.sh runs these on a GPU)";
  full_fp32_on_cuda();
  // The exact teacher of tests/diffusion: a 2-D three-component Gaussian mixture, in double, on
  // each device. The samplers draw their noise (ddpm, consistency) from the CPU generator and move
  // it to the state's device (diffusion/noise.h), so the same seed gives the same path.
  // The samples start as CPU noise moved to the GPU: generate() draws its start on the CPU
  // without a device argument (samplers.cpp), so it cannot feed a CUDA denoiser; run_sampler is
  // the part that runs on the device.
  //
  // double, relative 1e-8 of the samples' scale: the devices differ in the mixture's Cholesky
  // factorizations and reductions by ~1e-15; the probability-flow ODE stays contracting along the
  // 12 steps and the sharpest responsibilities (covariances >= 0.02) amplify a perturbation at
  // most ~1e3, leaving a margin of 1e4.
  const diffusion::GaussianMixture cpu_teacher = diffusion::fixture::three_component_mixture();
  const diffusion::GaussianMixture cuda_teacher = mixture_on(cpu_teacher, kCuda);
  const std::vector<double> sigmas = diffusion::sampling_sigmas(diffusion::ScheduleOptions{}, 12);
  at::Generator start_gen = make_generator(13);
  const at::Tensor start = sigmas.front() * at::randn({512, 2}, start_gen, kDouble);
  for (const std::string name : {"ddim", "ddpm", "heun", "dpmpp_2m", "consistency"}) {
    SCOPED_TRACE(name);
    at::Generator cpu_gen = make_generator(21), cuda_gen = make_generator(21);
    const at::Tensor cpu = diffusion::run_sampler(name, cpu_teacher, start, sigmas, cpu_gen);
    at::Tensor cuda;
    try {
      cuda = diffusion::run_sampler(name, cuda_teacher, start.to(kCuda), sigmas, cuda_gen);
    } catch (const std::exception& e) {
      ADD_FAILURE() << name << " on CUDA threw: " << e.what();
      continue;
    }
    expect_agree(cuda, cpu, Tolerance{1e-8}, name + " samples");
  }
}

// `denoiser` run on `device` for inputs that live elsewhere, its output handed back where they
// were; autograd carries gradients across both moves.
diffusion::Denoiser evaluated_on(diffusion::Denoiser denoiser, c10::Device device) {
  return [denoiser, device](const at::Tensor& x, const at::Tensor& sigma) {
    return denoiser(x.to(device), sigma.to(device)).to(x.device());
  };
}

// The four-mode 2-D mixture the distillation tests distill, in double.
diffusion::GaussianMixture four_modes() {
  at::Tensor means = at::tensor({-1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0, 1.0}, kDouble).view({4, 2});
  at::Tensor covs = (0.04 * at::eye(2, kDouble)).expand({4, 2, 2}).contiguous();
  return diffusion::GaussianMixture(at::ones({4}, kDouble), means, covs);
}

// Plain SGD: the step is -lr * gradient, so comparing steps compares gradients. (Adam, the loops'
// default, makes a first step of ~lr * sign(gradient), which would hide a gradient off by a
// factor.)
train::OptimizerOptions plain_sgd() {
  train::OptimizerOptions o;
  o.name = "sgd";
  o.lr = 0.1;
  o.momentum = 0;
  o.weight_decay = 0;
  return o;
}

TEST(CudaAgreement, ProgressiveAndConsistencyDistillationStep) {
  if (!at::hasCUDA())
    GTEST_SKIP() << "no CUDA device (experiments/gpu/check.sh runs these on a GPU)";
  full_fp32_on_cuda();
  // What runs on the GPU: the teacher, the student network's forward and backward, and the
  // optimizer's and EMA's updates of the student's parameters, which live on the GPU. What stays
  // on the CPU: the training batch. The loops cannot take GPU batches yet: they keep their table
  // of noise levels on the CPU (progressive_distillation.cpp, run_stage's and run_fit's levels;
  // consistency_distillation.cpp's `table`), so a CUDA batch meets CPU levels in x0 + s * noise
  // and fails. Teacher and student therefore see the loops' CPU batches through evaluated_on,
  // which moves them to the GPU and the outputs back. This checks the arithmetic of one step on
  // the GPU, not a GPU-resident distillation run.
  //
  // double, one optimizer step of plain SGD (lr 0.1) from the same start, batch 64. The step and
  // the loss agree to relative 1e-8 and 1e-10: the devices differ by reordered sums (~1e-15
  // relative) through two teacher evaluations (PD) or a Heun step (CD) and one backward pass.
  const diffusion::GaussianMixture cpu_teacher = four_modes();
  const diffusion::GaussianMixture cuda_teacher = mixture_on(cpu_teacher, kCuda);
  const diffusion::DataSource data = [&cpu_teacher](int64_t n, at::Generator& g) {
    return cpu_teacher.sample(n, g);
  };
  const diffusion::MlpDenoiserNet net(2, diffusion::MlpDenoiserOptions{{32, 32}, 4});
  at::Generator init = make_generator(7);
  const at::Tensor start = net.init_params(init).to(at::kDouble);
  auto teacher_on = [&](c10::Device device) {
    return evaluated_on(
        device.is_cuda() ? diffusion::Denoiser(cuda_teacher) : diffusion::Denoiser(cpu_teacher),
        device);
  };
  auto student_on = [&net](c10::Device device, const diffusion::PreconditionOptions& pre) {
    return diffusion::StudentFactory([&net, device, pre](const at::Tensor& params) {
      return evaluated_on(diffusion::precondition(net.network(params), pre), device);
    });
  };

  {
    SCOPED_TRACE("progressive distillation");
    diffusion::ProgressiveOptions o;
    o.iterations = 1;
    o.batch = 64;
    o.optimizer = plain_sgd();
    diffusion::PreconditionOptions v;
    v.output = "v";
    // One step of the stage that halves a 4-step teacher into a 2-step student.
    auto step = [&](c10::Device device) {
      at::Tensor params = start.clone().to(device);
      double loss = std::numeric_limits<double>::quiet_NaN();
      at::Generator gen = make_generator(8);
      diffusion::progressive_stage(teacher_on(device), student_on(device, v), params, 2, data, o,
                                   gen, [&](int64_t, int64_t, double value) { loss = value; });
      return std::make_pair(params - start.to(device), loss);
    };
    const auto [cpu_step, cpu_loss] = step(kCpu);
    const auto [cuda_step, cuda_loss] = step(kCuda);
    EXPECT_GT(cpu_step.abs().max().item<double>(), 0.0) << "the step did not move the student";
    expect_agree(cuda_step, cpu_step, Tolerance{1e-8}, "PD parameter step");
    expect_agree(cuda_loss, cpu_loss, 1e-10, "PD loss");
  }
  {
    SCOPED_TRACE("consistency distillation");
    diffusion::ConsistencyOptions o;
    o.iterations = 1;
    o.batch = 64;
    o.optimizer = plain_sgd();
    diffusion::PreconditionOptions consistency;
    consistency.output = "consistency";
    consistency.sigma_data = 1.0;
    struct Result {
      at::Tensor step, target_step;
      double loss = std::numeric_limits<double>::quiet_NaN();
    };
    auto step = [&](c10::Device device) {
      at::Tensor params = start.clone().to(device), target;  // target: the EMA, from params
      Result r;
      at::Generator gen = make_generator(9);
      diffusion::consistency_distillation(teacher_on(device), student_on(device, consistency),
                                          params, target, data, o, gen,
                                          [&](int64_t, int64_t, double value) { r.loss = value; });
      r.step = params - start.to(device);
      r.target_step = target - start.to(device);
      return r;
    };
    const Result cpu = step(kCpu), cuda = step(kCuda);
    EXPECT_GT(cpu.step.abs().max().item<double>(), 0.0) << "the step did not move the student";
    expect_agree(cuda.step, cpu.step, Tolerance{1e-8}, "CD parameter step");
    expect_agree(cuda.target_step, cpu.target_step, Tolerance{1e-8}, "CD EMA target step");
    expect_agree(cuda.loss, cpu.loss, 1e-10, "CD loss");
  }
}

// ------------------------------------------------------------------ distill eval

TEST(CudaAgreement, EvalOfATinySet) {
  if (!at::hasCUDA())
    GTEST_SKIP() << "no CUDA device (experiments/gpu/check.sh runs these on a GPU)";
  // `distill eval` of a 2-image-per-class subset of the tiny dataset (tests/support/cli_support.h:
  // 3 classes of 1x8x8, 30 test images): 2 set students and 2 random-real students of a width-8
  // ConvNet, 30 epochs each, DSA as the dc protocol has it. Every random draw (initialization,
  // epoch order, DSA) comes from CPU generators, so the devices train the same students up to
  // float32 summation order: ~1e-6 relative on the weights after 30 steps.
  // NVIDIA_TF32_OVERRIDE=0 keeps cuDNN's convolutions in full float32 in the CLI process (its
  // TF32 default would add ~1e-3; see full_fp32_on_cuda).
  //
  // Bound: every student's last and best test accuracy within one test image (1/30). A test
  // prediction flips only when its two largest logits lie within ~1e-5 of each other, which is
  // rare among 4 x 30 predictions but not impossible; more than one flip per student is not
  // rounding but a difference in training (a draw, a batch, a kernel).
  constexpr double kTestImages = 30;
  testing::TempDir dir;
  const std::string data = testing::write_tiny_dataset(dir);
  const testing::CommandResult subset = testing::distill_cli(
      "subset --ipc 2 " + testing::tiny_flags(data) + "--out " + dir.file("s"));
  ASSERT_EQ(subset.exit_code, 0) << subset.output;
  auto eval = [&](const std::string& device) {
    const testing::CommandResult r = testing::run_command(
        "NVIDIA_TF32_OVERRIDE=0 " + testing::distill_binary() + " eval --syn " +
        dir.file("s/syn.pt") + " --runs 2 --epochs 30 " + testing::tiny_flags(data) +
        "--set eval.model.width=8 --device " + device + " --out " + dir.file(device));
    EXPECT_EQ(r.exit_code, 0) << r.output;  // --device cuda is an error when CUDA is unusable
    return nlohmann::json::parse(io::read_file(dir.file(device + "/results.json")))["results"];
  };
  const nlohmann::json cpu = eval("cpu");
  const nlohmann::json cuda = eval("cuda");
  ASSERT_EQ(cpu.size(), 2u);  // the set and the random-real baseline
  ASSERT_EQ(cuda.size(), cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    const std::string set = cpu[i]["set"].get<std::string>();
    EXPECT_EQ(cuda[i]["set"], cpu[i]["set"]);
    for (const char* key : {"last_accuracy", "best_accuracy"}) {
      const auto on_cpu = cpu[i][key].get<std::vector<double>>();
      const auto on_cuda = cuda[i][key].get<std::vector<double>>();
      ASSERT_EQ(on_cuda.size(), on_cpu.size()) << set << " " << key;
      for (size_t run = 0; run < on_cpu.size(); ++run) {
        EXPECT_NEAR(on_cuda[run], on_cpu[run], 1.0 / kTestImages + 1e-9)
            << set << " " << key << " of student " << run;
      }
    }
  }
}

}  // namespace
}  // namespace distill
