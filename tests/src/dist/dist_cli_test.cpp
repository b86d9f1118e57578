// `distill` launched as 2 processes on 127.0.0.1 (the variables torchrun sets) against the same
// command run as one process: the single-process run is the independent truth.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "src/io/tensor_file.h"
#include "tests/src/dist/launch_support.h"
#include "tests/support/cli_support.h"

namespace distill::testing {
namespace {

namespace fs = std::filesystem;

// Runs `distill <args>` (shell syntax) as ranks 0 and 1 of one job; both must succeed.
void run_two_ranks(const TempDir& dir, const std::string& args) {
  const int port = free_port();
  std::vector<Rank> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.push_back(start_rank({"/bin/sh", "-c", "exec " + distill_binary() + " " + args}, r, 2,
                               port, dir.file("rank" + std::to_string(r) + ".log"), {}));
  }
  wait_ranks(ranks, 300);
  for (const auto& r : ranks) {
    ASSERT_EQ(r.exit_code, 0) << read_text(r.log);
  }
}

// Runs `distill <args>` as one process into DIR/one, then as ranks 0 and 1 into DIR/two: the
// single-process run is the truth the tests compare the two-process one with.
void run_one_and_two_ranks(const TempDir& dir, const std::string& args) {
  CommandResult single = distill_cli(args + "--out " + dir.file("one"));
  ASSERT_EQ(single.exit_code, 0) << single.output;
  run_two_ranks(dir, args + "--out " + dir.file("two"));
}

std::vector<std::string> pt_files(const std::string& folder) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.path().extension() == ".pt") names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(DistCli, ShardedExpertsAreTheSingleProcessFiles) {
  TempDir dir;
  const std::string data = write_tiny_dataset(dir);
  // 3 experts in buffers of 2: rank 0 trains experts 0 and 2, rank 1 expert 1.
  const std::string args = "experts " + tiny_flags(data) +
                           "--set experts.model.width=8 --set experts.model.depth=1 "
                           "--set experts.num_experts=3 --set experts.save_interval=2 "
                           "--set experts.train.epochs=2 --set experts.train.batch_size=20 ";
  ASSERT_NO_FATAL_FAILURE(run_one_and_two_ranks(dir, args));
  const auto names = pt_files(dir.file("one"));
  EXPECT_EQ(names,
            (std::vector<std::string>{"expert_00000.pt", "expert_00001.pt", "expert_00002.pt",
                                      "replay_buffer_0.pt", "replay_buffer_1.pt"}));
  EXPECT_EQ(pt_files(dir.file("two")), names);
  for (const auto& name : names) {
    EXPECT_EQ(read_text(dir.file("one/" + name)), read_text(dir.file("two/" + name)))
        << name << " differs from the single-process file";
  }
  // Rank 1 trained expert 1; rank 0 logged it in the one metrics.jsonl.
  EXPECT_TRUE(contains(read_text(dir.file("rank1.log")), "expert 1: test accuracy"));
  const std::string metrics = read_text(dir.file("two/metrics.jsonl"));
  EXPECT_EQ(std::count(metrics.begin(), metrics.end(), '\n'), 3) << metrics;
  for (const std::string expert : {"\"expert\":0.0", "\"expert\":1.0", "\"expert\":2.0"}) {
    EXPECT_TRUE(contains(metrics, expert)) << metrics;
  }
}

// JSON lines (results rows or students.jsonl) without the wall times, which differ run to run.
std::vector<nlohmann::json> without_seconds(const std::vector<nlohmann::json>& rows) {
  std::vector<nlohmann::json> kept = rows;
  for (auto& row : kept) row.erase("seconds");
  return kept;
}

