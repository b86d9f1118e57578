#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "src/core/runtime.h"
#include "src/models/model.h"

namespace distill::models {
namespace {

TEST(Models, ConvNetShapesAndParamCount) {
  ModelOptions o;
  auto model = make_model(o, 1, 28, 10);
  // conv 1->128 3x3 (+bias), norm w+b, conv 128->128 x2, norms, linear 128*4*4 -> 10.
  int64_t expected = (128 * 9 + 128) + 256 + 2 * (128 * 128 * 9 + 128 + 256) + (2048 * 10 + 10);
  EXPECT_EQ(model->num_params(), expected);
  auto gen = make_generator(0);
  at::Tensor out = model->forward(at::randn({2, 1, 28, 28}), model->init_params(gen));
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 10}));
}

}  // namespace
}  // namespace distill::models
