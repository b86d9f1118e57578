// `distill diffusion distill` end to end on a tiny dataset: a PD and a CD run stopped half way
// and resumed write the same student as a straight run; the student loads in
// `distill diffusion sample`; data-free runs with a file teacher read no dataset; bad settings
// and files fail with the key or the file named.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "src/io/atomic_file.h"
#include "src/io/tensor_file.h"
#include "tests/support/cli_support.h"

namespace distill::testing {
namespace {

class DiffusionDistillCli : public ::testing::Test {
 protected:
  void SetUp() override { data_ = write_tiny_dataset(dir_, 3, 2); }

  // A few steps of everything: fit 6, PD 4 -> 1 steps (2 stages of 5), small MLP.
  std::string tiny(const std::string& method) {
    return "diffusion distill " + tiny_flags(data_) + "--method " + method +
           " --train-images 12 --set distill.fit_iterations=6 --arch mlp"
           " --set diffusion.model.mlp.hidden=[32] --set diffusion.model.mlp.frequencies=2"
           " --set distill.checkpoint_every=4"
           " --set distill.log_every=1"
           " --set distill.progressive.teacher_steps=4 --set distill.progressive.student_steps=1"
           " --set distill.progressive.iterations=5 --set distill.progressive.batch=16"
           " --set distill.consistency.iterations=8 --set distill.consistency.batch=16"
           " --set distill.consistency.discretisation=6 --set distill.trajectory_steps=4"
           " --set distill.scm.iterations=8 --set distill.scm.batch=16 --set distill.scm.warmup=4 ";
  }
  at::Tensor student_params(const std::string& out) {
    io::TensorDict dict = io::load_dict(dir_.file(out + "/model.pt"));
    return at::cat({io::get_tensor(dict, "params", out), io::get_tensor(dict, "ema", out)});
  }
  int64_t metric_lines(const std::string& out) {
    std::ifstream in(dir_.file(out + "/metrics.jsonl"));
    int64_t n = 0;
    for (std::string line; std::getline(in, line);) ++n;
    return n;
  }

