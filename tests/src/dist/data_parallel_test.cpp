// Data-parallel Trainer over 2 processes against the same training in one process (the
// independent truth: the single-process Trainer, whose own correctness the train tests cover).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "src/core/runtime.h"
#include "src/dist/process_group.h"
#include "src/io/tensor_file.h"
#include "src/models/model.h"
#include "src/train/augment.h"
#include "src/train/trainer.h"
#include "tests/src/dist/launch_support.h"
#include "tests/support/test_support.h"

namespace distill::train {
namespace {

// 50 images (batch 15: global batches of 15, 15, 15, 5, split 7/8 and 2/3 over two ranks, so
// unequal parts are weighted), 3 classes of 1x8x8 images, a small ConvNet with instance norm,
// DSA, SGD with momentum and weight decay.
struct TinyRun {
  at::Tensor images, labels, test_images, test_labels;
  std::unique_ptr<models::Model> model;
  TrainOptions options;
  AugmentOptions augment;

  // norm "batchnorm" with sync: synchronised batch norm (train.sync_batchnorm).
  explicit TinyRun(int64_t epochs, const std::string& norm = "instancenorm", bool sync = false) {
    at::Generator g = make_generator(7);
    images = at::randn({50, 1, 8, 8}, g, at::kFloat);
    labels = at::randint(0, 3, {50}, g, at::kLong);
    test_images = at::randn({21, 1, 8, 8}, g, at::kFloat);
    test_labels = at::randint(0, 3, {21}, g, at::kLong);
    models::ModelOptions m;
    m.arch = "convnet";
    m.width = 8;
    m.depth = 1;
    m.norm = norm;
    model = models::make_model(m, 1, 8, 3);
    options.epochs = epochs;
    options.batch_size = 15;
    options.optimizer.name = "sgd";
    options.optimizer.lr = 0.05;
    options.optimizer.momentum = 0.9;
    options.optimizer.weight_decay = 5e-4;
    options.schedule.name = "constant";
    options.eval_every = 1;
    options.sync_batchnorm = sync;
    augment.name = "dsa";
  }

