#include "src/data/zca.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "src/core/runtime.h"
#include "src/io/tensor_file.h"
#include "tests/support/test_support.h"

namespace distill::data {
namespace {

// Correlated data: a random linear mix of independent coordinates, plus an offset.
at::Tensor correlated_images(int64_t n, uint64_t seed) {
  at::Generator gen = make_generator(seed);
  at::Tensor mix = at::randn({12, 12}, gen, at::kDouble);
  at::Tensor z = at::randn({n, 12}, gen, at::kDouble);
  return (z.matmul(mix) + 3.0).to(at::kFloat).view({n, 3, 2, 2});
}

TEST(Zca, WhitensToIdentityCovarianceWithoutRegularization) {
  at::Tensor x = correlated_images(4000, 1);
  Zca zca = Zca::fit(x, 1e-9);
  at::Tensor w = zca.apply(x).view({x.size(0), -1}).to(at::kDouble);
  at::Tensor centred = w - w.mean(0, true);
  at::Tensor covariance = centred.t().matmul(centred) / (x.size(0) - 1);
  EXPECT_LT((covariance - at::eye(12, at::kDouble)).abs().max().item<double>(), 1e-3);
  // ZCA (unlike PCA whitening) is the symmetric transform: it stays close to the input's axes.
  EXPECT_TRUE(at::allclose(zca.transform(), zca.transform().t(), 1e-4, 1e-5));
}

TEST(Zca, InverseUndoesApply) {
  at::Tensor x = correlated_images(500, 2);
  Zca zca = Zca::fit(x, 0.1);
  EXPECT_LT((zca.inverse(zca.apply(x)) - x).abs().max().item<double>(), 1e-3);
}

TEST(Zca, SaveLoadKeepsTheTransform) {
  testing::TempDir dir;
  at::Tensor x = correlated_images(200, 3);
  Zca zca = Zca::fit(x, 0.1);
  zca.save(dir.file("zca.pt"));
  Zca back = Zca::load(dir.file("zca.pt"));
  EXPECT_TRUE(at::allclose(back.apply(x), zca.apply(x)));
}

TEST(Zca, MatchesTheFormulaComputedByPythonTorch) {
  DISTILL_REQUIRE_PYTHON();
  testing::TempDir dir;
  at::Tensor x = correlated_images(300, 4);
  io::TensorDict dict = io::make_dict();
  dict.insert("x", x);
  dict.insert("eps", 0.1);
  io::save_dict(dir.file("in.pt"), dict);
  testing::run_python_script("zca_reference.py", {dir.file("in.pt"), dir.file("out.pt")});
  at::Tensor expected = io::get_tensor(io::load_dict(dir.file("out.pt")), "whitened", "out.pt");
  at::Tensor ours = Zca::fit(x, 0.1).apply(x);
  EXPECT_LT((ours - expected).abs().max().item<double>(), 1e-4);
}

}  // namespace
}  // namespace distill::data
