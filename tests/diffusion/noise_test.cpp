// The samplers' and distillation loops' noise: the generator's draws in the tensor's dtype, taken
// on the generator's device (so a CUDA run draws what a CPU run draws).
#include "diffusion/noise.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "src/core/runtime.h"

namespace distill::diffusion {
namespace {

TEST(Noise, GaussianLikeIsTheGeneratorsDrawInTheTensorsDtype) {
  const auto kDouble = at::TensorOptions().dtype(at::kDouble);
  at::Tensor x = at::zeros({4, 3}, kDouble);
  at::Generator a = make_generator(7, 1, 0), b = make_generator(7, 1, 0);
  at::Tensor noise = gaussian_like(x, a);
  EXPECT_EQ(noise.scalar_type(), at::kDouble);
  EXPECT_EQ(noise.sizes(), x.sizes());
  EXPECT_TRUE(at::equal(noise, at::randn({4, 3}, b, kDouble)));
  EXPECT_EQ(gaussian_like(x.to(at::kFloat), a).scalar_type(), at::kFloat);
}

TEST(Noise, ACudaTensorGetsTheCpuGeneratorsDraw) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  at::Generator a = make_generator(7, 1, 0), b = make_generator(7, 1, 0);
  at::Tensor x = at::zeros({4, 3}, at::TensorOptions().device(at::kCUDA));
  at::Tensor noise = gaussian_like(x, a);
  EXPECT_TRUE(noise.is_cuda());
  EXPECT_TRUE(at::equal(noise.cpu(), at::randn({4, 3}, b)));
}

}  // namespace
}  // namespace distill::diffusion
