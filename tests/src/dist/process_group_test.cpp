#include "src/dist/process_group.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <thread>

#include "src/core/error.h"
#include "tests/src/dist/launch_support.h"
#include "tests/support/test_support.h"

namespace distill::dist {
namespace {

using testing::Rank;

dist::GetEnv fake_env(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

using testing::error_of;

TEST(LaunchEnv, NoVariablesIsOneProcess) {
  LaunchEnv env = read_launch_env(fake_env({}));
  EXPECT_EQ(env.world_size, 1);
  EXPECT_EQ(env.rank, 0);
  env = read_launch_env(fake_env({{"WORLD_SIZE", "1"}}));
  EXPECT_EQ(env.world_size, 1);
}

TEST(LaunchEnv, ReadsTorchrunVariables) {
  LaunchEnv env = read_launch_env(fake_env({{"WORLD_SIZE", "4"},
                                            {"RANK", "3"},
                                            {"LOCAL_RANK", "1"},
                                            {"MASTER_ADDR", "node0"},
                                            {"MASTER_PORT", "1234"},
                                            {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                                            {"TORCHELASTIC_RESTART_COUNT", "2"}}));
  EXPECT_EQ(env.world_size, 4);
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.master_addr, "node0");
  EXPECT_EQ(env.master_port, 1234);
  EXPECT_TRUE(env.agent_store);
  EXPECT_EQ(env.restart_count, 2);
}

TEST(LaunchEnv, BadValuesNameTheVariable) {
  auto bad = [](std::map<std::string, std::string> vars) {
    return error_of([&] { read_launch_env(fake_env(vars)); });
  };
  EXPECT_NE(bad({{"WORLD_SIZE", "two"}}).find("WORLD_SIZE=\"two\": expected an integer"),
            std::string::npos);
  EXPECT_NE(bad({{"WORLD_SIZE", "2"}}).find("RANK is not set"), std::string::npos);
  EXPECT_NE(bad({{"WORLD_SIZE", "2"}, {"RANK", "2"}}).find("RANK=2: expected 0..1"),
            std::string::npos);
  EXPECT_NE(bad({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_PORT", "70000"}})
                .find("MASTER_PORT=70000: expected a TCP port"),
            std::string::npos);
  EXPECT_NE(bad({{"WORLD_SIZE", "0"}}).find("WORLD_SIZE=0: expected >= 1"), std::string::npos);
}

TEST(ProcessGroup, OneProcessCollectivesAreTheIdentity) {
  ProcessGroup group;
  EXPECT_FALSE(group.distributed());
  EXPECT_EQ(group.backend(), "none");
  at::Tensor t = at::arange(4, at::kFloat);
  group.all_reduce(t, Reduce::kMean);
  group.broadcast(t);
  group.barrier();
  EXPECT_TRUE(at::equal(t, at::arange(4, at::kFloat)));
  auto gathered = group.all_gather(std::vector<double>{1.5, 2.5});
  ASSERT_EQ(gathered.size(), 1u);
  EXPECT_EQ(gathered[0], (std::vector<double>{1.5, 2.5}));
}

TEST(ProcessGroup, BadOptionsAreErrorsBeforeAnyNetworking) {
  LaunchEnv env;
  env.world_size = 2;
  config::DistOptions options;
  options.backend = "nccl";
  // A CPU-only LibTorch has no NCCL; a CUDA one has it but needs a GPU (what the build linked:
  // cmake/libtorch.cmake).
  const std::string nccl = error_of([&] { ProcessGroup::create(options, env); });
  EXPECT_NE(nccl.find("run.dist.backend = \"nccl\""), std::string::npos) << nccl;
  if (!at::hasCUDA()) {
    EXPECT_NE(nccl.find(DISTILL_EXPECT_CUDA_COMPILED ? "sees no GPU" : "built without CUDA"),
              std::string::npos)
        << nccl;
  }
  options = {};
  options.timeout_s = 0;
  EXPECT_NE(
      error_of([&] { ProcessGroup::create(options, env); }).find("run.dist.timeout_s must be > 0"),
      std::string::npos);
  options = {};
  options.store = "file";
  EXPECT_NE(error_of([&] { ProcessGroup::create(options, env); }).find("run.dist.store_path"),
            std::string::npos);
}

// ---- workers: run only as children of the tests below (DISTILL_DIST_WORKER set) ----

bool is_worker() { return std::getenv("DISTILL_DIST_WORKER") != nullptr; }

config::DistOptions worker_options() {
  config::DistOptions options;
  if (const char* t = std::getenv("DISTILL_TEST_TIMEOUT")) options.timeout_s = std::atof(t);
  if (const char* path = std::getenv("DISTILL_TEST_FILE_STORE")) {
    options.store = "file";
    options.store_path = path;
  }
  return options;
}

TEST(DistWorker, Collectives) {
  if (!is_worker()) GTEST_SKIP() << "runs as a child process of TwoProcesses.*";
  auto group = ProcessGroup::from_environment(worker_options());
  ASSERT_EQ(group->world_size(), 2);
  const double r = static_cast<double>(group->rank());
  // Hand-computed: ranks hold (r+1) * [1, 2, 3].
  at::Tensor t = at::tensor({1.0f, 2.0f, 3.0f}) * (r + 1);
  group->all_reduce(t, Reduce::kSum);
  EXPECT_TRUE(at::allclose(t, at::tensor({3.0f, 6.0f, 9.0f})));
  at::Tensor m = at::tensor({1.0, 2.0}, at::kDouble) * (r + 1);
  group->all_reduce(m, Reduce::kMean);
  EXPECT_TRUE(at::allclose(m, at::tensor({1.5, 3.0}, at::kDouble)));
  at::Tensor b = at::full({2}, r + 7, at::kFloat);
  group->broadcast(b, 1);
  EXPECT_TRUE(at::equal(b, at::full({2}, 8.0, at::kFloat)));
  auto tensors = group->all_gather(at::full({2, 2}, r, at::kFloat));
  ASSERT_EQ(tensors.size(), 2u);
  EXPECT_TRUE(at::equal(tensors[1], at::full({2, 2}, 1.0, at::kFloat)));
  // Lengths differ by rank: rank 0 sends {0}, rank 1 sends {10, 11}.
  std::vector<double> mine;
  for (int i = 0; i <= group->rank(); ++i) mine.push_back(10 * r + i);
  auto values = group->all_gather(mine);
  ASSERT_EQ(values.size(), 2u);
  EXPECT_EQ(values[0], (std::vector<double>{0}));
  EXPECT_EQ(values[1], (std::vector<double>{10, 11}));
  group->barrier();
}

// All-reduces until something fails; touches DISTILL_TEST_READY_<rank> after the first one.
// DISTILL_TEST_HANG=1 makes rank 1 stop taking part (alive, but never reaching the collective).
TEST(DistWorker, AllReduceLoop) {
  if (!is_worker()) GTEST_SKIP() << "runs as a child process of TwoProcesses.*";
  auto group = ProcessGroup::from_environment(worker_options());
  const std::string ready =
      std::string(std::getenv("DISTILL_TEST_READY")) + "_" + std::to_string(group->rank());
  for (int64_t i = 0;; ++i) {
    at::Tensor t = at::ones({1000});
    group->all_reduce(t);
    if (i == 0) testing::write_bytes(ready, "ready");
    if (std::getenv("DISTILL_TEST_HANG") && group->rank() == 1) {
      std::this_thread::sleep_for(std::chrono::seconds(600));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Sharded work of uneven length: the slow rank works 2x run.dist.timeout_s before each wait
// (rank 1 first, then rank 0), which a plain barrier would not survive; an all-reduce after each
// wait shows both ranks left it together. DISTILL_TEST_DIE=<rank> makes that rank exit instead;
// DISTILL_TEST_DIVERGE=1 makes rank 1 wait for something else.
TEST(DistWorker, WaitForPeers) {
  if (!is_worker()) GTEST_SKIP() << "runs as a child process of TwoProcesses.*";
  auto group = ProcessGroup::from_environment(worker_options());
  const auto work = std::chrono::duration<double>(2 * group->timeout_s());
  if (const char* die = std::getenv("DISTILL_TEST_DIE"); die && std::atoi(die) == group->rank()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    std::_Exit(3);
  }
  const bool diverge = std::getenv("DISTILL_TEST_DIVERGE") && group->rank() == 1;
  for (int64_t slow = 1; slow >= 0; --slow) {
    if (group->rank() == slow && !diverge) std::this_thread::sleep_for(work);
    group->wait_for_peers(diverge ? "other work" : "test work");
    at::Tensor t = at::full({1}, static_cast<double>(group->rank() + 1), at::kDouble);
    group->all_reduce(t);
    EXPECT_EQ(t.item<double>(), 3.0);
  }
}

// ---- the tests that launch them ----

std::vector<Rank> launch_workers(const std::string& test, const testing::TempDir& dir,
                                 const std::vector<std::string>& env) {
  const int port = testing::free_port();
  std::vector<Rank> ranks;
  for (int r = 0; r < 2; ++r) {
    std::vector<std::string> vars = {"DISTILL_DIST_WORKER=1"};
    vars.insert(vars.end(), env.begin(), env.end());
    ranks.push_back(
        testing::start_rank({testing::self_binary(), "--gtest_filter=DistWorker." + test}, r, 2,
                            port, dir.file("rank" + std::to_string(r) + ".log"), vars));
  }
  return ranks;
}

TEST(TwoProcesses, CollectivesOverTcpStore) {
  testing::TempDir dir;
  auto ranks = launch_workers("Collectives", dir, {"DISTILL_TEST_TIMEOUT=60"});
  testing::wait_ranks(ranks, 120);
  for (const auto& r : ranks) {
    EXPECT_EQ(r.exit_code, 0) << testing::read_text(r.log);
  }
}

TEST(TwoProcesses, CollectivesOverFileStore) {
  testing::TempDir dir;
  auto ranks =
      launch_workers("Collectives", dir,
                     {"DISTILL_TEST_TIMEOUT=60", "DISTILL_TEST_FILE_STORE=" + dir.file("store")});
  testing::wait_ranks(ranks, 120);
  for (const auto& r : ranks) {
    EXPECT_EQ(r.exit_code, 0) << testing::read_text(r.log);
  }
}

// Waits for both ranks' ready files (the group is up and one all-reduce went through).
bool wait_ready(const testing::TempDir& dir, double seconds) {
  auto start = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() <
         seconds) {
    if (std::filesystem::exists(dir.file("ready_0")) &&
        std::filesystem::exists(dir.file("ready_1"))) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

TEST(TwoProcesses, KilledRankMakesTheOtherFailWithAClearError) {
  testing::TempDir dir;
  auto ranks = launch_workers(
      "AllReduceLoop", dir, {"DISTILL_TEST_TIMEOUT=20", "DISTILL_TEST_READY=" + dir.file("ready")});
  ASSERT_TRUE(wait_ready(dir, 60))
      << testing::read_text(ranks[0].log) << testing::read_text(ranks[1].log);
  ::kill(ranks[1].pid, SIGKILL);
  // The survivor must stop on its own, well within the 20 s collective timeout plus start-up.
  double waited = testing::wait_ranks(ranks, 45);
  ASSERT_TRUE(ranks[0].finished) << "rank 0 still running after " << waited << " s (a hang)";
  EXPECT_NE(ranks[0].exit_code, 0);
  const std::string log = testing::read_text(ranks[0].log);
  EXPECT_NE(log.find("rank 0 of 2: all_reduce failed"), std::string::npos) << log;
}

TEST(TwoProcesses, HungRankMakesTheOtherFailAfterTheTimeout) {
  testing::TempDir dir;
  auto ranks = launch_workers(
      "AllReduceLoop", dir,
      {"DISTILL_TEST_TIMEOUT=3", "DISTILL_TEST_HANG=1", "DISTILL_TEST_READY=" + dir.file("ready")});
  ASSERT_TRUE(wait_ready(dir, 60)) << testing::read_text(ranks[0].log);
  std::vector<Rank> first = {ranks[0]};
  double waited = testing::wait_ranks(first, 30);
  std::vector<Rank> second = {ranks[1]};
  testing::wait_ranks(second, 0);  // kills the hung rank
  ASSERT_TRUE(first[0].finished) << "rank 0 still running after " << waited << " s (a hang)";
  EXPECT_NE(first[0].exit_code, 0);
  const std::string log = testing::read_text(first[0].log);
  EXPECT_NE(log.find("rank 0 of 2: all_reduce failed"), std::string::npos) << log;
  EXPECT_NE(log.find("run.dist.timeout_s = 3 s"), std::string::npos) << log;
}

TEST(TwoProcesses, WaitForPeersOutlastsTheTimeoutWhilePeersAreAlive) {
  for (bool file_store : {false, true}) {
    testing::TempDir dir;
    std::vector<std::string> env = {"DISTILL_TEST_TIMEOUT=2"};
    if (file_store) env.push_back("DISTILL_TEST_FILE_STORE=" + dir.file("store"));
    auto ranks = launch_workers("WaitForPeers", dir, env);
    testing::wait_ranks(ranks, 60);
    for (const auto& r : ranks) {
      EXPECT_EQ(r.exit_code, 0) << (file_store ? "file store\n" : "tcp store\n")
                                << testing::read_text(r.log);
    }
  }
}

// Runs the WaitForPeers workers with `setting` (timeout 3 s): rank `failing` must stop on its own
// with an error containing `message`.
void expect_wait_failure(const std::string& setting, size_t failing, const std::string& message) {
  testing::TempDir dir;
  auto ranks = launch_workers("WaitForPeers", dir, {"DISTILL_TEST_TIMEOUT=3", setting});
  double waited = testing::wait_ranks(ranks, 45);
  ASSERT_TRUE(ranks[failing].finished)
      << "rank " << failing << " still running after " << waited << " s (a hang)";
  EXPECT_NE(ranks[failing].exit_code, 0);
  const std::string log = testing::read_text(ranks[failing].log);
  EXPECT_NE(log.find(message), std::string::npos) << log;
}

TEST(TwoProcesses, WaitForPeersFailsWhenAPeerDies) {
  expect_wait_failure("DISTILL_TEST_DIE=1", 0,
                      "rank 0 of 2: waiting for the other ranks' test work: rank 1 has shown no "
                      "sign of life for 3 s");
}

TEST(TwoProcesses, WaitForPeersFailsWhenTheStoreHostDies) {
  expect_wait_failure("DISTILL_TEST_DIE=0", 1,
                      "rank 1 of 2: waiting for the other ranks' test work: the store failed");
}

TEST(TwoProcesses, WaitForPeersFailsWhenTheRanksWaitForDifferentThings) {
  expect_wait_failure("DISTILL_TEST_DIVERGE=1", 0,
                      "rank 0 of 2: waiting for the other ranks' test work: rank 1 waits for "
                      "'other work' (wait 0) while this rank is at wait 0: the ranks took "
                      "different paths");
}

}  // namespace
}  // namespace distill::dist
