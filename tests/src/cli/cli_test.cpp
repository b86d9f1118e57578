// End-to-end checks of the `distill` binary: exit codes, error lines, run folders, resume.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "src/core/runtime.h"
#include "src/io/atomic_file.h"
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

// Small ConvNet experts (width 8, depth 1) on the tiny dataset, into dir/experts.
CommandResult train_tiny_experts(const TempDir& dir, const std::string& data, int experts,
                                 int epochs) {
  return distill_cli("experts " + tiny_flags(data) +
                     "--set experts.model.width=8 --set experts.model.depth=1 "
                     "--set experts.num_experts=" + std::to_string(experts) +
                     " --set experts.train.epochs=" + std::to_string(epochs) +
                     " --set experts.train.batch_size=20 --out " + dir.file("experts"));
}

TEST(Cli, NoArgumentsPrintsUsageAndExits2) {
  CommandResult r = distill_cli("");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.output, "usage: distill <command>")) << r.output;
}

TEST(Cli, UnknownCommandSuggestsTheClosest) {
  CommandResult r = distill_cli("evl");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.output, "unknown command 'evl' (did you mean 'eval'?)")) << r.output;
}

TEST(Cli, UnknownSettingIsOneClearLineWithExit2) {
  CommandResult r = distill_cli("eval --set eval.rnus=3");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.output, "--set eval.rnus=3: unknown key 'eval.rnus' (did you mean 'eval.runs'?)"))
      << r.output;
}

TEST(Cli, WrongTypeInConfigFileNamesFileAndLine) {
  TempDir dir;
  std::ofstream(dir.file("bad.toml")) << "[eval]\nruns = \"five\"\n";
  CommandResult r = distill_cli("eval --config " + dir.file("bad.toml"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.output, "bad.toml:2: key 'eval.runs' expects an integer, found string \"five\""))
      << r.output;
}

TEST(Cli, MissingConfigFileAndUnknownFlagExit2) {
  EXPECT_EQ(distill_cli("eval --config /nonexistent.toml").exit_code, 2);
  CommandResult r = distill_cli("eval --frobnicate");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.output, "frobnicate")) << r.output;
}

TEST(Cli, CudaWithoutGpuIsAClearError) {
  if (at::hasCUDA()) GTEST_SKIP() << "a GPU is present";
  TempDir dir;
  CommandResult r = distill_cli("subset --device cuda --out " + dir.file("o"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.output, "--device cuda")) << r.output;
}

// `distill --version`: the LibTorch it was built against and runs with (the same library here),
// and whether CUDA is compiled in.
TEST(Cli, VersionNamesLibTorchCudaAndDevices) {
  CommandResult r = distill_cli("--version");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The binary and this test load the same libtorch, so it must report running what it was
  // built against (a failed look-up of the loaded library's version prints "unknown").
  const std::string version = TORCH_VERSION;
  EXPECT_TRUE(contains(r.output, "LibTorch: built against " + version + ", running " + version +
                                     "\n"))
      << r.output;
  // What the build system linked (cmake/libtorch.cmake), independent of the code under test.
  EXPECT_TRUE(contains(r.output, DISTILL_EXPECT_CUDA_COMPILED ? "CUDA: compiled in"
                                                              : "CUDA: not compiled in"))
      << r.output;
  if (!at::hasCUDA()) {
    EXPECT_TRUE(contains(r.output, "devices: cpu")) << r.output;
    EXPECT_FALSE(contains(r.output, "cuda:0")) << r.output;
  }
}

// `distill --device cuda` with no GPU: exit 2 and one line saying why, before any command runs.
TEST(Cli, DeviceCudaWithoutAGpuIsOneLine) {
  if (at::hasCUDA()) GTEST_SKIP() << "a GPU is present";
  CommandResult r = distill_cli("--device cuda");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_TRUE(contains(r.output, "--device cuda: ")) << r.output;
  // Which of the two reasons, from what the build linked (cmake/libtorch.cmake).
  EXPECT_TRUE(contains(r.output, DISTILL_EXPECT_CUDA_COMPILED ? "is compiled in, but no GPU is visible"
                                                              : "is CPU-only"))
      << r.output;
  EXPECT_EQ(distill_cli("--device cpu").exit_code, 2);  // a device alone is not a command
  EXPECT_EQ(distill_cli("--device cpu --version").exit_code, 0);
}

// The GPU case of `distill train`: two epochs on cuda equal the
// CPU run up to float differences between the two backends. Cannot run on this project's CI
// machines (no GPU, CPU-only Debian LibTorch): it skips there, saying why.
TEST(Cli, CudaRunsMatchTheCpuRuns) {
  if (!at::hasCUDA()) {
    GTEST_SKIP() << "no CUDA: this LibTorch is built without CUDA or no GPU is visible; the GPU "
                    "case needs both";
  }
  TempDir dir;
  std::string data = write_tiny_dataset(dir);
  const std::string train = "train --epochs 2 " + tiny_flags(data) +
                            "--set model.width=8 --set model.depth=1 --set augment.name=none ";
  for (const std::string device : {"cpu", "cuda"}) {
    CommandResult r = distill_cli(train + "--device " + device + " --out " + dir.file(device));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  at::Tensor cpu = io::get_tensor(io::load_dict(dir.file("cpu/model.pt")), "params", "cpu");
  at::Tensor cuda = io::get_tensor(io::load_dict(dir.file("cuda/model.pt")), "params", "cuda");
  EXPECT_TRUE(at::allclose(cpu, cuda, 1e-3, 1e-4))
      << "max |diff| " << (cpu - cuda).abs().max().item<double>();
}

TEST(Cli, ConfigDumpShowsProtocolDefaultsAndOverrides) {
  CommandResult r = distill_cli("config --dump eval --set eval.runs=3");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "runs = 3")) << r.output;
  EXPECT_TRUE(contains(r.output, "epochs = 300")) << r.output;  // from the dc protocol
  EXPECT_TRUE(contains(r.output, "[eval.train.optimizer]")) << r.output;
}

