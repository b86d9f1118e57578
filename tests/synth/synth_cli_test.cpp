// `distill committee train` and `distill synth recover|relabel` end to end on a tiny dataset,
// and their bad-input errors (one line, exit 2, before any work).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>

#include "src/io/tensor_file.h"
#include "tests/support/cli_support.h"

namespace distill::testing {
namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::string read_file_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The last record of a metrics.jsonl: the values at the end of a training run.
nlohmann::json last_record(const std::string& path) {
  std::ifstream in(path);
  std::string last;
  for (std::string line; std::getline(in, line);) last = line;
  return nlohmann::json::parse(last);
}

size_t count_lines(const std::string& path) {
  std::ifstream in(path);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

// The tiny dataset's images changed by `change` (both splits), saved next to it as `name`.
std::string reshaped_dataset(const TempDir& dir, const std::string& data, const std::string& name,
                             const std::function<at::Tensor(const at::Tensor&)>& change) {
  io::TensorDict dict = io::load_dict(data);
  for (const char* key : {"images", "test_images"}) {
    dict.insert_or_assign(key, change(io::get_tensor(dict, key, data)).contiguous());
  }
  const std::string path = dir.file(name);
  io::save_dict(path, dict);
  return path;
}

// `manifest` without the lines naming its data's shape and class count (a hand-written manifest),
// so that every member's own checkpoint is what is checked. Written next to it: member paths are
// relative to the manifest's folder.
std::string without_data_shape(const std::string& manifest) {
  std::ifstream in(manifest);
  const std::string path = (std::filesystem::path(manifest).parent_path() / "hand.toml").string();
  std::ofstream out(path);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("channels", 0) == 0 || line.rfind("image_size", 0) == 0 ||
        line.rfind("num_classes", 0) == 0) {
      continue;
    }
    out << line << "\n";
  }
  return path;
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
  // A member's held-out accuracy is a fraction of the 15 held-out images (5 per class), and the
  // one its own training log ends with: the trainer scored the same final weights on that split.
  for (size_t i = 0; i < 2; ++i) {
    const double val = committee["members"][i]["val_accuracy"].get<double>();
    EXPECT_NEAR(val * 15, std::round(val * 15), 1e-9) << "member " << i << ": " << val;
    const std::string log = dir_.file("c/member_" + std::to_string(i) + "/metrics.jsonl");
    EXPECT_DOUBLE_EQ(val, last_record(log)["test_accuracy"].get<double>()) << "member " << i;
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
  EXPECT_TRUE(std::filesystem::exists(dir_.file("rel/grid.png")));
  // Export: an image folder (own class of each image) that `distill` itself reads as a dataset.
  CommandResult x = distill_cli("synth export --set synth.export.syn=" + dir_.file("rel/syn.pt") +
                                " --threads 1 --no-progress --out " + dir_.file("exp"));
  ASSERT_EQ(x.exit_code, 0) << x.output;
  for (const char* file : {"exp/train/0/0.png", "exp/train/2/1.png", "exp/grid.png"}) {
    EXPECT_TRUE(std::filesystem::exists(dir_.file(file))) << file;
  }
  CommandResult read_back = distill_cli(
      "subset --set data.format=image-folder --set data.path=" + dir_.file("exp") +
      " --set data.image_size=8 --set data.channels=1 --set data.name=exported --threads 1 "
      "--no-progress --ipc 2 --out " +
      dir_.file("exp_subset"));
  EXPECT_EQ(read_back.exit_code, 0) << read_back.output;
  EXPECT_TRUE(contains(read_back.output, "wrote 6 images")) << read_back.output;
  // Multi-crop recovery runs end to end.
  CommandResult mc = distill_cli("synth recover " + tiny_flags(data_) + "--committee " + manifest_ +
                                 " --ipc 1 --iterations 2 --set synth.recover.crops=3 --out " +
                                 dir_.file("multicrop"));
  EXPECT_EQ(mc.exit_code, 0) << mc.output;
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
  // The SRe2L/CV-DD post-evaluation preset (AdamW, cosine, CutMix on the soft labels) reads and
  // runs on the relabelled set (shortened here).
  CommandResult post = distill_cli(
      "eval --config " + source_dir() + "/experiments/configs/synth_post_eval_fashion_mnist.toml " +
      tiny_flags(data_) + "--set eval.syn=" + dir_.file("views/syn.pt") +
      " --set eval.runs=1 --set eval.train.epochs=2 --set 'eval.models=[\"convnet\"]' "
      "--set eval.random_real=false --set eval.model.width=8 --set eval.model.depth=2 --out " +
      dir_.file("ev_post"));
  ASSERT_EQ(post.exit_code, 0) << post.output;
  EXPECT_TRUE(contains(read_file_text(dir_.file("ev_post/config.toml")), "name = 'adamw'"));
  // Teacher-in-the-loop: the committee labels every augmented batch, so the set's own labels are
  // unused: the set with every label moved to the next class trains the very same students, while
  // without the committee those labels train other students. Equal votes (a large voting
  // temperature), so the batch-norm member counts whatever its held-out accuracy; 30 epochs, so
  // the labels shape the students.
  io::TensorDict shifted = io::load_dict(dir_.file("rec/syn.pt"));
  shifted.insert_or_assign("labels", (io::get_tensor(shifted, "labels", "rec") + 1).remainder(3));
  io::save_dict(dir_.file("shifted.pt"), shifted);
  const std::string students = "eval " + tiny_flags(data_) +
                               "--set eval.runs=2 --set eval.train.epochs=30 "
                               "--set eval.random_real=false "
                               "--set eval.model.width=8 --set eval.model.depth=2 ";
  const std::string online = students + "--set committee_labels.committee=" + manifest_ +
                             " --set committee_labels.temperature=1e6 ";
  auto accuracies = [&](const std::string& run) {  // every student's, the set path left out
    const nlohmann::json row = read_json(dir_.file(run + "/results.json"))["results"][0];
    return nlohmann::json{row.at("last_accuracy"), row.at("best_accuracy")};
  };
  const std::vector<std::pair<std::string, std::string>> online_runs = {
      {"rec/syn.pt", "ev_online"}, {"shifted.pt", "ev_online_shifted"}};
  for (const auto& [file, out] : online_runs) {
    CommandResult run =
        distill_cli(online + "--set eval.syn=" + dir_.file(file) + " --out " + dir_.file(out));
    ASSERT_EQ(run.exit_code, 0) << run.output;
  }
  CommandResult stored = distill_cli(students + "--set eval.syn=" + dir_.file("shifted.pt") +
                                     " --out " + dir_.file("ev_stored_shifted"));
  ASSERT_EQ(stored.exit_code, 0) << stored.output;
  EXPECT_EQ(accuracies("ev_online_shifted"), accuracies("ev_online"));
  EXPECT_NE(accuracies("ev_stored_shifted"), accuracies("ev_online_shifted"));
  // With batch statistics (CV-DD's BSSL; the labels themselves: Committee.BatchStatistics*): the
  // batch-norm member labels each batch with the batch's own statistics instead of its running
  // ones, so the labels and the students trained on them change.
  CommandResult bssl =
      distill_cli(online + "--set eval.syn=" + dir_.file("rec/syn.pt") +
                  " --set committee_labels.batch_statistics=true --out " + dir_.file("ev_bssl"));
  ASSERT_EQ(bssl.exit_code, 0) << bssl.output;
  EXPECT_TRUE(
      contains(read_file_text(dir_.file("ev_bssl/config.toml")), "batch_statistics = true"));
  EXPECT_NE(accuracies("ev_bssl"), accuracies("ev_online"));
  // The agreement is how often the committee's vote (the soft label's argmax) is the class the
  // recovered image was made for.
  const at::Tensor soft = io::get_tensor(io::load_dict(dir_.file("rel/syn.pt")), "labels", "rel");
  const at::Tensor own = io::get_tensor(io::load_dict(dir_.file("rec/syn.pt")), "labels", "rec");
  EXPECT_NEAR(relabel["agreement"].get<double>(),
              soft.argmax(1).eq(own).to(at::kDouble).mean().item<double>(), 1e-6);
  if (!reference_python().empty() || tools_required()) {
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
  // k-means initialisation runs end to end, and with 0 steps' worth of change (lr 0) the set is
  // made of real training images, 2 per class, of their own class, deterministic for the seed.
  const std::string kmeans = "synth recover " + tiny_flags(data_) + "--committee " + manifest_ +
                             " --ipc 2 --iterations 1 --set synth.recover.init=kmeans "
                             "--set synth.recover.lr=0 --set run.seed=4 --out ";
  CommandResult k1 = distill_cli(kmeans + dir_.file("km1"));
  ASSERT_EQ(k1.exit_code, 0) << k1.output;
  CommandResult k2 = distill_cli(kmeans + dir_.file("km2"));
  ASSERT_EQ(k2.exit_code, 0) << k2.output;
  io::TensorDict set = io::load_dict(dir_.file("km1/syn.pt"));
  at::Tensor a = io::get_tensor(set, "images", "km1");
  const double mean = io::get_tensor(set, "mean", "km1").item<double>();
  const double std = io::get_tensor(set, "std", "km1").item<double>();
  at::Tensor b = io::get_tensor(io::load_dict(dir_.file("km2/syn.pt")), "images", "km2");
  EXPECT_TRUE(at::equal(a, b));
  io::TensorDict data = io::load_dict(data_);
  at::Tensor real = io::get_tensor(data, "images", data_);
  at::Tensor real_labels = io::get_tensor(data, "labels", data_);
  ASSERT_EQ(a.size(0), 6);
  for (int64_t i = 0; i < 6; ++i) {
    // The real image whose normalized form (the set's mean/std) it is.
    at::Tensor d = (real.sub(mean).div(std) - a[i]).abs().flatten(1).amax(1);
    const int64_t nearest = d.argmin().item<int64_t>();
    EXPECT_LT(d[nearest].item<double>(), 1e-3) << "image " << i << " is not a real image";
    EXPECT_EQ(real_labels[nearest].item<int64_t>(), i % 3) << "image " << i;
  }
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
      {"committee train " + tiny_flags(data4) +
           "--set committee.val_per_class=5 "
           "--set 'committee.members=[{checkpoint=\"" +
           teacher + "\", model={arch=\"convnet\", norm=\"batchnorm\", width=8, depth=2}}]'",
       "trained for 3 classes"},
      {"synth recover " + tiny_flags(data4) + "--committee " + manifest_,
       "3 classes, the data has 4"},
      {recover + "--committee " + manifest_ + " --draw 3",
       "synth.draw must be between 1 and the committee size 2, found 3"},
      {recover + "--committee " + manifest_ + " --draw 0", "found 0"},
      {recover + "--committee " + manifest_ + " --ipc 21 --set synth.recover.init=real",
       "has only 20 training images"},
      {recover + "--committee " + manifest_ + " --ipc 21 --set synth.recover.init=kmeans",
       "synth.recover.ipc = 21 with init \"kmeans\": class 0 has only 20 training images"},
      {recover + "--committee " + dir_.file("nothing.toml"), "does not exist"},
      {"synth relabel " + tiny_flags(data_) + "--committee " + manifest_,
       "synth.relabel.syn is empty"},
      {"synth sculpt " + tiny_flags(data_), "unknown synth step 'sculpt'"},
      {"synth export " + tiny_flags(data_), "synth.export.syn is empty"},
      {"eval " + tiny_flags(data4) +
           "--set eval.ipc=1 --set committee_labels.committee=" + manifest_,
       "3 classes, the data has 4"},
      {recover + "--committee " + manifest_ + " --set synth.recover.crops=0",
       "key 'synth.recover.crops' must be >= 1, found 0"},
      {"synth relabel " + tiny_flags(data_) + "--committee " + manifest_ + " --syn " +
           dir_.file("other_norm/syn.pt"),
       "is normalized with mean [0.500000], std [0.500000], but the committee"},
      {recover + "--committee " + manifest_ + " --set data.mean=[0.5] --set data.std=[0.5]",
       "the data (data.*) is normalized with mean [0.500000]"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const std::string bad = "bad" + std::to_string(i);
    CommandResult r = distill_cli(c.args + " --out " + dir_.file(bad));
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, c.message)) << c.args << "\n" << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir_.file(bad + "/metrics.jsonl"))) << c.args;
  }
}

