// Initialisations that ask the experts. DATM's: real images the experts classify correctly, and
// labels from the experts that get each image right; checked against predictions and means
// computed here. AST's representative images: against the closed form of k-means with one cluster.
#include "trajectories/expert_init.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <set>

#include "src/core/runtime.h"
#include "tests/support/test_support.h"

namespace distill::trajectories {
namespace {

struct Experts {
  std::unique_ptr<models::Model> model;
  std::vector<at::Tensor> params;  // one per expert, at the label epoch
  data::Dataset train;
};

// 3 untrained one-block ConvNets (they get roughly a third of 90 images right) on 3 classes.
Experts make_experts() {
  Experts e;
  models::ModelOptions o;
  o.width = 4;
  o.depth = 1;
  e.model = models::make_model(o, 1, 8, 3);
  at::Generator gen = make_generator(5);
  for (int k = 0; k < 3; ++k) e.params.push_back(e.model->init_params(gen));
  e.train.images = at::randn({90, 1, 8, 8}, gen);
  e.train.labels = at::arange(90, at::kLong).remainder(3);
  e.train.num_classes = 3;
  return e;
}

at::Tensor predictions(const Experts& e, size_t k, const at::Tensor& images) {
  models::ForwardArgs args;
  return e.model->forward(images, e.params[k], args).argmax(1);
}

TEST(ExpertInit, DatmPicksDistinctImagesOfEachClassThatAnExpertGetsRight) {
  Experts e = make_experts();
  at::Generator gen = make_generator(6);
  const int64_t ipc = 4;
  at::Tensor index = correctly_classified_index(*e.model, e.params, e.train, ipc, gen);
  ASSERT_EQ(index.numel(), 3 * ipc);
  at::Tensor images = e.train.images.index_select(0, index);
  at::Tensor classes = e.train.labels.index_select(0, index);
  EXPECT_TRUE(classes.equal(at::arange(3, at::kLong).repeat_interleave(ipc)));
  std::set<int64_t> distinct;
  for (int64_t i = 0; i < index.numel(); ++i) distinct.insert(index[i].item<int64_t>());
  EXPECT_EQ(distinct.size(), static_cast<size_t>(3 * ipc));
  at::Tensor right_by_any = at::zeros({3 * ipc}, at::kBool);
  for (size_t k = 0; k < e.params.size(); ++k) {
    right_by_any |= predictions(e, k, images).eq(classes);
  }
  EXPECT_TRUE(right_by_any.all().item<bool>()) << "an image no expert classifies correctly";

  // More than the experts get right in some class: an error naming the class.
  at::Tensor right = at::zeros({90}, at::kBool);
  for (size_t k = 0; k < e.params.size(); ++k) {
    right |= predictions(e, k, e.train.images).eq(e.train.labels);
  }
  int64_t fewest = 90;
  for (int64_t c = 0; c < 3; ++c) {
    fewest = std::min(fewest, (right & e.train.labels.eq(c)).sum().item<int64_t>());
  }
  EXPECT_NE(testing::error_of([&] {
              correctly_classified_index(*e.model, e.params, e.train, fewest + 1, gen);
            }).find("correctly, fewer than the " + std::to_string(fewest + 1) + " per class"),
            std::string::npos);
}

TEST(ExpertInit, DatmLabelsAreTheMeanLogitsOfTheExpertsThatAreRight) {
  Experts e = make_experts();
  at::Tensor images = e.train.images.narrow(0, 0, 30);
  at::Tensor classes = e.train.labels.narrow(0, 0, 30);
  at::Tensor labels = correct_experts_logits(*e.model, e.params, images, classes);
  models::ForwardArgs args;
  int64_t with_some_right = 0, with_none_right = 0;
  for (int64_t i = 0; i < 30; ++i) {
    at::Tensor sum = at::zeros({3}), all = at::zeros({3});
    int64_t right = 0;
    for (size_t k = 0; k < e.params.size(); ++k) {
      at::Tensor logits = e.model->forward(images.narrow(0, i, 1), e.params[k], args)[0];
      all += logits;
      if (logits.argmax().item<int64_t>() == classes[i].item<int64_t>()) {
        sum += logits;
        ++right;
      }
    }
    at::Tensor expected = right > 0 ? sum / right : all / 3;
    ++(right > 0 ? with_some_right : with_none_right);
    EXPECT_TRUE(at::allclose(labels[i], expected, 1e-4, 1e-5)) << i << ": " << labels[i] << expected;
  }
  EXPECT_GT(with_some_right, 0);
  EXPECT_GT(with_none_right, 0);  // both branches exercised
}

TEST(ExpertInit, DatmLabelEpochPicksTheEpoch) {
  std::vector<Trajectory> experts = {
      {at::full({1}, 0.0), at::full({1}, 1.0), at::full({1}, 2.0), at::full({1}, 3.0)}};
  EXPECT_EQ(label_parameters(experts, -1, 2)[0].item<double>(), 3.0);  // last
  EXPECT_EQ(label_parameters(experts, 0, 2)[0].item<double>(), 2.0);   // window end
  EXPECT_EQ(label_parameters(experts, 0, 9)[0].item<double>(), 3.0);   // clipped to the last
  EXPECT_EQ(label_parameters(experts, 1, 2)[0].item<double>(), 1.0);
  EXPECT_NE(testing::error_of([&] { label_parameters(experts, 4, 2); }).find("epoch 1..3"),
            std::string::npos);
}

// With one cluster per class, k-means ends at the class's mean logit, so AST's representative
// image is the one whose logits are nearest the class mean (computed here directly). With more
// clusters: distinct images of the right class, the same ones for the same generator state.
TEST(ExpertInit, RepresentativeWithOneClusterIsTheImageNearestTheClassMeanLogit) {
  Experts e = make_experts();
  at::Generator gen = make_generator(7);
  at::Tensor index = representative_index(*e.model, e.params[1], e.train, 1, 50, gen);
  ASSERT_EQ(index.numel(), 3);
  models::ForwardArgs args;
  at::Tensor logits = e.model->forward(e.train.images, e.params[1], args).to(at::kDouble);
  for (int64_t c = 0; c < 3; ++c) {
    at::Tensor members = e.train.labels.eq(c).nonzero().squeeze(1);
    at::Tensor rows = logits.index_select(0, members);
    at::Tensor distance = (rows - rows.mean(0, true)).pow(2).sum(1);
    EXPECT_EQ(index[c].item<int64_t>(), members[distance.argmin()].item<int64_t>()) << c;
  }

  at::Generator a = make_generator(8), b = make_generator(8);
  at::Tensor three = representative_index(*e.model, e.params[1], e.train, 3, 50, a);
  EXPECT_TRUE(at::equal(three, representative_index(*e.model, e.params[1], e.train, 3, 50, b)));
  ASSERT_EQ(three.numel(), 9);
  std::set<int64_t> distinct;
  for (int64_t i = 0; i < 9; ++i) {
    distinct.insert(three[i].item<int64_t>());
    EXPECT_EQ(e.train.labels[three[i].item<int64_t>()].item<int64_t>(), i / 3);
  }
  EXPECT_EQ(distinct.size(), 9u);
  at::Generator c = make_generator(8);
  EXPECT_EQ(
      testing::error_of([&] { representative_index(*e.model, e.params[1], e.train, 31, 5, c); }),
      "k-means initialisation: class 0 has only 30 training images, 31 asked per class");
}

}  // namespace
}  // namespace distill::trajectories