std::vector<nlohmann::json> json_lines(const std::string& text) {
  std::istringstream in(text);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

TEST(DistCli, SpreadStudentsScoreAsOneProcess) {
  TempDir dir;
  const std::string data = write_tiny_dataset(dir);
  CommandResult subset =
      distill_cli("subset --ipc 2 " + tiny_flags(data) + "--out " + dir.file("s"));
  ASSERT_EQ(subset.exit_code, 0) << subset.output;
  // 3 students per set: runs 0 and 2 on rank 0, run 1 on rank 1.
  const std::string args = "eval --syn " + dir.file("s/syn.pt") + " --runs 3 --epochs 3 " +
                           tiny_flags(data) + "--set eval.model.width=8 ";
  ASSERT_NO_FATAL_FAILURE(run_one_and_two_ranks(dir, args));
  auto one = nlohmann::json::parse(read_text(dir.file("one/results.json")));
  auto two = nlohmann::json::parse(read_text(dir.file("two/results.json")));
  ASSERT_EQ(one["results"].size(), 2u);  // the set and random-real
  EXPECT_EQ(without_seconds(one["results"]), without_seconds(two["results"]));
  for (const auto& time : two["results"][0]["seconds"]) {
    EXPECT_GT(time.get<double>(), 0.0) << "rank 1's student time was not gathered";
  }
  // Rank 0 records every rank's students for --resume, in the same order as one process.
  const std::string log = dir.file("two/students.jsonl");
  const std::vector<nlohmann::json> lines = json_lines(read_text(log));
  EXPECT_EQ(without_seconds(lines),
            without_seconds(json_lines(read_text(dir.file("one/students.jsonl")))));
  EXPECT_TRUE(contains(read_text(dir.file("rank0.log")), "random-real"));
  EXPECT_FALSE(contains(read_text(dir.file("rank1.log")), "results:"))
      << "rank 1 printed the table";

  // Resumed with only the set's run 1 recorded (rank 1's student, its accuracy marked): rank 1
  // reuses it, the others train again, and rank 0 records them all.
  ASSERT_EQ(lines.size(), 7u);  // the header, then set runs 0-2 and random-real runs 0-2
  nlohmann::json marked = lines[2];
  ASSERT_EQ(marked["run"], 1);
  marked["last"] = 0.0123456789;  // no test-set size gives this accuracy
  std::ofstream(log, std::ios::trunc) << lines[0].dump() << "\n" << marked.dump() << "\n";
  fs::remove(dir.file("two/results.json"));
  ASSERT_NO_FATAL_FAILURE(run_two_ranks(dir, args + "--resume --out " + dir.file("two")));
  auto resumed = nlohmann::json::parse(read_text(dir.file("two/results.json")));
  EXPECT_EQ(resumed["results"][0]["seconds"][1], marked["seconds"]);  // the reused student's
  auto expected = one["results"];
  expected[0]["last_accuracy"][1] = 0.0123456789;
  for (auto& row : expected) row.erase("last_mean"), row.erase("last_std");
  for (auto& row : resumed["results"]) row.erase("last_mean"), row.erase("last_std");
  EXPECT_EQ(without_seconds(resumed["results"]), without_seconds(expected));
  EXPECT_EQ(without_seconds(json_lines(read_text(log))),
            without_seconds({lines[0], marked, lines[1], lines[3], lines[4], lines[5], lines[6]}));
}

TEST(DistCli, DataParallelTrainMatchesOneProcess) {
  TempDir dir;
  const std::string data = write_tiny_dataset(dir);
  const std::string args = "train --epochs 2 " + tiny_flags(data) +
                           "--set model.width=8 --set model.depth=1 --set train.batch_size=25 ";
  ASSERT_NO_FATAL_FAILURE(run_one_and_two_ranks(dir, args));
  at::Tensor one = io::get_tensor(io::load_dict(dir.file("one/model.pt")), "params", "one");
  at::Tensor two = io::get_tensor(io::load_dict(dir.file("two/model.pt")), "params", "two");
  EXPECT_TRUE(at::allclose(one, two, 1e-4, 1e-5))
      << "max |diff| " << (one - two).abs().max().item<double>();
  EXPECT_TRUE(fs::exists(dir.file("two/checkpoint.pt")));
}

// Committee members spread over the ranks (rank 0: members 0 and 2, rank 1: member 1): every
// member file and the manifest equal a single-process run's.
TEST(DistCli, ShardedCommitteeIsTheSingleProcessCommittee) {
  TempDir dir;
  const std::string data = write_tiny_dataset(dir);
  const std::string args =
      "committee train " + tiny_flags(data) +
      "--set 'committee.members=[{model={arch=\"convnet\", norm=\"batchnorm\", width=8, "
      "depth=1}}, {model={arch=\"mlp\", hidden=[16]}}, {model={arch=\"mlp\", hidden=[8, 8]}}]' "
      "--set committee.val_per_class=5 --set committee.train.epochs=2 "
      "--set committee.train.batch_size=16 ";
  ASSERT_NO_FATAL_FAILURE(run_one_and_two_ranks(dir, args));
  for (const std::string file : {"member_0/model.pt", "member_1/model.pt", "member_2/model.pt",
                                 "member_1/feature_stats.pt", "member_2/feature_stats.pt",
                                 "committee.toml", "results.json"}) {
    EXPECT_EQ(read_text(dir.file("one/" + file)), read_text(dir.file("two/" + file)))
        << file << " differs from the single-process file";
  }
  EXPECT_TRUE(contains(read_text(dir.file("rank0.log")), "committee of 3"));
  EXPECT_FALSE(contains(read_text(dir.file("rank1.log")), "committee of 3"));

  // Recovery with its batches spread over the ranks (3 batches of one image per class: rank 0
  // recovers batches 0 and 2, rank 1 batch 1) = one process; a resumed run picks up the batch
  // files and recomputes only what is missing.
  const std::string recover = "synth recover " + tiny_flags(data) + "--committee " +
                              dir.file("one/committee.toml") +
                              " --ipc 3 --set synth.recover.batch_ipc=1 "
                              "--set synth.recover.iterations=3 ";
  CommandResult alone = distill_cli(recover + "--out " + dir.file("r1"));
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  run_two_ranks(dir, recover + "--out " + dir.file("r2"));
  auto images = [&](const std::string& file) {
    return io::get_tensor(io::load_dict(dir.file(file)), "images", file);
  };
  EXPECT_TRUE(at::equal(images("r1/syn.pt"), images("r2/syn.pt")))
      << "max |diff| " << (images("r1/syn.pt") - images("r2/syn.pt")).abs().max().item<double>();
  EXPECT_TRUE(fs::exists(dir.file("r2/batches/batch_1.pt")));  // written by rank 1
  fs::remove(dir.file("r2/batches/batch_1.pt"));
  fs::remove(dir.file("r2/syn.pt"));
  run_two_ranks(dir, recover + "--resume --out " + dir.file("r2"));
  EXPECT_TRUE(at::equal(images("r1/syn.pt"), images("r2/syn.pt")));
}

// Trajectory matching with every student step's batch split over 2 ranks (contiguous parts, or
// by class) computes the single-process meta-gradients: the distilled images and learned lr
// equal one process's up to float summation order. batch_syn 4 of 6 images: a short last chunk
// of 2, and class parts of unequal sizes; DSA draws for the whole batch.
TEST(DistCli, SplitTrajectoryMatchingEqualsOneProcess) {
  TempDir dir;
  const std::string data = write_tiny_dataset(dir);
  CommandResult experts = distill_cli(
      "experts " + tiny_flags(data) +
      "--set experts.model.width=8 --set experts.model.depth=1 --set experts.num_experts=1 "
      "--set experts.train.epochs=3 --set experts.train.batch_size=20 --out " +
      dir.file("experts"));
  ASSERT_EQ(experts.exit_code, 0) << experts.output;
  const std::string mtt = "mtt " + tiny_flags(data) + "--buffer " + dir.file("experts") +
                          " --ipc 2 --set mtt.model.width=8 "
                          "--set mtt.model.depth=1 --set mtt.matching.syn_steps=4 "
                          "--set mtt.matching.batch_syn=4 --set mtt.matching.max_start_epoch=2 "
                          "--set mtt.matching.lr_img=100 --set mtt.augment.name=dsa ";
  CommandResult single = distill_cli(mtt + "--iterations 3 --out " + dir.file("one"));
  ASSERT_EQ(single.exit_code, 0) << single.output;
  auto tensor = [&](const std::string& file, const std::string& key) {
    return io::get_tensor(io::load_dict(dir.file(file)), key, file);
  };
  const at::Tensor start = tensor("one/syn.pt", "images");
  for (const std::string split : {"batch", "class"}) {
    run_two_ranks(dir, mtt + "--iterations 3 --set mtt.dist_split=" + split + " --out " +
                           dir.file(split));
    at::Tensor images = tensor(split + "/syn.pt", "images");
    EXPECT_TRUE(at::allclose(images, start, 1e-4, 1e-5))
        << split << ": max |diff| " << (images - start).abs().max().item<double>();
    EXPECT_NEAR(tensor(split + "/syn.pt", "lr").item<double>(),
                tensor("one/syn.pt", "lr").item<double>(), 1e-6);
    EXPECT_FALSE(contains(read_text(dir.file("rank1.log")), "distilled set:"));
  }
  // AST's switches (student momentum, intermediate matching, perturbation, balanced loss) split
  // over two processes equal one process too.
  const std::string ast = mtt +
                          "--iterations 3 --set mtt.matching.student_momentum=0.9 "
                          "--set mtt.matching.intermediate=sum "
                          "--set mtt.matching.weight_perturbation=true "
                          "--set mtt.matching.balanced_inner_loss=true --out ";
  ASSERT_EQ(distill_cli(ast + dir.file("ast_one")).exit_code, 0);
  run_two_ranks(dir, ast + dir.file("ast_two"));
  EXPECT_TRUE(at::allclose(tensor("ast_two/syn.pt", "images"), tensor("ast_one/syn.pt", "images"),
                           1e-4, 1e-5));
  EXPECT_NEAR(tensor("ast_two/syn.pt", "lr").item<double>(),
              tensor("ast_one/syn.pt", "lr").item<double>(), 1e-6);
  EXPECT_FALSE(at::equal(tensor("ast_one/syn.pt", "images"), start));
  // The images moved: the comparison is not between two copies of the initial set.
  CommandResult none = distill_cli(mtt + "--iterations 0 --out " + dir.file("zero"));
  ASSERT_EQ(none.exit_code, 0) << none.output;
  EXPECT_GT((tensor("zero/syn.pt", "images") - start).abs().max().item<double>(), 1e-3);
  // unroll needs collectives inside autograd: refused with a usage error on every rank.
  const int port = free_port();
  std::vector<Rank> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.push_back(start_rank({"/bin/sh", "-c", "exec " + distill_binary() + " " + mtt +
                                "--iterations 3 --set mtt.matching.meta_grad=unroll --out " +
                                    dir.file("unroll")},
                               r, 2, port, dir.file("unroll" + std::to_string(r) + ".log"), {}));
  }
  wait_ranks(ranks, 120);
  for (const auto& r : ranks) {
    EXPECT_EQ(r.exit_code, 2) << read_text(r.log);
    EXPECT_TRUE(contains(read_text(r.log), "meta_grad = unroll runs on one process only"))
        << read_text(r.log);
  }
}