// INFER end to end: the compensated set, its stored form and budget, resume, the bad budget; its
// logit labels train the students that their softmax stored as probabilities trains.
TEST_F(SynthCli, InferWritesItsSetAndEvalBlendsItsLogitLabels) {
  const std::string infer = "synth infer " + tiny_flags(data_) + "--committee " + manifest_ +
                            " --ipc 2 --iterations 4 --set synth.infer.T=2 ";
  CommandResult r = distill_cli(infer + "--out " + dir_.file("inf"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  nlohmann::json results = read_json(dir_.file("inf/results.json"));
  EXPECT_EQ(results["real_per_class"], 1);  // floor(2 * 3 / (3 + 2))
  EXPECT_EQ(results["stored_images"], 5);   // 3 real + 2 compensators <= 6
  EXPECT_EQ(results["budget_images"], 6);
  EXPECT_EQ(results["training_images"], 9);
  EXPECT_TRUE(std::filesystem::exists(dir_.file("inf/compensators.pt")));
  EXPECT_TRUE(std::filesystem::exists(dir_.file("inf/grid.png")));
  io::TensorDict set = io::load_dict(dir_.file("inf/syn.pt"));
  EXPECT_EQ(set.at("label_form").toStringRef(), "logits");
  // Resuming the finished run changes nothing.
  CommandResult again = distill_cli(infer + "--out " + dir_.file("inf") + " --resume");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_TRUE(io::get_tensor(io::load_dict(dir_.file("inf/syn.pt")), "images", "syn")
                  .equal(io::get_tensor(set, "images", "syn")));
  CommandResult small = distill_cli("synth infer " + tiny_flags(data_) + "--committee " +
                                    manifest_ + " --ipc 1 --out " + dir_.file("inf_small"));
  EXPECT_EQ(small.exit_code, 2) << small.output;
  EXPECT_TRUE(contains(small.output, "synth.infer.ipc = 1 holds no real batch")) << small.output;
  // relabel's logits form refuses stored views (their labels are probabilities).
  CommandResult views = distill_cli("synth relabel " + tiny_flags(data_) + "--committee " +
                                    manifest_ + " --syn " + dir_.file("inf/syn.pt") +
                                    " --set synth.relabel.form=logits --set synth.relabel.views=2"
                                    " --out " + dir_.file("rel_views"));
  EXPECT_EQ(views.exit_code, 2) << views.output;
  EXPECT_TRUE(contains(views.output, "use form = \"probabilities\" with views")) << views.output;
  // The committee's logits, spread 20x so that blending before or after the softmax differs
  // clearly, stored once as logits and once as probabilities softmax(logits / T).
  const at::Tensor spread = io::get_tensor(set, "labels", "syn") * 20.0;
  io::TensorDict logits = set;
  logits.insert_or_assign("labels", spread.contiguous());
  io::save_dict(dir_.file("logits.pt"), logits);
  io::TensorDict probabilities = set;
  probabilities.insert_or_assign("labels", at::softmax(spread / 2.0, 1).contiguous());
  probabilities.insert_or_assign("label_form", std::string("probabilities"));
  io::save_dict(dir_.file("probabilities.pt"), probabilities);
  const std::string students = "eval " + tiny_flags(data_) +
                               "--set eval.runs=1 --set eval.train.epochs=40 "
                               "--set eval.train.eval_every=5 "
                               "--set eval.random_real=false --set eval.augment.name=none "
                               "--set eval.model.width=8 --set eval.model.depth=2 ";
  auto accuracies = [&](const std::string& run) {
    const nlohmann::json row = read_json(dir_.file(run + "/results.json"))["results"][0];
    return nlohmann::json{row.at("last_accuracy"), row.at("curves")};  // accuracy every epoch
  };
  const std::string mix = "--set eval.mixup.prob=1 ";
  for (const auto& [file, out, extra] :
       std::vector<std::array<std::string, 3>>{{"logits.pt", "ev_logits", ""},
                                               {"probabilities.pt", "ev_probabilities", ""},
                                               {"logits.pt", "ev_logits_mix", mix},
                                               {"probabilities.pt", "ev_probabilities_mix", mix}}) {
    CommandResult e =
        distill_cli(students + extra + "--set eval.syn=" + dir_.file(file) + " --out " + dir_.file(out));
    ASSERT_EQ(e.exit_code, 0) << e.output;
  }
  // Read as probabilities, logit rows (negative entries) would stop the run with a non-finite
  // loss: the set's label form reached the students. (That Mixup blends logits before the softmax
  // is ClassificationLoss.LogitTargetsAreBlendedBeforeTheSoftmax; here both mixed runs finish.)
  EXPECT_EQ(accuracies("ev_logits"), accuracies("ev_probabilities"));
}

// Issue 6's bad input, the shape half: a member whose input shape (channels or size) or class count
// differs from the data, caught from the manifest or, for a hand-written manifest that does not
// record them, from each member's checkpoint (named with the member, expected vs found).
TEST_F(SynthCli, MembersOfAnotherInputShapeOrClassCountAreNamedBeforeAnyWork) {
  const std::string rgb = reshaped_dataset(dir_, data_, "rgb.pt", [](const at::Tensor& x) {
    return x.repeat({1, 3, 1, 1});
  });
  const std::string big = reshaped_dataset(dir_, data_, "big.pt", [](const at::Tensor& x) {
    return at::constant_pad_nd(x, {2, 2, 2, 2}, 0.0);
  });
  const std::string data4 = write_tiny_dataset(dir_, 4, 2);
  const std::string hand = without_data_shape(manifest_);
  const std::string teacher = dir_.file("c/member_0/model.pt");
  const std::string where = "committee manifest '" + hand + "', member 0 (convnet): ";
  // An empty committee written by hand.
  const std::string empty = dir_.file("empty.toml");
  std::ofstream(empty) << "dataset = \"tiny\"\nchannels = 1\nimage_size = 8\nnum_classes = 3\n";
  struct Case {
    std::string args, message;
  };
  const std::string recover = "synth recover --iterations 2 --ipc 1 ";
  std::vector<Case> cases = {
      {recover + tiny_flags(rgb) + "--committee " + manifest_,
       "members take 1x8x8 images, the data is 3x8x8"},
      {recover + tiny_flags(big) + "--committee " + manifest_,
       "members take 1x8x8 images, the data is 1x12x12"},
      {recover + tiny_flags(rgb) + "--committee " + hand,
       where + "teacher checkpoint '" + teacher +
           "' was trained on 1x8x8 images, the data is 3x8x8"},
      {recover + tiny_flags(big) + "--committee " + hand,
       where + "teacher checkpoint '" + teacher +
           "' was trained on 1x8x8 images, the data is 1x12x12"},
      {recover + tiny_flags(data4) + "--committee " + hand,
       where + "teacher checkpoint '" + teacher + "' was trained for 3 classes"},
      {"committee train " + tiny_flags(big) +
           "--set committee.val_per_class=5 "
           "--set 'committee.members=[{checkpoint=\"" +
           teacher + "\", model={arch=\"convnet\", norm=\"batchnorm\", width=8, depth=2}}]'",
       "committee.members[0] (convnet): teacher checkpoint '" + teacher +
           "' was trained on 1x8x8 images, the data is 1x12x12"},
      {recover + tiny_flags(data_) + "--committee " + empty, "committee of size 0"},
      {recover + tiny_flags(data_) + "--committee " + hand + " --draw 3",
       "synth.draw must be between 1 and the committee size 2, found 3"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const std::string bad = "bad" + std::to_string(i);
    CommandResult r = distill_cli(c.args + " --out " + dir_.file(bad));
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, c.message)) << c.args << "\n" << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir_.file(bad + "/metrics.jsonl"))) << c.args;
  }
  // The hand-written manifest itself is fine for data of the committee's shape.
  CommandResult ok = distill_cli(recover + tiny_flags(data_) + "--committee " + hand + " --out " +
                                 dir_.file("hand_ok"));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
}