  TempDir dir_;
  std::string data_;
};

TEST_F(DiffusionDistillCli, StoppedAndResumedRunsEqualStraightOnesAndStudentsSample) {
  for (const std::string method : {"progressive", "consistency", "scm"}) {
    for (const std::string data : {"dataset", "none"}) {
      const std::string flags = tiny(method) + "--data " + data + " --out ";
      const std::string straight = method + "_" + data, stopped = straight + "_stopped";
      CommandResult a = distill_cli(flags + dir_.file(straight));
      ASSERT_EQ(a.exit_code, 0) << a.output;
      EXPECT_TRUE(contains(a.output, "student: ")) << a.output;
      // Stopped after 9 steps (PD: mid second stage; CD, sCM: mid run after the 6 fit steps).
      CommandResult b = distill_cli(flags + dir_.file(stopped) + " --set distill.stop_after=9");
      EXPECT_EQ(b.exit_code, 130) << b.output;
      EXPECT_FALSE(std::filesystem::exists(dir_.file(stopped + "/model.pt")));
      CommandResult c = distill_cli(flags + dir_.file(stopped) + " --resume");
      ASSERT_EQ(c.exit_code, 0) << c.output;
      EXPECT_TRUE(at::equal(student_params(straight), student_params(stopped)))
          << method << " " << data;
      // One metrics line per step (log_every 1), none repeated by the resume.
      const int64_t steps = method == "progressive" ? 6 + 2 * 5 : 6 + 8;
      EXPECT_EQ(metric_lines(straight), steps);
      EXPECT_EQ(metric_lines(stopped), steps);
    }
  }
  // The student is a model file `distill diffusion sample` reads (PD: 1 DDIM step on its
  // schedule; CD: one consistency step from sigma 80).
  CommandResult s = distill_cli("diffusion sample " + tiny_flags(data_) + "--teacher " +
                                dir_.file("progressive_dataset") +
                                " --sampler ddim --steps 1 --samples 5 --set "
                                "diffusion.sampler.schedule.name=vp_cosine --out " +
                                dir_.file("sampled"));
  ASSERT_EQ(s.exit_code, 0) << s.output;
  at::Tensor images =
      io::get_tensor(io::load_dict(dir_.file("sampled/samples.pt")), "images", "samples");
  EXPECT_EQ(images.sizes(), (std::vector<int64_t>{5, 1, 8, 8}));
  EXPECT_TRUE(at::isfinite(images).all().item<bool>());
  EXPECT_TRUE(std::filesystem::exists(dir_.file("sampled/grid.png")));
  CommandResult cd = distill_cli(
      "diffusion sample " + tiny_flags(data_) + "--teacher " + dir_.file("consistency_none") +
      " --sampler ddim --steps 1 --samples 5 --out " + dir_.file("sampled_cd"));
  ASSERT_EQ(cd.exit_code, 0) << cd.output;
  // sCM's student is a consistency model too: 1 and 2 steps (sCM's t = 1.1 is sigma 0.98 here).
  for (const std::string levels : {"[80.0]", "[80.0, 0.98]"}) {
    const std::string steps = levels == "[80.0]" ? "1" : "2";
    CommandResult scm = distill_cli("diffusion sample " + tiny_flags(data_) + "--teacher " +
                                    dir_.file("scm_none") + " --sampler consistency --samples 5 "
                                    "--steps " + steps + " "
                                    "--set 'diffusion.sampler.sigmas=" + levels + "' --out " +
                                    dir_.file("sampled_scm" + std::to_string(levels.size())));
    ASSERT_EQ(scm.exit_code, 0) << scm.output;
  }
  // sCT needs images: with --data none it is refused before any work.
  CommandResult sct = distill_cli(tiny("scm") + "--data none --set distill.scm.objective=training"
                                  " --out " + dir_.file("sct_none"));
  EXPECT_EQ(sct.exit_code, 2) << sct.output;
  EXPECT_TRUE(contains(sct.output, "distill.scm.objective = training (sCT) needs training images"))
      << sct.output;
  EXPECT_FALSE(std::filesystem::exists(dir_.file("sct_none/metrics.jsonl")));
  // sCT from images, resumed = straight.
  const std::string sct_flags = tiny("scm") + "--set distill.scm.objective=training --out ";
  ASSERT_EQ(distill_cli(sct_flags + dir_.file("sct")).exit_code, 0);
  EXPECT_EQ(distill_cli(sct_flags + dir_.file("sct_stopped") + " --set distill.stop_after=9").exit_code, 130);
  ASSERT_EQ(distill_cli(sct_flags + dir_.file("sct_stopped") + " --resume").exit_code, 0);
  EXPECT_TRUE(at::equal(student_params("sct"), student_params("sct_stopped")));
}

// A student model file as the teacher of a data-free run: the dataset path does not even exist.
TEST_F(DiffusionDistillCli, DataFreeRunFromAModelFileReadsNoDataset) {
  ASSERT_EQ(distill_cli(tiny("progressive") + "--out " + dir_.file("first")).exit_code, 0);
  CommandResult r = distill_cli(
      "diffusion distill --set data.path=/nonexistent --threads 1 --no-progress --method "
      "progressive --data none --teacher " +
      dir_.file("first") +
      " --set distill.progressive.teacher_steps=2 --set distill.progressive.student_steps=1"
      " --set distill.progressive.iterations=3 --set distill.progressive.batch=8"
      " --set distill.trajectory_steps=2 --out " +
      dir_.file("second"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir_.file("second/model.pt")));
}

// A teacher trained by `distill diffusion train` (a tiny U-Net): the student copies its network;
// stopped and resumed = straight; the student samples.
TEST_F(DiffusionDistillCli, TrainedUnetTeacherResumeEqualsStraightAndSamples) {
  const std::string unet =
      "--set diffusion.model.unet.channels=8 --set diffusion.model.unet.channel_mult=[1,2] "
      "--set diffusion.model.unet.groups=4 --set diffusion.model.unet.attention_max_size=4 ";
  CommandResult t = distill_cli("diffusion train " + tiny_flags(data_) + unet +
                                "--batch 8 --train-steps 3 --out " + dir_.file("teacher"));
  ASSERT_EQ(t.exit_code, 0) << t.output;
  const std::string flags = "diffusion distill " + tiny_flags(data_) + "--teacher " +
                            dir_.file("teacher") +
                            " --method progressive --set distill.progressive.teacher_steps=4"
                            " --set distill.progressive.student_steps=1"
                            " --set distill.progressive.iterations=2"
                            " --set distill.progressive.batch=4 --out ";
  ASSERT_EQ(distill_cli(flags + dir_.file("pd")).exit_code, 0);
  EXPECT_EQ(distill_cli(flags + dir_.file("pd_stopped") + " --set distill.stop_after=3").exit_code,
            130);
  CommandResult r = distill_cli(flags + dir_.file("pd_stopped") + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(at::equal(student_params("pd"), student_params("pd_stopped")));
  CommandResult s =
      distill_cli("diffusion sample " + tiny_flags(data_) + "--teacher " + dir_.file("pd") +
                  " --sampler ddim --steps 1 --samples 4 --set "
                  "diffusion.sampler.schedule.name=vp_cosine --out " +
                  dir_.file("pd_samples"));
  ASSERT_EQ(s.exit_code, 0) << s.output;
  // A CD student (a consistency function) is not a denoiser to distill from.
  CommandResult cd =
      distill_cli("diffusion distill " + tiny_flags(data_) + "--teacher " + dir_.file("teacher") +
                  " --method consistency" + " --set distill.consistency.iterations=2" +
                  " --set distill.consistency.batch=4 --out " + dir_.file("cd"));
  ASSERT_EQ(cd.exit_code, 0) << cd.output;
  r = distill_cli("diffusion distill " + tiny_flags(data_) + "--teacher " + dir_.file("cd") +
                  " --out " + dir_.file("from_cd"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "diffusion.teacher: '" + dir_.file("cd") +
                                     "/model.pt' is a consistency model (precondition.output = "
                                     "consistency); progressive distillation needs a denoiser "
                                     "teacher"))
      << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir_.file("from_cd")));
  // Sampling it: the karras grid's last level is its sigma_min, where f is the identity; explicit
  // levels work; as a hybrid base (which takes ODE steps) it is refused.
  const std::string sample_cd = "diffusion sample " + tiny_flags(data_) + "--samples 4 --teacher ";
  r = distill_cli(sample_cd + dir_.file("cd") + " --sampler consistency --steps 2 --out " +
                  dir_.file("cd_karras"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output,
                       "consistency sampling re-noises to level 1 = 0.002000, not above "
                       "the model's sigma_min = 0.002000"))
      << r.output;
  r = distill_cli(sample_cd + dir_.file("cd") +
                  " --sampler consistency --steps 2 --set diffusion.sampler.sigmas=[80,0.5] "
                  "--out " +
                  dir_.file("cd_two"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = distill_cli(sample_cd + dir_.file("teacher") +
                  " --sampler ddim --steps 2 "
                  "--set diffusion.hybrid.base=" +
                  dir_.file("cd") + " --out " + dir_.file("cd_base"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(
      r.output, "diffusion.hybrid.base: '" + dir_.file("cd") + "/model.pt' is a consistency model"))
      << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir_.file("cd_base")));
}

TEST_F(DiffusionDistillCli, BadSettingsAndFilesAreClearErrors) {
  // A classifier's model file as the teacher: the wrong kind of file.
  ASSERT_EQ(distill_cli("train " + tiny_flags(data_) +
                        "--set model.width=8 --set model.depth=1 --epochs 1 --out " +
                        dir_.file("classifier"))
                .exit_code,
            0);
  struct Case {
    std::string flags, message;
  };
  const std::vector<Case> cases = {
      {"--set distill.progressive.teacher_steps=6 --set distill.progressive.student_steps=4",
       "student_steps = 4 is not reachable by halving teacher_steps = 6"},
      {"--set distill.progressive.schedule.name=vp_cosine"
       " --set distill.progressive.schedule.logsnr_min=3"
       " --set distill.progressive.schedule.logsnr_max=1",
       "logsnr_min and logsnr_max must be finite with logsnr_min < logsnr_max"},
      {"--method consistency --set distill.consistency.sigma_min=5"
       " --set distill.consistency.sigma_max=1",
       "sigma_min and sigma_max"},
      {"--teacher " + dir_.file("classifier/model.pt"), "is not a denoiser model file"},
      {"--method distil", "distill.method"},
      {"--data nothing", "distill.data"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string out = "bad" + std::to_string(i);
    CommandResult r = distill_cli("diffusion distill " + tiny_flags(data_) + cases[i].flags +
                                  " --out " + dir_.file(out));
    EXPECT_EQ(r.exit_code, 2) << cases[i].flags << ": " << r.output;
    EXPECT_TRUE(contains(r.output, cases[i].message)) << cases[i].flags << ": " << r.output;
  }
  // --resume where nothing ran (a job preempted before its first checkpoint, restarted with the
  // same command line): the run starts from the beginning, says so, and ends as a straight run.
  CommandResult r = distill_cli(tiny("progressive") + "--resume --out " + dir_.file("never"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "holds nothing to continue from")) << r.output;
  EXPECT_TRUE(contains(r.output, "starting it from the beginning")) << r.output;
  ASSERT_EQ(distill_cli(tiny("progressive") + "--out " + dir_.file("straight")).exit_code, 0);
  EXPECT_EQ(io::read_file(dir_.file("never/model.pt")), io::read_file(dir_.file("straight/model.pt")));
}

// Every pd_* / cd_* preset of experiments/configs loads for all four diffusion commands (an
// unknown or mistyped key fails the load) and holds what its name says: the data set after the
// method prefix and, for pd_<data>_steps<N>.toml, N as the final student's and the sampler's
// step count.
TEST_F(DiffusionDistillCli, EveryPdAndCdPresetLoadsForTrainDistillSampleAndScore) {
  int pd = 0, cd = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(source_dir() + "/experiments/configs")) {
    const std::string name = entry.path().filename().string();
    const bool is_pd = name.rfind("pd_", 0) == 0, is_cd = name.rfind("cd_", 0) == 0;
    if ((!is_pd && !is_cd) || entry.path().extension() != ".toml") continue;
    ++(is_pd ? pd : cd);
    // "pd_cifar10_steps4" -> data set "cifar10", steps "4"; "cd_cifar10" -> "cifar10".
    const std::string stem = entry.path().stem().string().substr(3);
    const size_t steps_at = stem.rfind("_steps");
    if (is_pd) {
      ASSERT_NE(steps_at, std::string::npos) << name << ": expected pd_<data>_steps<N>.toml";
    }
    const std::string data = stem.substr(0, steps_at);
    const std::string steps = is_pd ? stem.substr(steps_at + 6) : "";
    for (const std::string command : {"train", "distill", "sample", "score"}) {
      CommandResult r =
          distill_cli("config --dump diffusion " + command + " --config " + entry.path().string());
      ASSERT_EQ(r.exit_code, 0) << name << " " << command << "\n" << r.output;
      EXPECT_TRUE(contains(r.output, "\nname = '" + data + "'\n")) << name << " " << command;
      if (command == "distill") {
        const std::string method = is_pd ? "progressive" : "consistency";
        EXPECT_TRUE(contains(r.output, "\nmethod = '" + method + "'\n")) << name << "\n"
                                                                         << r.output;
        if (is_pd) {
          EXPECT_TRUE(contains(r.output, "\n    student_steps = " + steps + "\n")) << name << "\n"
                                                                                   << r.output;
        }
      }
      if (command == "sample" && is_pd) {
        // diffusion.sampler.steps (the only key "steps" at this indent besides the teacher's
        // training steps, which are never a PD row's count).
        EXPECT_TRUE(contains(r.output, "\n    steps = " + steps + "\n")) << name << "\n"
                                                                         << r.output;
      }
    }
    // The FCD classifier's `distill train` reads the file too (the diffusion sections skipped).
    CommandResult classifier = distill_cli("config --dump train --config " + entry.path().string());
    ASSERT_EQ(classifier.exit_code, 0) << name << " train\n" << classifier.output;
    EXPECT_TRUE(contains(classifier.output, "mean = [ 0.5, 0.5, 0.5 ]")) << classifier.output;
  }
  EXPECT_GE(pd, 4);  // CIFAR-10 with 1, 2, 4 and 8 steps (the PD paper's CIFAR-10 rows)
  EXPECT_GE(cd, 1);  // CIFAR-10 (CD with the l2 metric)
}

}  // namespace
}  // namespace distill::testing
