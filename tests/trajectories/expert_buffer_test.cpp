#include "trajectories/expert_buffer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <thread>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "trajectories/experts.h"
#include "tests/support/test_support.h"

namespace distill::trajectories {
namespace {

std::unique_ptr<models::Model> tiny_model() {
  models::ModelOptions o;
  o.width = 4;
  o.depth = 1;
  return models::make_model(o, 1, 8, 3);
}

TEST(ExpertBuffer, RoundTripsAndPythonReadsTheReferenceLayout) {
  testing::TempDir dir;
  auto model = tiny_model();
  at::Generator gen = make_generator(1);
  std::vector<Trajectory> experts(2);
  for (auto& t : experts) {
    for (int e = 0; e < 3; ++e) t.push_back(model->init_params(gen));
  }
  save_trajectories(dir.file("buffer.pt"), experts, *model);
  auto back = load_trajectories(dir.file("buffer.pt"), *model);
  ASSERT_EQ(back.size(), 2u);
  ASSERT_EQ(back[1].size(), 3u);
  EXPECT_TRUE(at::equal(back[1][2], experts[1][2]));

  DISTILL_REQUIRE_PYTHON();
  // Python checks list[expert][epoch][param] with the module's shapes, flattens like the reference
  // (cat of reshape(-1)) and writes its own buffer of 2 experts x 2 epochs, values = flat * 2.
  testing::run_python_script("expert_buffer_interop.py", {dir.file("buffer.pt"), dir.file("py.pt")});
  auto python = load_trajectories(dir.file("py.pt"), *model);
  ASSERT_EQ(python.size(), 2u);
  ASSERT_EQ(python[0].size(), 2u);
  EXPECT_TRUE(at::allclose(python[1][1], experts[1][2] * 2));  // Python kept epochs 1..2
}

// Every saved epoch equal (the reference buffer.py on a CPU stores aliases of the live weights):
// refused at load, naming the expert, not matched into 0/0 at every iteration.
TEST(ExpertBuffer, AnExpertWhoseEpochsAreAllIdenticalIsRefused) {
  testing::TempDir dir;
  auto model = tiny_model();
  at::Generator gen = make_generator(2);
  std::vector<Trajectory> experts(2);
  for (int e = 0; e < 3; ++e) experts[0].push_back(model->init_params(gen));
  const at::Tensor final_weights = model->init_params(gen);
  for (int e = 0; e < 4; ++e) experts[1].push_back(final_weights.clone());
  save_trajectories(dir.file("aliased.pt"), experts, *model);
  EXPECT_EQ(testing::error_of([&] { load_trajectories(dir.file("aliased.pt"), *model); })
                .substr(0, std::string("'" + dir.file("aliased.pt") +
                                       "': the 4 saved epochs of expert 1 are all identical")
                               .size()),
            "'" + dir.file("aliased.pt") + "': the 4 saved epochs of expert 1 are all identical");
  // One epoch that moved is a trajectory.
  experts[1][2] = experts[1][2] + 1e-3;
  save_trajectories(dir.file("moved.pt"), experts, *model);
  EXPECT_EQ(load_trajectories(dir.file("moved.pt"), *model).size(), 2u);
}

TEST(ExpertBuffer, WrongArchitectureIsAClearError) {
  testing::TempDir dir;
  auto model = tiny_model();
  at::Generator gen = make_generator(1);
  save_trajectories(dir.file("b.pt"), {{model->init_params(gen), model->init_params(gen)}}, *model);
  models::ModelOptions other;
  other.width = 5;
  other.depth = 1;
  auto wider = models::make_model(other, 1, 8, 3);
  try {
    load_trajectories(dir.file("b.pt"), *wider);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has shape [4, 1, 3, 3], expected [5, 1, 3, 3]"),
              std::string::npos) << e.what();
  }
}

TEST(Experts, RangeParsing) {
  using Range = std::pair<int64_t, int64_t>;
  EXPECT_EQ(parse_range("", 10), Range(0, 10));
  EXPECT_EQ(parse_range("2:5", 10), Range(2, 5));
  EXPECT_EQ(parse_range(":3", 10), Range(0, 3));
  EXPECT_EQ(parse_range("7:", 10), Range(7, 10));
  EXPECT_THROW(parse_range("5:2", 10), Error);
  EXPECT_THROW(parse_range("0:11", 10), Error);
  EXPECT_THROW(parse_range("abc", 10), Error);
}

data::Dataset toy(int64_t n, uint64_t seed) {
  at::Generator gen = make_generator(seed);
  data::Dataset d;
  d.labels = at::arange(n, at::kLong).remainder(3);
  d.images = at::randn({n, 1, 8, 8}, gen);
  d.num_classes = 3;
  return d;
}

TEST(Experts, ShardedRunsEqualOneRunAndResumeSkipsFinishedExperts) {
  testing::TempDir dir;
  data::Dataset train = toy(40, 1), test = toy(20, 2);
  ExpertOptions o;
  o.num_experts = 3;
  o.save_interval = 3;
  o.model.width = 4;
  o.model.depth = 1;
  o.train.epochs = 2;
  o.train.batch_size = 16;
  train_experts(o, train, test, 5, dir.file("all"), false);
  o.range = "0:2";
  train_experts(o, train, test, 5, dir.file("shards"), false);
  o.range = "2:3";
  train_experts(o, train, test, 5, dir.file("shards"), false);  // completes the group: packs it
  auto model = models::make_model(o.model, 1, 8, 3);
  auto all = load_expert_folder(dir.file("all"), *model);
  auto shards = load_expert_folder(dir.file("shards"), *model);
  ASSERT_EQ(all.size(), 3u);
  ASSERT_EQ(shards.size(), 3u);
  ASSERT_EQ(all[2].size(), 3u);  // initialization + 2 epochs
  for (size_t k = 0; k < 3; ++k) {
    for (size_t e = 0; e < 3; ++e) EXPECT_TRUE(at::equal(all[k][e], shards[k][e])) << k << "," << e;
  }
  EXPECT_FALSE(at::equal(all[0][1], all[1][1]));  // experts differ from each other
}


// Ctrl-C while an expert trains: the next run continues it from its last checkpoint, and the
// trajectory equals an uninterrupted one (snapshots, final weights).
TEST(Experts, InterruptedExpertContinuesFromItsCheckpoint) {
  testing::TempDir dir;
  data::Dataset train = toy(40, 1), test = toy(20, 2);
  ExpertOptions o;
  o.num_experts = 1;
  o.model.width = 4;
  o.model.depth = 1;
  o.train.epochs = 60;
  o.train.batch_size = 16;
  train_experts(o, train, test, 5, dir.file("straight"), false);

  install_interrupt_handler();
  std::atomic<bool> stop{false};
  std::thread interrupter([&] {  // Ctrl-C once the first epochs are on disk
    while (!stop && !std::filesystem::exists(dir.file("cut/expert_00000.partial.pt"))) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (!stop) std::raise(SIGINT);
  });
  bool interrupted = false;
  try {
    train_experts(o, train, test, 5, dir.file("cut"), false);
  } catch (const Interrupted&) {
    interrupted = true;
  }
  stop = true;
  interrupter.join();
  clear_interrupt_request();
  ASSERT_TRUE(interrupted) << "the run finished before the interrupt: make it longer";
  EXPECT_FALSE(std::filesystem::exists(dir.file("cut/expert_00000.pt")));
  EXPECT_TRUE(std::filesystem::exists(dir.file("cut/expert_00000.checkpoint.pt")));
  train_experts(o, train, test, 5, dir.file("cut"), false);
  EXPECT_FALSE(std::filesystem::exists(dir.file("cut/expert_00000.partial.pt")));

  auto model = models::make_model(o.model, 1, 8, 3);
  auto a = load_expert_folder(dir.file("straight"), *model);
  auto b = load_expert_folder(dir.file("cut"), *model);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  ASSERT_EQ(b[0].size(), 61u);
  for (size_t e = 0; e < 61; ++e) EXPECT_TRUE(at::equal(a[0][e], b[0][e])) << "epoch " << e;
}

}  // namespace
}  // namespace distill::trajectories
