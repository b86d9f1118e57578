// End-to-end checks of `distill kd`: run folders, the three schemes, resume, and the bad-input
// errors the issue asks for (teacher architecture/class count, feature names, temperature).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "src/core/runtime.h"
#include "src/io/tensor_file.h"
#include "tests/support/cli_support.h"
#include "tests/support/test_support.h"

namespace distill {
namespace {

using testing::CommandResult;
using testing::TempDir;
using testing::contains;
using testing::distill_cli;
using testing::tiny_flags;
using testing::write_tiny_dataset;

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// The last record of a metrics.jsonl: the values at the end of a training run.
nlohmann::json last_record(const std::string& path) {
  std::ifstream in(path);
  std::string last;
  for (std::string line; std::getline(in, line);) last = line;
  return nlohmann::json::parse(last);
}

// Class k lights up rows 2k and 2k+1.
std::string write_dataset(const TempDir& dir, int64_t classes) {
  return write_tiny_dataset(dir, classes, 2);
}

std::string flags(const std::string& data) {
  return "--set data.format=tensor --set data.path=" + data +
         " --set data.name=tiny --threads 1 --no-progress ";
}

const char* kTeacherModel =
    "--set teacher.model.arch=convnet --set teacher.model.width=8 --set teacher.model.depth=2 ";

// The weights in `model_file` (an MLP 64-16-3) scored on the test split by `distill kd`, which
// reports its teacher's test accuracy before training a student (one epoch here).
double teacher_accuracy(const TempDir& dir, const std::string& data, const std::string& model_file,
                        const std::string& out) {
  CommandResult r = distill_cli("kd " + flags(data) + "--teacher " + model_file +
                                " --set teacher.model.arch=mlp --set teacher.model.hidden=[16] "
                                "--set model.hidden=[16] --epochs 1 --out " +
                                dir.file(out));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  if (r.exit_code != 0) return std::nan("");
  return read_json(dir.file(out + "/results.json")).at("teacher_test_accuracy").get<double>();
}

class KdCli : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = write_dataset(dir_, 3);
    CommandResult r = distill_cli("train " + flags(data_) +
                                  "--set model.width=8 --set model.depth=2 "
                                  "--epochs 3 --out " +
                                  dir_.file("teacher"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    teacher_ = dir_.file("teacher/model.pt");
  }
  TempDir dir_;
  std::string data_, teacher_;
};

TEST_F(KdCli, OfflineWritesRunFolderWithTeacherErrorAndTermsAndResumes) {
  const std::string args = "kd " + flags(data_) + kTeacherModel + "--teacher " + teacher_ +
                           " --set model.hidden=[16] --epochs 3 --out " + dir_.file("kd");
  CommandResult r = distill_cli(args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  nlohmann::json results = read_json(dir_.file("kd/results.json"));
  EXPECT_TRUE(results.contains("teacher_test_accuracy"));
  EXPECT_TRUE(results.contains("loss_hinton") && results.contains("loss_ce"));
  EXPECT_EQ(results["train_images"], 60);
  EXPECT_TRUE(std::filesystem::exists(dir_.file("kd/model.pt")));
  EXPECT_TRUE(contains(r.output, "report: " + dir_.file("kd") + "/report.html")) << r.output;
  // The effective config lists the loss terms and reads back.
  CommandResult dump = distill_cli("config --dump kd --config " + dir_.file("kd/config.toml"));
  ASSERT_EQ(dump.exit_code, 0) << dump.output;
  EXPECT_TRUE(contains(dump.output, "[[kd.losses]]")) << dump.output;
  EXPECT_TRUE(contains(dump.output, "name = 'hinton'")) << dump.output;
  // --resume of a finished run keeps its result (the checkpoint is at the last epoch).
  CommandResult again = distill_cli(args + " --resume");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(read_json(dir_.file("kd/results.json"))["test_accuracy"], results["test_accuracy"]);
}

TEST_F(KdCli, DataFractionDmlAndBornAgainRun) {
  CommandResult dml =
      distill_cli("kd " + flags(data_) +
                  "--set kd.scheme=dml --set kd.cohort=3 "
                  "--set kd.data_fraction=0.5 --set 'kd.losses=[{name=\"hinton\", "
                  "T=1}, {name=\"ce\"}]' --set model.hidden=[16] --epochs 2 --out " +
                  dir_.file("dml"));
  ASSERT_EQ(dml.exit_code, 0) << dml.output;
  nlohmann::json r = read_json(dir_.file("dml/results.json"));
  EXPECT_EQ(r["train_images"], 30);  // 10 of each of the 3 classes
  EXPECT_TRUE(r.contains("loss_member0"));
  // model.pt holds the 3 students one after the other, each an MLP 64-16-3 (64 * 16 + 16 +
  // 16 * 3 + 3 = 1091 weights), different ones: they started from different initialisations.
  const at::Tensor cohort =
      io::get_tensor(io::load_dict(dir_.file("dml/model.pt")), "params", "dml");
  ASSERT_EQ(cohort.numel(), 3 * 1091);
  const std::vector<at::Tensor> members = cohort.split(1091);
  EXPECT_FALSE(at::equal(members[0], members[1]));
  EXPECT_FALSE(at::equal(members[1], members[2]));
  EXPECT_FALSE(at::equal(members[0], members[2]));
  // The reported accuracy is the members' mean. The trainer scores the cohort by its forward,
  // member 0's logits, so its log ends with member 0's accuracy; member 2's weights, written as
  // a model file of their own and scored by `distill kd`, have member 2's.
  double sum = 0;
  for (int i = 0; i < 3; ++i) {
    sum += r["member" + std::to_string(i) + "_test_accuracy"].get<double>();
  }
  EXPECT_DOUBLE_EQ(r["test_accuracy"].get<double>(), sum / 3);
  EXPECT_DOUBLE_EQ(last_record(dir_.file("dml/metrics.jsonl"))["test_accuracy"].get<double>(),
                   r["member0_test_accuracy"].get<double>());
  io::TensorDict member2 = io::make_dict();
  member2.insert("arch", std::string("mlp"));
  member2.insert("params", members[2].clone());
  io::save_dict(dir_.file("member2.pt"), member2);
  EXPECT_DOUBLE_EQ(teacher_accuracy(dir_, data_, dir_.file("member2.pt"), "member2_scored"),
                   r["member2_test_accuracy"].get<double>());

  CommandResult ba =
      distill_cli("kd " + flags(data_) +
                  "--set kd.scheme=born_again "
                  "--set kd.generations=2 --set model.hidden=[16] --epochs 2 --out " +
                  dir_.file("ba"));
  ASSERT_EQ(ba.exit_code, 0) << ba.output;
  nlohmann::json b = read_json(dir_.file("ba/results.json"));
  // Each generation's reported accuracy is the one its training log ends with. All generations
  // start from the same seeded initialisation on the same data, so only their teachers tell them
  // apart: generation 2 equal to generation 1 would mean generation 1 never became the teacher.
  std::vector<at::Tensor> generations;
  for (int g = 0; g <= 2; ++g) {
    const std::string gen = "ba/gen" + std::to_string(g);
    generations.push_back(
        io::get_tensor(io::load_dict(dir_.file(gen + "/model.pt")), "params", gen));
    EXPECT_DOUBLE_EQ(b["gen" + std::to_string(g) + "_test_accuracy"].get<double>(),
                     last_record(dir_.file(gen + "/metrics.jsonl"))["test_accuracy"].get<double>())
        << gen;
  }
  EXPECT_FALSE(at::equal(generations[0], generations[1]));
  EXPECT_FALSE(at::equal(generations[1], generations[2]));
  // The run's accuracy is the last generation's, and its model.pt holds the weights scored.
  EXPECT_DOUBLE_EQ(b["test_accuracy"].get<double>(), b["gen2_test_accuracy"].get<double>());
  EXPECT_DOUBLE_EQ(teacher_accuracy(dir_, data_, dir_.file("ba/gen2/model.pt"), "gen2_scored"),
                   b["gen2_test_accuracy"].get<double>());
}

// Self-distillation (Borup & Andersen): the derived rule holds out a class-balanced split, trains
// an alpha = 0 student per generation and records the least-squares weight, clipped; a fixed
// alpha of 1 is the labels alone, so generation 1 repeats generation 0 bit for bit (same seeded
// initialisation and data), while alpha 0.6 does not.
TEST_F(KdCli, SelfDistillationMixesTheGroundTruthWithADerivedOrFixedWeight) {
  const std::string base = "kd " + flags(data_) +
                           "--set kd.scheme=self_distillation --set kd.generations=1 "
                           "--set model.hidden=[16] --epochs 2 ";
  const std::string derived = base + "--set kd.validation_fraction=0.25 --out " + dir_.file("sd");
  CommandResult r = distill_cli(derived);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  nlohmann::json d = read_json(dir_.file("sd/results.json"));
  EXPECT_EQ(d["held_out_images"], 15);  // 5 of each of the 3 classes
  EXPECT_EQ(d["train_images"], 45);
  const double unclipped = d["gen1_ground_truth_weight_unclipped"].get<double>();
  EXPECT_DOUBLE_EQ(d["gen1_ground_truth_weight"].get<double>(),
                   std::min(1.0, std::max(0.0, unclipped)));
  EXPECT_TRUE(d.contains("gen1_alpha0_test_accuracy"));
  EXPECT_TRUE(std::filesystem::exists(dir_.file("sd/gen1/alpha0/model.pt")));
  EXPECT_DOUBLE_EQ(d["test_accuracy"].get<double>(), d["gen1_test_accuracy"].get<double>());
  EXPECT_TRUE(contains(r.output, "gen1 ground-truth weight")) << r.output;
  CommandResult again = distill_cli(derived + " --resume");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(read_json(dir_.file("sd/results.json")), d);

  auto params = [&](const std::string& run) {
    return io::get_tensor(io::load_dict(dir_.file(run + "/model.pt")), "params", run);
  };
  CommandResult labels_only = distill_cli(base +
                                          "--set kd.ground_truth_weight_rule=fixed "
                                          "--set kd.ground_truth_weight=1 --out " +
                                          dir_.file("sd1"));
  ASSERT_EQ(labels_only.exit_code, 0) << labels_only.output;
  nlohmann::json f = read_json(dir_.file("sd1/results.json"));
  EXPECT_EQ(f["train_images"], 60);  // nothing held out
  EXPECT_FALSE(f.contains("held_out_images"));
  EXPECT_FALSE(std::filesystem::exists(dir_.file("sd1/gen1/alpha0")));
  EXPECT_TRUE(at::equal(params("sd1/gen0"), params("sd1/gen1")));
  CommandResult mixed = distill_cli(base + "--set kd.ground_truth_weight_rule=fixed --out " +
                                    dir_.file("sd6"));
  ASSERT_EQ(mixed.exit_code, 0) << mixed.output;
  EXPECT_DOUBLE_EQ(read_json(dir_.file("sd6/results.json"))["gen1_ground_truth_weight"].get<double>(),
                   0.6);
  EXPECT_TRUE(at::equal(params("sd6/gen0"), params("sd1/gen0")));
  EXPECT_FALSE(at::equal(params("sd6/gen0"), params("sd6/gen1")));
}

// `kd search` (DisWOT): listed candidates are ranked by score, each from the same weights whether
// scored alone or in a list; the evolution ranks what it visited; max_params keeps the large ones
// out of the ranking.
TEST_F(KdCli, SearchRanksCandidateStudentsWithoutTraining) {
  const std::string base = "kd search " + flags(data_) + kTeacherModel + "--teacher " + teacher_ +
                           " --set search.batch_size=32 ";
  CommandResult listed = distill_cli(
      base + "--set 'search.candidates=[\"mlp-16\", \"convnet-w4-d1\", \"mlp-32-8\"]' --out " +
      dir_.file("search"));
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  nlohmann::json r = read_json(dir_.file("search/search.json"));
  ASSERT_EQ(r["ranking"].size(), 3u);
  EXPECT_EQ(r["mode"], "candidates");
  for (size_t i = 0; i + 1 < 3; ++i) {
    EXPECT_GE(r["ranking"][i]["score"].get<double>(), r["ranking"][i + 1]["score"].get<double>());
  }
  for (const auto& row : r["ranking"]) {
    EXPECT_NEAR(row["score"].get<double>(),
                -(row["semantic_distance"].get<double>() + row["relation_distance"].get<double>()),
                1e-12);
  }
  EXPECT_EQ(read_json(dir_.file("search/results.json"))["best"], r["ranking"][0]["name"]);
  EXPECT_TRUE(contains(listed.output, "3 candidates scored")) << listed.output;
  CommandResult alone = distill_cli(base + "--set 'search.candidates=[\"mlp-32-8\"]' --out " +
                                    dir_.file("alone"));
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  double in_list = 0;
  for (const auto& row : r["ranking"]) {
    if (row["name"] == "mlp-32-8") in_list = row["score"].get<double>();
  }
  EXPECT_EQ(read_json(dir_.file("alone/search.json"))["ranking"][0]["score"].get<double>(), in_list);

  CommandResult evolved = distill_cli(base +
                                      "--set search.population=4 --set search.sample=2 "
                                      "--set search.cycles=6 --set search.max_params=2000 --out " +
                                      dir_.file("evolved"));
  ASSERT_EQ(evolved.exit_code, 0) << evolved.output;
  nlohmann::json e = read_json(dir_.file("evolved/search.json"));
  EXPECT_EQ(e["mode"], "evolution");
  EXPECT_GE(e["ranking"].size(), 1u);
  bool over_seen = false;
  for (const auto& row : e["ranking"]) {
    const bool over = row.contains("excluded");
    if (over && row["excluded"] != "over search.max_params") continue;  // not buildable here
    EXPECT_EQ(over, row["params"].get<int64_t>() > 2000) << row.dump();
    EXPECT_FALSE(over_seen && !over) << "a ranked candidate after an over-budget one";
    over_seen = over_seen || over;
  }
}

// TGeo-KD: the fusion network trains on a held-out split the student never sees, and its ratios
// move as it learns; a run stopped after 2 epochs and resumed to 4 equals a straight 4-epoch run
// in the student's and the fusion network's weights (the held-out batches are drawn from the
// step number; constant learning rate, so the epoch count does not reshape the schedule).
TEST_F(KdCli, TgeoHoldsOutItsSplitLearnsItsRatiosAndResumesExactly) {
  const std::string base = "kd " + flags(data_) + kTeacherModel + "--teacher " + teacher_ +
                           " --set model.hidden=[16] --set train.schedule.name=constant "
                           "--set 'kd.losses=[{name=\"tgeo\", T=2}]' "
                           "--set kd.validation_fraction=0.2 ";
  CommandResult straight = distill_cli(base + "--epochs 4 --out " + dir_.file("tgeo"));
  ASSERT_EQ(straight.exit_code, 0) << straight.output;
  nlohmann::json results = read_json(dir_.file("tgeo/results.json"));
  EXPECT_EQ(results["held_out_images"], 12);  // 4 of each of the 3 classes
  EXPECT_EQ(results["train_images"], 48);
  std::vector<double> ratios;
  std::ifstream metrics(dir_.file("tgeo/metrics.jsonl"));
  for (std::string line; std::getline(metrics, line);) {
    ratios.push_back(nlohmann::json::parse(line)["tgeo_mean_ratio"].get<double>());
  }
  ASSERT_EQ(ratios.size(), 4u);
  EXPECT_GT(std::abs(ratios.back() - ratios.front()), 1e-3) << "the fusion network did not learn";

  ASSERT_EQ(distill_cli(base + "--epochs 2 --out " + dir_.file("resumed")).exit_code, 0);
  CommandResult resumed = distill_cli(base + "--epochs 4 --resume --out " + dir_.file("resumed"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  auto tensor = [&](const std::string& file, const std::string& key) {
    return io::get_tensor(io::load_dict(dir_.file(file)), key, file);
  };
  EXPECT_TRUE(at::equal(tensor("tgeo/checkpoint.pt", "params"),
                        tensor("resumed/checkpoint.pt", "params")));
  EXPECT_TRUE(at::equal(tensor("tgeo/checkpoint.pt", "aux"), tensor("resumed/checkpoint.pt", "aux")));
}

TEST_F(KdCli, BadInputIsOneLineWithExit2BeforeTraining) {
  const std::string base = "kd " + flags(data_) + "--teacher " + teacher_ + " ";
  struct Case {
    std::string args;
    std::string message;
  };
  std::vector<Case> cases = {
      {base + "--set teacher.model.arch=mlp",
       "holds a 'convnet', but teacher.model.arch builds a 'mlp'"},
      {"kd " + flags(write_dataset(dir_, 4)) + "--teacher " + teacher_ + " " + kTeacherModel,
       "was trained for 3 classes (classifier.bias [3]), the data has 4"},
      {base + kTeacherModel + "--set teacher.model.width=16",
       "has shape [8, 1, 3, 3], teacher.model builds [16, 1, 3, 3]"},
      {base + kTeacherModel + "--set 'kd.losses=[{name=\"hinton\", T=0}]'",
       "key 'kd.losses[0].T' must be > 0, found 0"},
      {base + kTeacherModel + "--set 'kd.losses=[{name=\"hinton\", T=-2}]'",
       "key 'kd.losses[0].T' must be > 0, found -2"},
      {base + kTeacherModel +
           "--set model.arch=convnet --set 'kd.losses=[{name=\"at\", "
           "student_layer=\"block7\", teacher_layer=\"block0\"}]'",
       "the student (convnet) has no feature 'block7'"},
      {base + kTeacherModel +
           "--set 'kd.losses=[{name=\"fitnet\", student_layer=\"hidden0\", "
           "teacher_layer=\"embeding\"}]'",
       "has no feature 'embeding' (did you mean 'embedding'?)"},
      {"kd " + flags(data_), "kd.losses[0] (hinton) needs a teacher: set teacher.checkpoint"},
      {base + kTeacherModel + "--set 'kd.losses=[{name=\"hinton\", Temp=3}]'",
       "unknown key 'kd.losses[0].Temp'"},
      {base + kTeacherModel + "--set kd.data_fraction=0",
       "key 'kd.data_fraction' must be in (0, 1], found 0"},
      {base + kTeacherModel + "--set kd.ground_truth_weight=0.3",
       "kd.ground_truth_weight applies to scheme self_distillation only (kd.scheme is offline)"},
      {"kd " + flags(data_) + "--set kd.scheme=self_distillation --set kd.ground_truth_weight=0.3",
       "kd.ground_truth_weight is the fixed rule's weight"},
      {"kd " + flags(data_) +
           "--set kd.scheme=self_distillation --set kd.ground_truth_weight_rule=fixed "
           "--set kd.ground_truth_weight=1.5",
       "key 'kd.ground_truth_weight' must be in [0, 1], found 1.5"},
      {base + "--set kd.scheme=self_distillation",
       "self_distillation starts from the student architecture trained on the labels"},
      {"kd " + flags(data_) + "--set kd.scheme=self_distillation --set kd.validation_fraction=0.99",
       "holds out 20 images per class, but a class of the student's training images has only 20"},
      {"kd " + flags(data_) +
           "--set kd.scheme=self_distillation --set 'kd.losses=[{name=\"ce\"}]'",
       "kd.losses does not apply to scheme self_distillation"},
      {base + kTeacherModel + "--set search.cycles=3", "the [search] settings apply to `distill kd search` only"},
      {base + kTeacherModel + "--set 'kd.losses=[{name=\"tgeo\"}, {name=\"ce\"}]'",
       "kd.losses[0] (tgeo) weighs hard and soft supervision per example itself and must be the "
       "only term"},
      {"kd " + flags(data_) + "--set kd.scheme=dml --set 'kd.losses=[{name=\"tgeo\"}]'",
       "kd.losses (tgeo) learns its fusion network against a fixed teacher: scheme offline only"},
      {base + kTeacherModel + "--set 'kd.losses=[{name=\"hinton\", fusion_lr_scale=3}]'",
       "kd.losses[0].fusion_lr_scale does not apply to 'hinton' (used by tgeo)"},
      {base + kTeacherModel + "--set kd.validation_fraction=0.2",
       "kd.validation_fraction applies to scheme self_distillation and to the tgeo term only"},
      {"kd search " + flags(data_), "kd search scores students against a teacher model: set teacher.checkpoint"},
      {"kd serch " + flags(data_),
       "distill kd takes no positional arguments but 'search', found 'serch'"},
      {"kd search " + flags(data_) + kTeacherModel + "--teacher " + teacher_ +
           " --set 'search.candidates=[\"mlp-16\", \"resnet-9\"]'",
       "search.candidates[1]: 'resnet-9' is not a candidate student"},
      {"kd search " + flags(data_) + kTeacherModel + "--teacher " + teacher_ +
           " --set search.batch_size=32 --set 'search.candidates=[\"convnet-w4-d9\"]'",
       "search.candidates[0] ('convnet-w4-d9'): "},
      {"kd search " + flags(data_) + kTeacherModel + "--teacher " + teacher_ +
           " --set search.batch_size=32 --set 'search.candidates=[\"mlp-16\"]' "
           "--set search.semantic=channels",
       "search.candidates[0] ('mlp-16'): its classifier reads 16 values"},
      {"kd search " + flags(data_) + kTeacherModel + "--teacher " + teacher_ +
           " --set search.sample=30",
       "search.sample must be <= search.population, found 30 > 20"},
      {"kd search " + flags(data_) + kTeacherModel + "--teacher " + teacher_ +
           " --set 'search.families=[\"resnet\"]'",
       "search.families: 'resnet' is not a family of the search"},
  };
  for (const auto& c : cases) {
    CommandResult r = distill_cli(c.args + " --out " + dir_.file("bad"));
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, c.message)) << c.message << "\n" << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir_.file("bad/metrics.jsonl"))) << c.args;
  }
}

TEST(KdPresets, EveryKdPresetReadsWithoutUnknownKeys) {
  int found = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(testing::source_dir() + "/experiments/configs")) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("kd_", 0) != 0 || entry.path().extension() != ".toml") continue;
    ++found;
    CommandResult r = distill_cli("config --dump kd --config " + entry.path().string());
    EXPECT_EQ(r.exit_code, 0) << name << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "[[kd.losses]]")) << name;
  }
  EXPECT_GE(found, 2);
}

}  // namespace
}  // namespace distill
