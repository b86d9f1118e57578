// `distill diffusion score` end to end on a tiny dataset with a classifier trained for a few
// epochs by `distill train`: real test images scored against themselves give FCD ~ 0 and
// precision = recall = 1, other real images a small FCD, noise a large one; the reference
// statistics are cached and follow the classifier; bad input fails before any work.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "src/core/runtime.h"
#include "src/io/tensor_file.h"
#include "tests/support/cli_support.h"

namespace distill::testing {
namespace {

// Batch 10: six steps an epoch on the 60 training images (the default 256 would make one). No
// augmentation: the standard crop shifts the class bands of the 8x8 images into each other.
const char* kClassifierModel =
    "--set model.width=8 --set model.depth=1 --set train.batch_size=10 --set augment.name=none ";
const char* kScoreModel =
    "--set diffusion.score.model.width=8 --set diffusion.score.model.depth=1 ";

class DiffusionScoreCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    data_ = write_tiny_dataset(*dir_, 3, 2);
    CommandResult r = distill_cli("train --epochs 4 " + tiny_flags(data_) + kClassifierModel +
                                  "--out " + dir_->file("clf"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() { delete dir_; }

  // A samples file in pixel space (mean 0, std 1), as Python would write one.
  static std::string write_samples(const std::string& name, const at::Tensor& pixels) {
    io::TensorDict dict = io::make_dict();
    dict.insert("images", pixels.to(at::kFloat));
    dict.insert("mean", at::zeros({pixels.size(1)}));
    dict.insert("std", at::ones({pixels.size(1)}));
    const std::string path = dir_->file(name + ".pt");
    io::save_dict(path, dict);
    return path;
  }
  static at::Tensor tiny(const std::string& key) {
    return io::get_tensor(io::load_dict(data_), key, data_);
  }
  static CommandResult score(const std::string& samples, const std::string& flags,
                             const std::string& out, std::string classifier = "") {
    if (classifier.empty()) classifier = dir_->file("clf/model.pt");
    return distill_cli("diffusion score " + samples + " " + tiny_flags(data_) + kScoreModel +
                       "--classifier " + classifier + " --set diffusion.score.cache_dir=" +
                       dir_->file("cache") + " " + flags + " --out " + dir_->file(out));
  }
  static nlohmann::json results(const std::string& out) {
    std::ifstream in(dir_->file(out + "/results.json"));
    return nlohmann::json::parse(in);
  }

  static TempDir* dir_;
  static std::string data_;
};
TempDir* DiffusionScoreCli::dir_ = nullptr;
std::string DiffusionScoreCli::data_;

TEST_F(DiffusionScoreCli, RealImagesScoreAsRealAndNoiseDoesNot) {
  const std::string test_images = write_samples("test", tiny("test_images"));
  const std::string train_images = write_samples("train", tiny("images").narrow(0, 0, 30));
  at::Generator gen = make_generator(1);
  const std::string noise = write_samples("noise", at::rand({30, 1, 8, 8}, gen));

  CommandResult same = score(test_images, "", "same");
  ASSERT_EQ(same.exit_code, 0) << same.output;
  EXPECT_TRUE(contains(same.output, "| FCD | 0.0000 |")) << same.output;
  EXPECT_TRUE(contains(same.output, "(FCD, not FID)")) << same.output;
  nlohmann::json r = results("same");
  EXPECT_LT(r["fcd"].get<double>(), 1e-6);
  EXPECT_DOUBLE_EQ(r["precision"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(r["recall"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(r["coverage"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(r["class_coverage"]["covered"].get<double>(), 1.0);
  EXPECT_EQ(r["reference"]["count"], 30);
  EXPECT_EQ(r["reference"]["cached"], false);
  EXPECT_EQ(r["feature_layer"], "embedding");
  EXPECT_FALSE(r.contains("fid"));

  // Other real images of the same classes: a small FCD; noise: a large one, off the manifold.
  CommandResult other = score(train_images, "", "other");
  ASSERT_EQ(other.exit_code, 0) << other.output;
  EXPECT_TRUE(contains(other.output, "(cached)")) << other.output;
  EXPECT_EQ(results("other")["reference"]["cached"], true);
  CommandResult far = score(noise, "", "noise");
  ASSERT_EQ(far.exit_code, 0) << far.output;
  const double fcd_other = results("other")["fcd"].get<double>();
  const double fcd_noise = results("noise")["fcd"].get<double>();
  EXPECT_GT(fcd_other, 1e-3);
  EXPECT_GT(fcd_noise, 5 * fcd_other) << fcd_other << " vs " << fcd_noise;
  EXPECT_LT(results("noise")["precision"].get<double>(),
            results("other")["precision"].get<double>());
}

// reference_count below the split's size takes a fixed-seed random subset, not the split's first
// images (which an image-folder split orders by class): the first 15 test images scored against
// a 15-image reference are not at FCD 0, and the same settings give the same reference.
TEST_F(DiffusionScoreCli, AReferenceSmallerThanTheSplitIsAFixedRandomSubset) {
  const std::string first = write_samples("first15", tiny("test_images").narrow(0, 0, 15));
  const std::string subset = "--set diffusion.score.reference_count=15 --k 2";
  CommandResult a = score(first, subset, "subset_a");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(results("subset_a")["reference"]["count"], 15);
  EXPECT_GT(results("subset_a")["fcd"].get<double>(), 1e-3);
  CommandResult b = score(first, subset + " --set diffusion.score.cache_dir=" +
                                     dir_->file("cache_b"), "subset_b");
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_EQ(results("subset_b")["reference"]["cached"], false);
  EXPECT_DOUBLE_EQ(results("subset_a")["fcd"].get<double>(),
                   results("subset_b")["fcd"].get<double>());
}

// A `distill diffusion sample` run folder is scored as it is (its own normalization), and a
// retrained classifier (other bytes) does not reuse the first one's cached statistics.
TEST_F(DiffusionScoreCli, ScoresASampleRunAndTheCacheFollowsTheClassifier) {
  CommandResult sampled =
      distill_cli("diffusion sample " + tiny_flags(data_) +
                  "--sampler heun --steps 16 --samples 12 --out " + dir_->file("sampled"));
  ASSERT_EQ(sampled.exit_code, 0) << sampled.output;
  CommandResult r =
      score(dir_->file("sampled"), "--set diffusion.score.split=train", "sampled_score");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  nlohmann::json j = results("sampled_score");
  EXPECT_EQ(j["sampler"], "heun");
  EXPECT_EQ(j["steps"], 16);
  EXPECT_EQ(j["samples"], 12);
  EXPECT_EQ(j["reference"]["manifold_count"], 12);
  // Heun samples of the exact teacher are training images: all of them on the real manifold.
  EXPECT_DOUBLE_EQ(j["precision"].get<double>(), 1.0);

  CommandResult retrain = distill_cli("train --epochs 1 " + tiny_flags(data_) + kClassifierModel +
                                      "--seed 7 --out " + dir_->file("clf2"));
  ASSERT_EQ(retrain.exit_code, 0) << retrain.output;
  auto again = [&](const std::string& classifier, const std::string& out) {
    CommandResult c = distill_cli("diffusion score " + dir_->file("sampled") + " " +
                                  tiny_flags(data_) + kScoreModel + "--classifier " + classifier +
                                  " --set diffusion.score.split=train --set "
                                  "diffusion.score.cache_dir=" +
                                  dir_->file("cache") + " --out " + dir_->file(out));
    EXPECT_EQ(c.exit_code, 0) << c.output;
    return results(out);
  };
  EXPECT_EQ(again(dir_->file("clf/model.pt"), "s1")["reference"]["cached"], true);
  nlohmann::json other = again(dir_->file("clf2/model.pt"), "s2");
  EXPECT_EQ(other["reference"]["cached"], false);
  EXPECT_NE(other["classifier_fingerprint"], j["classifier_fingerprint"]);
}

TEST_F(DiffusionScoreCli, BadInputNamesFileKeyAndValueBeforeAnyWork) {
  const std::string good = write_samples("good", tiny("test_images"));
  const std::string wide = write_samples("wide", at::rand({30, 1, 10, 10}));
  const std::string rgb = write_samples("rgb", at::rand({30, 3, 8, 8}));
  // A classifier of another class count: trained on 4 classes.
  const std::string four = write_tiny_dataset(*dir_, 4, 2);
  CommandResult t = distill_cli("train --epochs 1 " + tiny_flags(four) + kClassifierModel +
                                "--out " + dir_->file("clf4"));
  ASSERT_EQ(t.exit_code, 0) << t.output;

  struct Case {
    std::string samples, flags, message, classifier;
  };
  const std::vector<Case> cases = {
      {dir_->file("none.pt"), "",
       "diffusion.score.samples: '" + dir_->file("none.pt") + "' does not exist"},
      {dir_->path(), "", "has no samples.pt"},
      {wide, "",
       "samples '" + wide + "': 'images' are [1, 10, 10] (C,H,W), but data 'tiny' (" + data_ +
           ") and its classifier take [1, 8, 8]"},
      {rgb, "", "'images' are [3, 8, 8] (C,H,W)"},
      {good, "--k 30",
       "diffusion.score.k = 30 must be below the number of samples (30 in '" + good + "')"},
      {good, "",
       "diffusion.score.classifier '" + dir_->file("clf4/model.pt") +
           "' was trained for 4 classes (classifier.bias [4]), the data has 3",
       dir_->file("clf4/model.pt")},
      {good, "", "diffusion.score.classifier: '" + dir_->file("missing.pt") + "' is not a file",
       dir_->file("missing.pt")},
      {good, "--set diffusion.score.model.arch=mlp",
       "holds a 'convnet', but diffusion.score.model.arch builds a 'mlp'"},
      {good, "--set diffusion.score.feature_layer=logits",
       "diffusion.score.feature_layer = 'logits' is not a feature of convnet (block0, embedding)"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string out = "bad" + std::to_string(i);
    CommandResult r = score(cases[i].samples, cases[i].flags, out, cases[i].classifier);
    EXPECT_EQ(r.exit_code, 2) << cases[i].flags << ": " << r.output;
    EXPECT_TRUE(contains(r.output, cases[i].message)) << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir_->file(out))) << cases[i].flags;
  }
  CommandResult none =
      distill_cli("diffusion score " + tiny_flags(data_) + "--out " + dir_->file("bad_none"));
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_TRUE(contains(none.output, "diffusion.score.samples is empty")) << none.output;
}

}  // namespace
}  // namespace distill::testing
