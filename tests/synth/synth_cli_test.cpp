// `distill committee train` and `distill synth recover|relabel` end to end on a tiny dataset,
// and their bad-input errors (one line, exit 2, before any work).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/cli_support.h"

namespace distill::testing {
namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

size_t count_lines(const std::string& path) {
  std::ifstream in(path);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

// A BN ConvNet and an MLP (no BN: feature statistics), 3 epochs on the tiny data.
const char* kMembers =
    "--set 'committee.members=[{model={arch=\"convnet\", norm=\"batchnorm\", width=8, depth=2}}, "
    "{model={arch=\"mlp\", hidden=[16]}}]' --set committee.val_per_class=5 "
    "--set committee.train.epochs=3 --set committee.train.batch_size=16 ";

class SynthCli : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = write_tiny_dataset(dir_, 3, 2);
    CommandResult r =
        distill_cli("committee train " + tiny_flags(data_) + kMembers + "--out " + dir_.file("c"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    manifest_ = dir_.file("c/committee.toml");
  }
  TempDir dir_;
  std::string data_, manifest_;
};

TEST_F(SynthCli, CommitteeRecoverRelabelAndEvalOnSoftLabels) {
  ASSERT_TRUE(std::filesystem::exists(manifest_));
  nlohmann::json committee = read_json(dir_.file("c/results.json"));
  ASSERT_EQ(committee["members"].size(), 2u);
  for (const auto& m : committee["members"]) {
    EXPECT_GE(m["val_accuracy"].get<double>(), 0.0);
    EXPECT_LE(m["val_accuracy"].get<double>(), 1.0);
  }
  EXPECT_TRUE(std::filesystem::exists(dir_.file("c/member_1/feature_stats.pt")));  // the MLP
  EXPECT_FALSE(std::filesystem::exists(dir_.file("c/member_0/feature_stats.pt")));  // BN member

  const std::string recover = "synth recover " + tiny_flags(data_) + "--committee " + manifest_ +
                              " --ipc 2 --iterations 6 --set synth.recover.batch_ipc=1 "
                              "--set synth.recover.log_every=2 --out " + dir_.file("rec");
  CommandResult r = distill_cli(recover);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir_.file("rec/grid.png")));
  EXPECT_EQ(count_lines(dir_.file("rec/metrics.jsonl")), 6u);  // 2 batches x 6 steps, every 2
  nlohmann::json results = read_json(dir_.file("rec/results.json"));
  EXPECT_EQ(results["images"], 6);
  EXPECT_EQ(results["members"].size(), 2u);

  CommandResult l = distill_cli("synth relabel " + tiny_flags(data_) + "--committee " + manifest_ +
                                " --syn " + dir_.file("rec/syn.pt") + " --out " + dir_.file("rel"));
  ASSERT_EQ(l.exit_code, 0) << l.output;
  EXPECT_TRUE(contains(l.output, "soft labels at T = 4, recorded in the set")) << l.output;
  nlohmann::json relabel = read_json(dir_.file("rel/results.json"));
  // FKD-style stored views, replayed by eval in place of its augmentation.
  CommandResult v = distill_cli("synth relabel " + tiny_flags(data_) + "--committee " + manifest_ +
                                " --syn " + dir_.file("rec/syn.pt") +
                                " --set synth.relabel.views=3 --out " + dir_.file("views"));
  ASSERT_EQ(v.exit_code, 0) << v.output;
  CommandResult ev = distill_cli("eval " + tiny_flags(data_) + "--set eval.syn=" +
                                 dir_.file("views/syn.pt") +
                                 " --set eval.runs=1 --set eval.train.epochs=4 "
                                 "--set eval.train.label_temperature=4 --set eval.random_real=false "
                                 "--set eval.model.width=8 --set eval.model.depth=2 --out " +
                                 dir_.file("ev_views"));
  ASSERT_EQ(ev.exit_code, 0) << ev.output;
  EXPECT_GE(relabel["agreement"].get<double>(), 0.0);
  if (!reference_python().empty()) {
    run_python_script("synth_set_check.py",
                      {dir_.file("rec/syn.pt"), dir_.file("rel/syn.pt"), "6", "3"});
  }
  // The set records T = 4 and eval trains at it: the same students as T = 4 set by hand.
  const std::string eval = "eval " + tiny_flags(data_) + "--set eval.syn=" +
                           dir_.file("rel/syn.pt") +
                           " --set eval.runs=2 --set eval.train.epochs=3 "
                           "--set eval.random_real=false "
                           "--set eval.model.width=8 --set eval.model.depth=2 ";
  CommandResult e = distill_cli(eval + "--out " + dir_.file("ev"));
  ASSERT_EQ(e.exit_code, 0) << e.output;
  CommandResult by_hand = distill_cli(eval +
                                      "--set eval.set_label_temperature=false "
                                      "--set eval.train.label_temperature=4 --out " +
                                      dir_.file("ev_hand"));
  ASSERT_EQ(by_hand.exit_code, 0) << by_hand.output;
  EXPECT_EQ(read_json(dir_.file("ev/results.json"))["results"][0]["last_accuracy"],
            read_json(dir_.file("ev_hand/results.json"))["results"][0]["last_accuracy"]);
}