// Knowledge distillation data-parallel over 2 ranks (the Trainer's data parallelism with the KD
// objective: per-sample losses, so the global batch's loss is the single-process loss) = one
// process, for offline KD from a teacher and for deep mutual learning (a cohort of 2).
TEST(DistCli, DataParallelKdMatchesOneProcess) {
  TempDir dir;
  const std::string data = write_tiny_dataset(dir);
  CommandResult teacher =
      distill_cli("train --epochs 2 " + tiny_flags(data) +
                  "--set model.width=8 --set model.depth=1 --out " + dir.file("teacher"));
  ASSERT_EQ(teacher.exit_code, 0) << teacher.output;
  const std::string kd = "kd --epochs 2 " + tiny_flags(data) +
                         "--set model.arch=mlp --set model.hidden=[16] "
                         "--set train.batch_size=25 ";
  for (const std::string& scheme :
       std::vector<std::string>{"--teacher " + dir.file("teacher/model.pt") +
                                    " --set teacher.model.width=8 --set teacher.model.depth=1 ",
                                "--set kd.scheme=dml "}) {
    ASSERT_NO_FATAL_FAILURE(run_one_and_two_ranks(dir, kd + scheme));
    at::Tensor one = io::get_tensor(io::load_dict(dir.file("one/model.pt")), "params", "one");
    at::Tensor two = io::get_tensor(io::load_dict(dir.file("two/model.pt")), "params", "two");
    EXPECT_TRUE(at::allclose(one, two, 1e-4, 1e-5))
        << scheme << ": max |diff| " << (one - two).abs().max().item<double>();
    EXPECT_FALSE(contains(read_text(dir.file("rank1.log")), "test accuracy"));
    fs::remove_all(dir.file("one"));
    fs::remove_all(dir.file("two"));
  }
}

