#include "src/eval/evaluator.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/eval/synthetic_set.h"
#include "src/io/tensor_file.h"
#include "tests/support/test_support.h"

namespace distill::eval {
namespace {

SyntheticSet small_set() {
  SyntheticSet set;
  set.images = at::arange(2 * 3 * 4 * 4, at::kFloat).view({2 * 3, 1, 4, 4}) / 100.0;
  set.labels = at::tensor({0, 0, 1, 1, 2, 2}, at::kLong);
  set.num_classes = 3;
  set.mean = at::tensor({0.5f});
  set.std = at::tensor({0.25f});
  set.lr = 0.02;
  set.dataset = "toy";
  set.method = "test";
  return set;
}

TEST(SyntheticSet, RoundTripsAndPythonReadsIt) {
  testing::TempDir dir;
  SyntheticSet set = small_set();
  save_synthetic_set(dir.file("syn.pt"), set);
  SyntheticSet back = load_synthetic_set(dir.file("syn.pt"));
  EXPECT_TRUE(at::equal(back.images, set.images));
  EXPECT_TRUE(at::equal(back.labels, set.labels));
  EXPECT_EQ(back.num_classes, 3);
  ASSERT_TRUE(back.lr.has_value());
  EXPECT_NEAR(*back.lr, 0.02, 1e-7);
  EXPECT_EQ(back.images_per_class(), 2);
  EXPECT_EQ(back.method, "test");

  DISTILL_REQUIRE_PYTHON();
  // Python checks the keys/dtypes and writes a soft-label set back.
  testing::run_python_script("synthetic_set_interop.py", {dir.file("syn.pt"), dir.file("soft.pt")});
  SyntheticSet soft = load_synthetic_set(dir.file("soft.pt"));
  ASSERT_TRUE(soft.soft_labels());
  EXPECT_EQ(soft.num_classes, 3);
  EXPECT_TRUE(at::equal(soft.class_ids(), set.labels));
  EXPECT_FALSE(soft.lr.has_value());
}

TEST(SyntheticSet, InconsistentFilesAreClearErrors) {
  testing::TempDir dir;
  io::TensorDict dict = io::make_dict();
  dict.insert("images", at::zeros({4, 1, 2, 2}));
  dict.insert("labels", at::zeros({3}, at::kLong));
  io::save_dict(dir.file("bad.pt"), dict);
  try {
    load_synthetic_set(dir.file("bad.pt"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("4 images but 3 labels"), std::string::npos) << e.what();
  }
  dict.insert_or_assign("labels", at::tensor({0, 1, 5, 1}, at::kLong));
  dict.insert("num_classes", int64_t{3});
  io::save_dict(dir.file("bad2.pt"), dict);
  try {
    load_synthetic_set(dir.file("bad2.pt"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("labels must lie in [0, 3)"), std::string::npos) << e.what();
  }
  // Raw uint8 pixels and non-finite values are refused, naming the file (exit 2 in the CLI).
  dict.insert_or_assign("labels", at::tensor({0, 1, 2, 1}, at::kLong));
  dict.insert_or_assign("images", at::full({4, 1, 2, 2}, 200, at::kByte));
  io::save_dict(dir.file("uint8.pt"), dict);
  const std::string uint8_error =
      testing::error_of([&] { load_synthetic_set(dir.file("uint8.pt")); });
  EXPECT_EQ(uint8_error.rfind("'" + dir.file("uint8.pt") +
                                  "': 'images' should be floating point (normalised pixels,",
                              0),
            0u)
      << uint8_error;
  EXPECT_NE(uint8_error.find("found Byte;"), std::string::npos) << uint8_error;
  at::Tensor images = at::zeros({4, 1, 2, 2});
  images[1][0][1][1] = std::nan("");
  images[3][0][0][0] = INFINITY;
  dict.insert_or_assign("images", images);
  io::save_dict(dir.file("nan.pt"), dict);
  EXPECT_EQ(testing::error_of([&] { load_synthetic_set(dir.file("nan.pt")); }),
            "'" + dir.file("nan.pt") + "': 'images' holds 2 non-finite values (NaN or inf)");
  EXPECT_EQ(testing::error_of([&] { load_synthetic_set(dir.path()); }),
            "'" + dir.path() + "' is a folder, expected a file");
}

// INFER's label form: logits rows, recorded as label_form "logits"; anything else is refused.
TEST(SyntheticSet, LogitLabelsRoundTripAndABadFormIsAnError) {
  testing::TempDir dir;
  SyntheticSet set = small_set();
  set.labels = at::randn({set.images.size(0), 3});
  set.labels_are_logits = true;
  set.label_temperature = 30.0;
  save_synthetic_set(dir.file("logits.pt"), set);
  SyntheticSet back = load_synthetic_set(dir.file("logits.pt"));
  EXPECT_TRUE(back.labels_are_logits);
  EXPECT_TRUE(at::equal(back.labels, set.labels));
  set.labels_are_logits = false;
  save_synthetic_set(dir.file("probabilities.pt"), set);
  EXPECT_FALSE(load_synthetic_set(dir.file("probabilities.pt")).labels_are_logits);
  io::TensorDict dict = io::load_dict(dir.file("logits.pt"));
  dict.insert_or_assign("label_form", std::string("logit"));
  io::save_dict(dir.file("bad_form.pt"), dict);
  EXPECT_EQ(testing::error_of([&] { load_synthetic_set(dir.file("bad_form.pt")); }),
            "'" + dir.file("bad_form.pt") +
                "': label_form should be \"logits\" or \"probabilities\", found \"logit\"");
  dict.insert_or_assign("label_form", std::string("logits"));
  dict.insert_or_assign("labels", at::zeros({set.images.size(0)}, at::kLong));
  io::save_dict(dir.file("ids.pt"), dict);
  EXPECT_NE(testing::error_of([&] { load_synthetic_set(dir.file("ids.pt")); })
                .find("label_form is \"logits\" but the labels are class ids"),
            std::string::npos);
}

TEST(Scores, MeanAndPopulationStd) {
  Scores s{"x", "convnet", 10, {0.5, 0.7}, {0.6, 0.8}};
  EXPECT_NEAR(s.last_mean(), 0.6, 1e-12);
  EXPECT_NEAR(s.last_std(), 0.1, 1e-12);  // np.std of [0.5, 0.7]
  EXPECT_NEAR(s.best_mean(), 0.7, 1e-12);
  auto json = nlohmann::json::parse(scores_json({s}, "dc", 100));
  EXPECT_EQ(json["protocol"], "dc");
  EXPECT_EQ(json["eval_every"], 100);
  EXPECT_NEAR(json["results"][0]["last_std"].get<double>(), 0.1, 1e-12);
  EXPECT_NE(format_scores_table({s}).find("60.00 ± 10.00"), std::string::npos);
}

// A toy task where a few images per class suffice: the protocol must train students that learn.
data::Dataset toy_split(int64_t n, uint64_t seed) {
  at::Generator gen = make_generator(seed);
  data::Dataset d;
  d.labels = at::randint(3, {n}, gen);
  d.images = at::randn({n, 1, 8, 8}, gen) * 0.2;
  for (int64_t i = 0; i < n; ++i) {
    int64_t k = d.labels[i].item<int64_t>();
    d.images[i][0].narrow(0, k * 2, 3).add_(1.5);
  }
  d.num_classes = 3;
  return d;
}

TEST(Evaluator, TinyProtocolRunScoresSetAndRandomRealBaseline) {
  data::Dataset train = toy_split(300, 1), test = toy_split(150, 2);
  EvalOptions options;
  apply_protocol("dc", options);
  options.train.epochs = 30;
  options.runs = 2;
  options.model.width = 8;
  options.model.depth = 1;
  data::Normalization norm{at::zeros({1}), at::ones({1})};
  Evaluator evaluator(options, train, test, norm, 3, c10::Device(c10::kCPU), false);
  at::Generator gen = make_generator(4);
  SyntheticSet set = Evaluator::random_real_set(train, norm, 5, gen, "toy");
  EXPECT_EQ(set.images.size(0), 15);
  EXPECT_EQ(at::bincount(set.labels).min().item<int64_t>(), 5);
  Scores scores = evaluator.score_set(set, "toy.pt", "convnet");
  ASSERT_EQ(scores.last.size(), 2u);
  EXPECT_GT(scores.last_mean(), 0.8);
  EXPECT_GE(scores.best[0], scores.last[0] - 1e-12);
  Scores baseline = evaluator.score_random_real(5, "convnet");
  EXPECT_EQ(baseline.ipc, 5);
  EXPECT_GT(baseline.last_mean(), 0.8);
  // Same seed, same numbers.
  Evaluator again(options, train, test, norm, 3, c10::Device(c10::kCPU), false);
  EXPECT_EQ(again.score_random_real(5, "convnet").last, baseline.last);
  // The set's file name does not change its students.
  EXPECT_EQ(again.score_set(set, "elsewhere/other_name.pt", "convnet").last, scores.last);
}

TEST(Evaluator, OnlineLabelsThatReproduceTheStoredLabelsTrainTheSameStudents) {
  data::Dataset train = toy_split(120, 1), test = toy_split(60, 2);
  EvalOptions options;
  apply_protocol("custom", options);
  options.train.epochs = 6;
  options.train.batch_size = 8;
  options.train.label_temperature = 2.0;
  options.runs = 1;
  options.model.width = 8;
  options.model.depth = 1;
  options.augment.name = "none";
  data::Normalization norm{at::zeros({1}), at::ones({1})};
  at::Generator gen = make_generator(5);
  SyntheticSet set = Evaluator::random_real_set(train, norm, 4, gen, "toy");
  set.labels = at::softmax(at::randn({set.images.size(0), 3}, gen) * 2, 1);
  Evaluator stored(options, train, test, norm, 3, c10::Device(c10::kCPU), false);
  Scores a = stored.score_set(set, "toy.pt", "convnet");
  // A "teacher" that looks each image up in the set and answers its stored label.
  int64_t calls = 0;
  auto lookup = [&](const at::Tensor& images) {
    ++calls;
    at::Tensor flat = set.images.flatten(1);
    std::vector<at::Tensor> rows;
    for (int64_t i = 0; i < images.size(0); ++i) {
      at::Tensor hit = (flat - images[i].flatten()).abs().amax(1).eq(0).nonzero();
      EXPECT_EQ(hit.size(0), 1) << "not an image of the set";
      rows.push_back(set.labels[hit[0][0].item<int64_t>()]);
    }
    return at::stack(rows);
  };
  Evaluator online(options, train, test, norm, 3, c10::Device(c10::kCPU), false);
  online.set_online_labels(lookup, 2.0);
  Scores b = online.score_set(set, "toy.pt", "convnet");
  EXPECT_EQ(calls, 6 * 2);  // every step: 12 images in batches of 8, 6 epochs
  EXPECT_EQ(b.last, a.last);
  // With augmentation on, the teacher sees the augmented batch, not the stored images.
  options.augment.name = "standard";
  bool saw_augmented = false;
  Evaluator augmented(options, train, test, norm, 3, c10::Device(c10::kCPU), false);
  augmented.set_online_labels(
      [&](const at::Tensor& images) {
        at::Tensor flat = set.images.flatten(1);
        for (int64_t i = 0; i < images.size(0); ++i) {
          if ((flat - images[i].flatten()).abs().amax(1).min().item<double>() > 0) {
            saw_augmented = true;
          }
        }
        return at::full({images.size(0), 3}, 1.0 / 3);
      },
      2.0);
  augmented.score_set(set, "toy.pt", "convnet");
  EXPECT_TRUE(saw_augmented);
}

// eval.batch_students: the runs of one architecture trained as one stack score what they score
// one at a time (each random-real run with its own subset), up to float rounding of the grouped
// kernels; a resumed evaluation trains the runs it has left and keeps the recorded ones.
TEST(Evaluator, StackedStudentsScoreWhatLoneStudentsScore) {
  data::Dataset train = toy_split(300, 1), test = toy_split(150, 2);
  EvalOptions options;
  apply_protocol("dc", options);
  options.train.epochs = 3;  // short: students still differ from each other
  options.runs = 3;
  options.model.width = 8;
  options.model.depth = 1;
  options.model.norm = "batchnorm";
  data::Normalization norm{at::zeros({1}), at::ones({1})};
  options.batch_students = 1;
  Evaluator lone(options, train, test, norm, 3, c10::Device(c10::kCPU), false);
  const Scores alone = lone.score_random_real(1, "convnet");
  options.batch_students = 3;  // the default (0) trains one at a time on a CPU
  Evaluator stacked(options, train, test, norm, 3, c10::Device(c10::kCPU), false);
  std::vector<StudentResult> trained;
  stacked.set_on_student([&](const StudentResult& s) { trained.push_back(s); });
  const Scores together = stacked.score_random_real(1, "convnet");
  ASSERT_EQ(together.last.size(), 3u);
  ASSERT_EQ(trained.size(), 3u);
  for (size_t run = 0; run < 3; ++run) {
    // 150 test images: one image is 0.0067; float rounding may move a borderline one.
    EXPECT_NEAR(together.last[run], alone.last[run], 0.014) << "run " << run;
    EXPECT_NEAR(together.best[run], alone.best[run], 0.014) << "run " << run;
    EXPECT_EQ(trained[run].run, static_cast<int64_t>(run));
    EXPECT_GT(together.seconds[run], 0);
  }
  // The runs differ (their subsets and seeds do), so the comparison above tells them apart.
  EXPECT_NE(alone.last[0], alone.last[1]);
  // Resumed with run 0 recorded: runs 1 and 2 are trained (as one stack of two), run 0 reused.
  Evaluator resumed(options, train, test, norm, 3, c10::Device(c10::kCPU), false);
  resumed.set_finished_students({trained[0]});
  std::vector<int64_t> retrained;
  resumed.set_on_student([&](const StudentResult& s) { retrained.push_back(s.run); });
  const Scores again = resumed.score_random_real(1, "convnet");
  EXPECT_EQ(retrained, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(again.last[0], together.last[0]);
  for (size_t run = 1; run < 3; ++run) EXPECT_NEAR(again.last[run], together.last[run], 0.014);
}

TEST(Evaluator, SetOfAnotherShapeIsRejected) {
  data::Dataset train = toy_split(30, 1), test = toy_split(30, 2);
  EvalOptions options;
  data::Normalization norm{at::zeros({1}), at::ones({1})};
  Evaluator evaluator(options, train, test, norm, 3, c10::Device(c10::kCPU), false);
  SyntheticSet set = small_set();  // 4x4 images
  try {
    evaluator.score_set(set, "syn.pt", "convnet");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1x4x4 but the test data is 1x8x8"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace distill::eval