TEST(Cli, HelpListsSettingsWithDefaults) {
  CommandResult r = distill_cli("train --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(contains(r.output, "train.epochs (integer, default 10)")) << r.output;
  EXPECT_TRUE(contains(r.output, "model.arch")) << r.output;
}

TEST(Cli, TrainWritesRunFolderAndResumeContinues) {
  TempDir dir;
  std::string data = write_tiny_dataset(dir);
  std::string out = dir.file("run");
  std::string common = tiny_flags(data) + "--set model.width=8 --set model.depth=1 --out " + out;
  CommandResult first = distill_cli("train --epochs 2 " + common);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  for (const char* file : {"config.toml", "metrics.jsonl", "checkpoint.pt", "model.pt", "results.json"}) {
    EXPECT_TRUE(std::filesystem::exists(out + "/" + file)) << file;
  }
  CommandResult resumed = distill_cli("train --epochs 3 --resume " + common);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_TRUE(contains(resumed.output, "after 3 epochs")) << resumed.output;
  // One metrics line per epoch, none duplicated by the resume.
  std::ifstream metrics(out + "/metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(metrics, line);) ++lines;
  EXPECT_EQ(lines, 3);
}

// A resume refused for an incompatible checkpoint leaves the run folder's config.toml as it was.
TEST(Cli, RefusedResumeKeepsTheRunsConfig) {
  TempDir dir;
  std::string data = write_tiny_dataset(dir);
  const std::string common = tiny_flags(data) + "--set model.depth=1 --out " + dir.file("run");
  ASSERT_EQ(distill_cli("train --epochs 1 --set model.width=8 " + common).exit_code, 0);
  const std::string config = io::read_file(dir.file("run/config.toml"));
  CommandResult wider = distill_cli("train --epochs 2 --set model.width=16 --resume " + common);
  EXPECT_EQ(wider.exit_code, 2) << wider.output;
  EXPECT_TRUE(contains(wider.output, "checkpoint.pt' holds a 'convnet' with")) << wider.output;
  EXPECT_EQ(io::read_file(dir.file("run/config.toml")), config);
}

TEST(Cli, SubsetThenEvalProduceSetGridAndResults) {
  TempDir dir;
  std::string data = write_tiny_dataset(dir);
  CommandResult subset = distill_cli("subset --ipc 2 " + tiny_flags(data) + "--out " + dir.file("s"));
  ASSERT_EQ(subset.exit_code, 0) << subset.output;
  EXPECT_TRUE(std::filesystem::exists(dir.file("s/syn.pt")));
  EXPECT_TRUE(std::filesystem::exists(dir.file("s/grid.png")));
  // results.json names the picked training images: they are the set's images and labels.
  const nlohmann::json results = nlohmann::json::parse(io::read_file(dir.file("s/results.json")));
  const std::vector<int64_t> picked = results.at("train_indices").get<std::vector<int64_t>>();
  ASSERT_EQ(picked.size(), 6u);  // 2 per class, 3 classes
  io::TensorDict raw = io::load_dict(data);
  io::TensorDict syn = io::load_dict(dir.file("s/syn.pt"));
  const at::Tensor index = at::tensor(picked, at::kLong);
  const at::Tensor mean = io::get_tensor(syn, "mean", "syn.pt").view({1, -1, 1, 1});
  const at::Tensor std = io::get_tensor(syn, "std", "syn.pt").view({1, -1, 1, 1});
  EXPECT_TRUE(io::get_tensor(raw, "labels", data)
                  .index_select(0, index)
                  .equal(io::get_tensor(syn, "labels", "syn.pt")));
  EXPECT_TRUE(
      at::allclose((io::get_tensor(raw, "images", data).index_select(0, index) - mean) / std,
                   io::get_tensor(syn, "images", "syn.pt"), 1e-5, 1e-6));
  CommandResult eval = distill_cli("eval --syn " + dir.file("s/syn.pt") + " --runs 2 --epochs 3 " +
                                   tiny_flags(data) + "--set eval.model.width=8 --out " + dir.file("e"));
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  EXPECT_TRUE(contains(eval.output, "random-real")) << eval.output;
  EXPECT_TRUE(std::filesystem::exists(dir.file("e/results.json")));

  // Mixup of every batch trains; CutMix and Mixup together are refused.
  const std::string mixed = "eval --syn " + dir.file("s/syn.pt") + " --runs 1 --epochs 2 " +
                            tiny_flags(data) + "--set eval.model.width=8 --set eval.mixup.prob=1 ";
  CommandResult mixup = distill_cli(mixed + "--out " + dir.file("m"));
  EXPECT_EQ(mixup.exit_code, 0) << mixup.output;
  CommandResult both = distill_cli(mixed + "--set eval.cutmix.prob=0.5 --out " + dir.file("b"));
  EXPECT_EQ(both.exit_code, 2) << both.output;
  EXPECT_TRUE(contains(both.output, "eval.cutmix.prob = 0.500000 and eval.mixup.prob = 1.000000: "
                                    "one batch mix at a time"))
      << both.output;
}

// Sets saved the way the Python reference code saves them (bare tensors) become set files that
// keep the tensors as they are; float labels are read as probabilities or logits; `eval` trains on
// the result. Inputs that do not fit the data are refused before anything is written.
TEST(Cli, ImportReadsReferenceTensorFiles) {
  DISTILL_REQUIRE_PYTHON();
  TempDir dir;
  const std::string data = write_tiny_dataset(dir);
  testing::run_python_script("reference_set_files.py", {dir.path()});
  auto import = [&](const std::string& labels, const std::string& out, const std::string& more) {
    return distill_cli("import --images " + dir.file("images_best.pt") + " --labels " +
                       dir.file(labels) + " " + more + tiny_flags(data) + "--out " + dir.file(out));
  };
  auto tensor = [&](const std::string& file, const std::string& key) {
    return io::get_tensor(io::load_dict(dir.file(file)), key, file);
  };
  auto bare = [&](const std::string& file) { return io::load_ivalue(dir.file(file)).toTensor(); };

  CommandResult ids = import("labels_ids.pt", "ids", "--lr " + dir.file("syn_lr_best.pt") + " ");
  ASSERT_EQ(ids.exit_code, 0) << ids.output;
  EXPECT_TRUE(contains(ids.output, "labels: class ids, learned lr 0.0123")) << ids.output;
  EXPECT_TRUE(tensor("ids/syn.pt", "images").equal(bare("images_best.pt")));
  EXPECT_TRUE(tensor("ids/syn.pt", "labels").equal(bare("labels_ids.pt")));
  EXPECT_FLOAT_EQ(tensor("ids/syn.pt", "lr").item<float>(), 0.0123f);
  EXPECT_TRUE(std::filesystem::exists(dir.file("ids/grid.png")));

  ASSERT_EQ(import("labels_logits.pt", "logits", "").exit_code, 0);
  EXPECT_TRUE(at::allclose(tensor("logits/syn.pt", "labels"), bare("expected_probabilities.pt"),
                           1e-6, 1e-7));
  ASSERT_EQ(import("labels_probabilities.pt", "probabilities", "").exit_code, 0);
  EXPECT_TRUE(tensor("probabilities/syn.pt", "labels").equal(bare("labels_probabilities.pt")));

  CommandResult eval =
      distill_cli("eval --syn " + dir.file("logits/syn.pt") +
                  " --runs 1 --epochs 2 --set eval.random_real=false " + tiny_flags(data) +
                  "--set eval.model.width=8 --out " + dir.file("e"));
  EXPECT_EQ(eval.exit_code, 0) << eval.output;

  const std::vector<std::pair<std::string, std::string>> refused = {
      {"--images " + dir.file("images_7x7.pt") + " --labels " + dir.file("labels_ids.pt"),
       "images_7x7.pt': images are 1x7x7, the data (tiny) has 1x8x8"},
      {"--images " + dir.file("images_best.pt") + " --labels " + dir.file("labels_five.pt"),
       "labels_five.pt': expected 6 class ids (int, N) or 6 rows of class scores (float, N,K) "
       "for the 6 images, found 5 of Long"},
      {"--images " + dir.file("a_dict.pt") + " --labels " + dir.file("labels_ids.pt"),
       "import.images = '" + dir.file("a_dict.pt") +
           "': expected a tensor saved with "
           "torch.save, found a GenericDict"},
      {"--images " + dir.file("images_best.pt") + " --labels " + dir.file("labels_logits.pt") +
           " --set import.labels_are=probabilities",
       "are not non-negative numbers summing to 1"}};
  for (const auto& [args, message] : refused) {
    CommandResult r =
        distill_cli("import " + args + " " + tiny_flags(data) + "--out " + dir.file("refused"));
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, message)) << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir.file("refused"))) << "refused input wrote files";
  }
}