// Diffusion sampling with the rows spread over 2 ranks (5 samples: 3 and 2) = one process, for
// the exact teacher, for a class-conditional U-Net (each rank's rows keep their labels), and for
// the U-Net with classifier-free guidance after one step of a base model (hybrid sampling).
// Data-parallel denoiser training (each rank the loss of its rows of every batch, one all-reduce
// of the gradient) takes the single-process steps: class-conditional U-Net, 7-item batches split
// 3 + 4; a two-process run resumed from a one-process checkpoint ends in the same place too.
// Plain SGD rather than the default Adam: Adam's first steps move each weight by about lr
// whatever its gradient's size, so on a weight whose gradient nearly cancels, summation order
// alone (3 + 4 rows vs 7) could flip the step (seen: 2e-5 on an Intel Xeon with LibTorch 1.13).
// SGD's step is linear in the gradient, so a wrong split shows and rounding does not.
TEST(DistCli, DataParallelDiffusionTrainMatchesOneProcess) {
  TempDir dir;
  const std::string data = write_tiny_dataset(dir);
  const std::string train =
      "diffusion train " + tiny_flags(data) +
      "--set diffusion.model.unet.channels=8 --set diffusion.model.unet.channel_mult=[1,2] "
      "--set diffusion.model.unet.groups=4 --set diffusion.model.unet.attention_max_size=4 "
      "--set diffusion.train.class_conditional=true --set diffusion.train.checkpoint_every=2 "
      "--set diffusion.train.optimizer.name=sgd --set diffusion.train.optimizer.lr=0.05 "
      "--batch 7 ";
  ASSERT_NO_FATAL_FAILURE(run_one_and_two_ranks(dir, train + "--train-steps 4 "));
  auto params = [&](const std::string& folder) {
    return io::get_tensor(io::load_dict(dir.file(folder + "/model.pt")), "params", folder);
  };
  EXPECT_TRUE(at::allclose(params("one"), params("two"), 1e-4, 1e-5))
      << "max |diff| " << (params("one") - params("two")).abs().max().item<double>();
  EXPECT_FALSE(contains(read_text(dir.file("rank1.log")), "denoiser:"));
  // Two steps on one process, the other two on two processes.
  ASSERT_EQ(distill_cli(train + "--train-steps 2 --out " + dir.file("mixed")).exit_code, 0);
  run_two_ranks(dir, train + "--train-steps 4 --resume --out " + dir.file("mixed"));
  EXPECT_TRUE(at::allclose(params("one"), params("mixed"), 1e-4, 1e-5))
      << "max |diff| " << (params("one") - params("mixed")).abs().max().item<double>();
}

