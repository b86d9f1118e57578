#include "src/io/checkpoint.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "src/core/error.h"
#include "tests/support/test_support.h"

namespace distill::io {
namespace {

using testing::error_of;
using testing::TempDir;

// A stand-in for train::Optimizer: an object that saves itself under a prefix.
struct Counter {
  int64_t count = 0;
  void save_state(TensorDict& dict, const std::string& prefix) const {
    dict.insert_or_assign(prefix + "count", count);
  }
  void load_state(const TensorDict& dict, const std::string& prefix) {
    count = dict.at(prefix + "count").toInt();
  }
};

// A run state with one field of every kind the mechanism offers.
struct ToyState {
  std::string arch = "convnet";
  at::Tensor images, ema;
  int64_t iteration = 0;
  double lr = 0;
  std::map<std::string, double> metrics;
  TensorDict extra = make_dict();
  Counter counter;
};

void checkpoint_fields(Checkpoint& c, ToyState& s) {
  c.expect("arch", s.arch);
  c.tensor("images", s.images);
  c.tensor("ema", s.ema);
  c.integer("iteration", s.iteration);
  c.real("lr", s.lr);
  c.reals("metric.", s.metrics);
  c.entries("extra.", s.extra);
  c.part("counter.", s.counter);
}

ToyState fresh() {
  ToyState s;
  s.images = at::zeros({2, 3});
  return s;
}

TEST(Checkpoint, LoadsBackWhatItSaved) {
  TempDir dir;
  ToyState saved = fresh();
  saved.images = at::arange(6, at::kFloat).view({2, 3});
  saved.ema = at::full({4}, 0.5);
  saved.iteration = 17;
  saved.lr = 0.125;
  saved.metrics = {{"accuracy", 0.75}, {"loss", 1.5}};
  saved.extra.insert("momentum", at::ones({2}));
  saved.counter.count = 9;
  save_checkpoint(dir.file("ck.pt"), saved);

  ToyState loaded = fresh();
  load_checkpoint(dir.file("ck.pt"), loaded);
  EXPECT_TRUE(at::equal(loaded.images, saved.images));
  ASSERT_TRUE(loaded.ema.defined());  // not expected by the fresh state, taken as saved
  EXPECT_TRUE(at::equal(loaded.ema, saved.ema));
  EXPECT_EQ(loaded.iteration, 17);
  EXPECT_EQ(loaded.lr, 0.125);
  EXPECT_EQ(loaded.metrics, saved.metrics);
  ASSERT_TRUE(loaded.extra.contains("momentum"));
  EXPECT_TRUE(at::equal(loaded.extra.at("momentum").toTensor(), at::ones({2})));
  EXPECT_EQ(loaded.counter.count, 9);
  // Loaded tensors are the state's own: changing them leaves the next load unchanged.
  loaded.images.add_(1);
  ToyState again = fresh();
  load_checkpoint(dir.file("ck.pt"), again);
  EXPECT_TRUE(at::equal(again.images, saved.images));
}

TEST(Checkpoint, TakesTheDtypeOfTheFreshState) {
  TempDir dir;
  ToyState saved = fresh();
  saved.images = at::arange(6, at::kDouble).view({2, 3}) / 4;
  save_checkpoint(dir.file("ck.pt"), saved);
  ToyState loaded = fresh();  // float images
  load_checkpoint(dir.file("ck.pt"), loaded);
  EXPECT_EQ(loaded.images.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(loaded.images, saved.images.to(at::kFloat)));
}

TEST(Checkpoint, SavesOnlyTheViewNotItsStorage) {
  TempDir dir;
  at::Tensor all = at::arange(1000, at::kFloat);
  ToyState saved = fresh();
  saved.images = all.narrow(0, 10, 6).view({2, 3});
  save_checkpoint(dir.file("view.pt"), saved);
  saved.images = all.narrow(0, 10, 6).clone().view({2, 3});
  save_checkpoint(dir.file("copy.pt"), saved);
  EXPECT_EQ(std::filesystem::file_size(dir.file("view.pt")),
            std::filesystem::file_size(dir.file("copy.pt")));
}

TEST(Checkpoint, RefusesAnotherShapeNamingBoth) {
  TempDir dir;
  ToyState saved = fresh();
  save_checkpoint(dir.file("ck.pt"), saved);
  ToyState other = fresh();
  other.images = at::zeros({4, 3});
  EXPECT_EQ(error_of([&] { load_checkpoint(dir.file("ck.pt"), other); }),
            "checkpoint '" + dir.file("ck.pt") +
                "': 'images' has shape [2, 3], the settings make [4, 3]; resume with the "
                "settings the run was started with");
}

TEST(Checkpoint, RefusesAnotherFixedValueNamingBoth) {
  TempDir dir;
  ToyState saved = fresh();
  save_checkpoint(dir.file("ck.pt"), saved);
  ToyState other = fresh();
  other.arch = "mlp";
  EXPECT_EQ(error_of([&] { load_checkpoint(dir.file("ck.pt"), other); }),
            "checkpoint '" + dir.file("ck.pt") +
                "' holds arch 'convnet', the settings ask for 'mlp'; resume with the settings "
                "the run was started with");
}

TEST(Checkpoint, NamesAMissingOrMistypedKey) {
  TempDir dir;
  TensorDict dict = make_dict();
  dict.insert("arch", std::string("convnet"));
  dict.insert("images", at::zeros({2, 3}));
  dict.insert("iteration", std::string("seven"));
  save_dict(dir.file("bad.pt"), dict);
  ToyState state = fresh();
  EXPECT_EQ(error_of([&] { load_checkpoint(dir.file("bad.pt"), state); }),
            "checkpoint '" + dir.file("bad.pt") + "': 'iteration' should hold an integer, found String");
  (void)dict.erase("iteration");
  save_dict(dir.file("bad.pt"), dict);
  EXPECT_EQ(error_of([&] { load_checkpoint(dir.file("bad.pt"), state); }),
            "checkpoint '" + dir.file("bad.pt") +
                "': missing an integer 'iteration' (a checkpoint of other settings or another "
                "version?)");
  // An expected tensor (defined in the fresh state) must be there.
  ToyState with_ema = fresh();
  with_ema.ema = at::zeros({4});
  dict.insert("iteration", int64_t{1});
  dict.insert("lr", 0.5);
  save_dict(dir.file("bad.pt"), dict);
  EXPECT_EQ(error_of([&] { load_checkpoint(dir.file("bad.pt"), with_ema); }),
            "checkpoint '" + dir.file("bad.pt") +
                "': missing a tensor 'ema' (a checkpoint of other settings or another version?)");
}

// Earlier checkpoints kept some numbers as 0-dim tensors; they still load.
TEST(Checkpoint, ReadsNumbersKeptAsZeroDimTensors) {
  TempDir dir;
  TensorDict dict = make_dict();
  dict.insert("arch", std::string("convnet"));
  dict.insert("images", at::zeros({2, 3}));
  dict.insert("iteration", at::scalar_tensor(12, at::kLong));
  dict.insert("lr", at::scalar_tensor(0.25, at::kDouble));
  dict.insert("counter.count", int64_t{3});
  save_dict(dir.file("old.pt"), dict);
  ToyState state = fresh();
  load_checkpoint(dir.file("old.pt"), state);
  EXPECT_EQ(state.iteration, 12);
  EXPECT_EQ(state.lr, 0.25);
  EXPECT_EQ(state.counter.count, 3);
  dict.insert_or_assign("iteration", at::scalar_tensor(1.5, at::kDouble));  // not an integer
  save_dict(dir.file("old.pt"), dict);
  EXPECT_EQ(error_of([&] { load_checkpoint(dir.file("old.pt"), state); }),
            "checkpoint '" + dir.file("old.pt") + "': 'iteration' should hold an integer, found Tensor");
}

// torch.load reads what a checkpoint holds, under the names checkpoint_fields gives.
TEST(Checkpoint, PythonReadsIt) {
  DISTILL_REQUIRE_PYTHON();
  TempDir dir;
  ToyState saved = fresh();
  saved.images = at::arange(6, at::kFloat).view({2, 3});
  saved.iteration = 5;
  saved.lr = 0.5;
  saved.metrics = {{"accuracy", 0.25}};
  saved.counter.count = 2;
  save_checkpoint(dir.file("ck.pt"), saved);
  testing::CommandResult r = testing::run_command(
      testing::reference_python() + " -c \"import torch; d = torch.load('" + dir.file("ck.pt") +
      "'); print(sorted(d), d['iteration'], d['lr'], d['images'].sum().item(), "
      "d['metric.accuracy'], d['counter.count'])\"");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output,
            "['arch', 'counter.count', 'images', 'iteration', 'lr', 'metric.accuracy'] 5 0.5 15.0 "
            "0.25 2\n");
}

}  // namespace
}  // namespace distill::io