// A set saved as images (SRe2L, CV-DD: a folder per class) comes back as the set it was made from,
// within 8-bit rounding: a subset exported with `synth export`, then imported.
TEST(Cli, ImportReadsAFolderOfClassFolders) {
  TempDir dir;
  const std::string data = write_tiny_dataset(dir);
  ASSERT_EQ(distill_cli("subset --ipc 2 " + tiny_flags(data) + "--out " + dir.file("s")).exit_code,
            0);
  CommandResult exported =
      distill_cli("synth export --set synth.export.syn=" + dir.file("s/syn.pt") + " " +
                  tiny_flags(data) + "--out " + dir.file("png"));
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  CommandResult imported = distill_cli("import --set import.folder=" + dir.file("png/train") + " " +
                                       tiny_flags(data) + "--out " + dir.file("i"));
  ASSERT_EQ(imported.exit_code, 0) << imported.output;
  auto tensor = [&](const std::string& file, const std::string& key) {
    return io::get_tensor(io::load_dict(dir.file(file)), key, file);
  };
  EXPECT_TRUE(tensor("i/syn.pt", "labels").equal(tensor("s/syn.pt", "labels")));
  const double step = 1.0 / 255 / tensor("s/syn.pt", "std").min().item<double>();
  const double gap =
      (tensor("i/syn.pt", "images") - tensor("s/syn.pt", "images")).abs().max().item<double>();
  EXPECT_LE(gap, 0.5 * step + 1e-5) << "more than half an 8-bit step apart";

  std::filesystem::remove_all(dir.file("png/train/2"));  // 2 class folders for 3 classes
  CommandResult fewer = distill_cli("import --set import.folder=" + dir.file("png/train") + " " +
                                    tiny_flags(data) + "--out " + dir.file("f"));
  EXPECT_EQ(fewer.exit_code, 2) << fewer.output;
  EXPECT_TRUE(contains(fewer.output, "2 class folders, the data (tiny) has 3 classes"))
      << fewer.output;
  CommandResult both = distill_cli("import --set import.folder=" + dir.file("png/train") +
                                   " --images x.pt " + tiny_flags(data) + "--out " + dir.file("f"));
  EXPECT_EQ(both.exit_code, 2) << both.output;
  EXPECT_TRUE(contains(both.output, "two ways to give the set")) << both.output;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// An interrupted eval resumes at its next untrained student: a recorded student is reused (a mark
// put into its recorded accuracy shows through), the others train exactly as in a straight run.
TEST(Cli, EvalResumeReusesRecordedStudentsAndTrainsTheRest) {
  TempDir dir;
  std::string data = write_tiny_dataset(dir);
  ASSERT_EQ(distill_cli("subset --ipc 2 " + tiny_flags(data) + "--out " + dir.file("s")).exit_code, 0);
  const std::string out = dir.file("e");
  const std::string eval = "eval --syn " + dir.file("s/syn.pt") + " --runs 2 --epochs 2 " +
                           tiny_flags(data) + "--set eval.model.width=8 --out " + out;
  CommandResult straight = distill_cli(eval);
  ASSERT_EQ(straight.exit_code, 0) << straight.output;
  const nlohmann::json expected = nlohmann::json::parse(std::ifstream(out + "/results.json"));
  std::vector<std::string> lines = read_lines(out + "/students.jsonl");
  ASSERT_EQ(lines.size(), 5u);  // the header, then 2 set students and 2 random-real students
  EXPECT_GT(expected["results"][0]["seconds"][1].get<double>(), 0.0);  // each student's wall time

  // As if stopped during the second student: the header, one student (marked), half a line.
  nlohmann::json first = nlohmann::json::parse(lines[1]);
  ASSERT_EQ(first["run"], 0);
  first["last"] = 0.0123456789;  // no test-set size gives this accuracy
  std::ofstream(out + "/students.jsonl", std::ios::trunc)
      << lines[0] << "\n" << first.dump() << "\n" << lines[2].substr(0, 10);
  std::filesystem::remove(out + "/results.json");
  CommandResult resumed = distill_cli(eval + " --resume --set run.progress=true");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  // Progress counts the reused student, then estimates the rest from the students trained.
  EXPECT_TRUE(contains(resumed.output, "syn.pt convnet run 2/2, student 2/4 ")) << resumed.output;
  EXPECT_TRUE(contains(resumed.output, "random-real convnet run 1/2, student 3/4, eval left ~"))
      << resumed.output;

  nlohmann::json got = nlohmann::json::parse(std::ifstream(out + "/results.json"));
  ASSERT_EQ(got["results"].size(), 2u);
  EXPECT_EQ(got["results"][0]["last_accuracy"][0], 0.0123456789);
  EXPECT_EQ(got["results"][0]["seconds"][0], first["seconds"]);  // the recorded student's time
  EXPECT_EQ(got["results"][0]["best_accuracy"][0], expected["results"][0]["best_accuracy"][0]);
  EXPECT_EQ(got["results"][0]["last_accuracy"][1], expected["results"][0]["last_accuracy"][1]);
  // Retrained students: the same accuracies (their wall times are new).
  got["results"][1].erase("seconds");
  nlohmann::json straight_random_real = expected["results"][1];
  straight_random_real.erase("seconds");
  EXPECT_EQ(got["results"][1], straight_random_real);
  // The cut line rewritten away, the reused student kept as recorded, the rest as straight.
  std::vector<nlohmann::json> now;
  for (const std::string& line : read_lines(out + "/students.jsonl")) {
    now.push_back(nlohmann::json::parse(line));
    now.back().erase("seconds");
  }
  std::vector<nlohmann::json> want = {nlohmann::json::parse(lines[0]), first};
  for (size_t i = 2; i < lines.size(); ++i) want.push_back(nlohmann::json::parse(lines[i]));
  for (size_t i = 1; i < want.size(); ++i) want[i].erase("seconds");
  EXPECT_EQ(now, want);
}

// More runs on resume: the recorded students are kept, the new runs trained, and the result is
// the straight run's with more runs.
TEST(Cli, EvalResumeWithMoreRunsKeepsTheRecordedStudents) {
  TempDir dir;
  std::string data = write_tiny_dataset(dir);
  ASSERT_EQ(distill_cli("subset --ipc 1 " + tiny_flags(data) + "--out " + dir.file("s")).exit_code,
            0);
  const std::string eval = "eval --syn " + dir.file("s/syn.pt") + " --epochs 1 " +
                           tiny_flags(data) +
                           "--set eval.model.width=8 --set eval.random_real=false --out ";
  ASSERT_EQ(distill_cli(eval + dir.file("two") + " --runs 2").exit_code, 0);
  // Run 0's recorded accuracy marked, to see that it is reused and not trained again.
  std::vector<std::string> lines = read_lines(dir.file("two/students.jsonl"));
  ASSERT_EQ(lines.size(), 3u);
  nlohmann::json first = nlohmann::json::parse(lines[1]);
  first["last"] = 0.0123456789;
  std::ofstream(dir.file("two/students.jsonl"), std::ios::trunc) << lines[0] << "\n"
                                                                 << first.dump() << "\n"
                                                                 << lines[2] << "\n";
  CommandResult more = distill_cli(eval + dir.file("two") + " --runs 3 --resume");
  ASSERT_EQ(more.exit_code, 0) << more.output;
  ASSERT_EQ(distill_cli(eval + dir.file("three") + " --runs 3").exit_code, 0);
  const auto accuracies = [&](const std::string& run) {
    return nlohmann::json::parse(
        io::read_file(dir.file(run + "/results.json")))["results"][0]["last_accuracy"];
  };
  nlohmann::json expected = accuracies("three");
  expected[0] = 0.0123456789;
  EXPECT_EQ(accuracies("two"), expected);
  EXPECT_EQ(read_lines(dir.file("two/students.jsonl")).size(), 4u);  // header + 3 students
}

// Resuming needs the same settings, set file content included; with no record yet it starts over.
TEST(Cli, EvalResumeRefusesOtherSettingsAndAnotherSet) {
  TempDir dir;
  std::string data = write_tiny_dataset(dir);
  const std::string subset = "subset --ipc 1 " + tiny_flags(data) + "--out " + dir.file("s");
  ASSERT_EQ(distill_cli(subset).exit_code, 0);
  const std::string eval = "eval --syn " + dir.file("s/syn.pt") + " --runs 1 " + tiny_flags(data) +
                           "--set eval.model.width=8 --out " + dir.file("e");
  CommandResult missing = distill_cli(eval + " --epochs 1 --resume");
  EXPECT_EQ(missing.exit_code, 0) << missing.output;
  EXPECT_TRUE(contains(missing.output, "holds nothing to continue from")) << missing.output;

  ASSERT_EQ(distill_cli(eval + " --epochs 1 --overwrite").exit_code, 0);
  const std::string config = io::read_file(dir.file("e/config.toml"));
  CommandResult other = distill_cli(eval + " --epochs 2 --resume");
  EXPECT_EQ(other.exit_code, 2) << other.output;
  EXPECT_TRUE(contains(other.output,
                       "students.jsonl:1: the students were trained with other "
                       "settings"))
      << other.output;
  EXPECT_TRUE(contains(other.output, "in [eval.train]: recorded 'epochs = 1', now 'epochs = 2'"))
      << other.output;
  EXPECT_EQ(io::read_file(dir.file("e/config.toml")), config) << "a refused resume rewrote it";

  // Another set written to the same path (another seed draws other images).
  ASSERT_EQ(distill_cli(subset + " --seed 5 --overwrite").exit_code, 0);
  CommandResult rewritten = distill_cli(eval + " --epochs 1 --resume");
  EXPECT_EQ(rewritten.exit_code, 2) << rewritten.output;
  EXPECT_TRUE(contains(rewritten.output, "in [fingerprints]: recorded 'eval.syn content = "))
      << rewritten.output;
}

// Students recorded by an older binary, one without the eval.mixup settings (its header edited to
// lack them), resume while mixup stays at its default, and are refused when it is switched on.
TEST(Cli, EvalResumeAcceptsSettingsAddedSinceAtTheirDefaults) {
  TempDir dir;
  std::string data = write_tiny_dataset(dir);
  const std::string subset = "subset --ipc 1 " + tiny_flags(data) + "--out " + dir.file("s");
  ASSERT_EQ(distill_cli(subset).exit_code, 0);
  const std::string eval = "eval --syn " + dir.file("s/syn.pt") + " --runs 1 --epochs 1 " +
                           tiny_flags(data) + "--set eval.model.width=8 --out " + dir.file("e");
  ASSERT_EQ(distill_cli(eval).exit_code, 0);
  const std::string log_path = dir.file("e/students.jsonl");
  std::string log = io::read_file(log_path);
  const size_t header_end = log.find('\n');
  nlohmann::json header = nlohmann::json::parse(log.substr(0, header_end));
  std::string settings = header["settings"];
  const size_t mixup = settings.find("[eval.mixup]");
  ASSERT_NE(mixup, std::string::npos) << settings;
  const size_t line_start = settings.rfind('\n', mixup) + 1;
  const size_t section_end = settings.find("\n\n", mixup) + 2;
  settings.erase(line_start, section_end - line_start);
  ASSERT_EQ(settings.find("mixup"), std::string::npos) << settings;
  header["settings"] = settings;
  // The recorded student marked, so that a reused one shows through in the results.
  const size_t student_end = log.find('\n', header_end + 1);
  nlohmann::json student =
      nlohmann::json::parse(log.substr(header_end + 1, student_end - header_end - 1));
  student["last"] = 0.0123456789;
  io::write_file_atomic(log_path, header.dump() + "\n" + student.dump() + log.substr(student_end));

  CommandResult refused = distill_cli(eval + " --set eval.mixup.prob=0.5 --resume");
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_TRUE(contains(refused.output, "now 'prob = 0.5'")) << refused.output;
  CommandResult resumed = distill_cli(eval + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  nlohmann::json got = nlohmann::json::parse(io::read_file(dir.file("e/results.json")));
  EXPECT_EQ(got["results"][0]["last_accuracy"][0], 0.0123456789) << got.dump();
}

TEST(Cli, ExpertsThenMttAndMttResumeEqualsAStraightRun) {
  TempDir dir;
  std::string data = write_tiny_dataset(dir);
  CommandResult experts = train_tiny_experts(dir, data, 2, 3);
  ASSERT_EQ(experts.exit_code, 0) << experts.output;
  EXPECT_TRUE(std::filesystem::exists(dir.file("experts/replay_buffer_0.pt")));
  // Long commands refresh the run's report at their end and print where it is.
  EXPECT_TRUE(contains(experts.output, "report: " + dir.file("experts") + "/report.html"))
      << experts.output;
  EXPECT_TRUE(std::filesystem::exists(dir.file("experts/report.html")));
  std::string mtt = "mtt " + tiny_flags(data) + "--buffer " + dir.file("experts") +
                    " --ipc 2 --set mtt.model.width=8 --set mtt.model.depth=1 "
                    "--set mtt.matching.syn_steps=3 --set mtt.matching.max_start_epoch=2 "
                    "--set mtt.matching.lr_img=10 --set mtt.checkpoint_every=2 ";
  CommandResult straight = distill_cli(mtt + "--iterations 4 --out " + dir.file("straight"));
  ASSERT_EQ(straight.exit_code, 0) << straight.output;
  ASSERT_EQ(distill_cli(mtt + "--iterations 2 --out " + dir.file("resumed")).exit_code, 0);
  CommandResult resumed = distill_cli(mtt + "--iterations 4 --resume --out " + dir.file("resumed"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  io::TensorDict a = io::load_dict(dir.file("straight/syn.pt"));
  io::TensorDict b = io::load_dict(dir.file("resumed/syn.pt"));
  EXPECT_TRUE(at::equal(io::get_tensor(a, "images", "a"), io::get_tensor(b, "images", "b")));
  EXPECT_TRUE(at::equal(io::get_tensor(a, "lr", "a"), io::get_tensor(b, "lr", "b")));
  std::ifstream metrics(dir.file("resumed/metrics.jsonl"));
  int lines = 0;
  for (std::string line; std::getline(metrics, line);) lines += line.find("matching_loss") != std::string::npos;
  EXPECT_EQ(lines, 4);  // iterations 1-2 from the first run, 3-4 from the resumed one
  EXPECT_TRUE(std::filesystem::exists(dir.file("straight/grid.png")));

  // Killed after a snapshot (syn.pt) but before its first checkpoint: --resume has nothing to
  // continue from, says so and starts again, ending as the straight run does.
  ASSERT_EQ(distill_cli(mtt + "--iterations 4 --set mtt.snapshot_every=1 --out " +
                        dir.file("early")).exit_code, 0);
  std::filesystem::remove(dir.file("early/checkpoint.pt"));
  ASSERT_TRUE(std::filesystem::exists(dir.file("early/syn.pt")));
  CommandResult restarted = distill_cli(mtt + "--iterations 4 --set mtt.snapshot_every=1 "
                                        "--resume --out " + dir.file("early"));
  ASSERT_EQ(restarted.exit_code, 0) << restarted.output;
  EXPECT_TRUE(contains(restarted.output, "no checkpoint in '" + dir.file("early") +
                                             "' yet: starting from the beginning"))
      << restarted.output;
  EXPECT_TRUE(at::equal(io::get_tensor(a, "images", "a"),
                        io::get_tensor(io::load_dict(dir.file("early/syn.pt")), "images", "c")));

  // DATM soft labels + growing window with FTD's image EMA: all their state survives --resume.
  std::string successors = mtt + "--set mtt.matching.soft_labels=expert --set mtt.ema_decay=0.5 "
                                 "--set mtt.matching.max_start_epoch=1 "
                                 "--set mtt.matching.final_max_start_epoch=3 "
                                 "--set mtt.matching.window_growth_iterations=3 "
                                 "--set mtt.matching.expert_epochs=1 --set mtt.checkpoint_every=1 ";
  ASSERT_EQ(distill_cli(successors + "--iterations 3 --out " + dir.file("datm")).exit_code, 0);
  ASSERT_EQ(distill_cli(successors + "--iterations 1 --out " + dir.file("datm_resumed")).exit_code, 0);
  CommandResult again =
      distill_cli(successors + "--iterations 3 --resume --out " + dir.file("datm_resumed"));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  auto tensor = [&](const std::string& file, const std::string& key) {
    return io::get_tensor(io::load_dict(dir.file(file)), key, file);
  };
  for (const std::string key : {"images", "labels"}) {
    EXPECT_TRUE(at::equal(tensor("datm/syn.pt", key), tensor("datm_resumed/syn.pt", key))) << key;
  }
  EXPECT_TRUE(at::equal(tensor("datm/checkpoint.pt", "label_logits"),
                        tensor("datm_resumed/checkpoint.pt", "label_logits")));
  at::Tensor labels = tensor("datm/syn.pt", "labels");  // soft: rows of probabilities
  ASSERT_EQ(labels.dim(), 2);
  EXPECT_TRUE(at::allclose(labels.sum(1), at::ones({labels.size(0)}), 1e-5, 1e-6));
  std::ifstream datm_metrics(dir.file("datm/metrics.jsonl"));
  std::string line, last;
  while (std::getline(datm_metrics, line)) last = line;
  EXPECT_TRUE(contains(last, "\"window_end\":3")) << last;  // grown from 1 to 3 by the end
}

// An unrolled meta-gradient whose graph cannot fit is refused at start, with the measured
// estimate and the machine's memory, instead of allocating until the machine gives up (issue 24).
TEST(Cli, MttRefusesAnUnrollThatCannotFitInMemory) {
  DISTILL_REQUIRE_TOOL(
      std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"),
      "Fashion-MNIST (Debian dataset-fashion-mnist)");
  TempDir dir;
  const std::string common = " --seed 1 --threads 1 --no-progress --set data.train_limit=200 ";
  CommandResult experts = distill_cli("experts" + common +
                                      "--set experts.num_experts=1 --set experts.train.epochs=1 "
                                      "--out " + dir.file("experts"));
  ASSERT_EQ(experts.exit_code, 0) << experts.output;
  const std::string mtt = "mtt" + common + "--buffer " + dir.file("experts") +
                          " --ipc 1 --iterations 1 --set mtt.matching.meta_grad=unroll "
                          "--set mtt.matching.max_start_epoch=1 --set mtt.matching.expert_epochs=1 ";
  const auto begin = std::chrono::steady_clock::now();
  CommandResult huge =
      distill_cli(mtt + "--set mtt.matching.syn_steps=10000000 --out " + dir.file("huge"));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  EXPECT_EQ(huge.exit_code, 2) << huge.output;
  EXPECT_TRUE(contains(huge.output, "mtt.matching.meta_grad = unroll with syn_steps = 10000000 "
                                    "needs at least "))
      << huge.output;
  EXPECT_TRUE(contains(huge.output, "per unrolled step), the machine has ")) << huge.output;
  EXPECT_LT(seconds, 60) << "the refusal comes before any matching iteration";
  EXPECT_FALSE(std::filesystem::exists(dir.file("huge/checkpoint.pt")));
  // One that fits runs (the probe changes nothing of the run).
  CommandResult fits = distill_cli(mtt + "--set mtt.matching.syn_steps=16 --out " + dir.file("fits"));
  EXPECT_EQ(fits.exit_code, 0) << fits.output;
}

// A training batch whose step cannot fit (batch x image size x model width) is refused at start
// with the estimate and the machine's memory (issue 24), before any step.
TEST(Cli, TrainRefusesABatchThatCannotFitInMemory) {
  DISTILL_REQUIRE_TOOL(
      std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"),
      "Fashion-MNIST (Debian dataset-fashion-mnist)");
  TempDir dir;
  const auto begin = std::chrono::steady_clock::now();
  CommandResult huge = distill_cli(
      "train --threads 1 --no-progress --set train.batch_size=60000 --set model.width=512 --out " +
      dir.file("huge"));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  EXPECT_EQ(huge.exit_code, 2) << huge.output;
  EXPECT_TRUE(contains(huge.output, "train.batch_size = 60000: one training step of a 'convnet' "
                                    "on batches of 60000 1x28x28 images needs at least "))
      << huge.output;
  EXPECT_TRUE(contains(huge.output, "available of")) << huge.output;
  EXPECT_LT(seconds, 60) << "refused before training";
  EXPECT_FALSE(std::filesystem::exists(dir.file("huge/checkpoint.pt")));
}

// AST end to end: smoothed experts (loss scaling, input-gradient penalty, logged per epoch), then
// mtt with representative init, balanced inner loss, weight perturbation, intermediate matching
// and student momentum; an interrupted and resumed run equals a straight one (the perturbation
// draws too).
TEST(Cli, AstExpertsThenMttResumeEqualsAStraightRun) {
  TempDir dir;
  std::string data = write_tiny_dataset(dir);
  const std::string expert_flags =
      "experts " + tiny_flags(data) +
      "--set experts.model.width=8 --set experts.model.depth=1 --set experts.num_experts=1 "
      "--set experts.train.epochs=3 --set experts.train.batch_size=20 ";
  CommandResult experts = distill_cli(expert_flags +
                                      "--set experts.smoothing.loss_scale=[0.5,0.55] "
                                      "--set experts.smoothing.input_gradient_penalty=2 --out " +
                                      dir.file("experts"));
  ASSERT_EQ(experts.exit_code, 0) << experts.output;
  // The penalty changes the trajectory (both runs scale the loss alike).
  ASSERT_EQ(distill_cli(expert_flags + "--set experts.smoothing.loss_scale=[0.5,0.55] --out " +
                        dir.file("experts_no_penalty"))
                .exit_code,
            0);
  EXPECT_NE(io::read_file(dir.file("experts/replay_buffer_0.pt")),
            io::read_file(dir.file("experts_no_penalty/replay_buffer_0.pt")));
  std::string mtt = "mtt " + tiny_flags(data) + "--buffer " + dir.file("experts") +
                    " --ipc 2 --set mtt.model.width=8 --set mtt.model.depth=1 "
                    "--set mtt.init=kmeans --set mtt.matching.label_epoch=-1 "
                    "--set mtt.matching.syn_steps=3 --set mtt.matching.max_start_epoch=2 "
                    "--set mtt.matching.expert_epochs=2 --set mtt.matching.intermediate=sum "
                    "--set mtt.matching.balanced_inner_loss=true "
                    "--set mtt.matching.weight_perturbation=true "
                    "--set mtt.matching.student_momentum=0.9 "
                    "--set mtt.matching.lr_img=10 --set mtt.checkpoint_every=1 ";
  CommandResult straight = distill_cli(mtt + "--iterations 4 --out " + dir.file("straight"));
  ASSERT_EQ(straight.exit_code, 0) << straight.output;
  ASSERT_EQ(distill_cli(mtt + "--iterations 2 --out " + dir.file("resumed")).exit_code, 0);
  CommandResult resumed = distill_cli(mtt + "--iterations 4 --resume --out " + dir.file("resumed"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  auto tensor = [&](const std::string& file, const std::string& key) {
    return io::get_tensor(io::load_dict(dir.file(file)), key, file);
  };
  EXPECT_TRUE(at::equal(tensor("straight/syn.pt", "images"), tensor("resumed/syn.pt", "images")));
  EXPECT_TRUE(at::equal(tensor("straight/syn.pt", "lr"), tensor("resumed/syn.pt", "lr")));
  // The same switches without the perturbation give another set: the perturbation is used.
  std::string unperturbed = mtt + "--set mtt.matching.weight_perturbation=false ";
  ASSERT_EQ(distill_cli(unperturbed + "--iterations 4 --out " + dir.file("plain")).exit_code, 0);
  EXPECT_FALSE(at::equal(tensor("straight/syn.pt", "images"), tensor("plain/syn.pt", "images")));
}

TEST(Cli, MttEmaIsTheClosedFormOfTheRawImages) {
  TempDir dir;
  std::string data = write_tiny_dataset(dir);
  CommandResult experts = train_tiny_experts(dir, data, 1, 2);
  ASSERT_EQ(experts.exit_code, 0) << experts.output;
  std::string mtt = "mtt " + tiny_flags(data) + "--buffer " + dir.file("experts") +
                    " --ipc 2 --set mtt.model.width=8 --set mtt.model.depth=1 "
                    "--set mtt.matching.syn_steps=3 --set mtt.matching.max_start_epoch=1 "
                    "--set mtt.matching.expert_epochs=1 --set mtt.matching.lr_img=10 "
                    "--set mtt.checkpoint_every=1 ";
  const double d = 0.75;
  for (int iterations : {0, 1, 2}) {
    std::string flags = "--iterations " + std::to_string(iterations);
    ASSERT_EQ(distill_cli(mtt + flags + " --out " + dir.file("raw" + std::to_string(iterations))).exit_code, 0);
    ASSERT_EQ(distill_cli(mtt + flags + " --set mtt.ema_decay=0.75 --out " +
                          dir.file("ema" + std::to_string(iterations))).exit_code, 0);
  }
  auto images = [&](const std::string& file) {
    return io::get_tensor(io::load_dict(dir.file(file)), "images", file);
  };
  at::Tensor x0 = images("raw0/syn.pt"), x1 = images("raw1/syn.pt"), x2 = images("raw2/syn.pt");
  EXPECT_TRUE(at::equal(images("ema0/syn.pt"), x0));
  EXPECT_TRUE(at::allclose(images("ema1/syn.pt"), d * x0 + (1 - d) * x1, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(images("ema2/syn.pt"), d * (d * x0 + (1 - d) * x1) + (1 - d) * x2, 1e-5, 1e-6));
  EXPECT_TRUE(at::equal(images("ema2/checkpoint.pt"), x2));  // the raw images are unaffected
  EXPECT_FALSE(at::allclose(x1, x2));
}

// DATM's switches end to end: images the experts get right, labels from the experts that get
// them right, and a loss threshold under every matching loss, so no iteration updates anything:
// the saved set is the initial one, and its soft labels are the softmax of those logits.
TEST(Cli, MttDatmInitAndLossThreshold) {
  TempDir dir;
  std::string data = write_tiny_dataset(dir);
  ASSERT_EQ(train_tiny_experts(dir, data, 2, 2).exit_code, 0);
  const std::string datm =
      "mtt " + tiny_flags(data) + "--buffer " + dir.file("experts") +
      " --ipc 2 --set mtt.model.width=8 --set mtt.model.depth=1 "
      "--set mtt.matching.syn_steps=2 --set mtt.matching.max_start_epoch=1 "
      "--set mtt.matching.expert_epochs=1 --set mtt.init=real_correct "
      "--set mtt.matching.soft_labels=experts_correct --set mtt.matching.label_epoch=-1 "
      "--set mtt.matching.max_loss=1e-12 ";
  // No iterations: syn.pt is DATM's initial selection.
  CommandResult r = distill_cli(datm + "--iterations 0 --out " + dir.file("datm"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Every iteration skipped (max_loss 1e-12): the run fails rather than hand back its
  // initialisation as a distilled set.
  CommandResult skipped = distill_cli(datm + "--iterations 3 --out " + dir.file("skipped"));
  EXPECT_EQ(skipped.exit_code, 1) << skipped.output;
  EXPECT_TRUE(contains(skipped.output, "mtt: all 3 iterations were skipped")) << skipped.output;
  std::vector<std::string> lines = read_lines(dir.file("skipped/metrics.jsonl"));
  ASSERT_EQ(lines.size(), 3u);
  for (const std::string& line : lines) {
    EXPECT_TRUE(contains(line, "\"skipped_above_max_loss\":1")) << line;
  }
  // Skipped iterations still end as any other: the last one leaves its checkpoint.
  EXPECT_EQ(io::load_dict(dir.file("skipped/checkpoint.pt")).at("iteration").toInt(), 3);
  // A resumed run (which skips the selection: the checkpoint holds the images) ends with the
  // selection too.
  CommandResult first = distill_cli(datm + "--iterations 1 --out " + dir.file("datm_resumed"));
  EXPECT_EQ(first.exit_code, 1) << first.output;
  CommandResult resumed =
      distill_cli(datm + "--iterations 3 --resume --out " + dir.file("datm_resumed"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  for (const std::string key : {"images", "labels"}) {
    EXPECT_TRUE(at::equal(io::get_tensor(io::load_dict(dir.file("datm/syn.pt")), key, "a"),
                          io::get_tensor(io::load_dict(dir.file("datm_resumed/syn.pt")), key, "b")))
        << key;
  }
  io::TensorDict syn = io::load_dict(dir.file("datm/syn.pt"));
  at::Tensor images = io::get_tensor(syn, "images", "syn.pt");
  at::Tensor labels = io::get_tensor(syn, "labels", "syn.pt");
  ASSERT_EQ(labels.dim(), 2);
  EXPECT_TRUE(at::allclose(labels.sum(1), at::ones({images.size(0)}), 1e-5, 1e-6));
  // DATM's expert order: each pass over the 2 experts visits both, in its own order.
  CommandResult shuffled = distill_cli(
      "mtt " + tiny_flags(data) + "--buffer " + dir.file("experts") +
      " --ipc 2 --iterations 6 --set mtt.model.width=8 --set mtt.model.depth=1 "
      "--set mtt.matching.syn_steps=2 --set mtt.matching.max_start_epoch=1 "
      "--set mtt.matching.expert_epochs=1 --set mtt.matching.expert_order=shuffled --out " +
      dir.file("shuffled"));
  ASSERT_EQ(shuffled.exit_code, 0) << shuffled.output;
  std::vector<int> order;
  for (const std::string& line : read_lines(dir.file("shuffled/metrics.jsonl"))) {
    order.push_back(std::stoi(line.substr(line.find("\"expert\":") + 9)));
  }
  ASSERT_EQ(order.size(), 6u);
  for (size_t pass = 0; pass < 3; ++pass) {
    EXPECT_EQ(order[2 * pass] + order[2 * pass + 1], 1) << "pass " << pass << " repeats an expert";
  }
  // Each image is a (normalized) training image, as initialised.
  io::TensorDict raw = io::load_dict(data);
  at::Tensor mean = io::get_tensor(syn, "mean", "syn.pt").view({1, -1, 1, 1});
  at::Tensor std = io::get_tensor(syn, "std", "syn.pt").view({1, -1, 1, 1});
  at::Tensor train = (io::get_tensor(raw, "images", data) - mean) / std;
  for (int64_t i = 0; i < images.size(0); ++i) {
    const double nearest =
        (train - images[i].unsqueeze(0)).abs().flatten(1).amax(1).min().item<double>();
    EXPECT_LT(nearest, 1e-5) << "image " << i << " is not a training image";
  }
}

// Snapshots: every 2 iterations the set's grid goes to snapshots/ and students trained on it log
// their test accuracy.
TEST(Cli, MttSnapshotsWriteGridsAndEvalAccuracy) {
  TempDir dir;
  std::string data = write_tiny_dataset(dir);
  CommandResult experts = train_tiny_experts(dir, data, 1, 2);
  ASSERT_EQ(experts.exit_code, 0) << experts.output;
  CommandResult mtt = distill_cli(
      "mtt " + tiny_flags(data) + "--buffer " + dir.file("experts") +
      " --ipc 2 --iterations 4 --set mtt.model.width=8 --set mtt.model.depth=1 "
      "--set mtt.matching.syn_steps=2 --set mtt.matching.max_start_epoch=1 "
      "--set mtt.matching.expert_epochs=1 --set mtt.snapshot_every=2 --set mtt.eval_every=2 "
      "--set mtt.eval_epochs=3 --set mtt.checkpoint_every=2 --set run.report_on_checkpoint=true "
      "--out " + dir.file("m"));
  ASSERT_EQ(mtt.exit_code, 0) << mtt.output;
  // The report: refreshed at the iteration-2 checkpoint and at the end.
  size_t first = mtt.output.find("report: ");
  ASSERT_NE(first, std::string::npos) << mtt.output;
  EXPECT_NE(mtt.output.find("report: ", first + 1), std::string::npos) << mtt.output;
  EXPECT_TRUE(std::filesystem::exists(dir.file("m/snapshots/grid_2.png")));
  EXPECT_TRUE(std::filesystem::exists(dir.file("m/snapshots/grid_4.png")));
  std::ifstream metrics(dir.file("m/metrics.jsonl"));
  std::vector<double> accuracies;
  for (std::string line; std::getline(metrics, line);) {
    auto at = line.find("\"eval_accuracy\":");
    if (at != std::string::npos) accuracies.push_back(std::stod(line.substr(at + 16)));
  }
  ASSERT_EQ(accuracies.size(), 2u);
  // One student per snapshot (mtt.eval_runs 1) scored on the 30 test images: a count out of 30.
  for (double a : accuracies) EXPECT_NEAR(a * 30, std::round(a * 30), 1e-9) << a;
  // The best-scoring set so far is kept beside the last one, with its score in metrics.jsonl:
  // the final set when iteration 4 scored higher, else iteration 2's, which iterations 3 and 4
  // have moved on from.
  EXPECT_TRUE(std::filesystem::exists(dir.file("m/grid_best.png")));
  auto images = [&](const std::string& file) {
    return io::get_tensor(io::load_dict(dir.file(file)), "images", file);
  };
  EXPECT_EQ(at::equal(images("m/syn_best.pt"), images("m/syn.pt")), accuracies[1] > accuracies[0])
      << accuracies[0] << " then " << accuracies[1];
  std::vector<std::string> lines = read_lines(dir.file("m/metrics.jsonl"));
  const std::string& last = lines.back();
  const auto at = last.find("\"best_eval_accuracy\":");
  ASSERT_NE(at, std::string::npos) << last;
  EXPECT_DOUBLE_EQ(std::stod(last.substr(at + 21)), std::max(accuracies[0], accuracies[1]));
}

// With an EMA of the weights, model.pt holds the EMA (what the test accuracy was measured on).
TEST(Cli, TrainWithEmaSavesTheEmaWeights) {
  TempDir dir;
  std::string data = write_tiny_dataset(dir);
  CommandResult r = distill_cli("train --epochs 2 " + tiny_flags(data) +
                                "--set model.width=8 --set model.depth=1 "
                                "--set train.ema_decay=0.9 --out " + dir.file("t"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  io::TensorDict model = io::load_dict(dir.file("t/model.pt"));
  io::TensorDict checkpoint = io::load_dict(dir.file("t/checkpoint.pt"));
  at::Tensor ema = io::get_tensor(checkpoint, "ema", "checkpoint.pt");
  EXPECT_TRUE(at::equal(io::get_tensor(model, "params", "model.pt"), ema));
  EXPECT_FALSE(at::equal(ema, io::get_tensor(checkpoint, "params", "checkpoint.pt")));
}

// run.report_on_checkpoint: the report is refreshed at every checkpoint too (each refresh prints
// its path), not only at the end.
TEST(Cli, ReportRefreshedAtCheckpointsWhenAsked) {
  TempDir dir;
  std::string data = write_tiny_dataset(dir);
  auto refreshes = [](const std::string& output) {
    int n = 0;
    for (size_t at = output.find("report: "); at != std::string::npos;
         at = output.find("report: ", at + 1)) {
      ++n;
    }
    return n;
  };
  std::string train = "train --epochs 3 " + tiny_flags(data) +
                      "--set model.width=8 --set model.depth=1 --set train.checkpoint_every=1 ";
  CommandResult plain = distill_cli(train + "--out " + dir.file("plain"));
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_EQ(refreshes(plain.output), 1) << plain.output;
  CommandResult asked =
      distill_cli(train + "--set run.report_on_checkpoint=true --out " + dir.file("asked"));
  ASSERT_EQ(asked.exit_code, 0) << asked.output;
  EXPECT_EQ(refreshes(asked.output), 4) << asked.output;  // epochs 1, 2, 3 and the end
}

TEST(Cli, ZcaSetEvaluatedWithoutZcaIsExit2) {
  TempDir dir;
  std::string data = write_tiny_dataset(dir);
  CommandResult subset = distill_cli("subset --ipc 2 " + tiny_flags(data) +
                                     "--set data.zca=true --out " + dir.file("s"));
  ASSERT_EQ(subset.exit_code, 0) << subset.output;
  EXPECT_TRUE(std::filesystem::exists(dir.file("s/grid.png")));
  CommandResult eval = distill_cli("eval --syn " + dir.file("s/syn.pt") + " --runs 1 --epochs 1 " +
                                   tiny_flags(data) + "--set eval.model.width=8 --out " + dir.file("e"));
  EXPECT_EQ(eval.exit_code, 2) << eval.output;
  EXPECT_TRUE(contains(eval.output, "ZCA-whitened")) << eval.output;
  EXPECT_TRUE(contains(eval.output, "data.zca = false")) << eval.output;
  CommandResult matched = distill_cli("eval --syn " + dir.file("s/syn.pt") + " --runs 1 --epochs 1 " +
                                      tiny_flags(data) + "--set data.zca=true "
                                      "--set eval.model.width=8 --out " + dir.file("e2"));
  EXPECT_EQ(matched.exit_code, 0) << matched.output;
  // The evaluated set's grid (un-whitened for display) sits in the eval folder and its report.
  EXPECT_TRUE(std::filesystem::exists(dir.file("e2/set_grid.png")));
  EXPECT_TRUE(contains(io::read_file(dir.file("e2/report.html")), "alt=\"set_grid.png\""));
}

// Each MTT, DATM and AST preset is one pipeline file: experts, mtt and eval all read it without
// unknown keys, and the IPC in the file name is the one mtt reads (DATM's rows also learn soft
// labels; AST's students take momentum steps).
TEST(Cli, EveryMttPresetReadsForExpertsMttAndEval) {
  int mtt = 0, datm = 0, ast = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(testing::source_dir() + "/experiments/configs")) {
    const std::string name = entry.path().filename().string();
    const bool is_mtt = name.rfind("mtt_", 0) == 0, is_datm = name.rfind("datm_", 0) == 0,
               is_ast = name.rfind("ast_", 0) == 0;
    if ((!is_mtt && !is_datm && !is_ast) || entry.path().extension() != ".toml") continue;
    ++(is_mtt ? mtt : is_datm ? datm : ast);
    for (const std::string command : {"experts", "mtt", "eval"}) {
      CommandResult r = distill_cli("config --dump " + command + " --config " + entry.path().string());
      ASSERT_EQ(r.exit_code, 0) << name << " " << command << "\n" << r.output;
      if (command == "mtt") {
        std::string ipc = name.substr(name.rfind("ipc") + 3);
        ipc = ipc.substr(0, ipc.find('.'));
        EXPECT_TRUE(contains(r.output, "ipc = " + ipc + "\n")) << name << "\n" << r.output;
        if (is_datm) {
          EXPECT_TRUE(contains(r.output, "soft_labels = 'expert")) << name;  // expert(s_correct)
        }
        if (is_ast) EXPECT_TRUE(contains(r.output, "student_momentum = 0.9")) << name;
      }
    }
  }
  EXPECT_GE(mtt, 9);    // CIFAR-10/100 and Tiny-ImageNet at IPC 1/10/50
  EXPECT_GE(datm, 12);  // CIFAR-10 IPC 1/10/50/500/1000, CIFAR-100 1/10/50/100, Tiny 1/10/50
  EXPECT_GE(ast, 5);    // CIFAR-10 IPC 10, CIFAR-100 IPC 1/10/50, Tiny IPC 1
  for (const auto& [file, command] : std::vector<std::pair<std::string, std::string>>{
           {"quickstart_experts.toml", "experts"}, {"quickstart_mtt_ipc1.toml", "mtt"}}) {
    CommandResult r = distill_cli("config --dump " + command + " --config " +
                                  testing::source_dir() + "/experiments/configs/" + file);
    EXPECT_EQ(r.exit_code, 0) << file << "\n" << r.output;
  }
}

// A command with nothing to resume refuses --resume instead of silently starting over.
TEST(Cli, ResumeOnACommandWithoutCheckpointsIsExit2) {
  for (const std::string command :
       {"subset", "import", "synth relabel", "synth export", "diffusion sample", "diffusion score",
        "report", "bench train"}) {
    CommandResult r = distill_cli(command + " --resume --out /nonexistent/run");
    EXPECT_EQ(r.exit_code, 2) << command << ": " << r.output;
    const std::string name = command == "bench train" ? "bench" : command;
    EXPECT_TRUE(contains(r.output, "--resume: `distill " + name +
                                       "` keeps no checkpoint, so there is nothing to resume"))
        << r.output;
  }
}

// DD-Ranking (issue 20): every term in results.json is its formula over the accuracies of the
// baselines trained beside the set (in the same results), and the full-data baseline is cached.
TEST(Cli, EvalDDRankingTermsAreTheirFormulasOverTheBaselines) {
  TempDir dir;
  const std::string data = write_tiny_dataset(dir);
  ASSERT_EQ(distill_cli("subset --ipc 2 " + tiny_flags(data) + "--out " + dir.file("sub")).exit_code, 0);
  const std::string eval = "eval " + tiny_flags(data) + "--syn " + dir.file("sub/syn.pt") +
                           " --runs 2 --epochs 2 --set eval.model.width=8 --set eval.model.depth=1 "
                           "--set 'eval.scores=[\"ddranking\"]' --set eval.full_data_cache=" +
                           dir.file("cache") + " ";
  CommandResult first = distill_cli(eval + "--out " + dir.file("e1"));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_TRUE(contains(first.output, "DD-Ranking (HLR, IOR in accuracy points")) << first.output;
  const nlohmann::json results = nlohmann::json::parse(io::read_file(dir.file("e1/results.json")));
  auto mean_of = [&](const std::string& set) {
    for (const auto& row : results["results"]) {
      if (row["set"] == set) return row["last_mean"].get<double>();
    }
    ADD_FAILURE() << "no row " << set;
    return -1.0;
  };
  const std::string syn = dir.file("sub/syn.pt");
  ASSERT_EQ(results["ddranking"].size(), 1u);
  const nlohmann::json& row = results["ddranking"][0];
  const nlohmann::json& a = row["accuracies"];
  EXPECT_EQ(row["label_source"], "hard labels");
  EXPECT_DOUBLE_EQ(a["set_own"].get<double>(), mean_of(syn));
  EXPECT_DOUBLE_EQ(a["set_hard"].get<double>(), mean_of(syn));  // hard labels are its own
  EXPECT_DOUBLE_EQ(a["random_own"].get<double>(), mean_of("random-real"));
  EXPECT_DOUBLE_EQ(a["full_hard"].get<double>(), mean_of("full-data [hard labels]"));
  EXPECT_DOUBLE_EQ(a["set_no_aug"].get<double>(), mean_of(syn + " [no augmentation]"));
  EXPECT_DOUBLE_EQ(a["random_no_aug"].get<double>(), mean_of("random-real [no augmentation]"));
  const double hlr = a["full_hard"].get<double>() - a["set_hard"].get<double>();
  const double ior = a["set_own"].get<double>() - a["random_own"].get<double>();
  const double beta = 0.5 * ior + 0.5 * (a["set_no_aug"].get<double>() -
                                         a["random_no_aug"].get<double>());
  auto normalise = [](double x) { return (std::exp(x) - std::exp(-1)) / (std::exp(1) - std::exp(-1)); };
  EXPECT_NEAR(row["hlr"].get<double>(), hlr, 1e-12);
  EXPECT_NEAR(row["ior"].get<double>(), ior, 1e-12);
  EXPECT_NEAR(row["lrs"].get<double>(), normalise(0.5 * ior - 0.5 * hlr), 1e-12);
  EXPECT_NEAR(row["ars"].get<double>(), normalise(beta), 1e-12);
  // The README's Markdown tables (distill report) carry the terms as a second table.
  CommandResult markdown = distill_cli("report --format markdown " + dir.file("e1"));
  ASSERT_EQ(markdown.exit_code, 0) << markdown.output;
  EXPECT_TRUE(contains(markdown.output, "| set | model | random real labelled by | HLR | IOR | LRS | "
                                        "ARS |"))
      << markdown.output;
  char lrs[16];
  std::snprintf(lrs, sizeof lrs, "%.3f", row["lrs"].get<double>());
  EXPECT_TRUE(contains(markdown.output, "| sub/syn.pt | convnet | hard labels | ")) << markdown.output;
  EXPECT_TRUE(contains(markdown.output, std::string(" | ") + lrs + " | ")) << markdown.output;

  // A second eval of the same protocol reuses the cached full-data accuracies.
  CommandResult second = distill_cli(eval + "--out " + dir.file("e2"));
  ASSERT_EQ(second.exit_code, 0) << second.output;
  const nlohmann::json again = nlohmann::json::parse(io::read_file(dir.file("e2/results.json")));
  bool cached = false;
  for (const auto& r : again["results"]) {
    if (r["set"] == "full-data [hard labels] (cached)") {
      cached = true;
      EXPECT_DOUBLE_EQ(r["last_mean"].get<double>(), a["full_hard"].get<double>());
    }
  }
  EXPECT_TRUE(cached) << again.dump(1);

  // A soft-labelled set needs the source of its labels for the random baseline.
  io::TensorDict soft = io::load_dict(syn);
  at::Tensor labels = io::get_tensor(soft, "labels", syn);
  soft.insert_or_assign("labels", at::one_hot(labels, 3).to(at::kFloat));
  io::save_dict(dir.file("soft.pt"), soft);
  CommandResult refused = distill_cli("eval " + tiny_flags(data) + "--syn " + dir.file("soft.pt") +
                                      " --set 'eval.scores=[\"ddranking\"]' --out " +
                                      dir.file("e3"));
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_TRUE(contains(refused.output, "has soft labels, and DD-Ranking's random-real baseline "
                                       "must be labelled by the same source"))
      << refused.output;
  CommandResult unknown = distill_cli("eval " + tiny_flags(data) + "--syn " + syn +
                                      " --set 'eval.scores=[\"fid\"]' --out " + dir.file("e4"));
  EXPECT_EQ(unknown.exit_code, 2) << unknown.output;
  EXPECT_TRUE(contains(unknown.output, "eval.scores: the scores known are [\"ddranking\"]"))
      << unknown.output;
}

// A Python reference that fails (killed for memory at a size the C++ side handles) leaves the
// C++ result printed, with the failure named, instead of no result at all.
TEST(Cli, BenchMttReportsTheCppResultWhenThePythonReferenceFails) {
  CommandResult r = distill_cli(
      "bench mtt --ipc 1 --syn-steps 2 --batch-syn 10 --iters 1 --set mtt.warmup=0 "
      "--set bench.model.width=8 --set bench.image_size=8 --set bench.python=/bin/false "
      "--threads 1 --no-progress");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "bench: the Python reference failed (exit ")) << r.output;
  const std::string json = r.output.substr(r.output.rfind("{\"arch\""));
  nlohmann::json result = nlohmann::json::parse(json.substr(0, json.find('\n')));
  EXPECT_GT(result["s_per_iter"].get<double>(), 0);
  EXPECT_TRUE(contains(result["python"]["failed"].get<std::string>(), "/bin/false"));
  EXPECT_FALSE(result.contains("time_ratio_vs_python"));
}

// `bench eval`: the three C++ sides and the Python reference protocol in one invocation, its
// last line one JSON object with the fields the README table and the GPU check read.
TEST(Cli, BenchEvalPrintsAllSidesAndThePythonProtocol) {
  DISTILL_REQUIRE_PYTHON();
  CommandResult r = distill_cli(
      "bench eval --ipc 1 --students 3 --steps 2 --set eval.warmup=1 --set eval.rounds=2 "
      "--set bench.model.width=8 --set bench.image_size=12 --set bench.python=" +
      testing::reference_python() + " --set eval.python_script=" + testing::source_dir() +
      "/experiments/bench/eval_step.py --threads 1 --no-progress");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string json = r.output.substr(r.output.rfind("{\"arch\""));
  nlohmann::json result = nlohmann::json::parse(json.substr(0, json.find('\n')));
  for (const char* key : {"sequential_steps_per_s", "batched_steps_per_s", "ceiling_steps_per_s",
                          "python_steps_per_s"}) {
    EXPECT_GT(result[key].get<double>(), 0) << key;
  }
  EXPECT_EQ(result["students"], 3);
  EXPECT_EQ(result["ipc"], 1);
  EXPECT_EQ(result["cpp"]["batched_rounds"].size(), 2u);
  EXPECT_EQ(result["cpp"]["steps_per_student"], 2);  // 10 images, batch 10: 1 step per epoch
  // ConvNet-3 w8 on 12x12 grey images (padded to 18x18): 2 x (1*8*9*16^2 + 8*8*9*8^2 +
  // 8*8*9*4^2) + 2 x 8*2*2*10 multiply-adds per image forward, x3 for a training step.
  const double forward = 2.0 * (1 * 8 * 9 * 16 * 16 + 8 * 8 * 9 * 8 * 8 + 8 * 8 * 9 * 4 * 4) +
                         2.0 * (8 * 2 * 2 * 10);
  EXPECT_DOUBLE_EQ(result["cpp"]["train_flops_per_image"].get<double>(), 3 * forward);
  EXPECT_NEAR(result["batched_vs_sequential"].get<double>(),
              result["batched_steps_per_s"].get<double>() /
                  result["sequential_steps_per_s"].get<double>(),
              1e-9);
}

TEST(Cli, MissingDatasetIsExit2NamingThePath) {
  TempDir dir;
  CommandResult r = distill_cli("subset --set data.path=/nonexistent/fmnist --out " + dir.file("o"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.output, "/nonexistent/fmnist")) << r.output;
}

}  // namespace
}  // namespace distill