// Each SRe2L / CV-DD paper preset (one file per table row) is one pipeline file: committee train,
// synth recover, synth relabel and eval all read it without unknown keys, and the IPC in the file
// name is the one the recovery makes.
TEST(SynthPresets, EveryPaperPresetReadsForCommitteeSynthAndEval) {
  int found = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(source_dir() + "/experiments/configs")) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("synth_", 0) != 0 || entry.path().extension() != ".toml" ||
        name == "synth_post_eval_fashion_mnist.toml") {
      continue;
    }
    ++found;
    for (const std::string command :
         {"committee train", "synth recover", "synth relabel", "eval"}) {
      CommandResult r =
          distill_cli("config --dump " + command + " --config " + entry.path().string());
      ASSERT_EQ(r.exit_code, 0) << name << " " << command << "\n" << r.output;
      if (command == "synth recover") {
        std::string ipc = name.substr(name.rfind("ipc") + 3);
        ipc = ipc.substr(0, ipc.find('.'));
        // The indented key of [synth.recover], so that `batch_ipc = 1` does not pass for IPC 1.
        EXPECT_TRUE(contains(r.output, "\n    ipc = " + ipc + "\n")) << name << "\n" << r.output;
      }
    }
  }
  EXPECT_GE(found, 12);  // CV-DD: CIFAR-10/100, Tiny-ImageNet at IPC 1/10/50; SRe2L: 3 rows
}