// Progressive and consistency distillation (each after a fit of the exact teacher, on data and
// data-free) with every batch of 15 shared 7 + 8 by two ranks take the single-process steps.
TEST(DistCli, SharedBatchDiffusionDistillationEqualsOneProcess) {
  TempDir dir;
  const std::string data = write_tiny_dataset(dir, 3, 2);
  const std::string base =
      "diffusion distill " + tiny_flags(data) +
      "--train-images 12 --set distill.fit_iterations=3 --arch mlp"
      " --set diffusion.model.mlp.hidden=[32] --set diffusion.model.mlp.frequencies=2"
      " --set distill.progressive.teacher_steps=4 --set distill.progressive.student_steps=1"
      " --set distill.progressive.iterations=3 --set distill.progressive.batch=15"
      " --set distill.consistency.iterations=4 --set distill.consistency.batch=15"
      " --set distill.consistency.discretisation=6 --set distill.trajectory_steps=4 ";
  auto student = [&](const std::string& folder) {
    io::TensorDict dict = io::load_dict(dir.file(folder + "/model.pt"));
    return at::cat({io::get_tensor(dict, "params", folder), io::get_tensor(dict, "ema", folder)});
  };
  for (const std::string method : {"progressive", "consistency"}) {
    for (const std::string source : {"dataset", "none"}) {
      ASSERT_NO_FATAL_FAILURE(
          run_one_and_two_ranks(dir, base + "--method " + method + " --data " + source + " "));
      EXPECT_TRUE(at::allclose(student("one"), student("two"), 1e-4, 1e-5))
          << method << " " << source << ": max |diff| "
          << (student("one") - student("two")).abs().max().item<double>();
      EXPECT_FALSE(contains(read_text(dir.file("rank1.log")), "student: "));
      fs::remove_all(dir.file("one"));
      fs::remove_all(dir.file("two"));
    }
  }
}

