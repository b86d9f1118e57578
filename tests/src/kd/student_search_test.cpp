#include "src/kd/student_search.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/io/tensor_file.h"
#include "tests/support/test_support.h"

namespace distill::kd {
namespace {

using testing::error_of;

// Rows of the Gram matrices are normalised, so a feature repeated (wider) or scaled relates the
// samples exactly as the original: distance 0. By hand on two samples otherwise.
TEST(StudentSearch, RelationDistanceComparesNormalisedSampleGrams) {
  at::Generator gen = make_generator(1);
  const at::Tensor t = at::randn({5, 4}, gen, at::kDouble);
  EXPECT_NEAR(relation_distance(t, at::cat({t, t}, 1) * 3).item<double>(), 0.0, 1e-15);
  // f_t = (1, 0), (0, 1): Gram rows (1, 0), (0, 1). f_s = (1, 0), (1, 0): rows (1, 1)/sqrt 2 each.
  const at::Tensor ft = at::tensor({1.0, 0.0, 0.0, 1.0}, at::kDouble).view({2, 2});
  const at::Tensor fs = at::tensor({1.0, 0.0, 1.0, 0.0}, at::kDouble).view({2, 2});
  const double r = 1 / std::sqrt(2.0);
  const double expected = 2 * ((1 - r) * (1 - r) + r * r) / 4;
  EXPECT_NEAR(relation_distance(ft, fs).item<double>(), expected, 1e-15);
}

TEST(StudentSearch, SemanticDistanceInBothForms) {
  at::Generator gen = make_generator(2);
  const at::Tensor g = at::randn({4, 3}, gen, at::kDouble);
  // Classes: zero-padded wider gradients have the same class Gram.
  const at::Tensor padded = at::cat({g, at::zeros({4, 5}, at::kDouble)}, 1);
  EXPECT_NEAR(semantic_distance(g, padded * 2, "classes").item<double>(), 0.0, 1e-15);
  EXPECT_GT(semantic_distance(g, at::randn({4, 3}, gen, at::kDouble), "classes").item<double>(),
            1e-3);
  // Channels: equal up to scale -> 0; flipping one class's sign changes nothing (g g^T), while
  // flipping one channel does.
  at::Tensor flipped_class = g.clone();
  flipped_class[1].neg_();
  EXPECT_NEAR(semantic_distance(g, flipped_class * 5, "channels").item<double>(), 0.0, 1e-15);
  at::Tensor flipped_channel = g.clone();
  flipped_channel.select(1, 0).neg_();
  EXPECT_GT(semantic_distance(g, flipped_channel, "channels").item<double>(), 1e-3);
  EXPECT_NE(error_of([&] { semantic_distance(g, padded, "channels"); })
                .find("needs the teacher's and the student's classifier inputs of one width, "
                      "found 3 and 8"),
            std::string::npos);
}

TEST(StudentSearch, DistancesMatchPython) {
  DISTILL_REQUIRE_PYTHON();
  testing::TempDir dir;
  at::Generator gen = make_generator(3);
  io::TensorDict in = io::make_dict();
  in.insert("f_t", at::randn({6, 2, 2, 2}, gen, at::kDouble));
  in.insert("f_s", at::randn({6, 5}, gen, at::kDouble));
  in.insert("grad_t", at::randn({4, 3}, gen, at::kDouble));
  in.insert("grad_s_same", at::randn({4, 3}, gen, at::kDouble));
  in.insert("grad_s_wide", at::randn({4, 7}, gen, at::kDouble));
  io::save_dict(dir.file("in.pt"), in);
  testing::run_python_script("diswot_reference.py", {dir.file("in.pt"), dir.file("out.pt")});
  io::TensorDict expected = io::load_dict(dir.file("out.pt"));
  auto get = [&](const std::string& key) { return io::get_tensor(in, key, "in.pt"); };
  auto want = [&](const std::string& key) {
    return io::get_tensor(expected, key, "out.pt").item<double>();
  };
  EXPECT_NEAR(relation_distance(get("f_t"), get("f_s")).item<double>(), want("relation"), 1e-12);
  EXPECT_NEAR(semantic_distance(get("grad_t"), get("grad_s_same"), "channels").item<double>(),
              want("channels"), 1e-12);
  EXPECT_NEAR(semantic_distance(get("grad_t"), get("grad_s_wide"), "classes").item<double>(),
              want("classes"), 1e-12);
}

// The probe's classifier gradient is the closed form (1/B) sum_b (softmax_b - onehot_b) h_b^T
// with h the features feeding the classifier, which it also returns.
TEST(StudentSearch, ProbeReadsTheClassifierGradientAndItsInput) {
  models::ModelOptions o;
  o.arch = "mlp";
  o.hidden = {6, 5};
  auto model = models::make_model(o, 1, 4, 3);
  at::Generator gen = make_generator(4);
  const at::Tensor params = model->init_params(gen);
  const at::Tensor images = at::randn({7, 1, 4, 4}, gen);
  const at::Tensor labels = at::tensor({0, 1, 2, 2, 1, 0, 1}, at::kLong);
  Probe probe = probe_network(*model, params, model->init_buffers(), images, labels);
  ASSERT_EQ(probe.features.sizes(), (std::vector<int64_t>{7, 5}));
  ASSERT_EQ(probe.classifier_gradient.sizes(), (std::vector<int64_t>{3, 5}));
  auto views = models::Model::unflatten(params, model->param_specs());
  const at::Tensor logits = at::linear(probe.features, views[views.size() - 2], views.back());
  const at::Tensor expected =
      at::matmul((at::softmax(logits, 1) - at::one_hot(labels, 3).to(at::kFloat)).t(),
                 probe.features) / 7;
  EXPECT_TRUE(at::allclose(probe.classifier_gradient, expected, 1e-5, 1e-6));
  // Identical networks are at distance 0; the score is minus the two distances.
  DiswotScore same = diswot_score(probe, probe, "channels");
  EXPECT_NEAR(same.score, 0.0, 1e-6);
}

TEST(StudentSearch, CandidateNamesRoundTripAndBadOnesAreNamed) {
  Candidate c = parse_candidate("convnet-w16-d2", "k");
  EXPECT_EQ(c.arch, "convnet");
  EXPECT_EQ(c.width, 16);
  EXPECT_EQ(c.depth, 2);
  EXPECT_EQ(c.name(), "convnet-w16-d2");
  Candidate m = parse_candidate("mlp-128-64", "k");
  EXPECT_EQ(m.hidden, (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(m.name(), "mlp-128-64");
  models::ModelOptions base;
  base.norm = "none";
  models::ModelOptions built = c.options(base);
  EXPECT_EQ(built.width, 16);
  EXPECT_EQ(built.norm, "none");
  for (const char* bad : {"convnet-16-2", "mlp", "mlp-0", "resnet18", "convnet-w16-d2x"}) {
    EXPECT_NE(error_of([&] { parse_candidate(bad, "search.candidates[1]"); })
                  .find(std::string("search.candidates[1]: '") + bad + "' is not a candidate"),
              std::string::npos)
        << bad;
  }
}

TEST(StudentSearch, MutationsStayInTheSpaceAndMoveAway) {
  SearchSpace space;
  at::Generator gen = make_generator(5);
  for (int i = 0; i < 200; ++i) {
    Candidate parent = space.random(gen);
    ASSERT_TRUE(space.contains(parent)) << parent.name();
    Candidate child = space.mutate(parent, gen);
    EXPECT_TRUE(space.contains(child)) << parent.name() << " -> " << child.name();
    EXPECT_NE(child.name(), parent.name());
  }
}

// On a score with one best candidate (convnet-w32-d2 of 12 convnets), the evolution finds it,
// scores each candidate once, and repeats itself for the same seed.
TEST(StudentSearch, EvolutionFindsTheBestOfAToyScoreOnceEach) {
  SearchSpace space;
  space.families = {"convnet"};
  auto toy = [](const Candidate& c) {
    return -std::abs(std::log2(static_cast<double>(c.width)) - 5) - std::abs(c.depth - 2.0);
  };
  auto run = [&](uint64_t seed) {
    at::Generator gen = make_generator(seed);
    int64_t calls = 0;
    auto scored = evolve(space, {4, 2, 30}, [&](const Candidate& c) { ++calls; return toy(c); }, gen);
    EXPECT_EQ(calls, static_cast<int64_t>(scored.size()));
    std::set<std::string> names;
    for (const auto& [name, s] : scored) names.insert(name);
    EXPECT_EQ(names.size(), scored.size());
    return scored;
  };
  auto scored = run(7);
  double best = -1e9;
  std::string best_name;
  for (const auto& [name, s] : scored) {
    if (s > best) best = s, best_name = name;
  }
  EXPECT_EQ(best_name, "convnet-w32-d2");
  EXPECT_EQ(run(7), scored);
  EXPECT_NE(error_of([&] {
              at::Generator gen = make_generator(1);
              evolve(space, {2, 3, 1}, toy, gen);
            }).find("1 <= sample <= population"),
            std::string::npos);
}

TEST(StudentSearch, SpearmanByHand) {
  EXPECT_NEAR(spearman({1, 2, 3, 4}, {10, 20, 30, 40}), 1.0, 1e-15);
  EXPECT_NEAR(spearman({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0, 1e-15);
  // Ties take their mean rank: ranks (1, 2.5, 2.5, 4) against (1, 3, 2, 4): 4.5 / sqrt(4.5 x 5).
  EXPECT_NEAR(spearman({1, 2, 2, 3}, {1, 3, 2, 4}), 4.5 / std::sqrt(22.5), 1e-15);
  EXPECT_TRUE(std::isnan(spearman({1, 1, 1}, {1, 2, 3})));
}

}  // namespace
}  // namespace distill::kd