TEST_F(SynthCli, LoadedCheckpointsAndResumedCommitteesKeepTheirAccuracies) {
  nlohmann::json trained = read_json(dir_.file("c/results.json"));
  // The first member's weights loaded into a committee of one: same held-out split (same seed),
  // same weights, so the same accuracy; the manifest points at the file it loaded.
  CommandResult one = distill_cli(
      "committee train " + tiny_flags(data_) + "--set committee.val_per_class=5 "
      "--set 'committee.members=[{checkpoint=\"" + dir_.file("c/member_0/model.pt") +
      "\", model={arch=\"convnet\", norm=\"batchnorm\", width=8, depth=2}}]' --out " +
      dir_.file("one"));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  nlohmann::json loaded = read_json(dir_.file("one/results.json"));
  ASSERT_EQ(loaded["members"].size(), 1u);
  EXPECT_DOUBLE_EQ(loaded["members"][0]["val_accuracy"].get<double>(),
                   trained["members"][0]["val_accuracy"].get<double>());
  // A finished committee resumed: nothing is retrained, the accuracies are unchanged.
  CommandResult again = distill_cli("committee train " + tiny_flags(data_) + kMembers + "--out " +
                                    dir_.file("c") + " --resume");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_TRUE(contains(again.output, "already trained")) << again.output;
  EXPECT_EQ(read_json(dir_.file("c/results.json")), trained);
  // Recovery with the committee of one and a draw of one (the single-teacher ablation).
  CommandResult r = distill_cli("synth recover " + tiny_flags(data_) + "--committee " +
                                dir_.file("one/committee.toml") +
                                " --ipc 1 --iterations 2 --draw 1 --out " + dir_.file("rec1"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(SynthCli, BadInputIsOneLineWithExit2BeforeAnyWork) {
  const std::string recover = "synth recover " + tiny_flags(data_) + "--iterations 2 ";
  struct Case {
    std::string args, message;
  };
  // A teacher trained on 3 classes offered to a committee on 4-class data.
  const std::string data4 = write_tiny_dataset(dir_, 4, 2);
  const std::string teacher = dir_.file("c/member_0/model.pt");
  // A set normalized differently from the committee's data.
  CommandResult other = distill_cli("subset " + tiny_flags(data_) +
                                    "--set data.mean=[0.5] --set data.std=[0.5] --ipc 2 --out " +
                                    dir_.file("other_norm"));
  ASSERT_EQ(other.exit_code, 0) << other.output;
  std::vector<Case> cases = {
      {"committee train " + tiny_flags(data_) + "--set 'committee.members=[]'",
       "committee of size 0"},
      {"committee train " + tiny_flags(data4) + "--set committee.val_per_class=5 "
       "--set 'committee.members=[{checkpoint=\"" + teacher +
       "\", model={arch=\"convnet\", norm=\"batchnorm\", width=8, depth=2}}]'",
       "trained for 3 classes"},
      {"synth recover " + tiny_flags(data4) + "--committee " + manifest_, "3 classes, the data has 4"},
      {recover + "--committee " + manifest_ + " --draw 3",
       "synth.draw must be between 1 and the committee size 2, found 3"},
      {recover + "--committee " + manifest_ + " --draw 0", "found 0"},
      {recover + "--committee " + manifest_ + " --ipc 21 --set synth.recover.init=real",
       "has only 20 training images"},
      {recover + "--committee " + dir_.file("nothing.toml"), "does not exist"},
      {"synth relabel " + tiny_flags(data_) + "--committee " + manifest_, "synth.relabel.syn is empty"},
      {"synth sculpt " + tiny_flags(data_), "unknown synth step 'sculpt'"},
      {"synth relabel " + tiny_flags(data_) + "--committee " + manifest_ + " --syn " +
           dir_.file("other_norm/syn.pt"),
       "is normalized with mean [0.500000], std [0.500000], but the committee"},
      {recover + "--committee " + manifest_ + " --set data.mean=[0.5] --set data.std=[0.5]",
       "the data (data.*) is normalized with mean [0.500000]"},
  };
  for (const auto& c : cases) {
    CommandResult r = distill_cli(c.args + " --out " + dir_.file("bad"));
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, c.message)) << c.args << "\n" << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir_.file("bad/metrics.jsonl"))) << c.args;
  }
}

}  // namespace
}  // namespace distill::testing