TEST(DistCli, SpreadDiffusionSamplingEqualsOneProcess) {
  TempDir dir;
  const std::string data = write_tiny_dataset(dir);
  CommandResult teacher = distill_cli(
      "diffusion train " + tiny_flags(data) +
      "--set diffusion.model.unet.channels=8 --set diffusion.model.unet.channel_mult=[1,2] "
      "--set diffusion.model.unet.groups=4 --set diffusion.model.unet.attention_max_size=4 "
      "--set diffusion.train.class_conditional=true --batch 8 --train-steps 3 --out " +
      dir.file("unet"));
  ASSERT_EQ(teacher.exit_code, 0) << teacher.output;
  const std::string sample = "diffusion sample " + tiny_flags(data) +
                             "--samples 5 --steps 4 --set diffusion.train_images=20 ";
  for (const std::string& which :
       std::vector<std::string>{"ddim --teacher exact", "heun --teacher " + dir.file("unet"),
                                "ddim --teacher " + dir.file("unet") +
                                    " --set diffusion.guidance=1.5 --set diffusion.hybrid.base=" +
                                    dir.file("unet")}) {
    const std::string args = sample + "--sampler " + which + " ";
    ASSERT_NO_FATAL_FAILURE(run_one_and_two_ranks(dir, args));
    at::Tensor one = io::get_tensor(io::load_dict(dir.file("one/samples.pt")), "images", "one");
    at::Tensor two = io::get_tensor(io::load_dict(dir.file("two/samples.pt")), "images", "two");
    ASSERT_EQ(one.sizes(), two.sizes());
    EXPECT_TRUE(at::allclose(one, two, 1e-4, 1e-5))
        << which << ": max |diff| " << (one - two).abs().max().item<double>();
    EXPECT_FALSE(contains(read_text(dir.file("rank1.log")), "samples:"));
    fs::remove_all(dir.file("one"));
    fs::remove_all(dir.file("two"));
  }
  CommandResult ddpm = run_command("WORLD_SIZE=2 RANK=1 " + distill_binary() + " " + sample +
                                   "--sampler ddpm --out " + dir.file("ddpm"));
  EXPECT_EQ(ddpm.exit_code, 2) << ddpm.output;
  EXPECT_TRUE(contains(ddpm.output, "\"ddpm\" runs as one process")) << ddpm.output;
}