// Each INFER preset (CIFAR-10/100 rows of the paper's Table 1, Fashion-MNIST) is one pipeline file:
// committee train, synth infer and eval read it without unknown keys, and the IPC in the file name
// is the budget it distils to.
TEST(InferPresets, EveryPresetReadsForCommitteeInferAndEval) {
  int found = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(source_dir() + "/experiments/configs")) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("infer_", 0) != 0 || entry.path().extension() != ".toml") continue;
    ++found;
    for (const std::string command : {"committee train", "synth infer", "eval"}) {
      CommandResult r =
          distill_cli("config --dump " + command + " --config " + entry.path().string());
      ASSERT_EQ(r.exit_code, 0) << name << " " << command << "\n" << r.output;
      if (command == "synth infer") {
        std::string ipc = name.substr(name.rfind("ipc") + 3);
        ipc = ipc.substr(0, ipc.find('.'));
        const std::string section = r.output.substr(r.output.find("[synth.infer]"));
        EXPECT_TRUE(contains(section.substr(0, section.find("\n\n")), "\n    ipc = " + ipc + "\n"))
            << name << "\n" << section;
      }
    }
  }
  EXPECT_EQ(found, 6);  // CIFAR-10/100 at IPC 10/50, Fashion-MNIST at IPC 10/50
}

// README tables written from committed summary files (experiments/results/*.json) are what their
// writers draw from those files, so they can be checked without the runs.
TEST(ResultsTables, ReadmeTablesAreWhatTheSummaryFilesGive) {
  for (const char* writer :
       {"write_infer_table.py", "write_kd_recent_table.py", "write_kd_search_table.py"}) {
    CommandResult r = run_command("/usr/bin/python3 " + source_dir() + "/experiments/" + writer +
                                  " --check");
    EXPECT_EQ(r.exit_code, 0) << writer << "\n" << r.output;
  }
}

}  // namespace
}  // namespace distill::testing