  // Trains from scratch (or from `resume`) with `group`; returns the final state and metrics.
  std::pair<TrainState, std::map<std::string, double>> run(
      std::shared_ptr<const dist::ProcessGroup> group, const std::string& checkpoint = "",
      const std::string& resume = "") {
    Trainer trainer(*model, options, 11);
    trainer.set_augment(make_augment(augment, 8));
    trainer.set_test_set(test_images, test_labels);
    trainer.set_progress("dp", false);
    trainer.set_process_group(std::move(group));
    if (!checkpoint.empty()) trainer.set_checkpoint(checkpoint);
    TrainState state = resume.empty() ? trainer.init_state() : trainer.load_checkpoint(resume);
    auto metrics = trainer.fit(state, images, labels);
    return {state, metrics};
  }
};

// Child of the tests below: trains data-parallel and saves its final parameters and metrics.
TEST(DistWorker, DataParallelTraining) {
  const char* out = std::getenv("DISTILL_TEST_OUT");
  if (std::getenv("DISTILL_DIST_WORKER") == nullptr || out == nullptr) {
    GTEST_SKIP() << "runs as a child process of DataParallel.*";
  }
  config::DistOptions options;
  options.timeout_s = 60;
  auto group = dist::ProcessGroup::from_environment(options);
  ASSERT_EQ(group->world_size(), 2);
  const char* resume = std::getenv("DISTILL_TEST_RESUME");
  const char* norm = std::getenv("DISTILL_TEST_NORM");
  const char* epochs = std::getenv("DISTILL_TEST_EPOCHS");
  TinyRun setup(epochs ? std::atoi(epochs) : 2, norm ? norm : "instancenorm",
                std::getenv("DISTILL_TEST_SYNC_BN") != nullptr);
  if (const char* batch = std::getenv("DISTILL_TEST_BATCH"))
    setup.options.batch_size = std::atoi(batch);
  auto [state, metrics] = setup.run(group, "", resume ? resume : "");
  io::TensorDict dict = io::make_dict();
  dict.insert("params", state.params);
  dict.insert("buffers", state.buffers);
  dict.insert("test_accuracy", metrics.at("test_accuracy"));
  dict.insert("train_loss", metrics.at("train_loss"));
  dict.insert("train_accuracy", metrics.at("train_accuracy"));
  io::save_dict(std::string(out) + "_" + std::to_string(group->rank()) + ".pt", dict);
}

void run_two_ranks(const testing::TempDir& dir, const std::vector<std::string>& extra) {
  const int port = testing::free_port();
  std::vector<testing::Rank> ranks;
  for (int r = 0; r < 2; ++r) {
    std::vector<std::string> env = {"DISTILL_DIST_WORKER=1", "DISTILL_TEST_OUT=" + dir.file("out")};
    env.insert(env.end(), extra.begin(), extra.end());
    ranks.push_back(testing::start_rank(
        {testing::self_binary(), "--gtest_filter=DistWorker.DataParallelTraining"}, r, 2, port,
        dir.file("rank" + std::to_string(r) + ".log"), env));
  }
  testing::wait_ranks(ranks, 240);
  for (const auto& r : ranks) {
    ASSERT_EQ(r.exit_code, 0) << testing::read_text(r.log);
  }
}

void expect_matches(const testing::TempDir& dir, const TrainState& state,
                    const std::map<std::string, double>& metrics) {
  io::TensorDict rank0 = io::load_dict(dir.file("out_0.pt"));
  io::TensorDict rank1 = io::load_dict(dir.file("out_1.pt"));
  at::Tensor p0 = io::get_tensor(rank0, "params", "out_0.pt");
  at::Tensor p1 = io::get_tensor(rank1, "params", "out_1.pt");
  // The ranks apply identical updates: bit-identical replicas.
  EXPECT_TRUE(at::equal(p0, p1));
  // One process on the same global batches: equal up to float summation order.
  EXPECT_TRUE(at::allclose(p0, state.params, 1e-4, 1e-5))
      << "max |diff| " << (p0 - state.params).abs().max().item<double>();
  EXPECT_GT((state.params - TinyRun(0).run(nullptr).first.params).abs().max().item<double>(), 1e-3)
      << "training moved the parameters";
  EXPECT_NEAR(rank0.at("test_accuracy").toDouble(), metrics.at("test_accuracy"), 1e-9);
  EXPECT_NEAR(rank0.at("train_accuracy").toDouble(), metrics.at("train_accuracy"), 1e-9);
  EXPECT_NEAR(rank0.at("train_loss").toDouble(), metrics.at("train_loss"), 1e-4);
}

TEST(DataParallel, TwoProcessesEqualOneProcessOnTheSameGlobalBatches) {
  testing::TempDir dir;
  run_two_ranks(dir, {});
  TinyRun single(2);
  auto [state, metrics] = single.run(nullptr);
  expect_matches(dir, state, metrics);
}

TEST(DataParallel, OneProcessCheckpointResumesOnTwo) {
  testing::TempDir dir;
  // One epoch on one process (constant lr, so stopping after epoch 1 of 1 = epoch 1 of 2) ...
  TinyRun first(1);
  first.run(nullptr, dir.file("checkpoint.pt"));
  // ... then the second epoch on two processes from that checkpoint = two epochs on one.
  run_two_ranks(dir, {"DISTILL_TEST_RESUME=" + dir.file("checkpoint.pt")});
  TinyRun straight(2);
  auto [state, metrics] = straight.run(nullptr);
  expect_matches(dir, state, metrics);
}

// Batch norm: with synchronised statistics two processes train what one process trains on the
// global batches (running statistics too); without, each rank normalises its own part (7 or 8
// images), which is a different computation: the control that the comparison can fail.
TEST(DataParallel, SynchronisedBatchNormEqualsOneProcess) {
  TinyRun single(2, "batchnorm");
  auto [state, metrics] = single.run(nullptr);
  testing::TempDir synced;
  run_two_ranks(synced, {"DISTILL_TEST_NORM=batchnorm", "DISTILL_TEST_SYNC_BN=1"});
  io::TensorDict rank0 = io::load_dict(synced.file("out_0.pt"));
  at::Tensor p0 = io::get_tensor(rank0, "params", "out_0.pt");
  at::Tensor b0 = io::get_tensor(rank0, "buffers", "out_0.pt");
  EXPECT_TRUE(at::allclose(p0, state.params, 1e-4, 1e-5))
      << "max |diff| " << (p0 - state.params).abs().max().item<double>();
  EXPECT_TRUE(at::allclose(b0, state.buffers, 1e-4, 1e-5))
      << "max |diff| " << (b0 - state.buffers).abs().max().item<double>();
  EXPECT_NEAR(rank0.at("train_loss").toDouble(), metrics.at("train_loss"), 1e-4);
  // Batches of 7: the last global batch has 1 image, so rank 0's part is empty and it still joins
  // every layer's collectives (forward and backward) with a zero-size batch. One epoch: batch
  // norm over a single image is ill-conditioned (that step moves parameters by ~0.2-0.6 here), so
  // in a second epoch the float-vs-double difference of the variance (~1e-7) grows to ~5e-4.
  TinyRun single7(1, "batchnorm");
  single7.options.batch_size = 7;
  auto state7 = single7.run(nullptr).first;
  testing::TempDir empty_part;
  run_two_ranks(empty_part, {"DISTILL_TEST_NORM=batchnorm", "DISTILL_TEST_SYNC_BN=1",
                             "DISTILL_TEST_BATCH=7", "DISTILL_TEST_EPOCHS=1"});
  at::Tensor p7 = io::get_tensor(io::load_dict(empty_part.file("out_0.pt")), "params", "out_0.pt");
  EXPECT_TRUE(at::allclose(p7, state7.params, 1e-4, 1e-5))
      << "max |diff| " << (p7 - state7.params).abs().max().item<double>();
  testing::TempDir local;
  run_two_ranks(local, {"DISTILL_TEST_NORM=batchnorm"});
  at::Tensor unsynced = io::get_tensor(io::load_dict(local.file("out_0.pt")), "params", "out_0.pt");
  EXPECT_GT((unsynced - state.params).abs().max().item<double>(), 1e-3);
}

TEST(DataParallel, WorldOfOneIsThePlainTrainer) {
  TinyRun a(2), b(2);
  auto plain = a.run(nullptr).first;
  auto with_group = b.run(std::make_shared<dist::ProcessGroup>()).first;
  EXPECT_TRUE(at::equal(plain.params, with_group.params));
}

}  // namespace
}  // namespace distill::train