// The launcher the README documents, from the Python torch of the same LibTorch line (the agent's
// TCPStore and the ranks' clients must speak one protocol): Debian's /usr/bin/torchrun for 1.13,
// the wheel's own `python -m torch.distributed.run` for the wheel line (DISTILL_TORCHRUN, set by
// the build). `-r 1 -t 1` works around 1.13's Python 3.11 failure on the default --redirects/--tee
// "0". Its agent hosts the TCPStore (TORCHELASTIC_USE_AGENT_STORE=True), so every rank is a
// store client.
TEST(DistCli, TorchrunLaunchesDataParallelTrain) {
  const std::string torchrun = testing::torchrun();
  DISTILL_REQUIRE_TOOL(fs::exists(torchrun),
                       torchrun << " (tests/run.sh installs Debian's python3-torch; the wheel "
                                   "line's launcher comes with the wheel)");
  TempDir dir;
  const std::string data = write_tiny_dataset(dir);
  const std::string args = "train --epochs 1 " + tiny_flags(data) +
                           "--set model.width=8 --set model.depth=1 --set train.batch_size=25 ";
  CommandResult single = distill_cli(args + "--out " + dir.file("one"));
  ASSERT_EQ(single.exit_code, 0) << single.output;
  CommandResult launched = run_command(
      "cd " + dir.path() + " && timeout 300 " + torchrun + " --nproc_per_node=2 --master_port=" +
      std::to_string(free_port()) + " -r 1 -t 1 --no_python " + distill_binary() + " " + args +
      "--out " + dir.file("two") + " 2>&1");
  ASSERT_EQ(launched.exit_code, 0) << launched.output;
  EXPECT_TRUE(contains(launched.output, "2 processes (gloo)")) << launched.output;
  at::Tensor one = io::get_tensor(io::load_dict(dir.file("one/model.pt")), "params", "one");
  at::Tensor two = io::get_tensor(io::load_dict(dir.file("two/model.pt")), "params", "two");
  EXPECT_TRUE(at::allclose(one, two, 1e-4, 1e-5))
      << "max |diff| " << (one - two).abs().max().item<double>();
}

TEST(DistCli, BadLauncherVariablesAreUsageErrors) {
  CommandResult r = run_command("WORLD_SIZE=2 " + distill_binary() + " train --out /nonexistent/x");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "WORLD_SIZE=2 but RANK is not set")) << r.output;
  r = run_command("WORLD_SIZE=2 RANK=0 " + distill_binary() +
                  " train --dist-backend nccl --out /nonexistent/x");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "run.dist.backend = \"nccl\"")) << r.output;
}

TEST(DistCli, CommandsWithoutMultiProcessSupportRefuse) {
  TempDir dir;
  const std::string data = write_tiny_dataset(dir);
  // Refused before joining anything: each rank exits on its own, no peer needed.
  CommandResult r = run_command("WORLD_SIZE=2 RANK=1 " + distill_binary() + " subset --ipc 1 " +
                                tiny_flags(data) + "--out " + dir.file("s"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "distill subset runs as one process")) << r.output;
  EXPECT_FALSE(fs::exists(dir.file("s/config.toml")));
  // kd runs data-parallel, but not with a loss relating the samples of a batch.
  r = run_command("WORLD_SIZE=2 RANK=1 " + distill_binary() + " kd " + tiny_flags(data) +
                  "--teacher " + dir.file("no_teacher.pt") +
                  " --set 'kd.losses=[{name=\"rkd_distance\"}]' --out " + dir.file("k"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "kd.losses[0] (rkd_distance) relates the samples of a batch"))
      << r.output;
  EXPECT_FALSE(fs::exists(dir.file("k/config.toml")));
}

}  // namespace
}  // namespace distill::testing
