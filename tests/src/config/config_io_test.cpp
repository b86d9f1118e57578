#include "src/config/config_io.h"

#include <gtest/gtest.h>

#include "src/core/error.h"
#include "tests/support/test_support.h"

namespace distill::config {
namespace {

struct Inner {
  int64_t epochs = 300;
  double lr = 0.01;
  std::string optimizer = "sgd";
  std::vector<std::string> models = {"convnet"};
  std::vector<int64_t> milestones;
  bool dsa = true;
  void visit(Visitor& v) {
    v.field("epochs", epochs, "training epochs");
    v.field("lr", lr, "learning rate");
    v.choice("optimizer", optimizer, "update rule", {"sgd", "adam", "adamw"});
    v.field("models", models, "student models");
    v.field("milestones", milestones, "decay epochs");
    v.field("dsa", dsa, "augment");
  }
};

struct Outer {
  RunOptions run;
  Inner train;
  void visit(Visitor& v) {
    v.section("run", run);
    v.section("train", train);
  }
};

using testing::error_of;

TEST(ConfigIo, ReadsValuesAndKeepsDefaults) {
  auto source = ConfigSource::from_string("[train]\nepochs = 5\nlr = 1\nmodels = [\"mlp\", \"lenet\"]\n", "a.toml");
  Outer o;
  read(source, o);
  EXPECT_EQ(o.train.epochs, 5);
  EXPECT_DOUBLE_EQ(o.train.lr, 1.0);  // an integer is accepted for a number
  EXPECT_EQ(o.train.models, (std::vector<std::string>{"mlp", "lenet"}));
  EXPECT_EQ(o.train.optimizer, "sgd");
  EXPECT_TRUE(o.train.dsa);
}

TEST(ConfigIo, SetOverridesFileAndParsesBareStringsAndLists) {
  auto source = ConfigSource::from_string("[train]\nepochs = 5\n", "a.toml");
  source.set("train.epochs=7");
  source.set("train.optimizer=adam");
  source.set("train.models=convnet,resnet18");
  source.set("train.milestones=[10, 20]");
  source.set("run.seed=3");
  Outer o;
  read(source, o);
  EXPECT_EQ(o.train.epochs, 7);
  EXPECT_EQ(o.train.optimizer, "adam");
  EXPECT_EQ(o.train.models, (std::vector<std::string>{"convnet", "resnet18"}));
  EXPECT_EQ(o.train.milestones, (std::vector<int64_t>{10, 20}));
  EXPECT_EQ(o.run.seed, 3);
}

TEST(ConfigIo, UnknownKeySuggestsTheClosestName) {
  auto source = ConfigSource::from_string("[train]\nepohcs = 5\n", "run.toml");
  Outer o;
  std::string message = error_of([&] { read(source, o); });
  EXPECT_NE(message.find("run.toml:2"), std::string::npos) << message;
  EXPECT_NE(message.find("unknown key 'train.epohcs'"), std::string::npos) << message;
  EXPECT_NE(message.find("did you mean 'train.epochs'"), std::string::npos) << message;
}

TEST(ConfigIo, UnknownSectionIsAnError) {
  auto source = ConfigSource::from_string("[trian]\nepochs = 5\n", "run.toml");
  Outer o;
  std::string message = error_of([&] { read(source, o); });
  EXPECT_NE(message.find("unknown key 'trian'"), std::string::npos) << message;
  EXPECT_NE(message.find("did you mean 'train'"), std::string::npos) << message;
}

// One preset file may hold a whole pipeline: other commands' sections are theirs to check, but
// `--set` into them from this command, and unknown sections, stay errors.
TEST(ConfigIo, OtherCommandsSectionsInAFileAreLeftToThem) {
  auto source = ConfigSource::from_string(
      "[train]\nepochs = 5\n[mtt]\nipc = 10\n[mtt.matching]\nsyn_steps = 3\n[eval]\nruns = 2\n",
      "pipeline.toml");
  Outer o;
  read(source, o);
  EXPECT_EQ(o.train.epochs, 5);
  source.set("mtt.ipc=1");
  std::string message = error_of([&] { read(source, o); });
  EXPECT_NE(message.find("unknown key 'mtt'"), std::string::npos) << message;
  auto typo = ConfigSource::from_string("[mtx]\nipc = 10\n", "pipeline.toml");
  EXPECT_NE(error_of([&] { read(typo, o); }).find("unknown key 'mtx'"), std::string::npos);
}

TEST(ConfigIo, WrongTypeNamesKeyExpectedTypeAndLine) {
  auto source = ConfigSource::from_string("\n[train]\nlr = 0.1\nepochs = \"many\"\n", "run.toml");
  Outer o;
  std::string message = error_of([&] { read(source, o); });
  EXPECT_NE(message.find("run.toml:4"), std::string::npos) << message;
  EXPECT_NE(message.find("'train.epochs' expects an integer"), std::string::npos) << message;
  EXPECT_NE(message.find("string \"many\""), std::string::npos) << message;
}

TEST(ConfigIo, WrongTypeFromSetNamesTheArgument) {
  ConfigSource source;
  source.set("train.dsa=maybe");
  Outer o;
  std::string message = error_of([&] { read(source, o); });
  EXPECT_NE(message.find("--set train.dsa=maybe"), std::string::npos) << message;
  EXPECT_NE(message.find("expects true or false"), std::string::npos) << message;
}

TEST(ConfigIo, ChoiceOutsideTheListIsAnError) {
  ConfigSource source;
  source.set("train.optimizer=adamm");
  Outer o;
  std::string message = error_of([&] { read(source, o); });
  EXPECT_NE(message.find("expects one of {sgd, adam, adamw}"), std::string::npos) << message;
  EXPECT_NE(message.find("did you mean 'adam'"), std::string::npos) << message;
}

TEST(ConfigIo, SyntaxErrorNamesFileAndLine) {
  std::string message = error_of([] { ConfigSource::from_string("[train]\nepochs = = 3\n", "bad.toml"); });
  EXPECT_NE(message.find("bad.toml:2"), std::string::npos) << message;
}

TEST(ConfigIo, MissingFileIsAnError) {
  std::string message = error_of([] { ConfigSource::from_file("/nonexistent/x.toml"); });
  EXPECT_NE(message.find("/nonexistent/x.toml"), std::string::npos) << message;
}

TEST(ConfigIo, DumpRoundTripsThroughTheReader) {
  Outer o;
  o.train.epochs = 42;
  o.train.lr = 0.125;
  o.train.models = {"a", "b"};
  o.train.milestones = {1, 2};
  o.run.device = "cpu";
  std::string text = dump(o);
  Outer back;
  read(ConfigSource::from_string(text, "dump"), back);
  EXPECT_EQ(back.train.epochs, 42);
  EXPECT_DOUBLE_EQ(back.train.lr, 0.125);
  EXPECT_EQ(back.train.models, o.train.models);
  EXPECT_EQ(back.train.milestones, o.train.milestones);
  EXPECT_EQ(back.run.device, "cpu");
}

TEST(ConfigIo, HelpListsEverySettingWithDefault) {
  Outer o;
  std::string text = help(o);
  EXPECT_NE(text.find("train.epochs (integer, default 300)"), std::string::npos) << text;
  EXPECT_NE(text.find("train.optimizer (sgd|adam|adamw, default \"sgd\")"), std::string::npos) << text;
  EXPECT_NE(text.find("run.seed"), std::string::npos) << text;
}

// Arrays of tables (KD losses are a list of {name, weight, ...} items).
struct Term {
  std::string name = "ce";
  double weight = 1.0;
  double T = 4.0;
  void visit(Visitor& v) {
    v.choice("name", name, "loss", {"ce", "hinton"});
    v.field("weight", weight, "weight");
    v.field("T", T, "temperature");
  }
};

struct WithItems {
  struct Kd {
    std::vector<Term> losses = {Term{}};
    int64_t epochs = 1;
    void visit(Visitor& v) {
      v.items("losses", losses, "loss terms");
      v.field("epochs", epochs, "epochs");
    }
  } kd;
  void visit(Visitor& v) { v.section("kd", kd); }
};

TEST(ConfigIo, ArrayOfTablesReadsItemsAndKeepsItemDefaults) {
  auto source = ConfigSource::from_string(
      "[kd]\nlosses = [{name = \"hinton\", T = 20, weight = 0.9}, {weight = 0.1}]\n", "a.toml");
  WithItems o;
  read(source, o);
  ASSERT_EQ(o.kd.losses.size(), 2u);
  EXPECT_EQ(o.kd.losses[0].name, "hinton");
  EXPECT_DOUBLE_EQ(o.kd.losses[0].T, 20.0);
  EXPECT_DOUBLE_EQ(o.kd.losses[0].weight, 0.9);
  EXPECT_EQ(o.kd.losses[1].name, "ce");  // unset keys keep the item's defaults
  EXPECT_DOUBLE_EQ(o.kd.losses[1].T, 4.0);
  EXPECT_DOUBLE_EQ(o.kd.losses[1].weight, 0.1);

  auto sections = ConfigSource::from_string(
      "[[kd.losses]]\nname = \"hinton\"\n[[kd.losses]]\nname = \"ce\"\n[[kd.losses]]\n", "b.toml");
  WithItems o2;
  read(sections, o2);
  ASSERT_EQ(o2.kd.losses.size(), 3u);
  EXPECT_EQ(o2.kd.losses[0].name, "hinton");

  ConfigSource set;
  set.set("kd.losses=[{name=\"hinton\", T=2}]");
  WithItems o3;
  o3.kd.losses = {Term{"hinton", 0.9, 20.0}};  // a default list with non-default items
  read(set, o3);
  ASSERT_EQ(o3.kd.losses.size(), 1u);
  EXPECT_DOUBLE_EQ(o3.kd.losses[0].T, 2.0);
  // Keys the user leaves out come from Item{}, not from the default list's entry.
  EXPECT_DOUBLE_EQ(o3.kd.losses[0].weight, 1.0);
}

TEST(ConfigIo, ArrayOfTablesErrorsNameTheItem) {
  WithItems o;
  std::string unknown = error_of([&] {
    read(ConfigSource::from_string("[kd]\nlosses = [{name = \"ce\"}, {Tt = 3}]\n", "a.toml"), o);
  });
  EXPECT_NE(unknown.find("a.toml:2"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("unknown key 'kd.losses[1].Tt'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("did you mean 'kd.losses[1].T'"), std::string::npos) << unknown;

  std::string type = error_of([&] {
    read(ConfigSource::from_string("[kd]\nlosses = [{T = \"hot\"}]\n", "a.toml"), o);
  });
  EXPECT_NE(type.find("'kd.losses[0].T' expects a number, found string \"hot\""),
            std::string::npos) << type;

  std::string choice = error_of([&] {
    read(ConfigSource::from_string("[kd]\nlosses = [{name = \"hintn\"}]\n", "a.toml"), o);
  });
  EXPECT_NE(choice.find("'kd.losses[0].name' expects one of {ce, hinton}"), std::string::npos)
      << choice;

  std::string not_table = error_of([&] {
    read(ConfigSource::from_string("[kd]\nlosses = [\"hinton\"]\n", "a.toml"), o);
  });
  EXPECT_NE(not_table.find("'kd.losses[0]' expects a table"), std::string::npos) << not_table;

  std::string not_array = error_of([&] {
    read(ConfigSource::from_string("[kd]\nlosses = 3\n", "a.toml"), o);
  });
  EXPECT_NE(not_array.find("'kd.losses' expects an array of tables"), std::string::npos)
      << not_array;
}

TEST(ConfigIo, ArrayOfTablesDumpRoundTripsAndHelpListsItemKeys) {
  WithItems o;
  o.kd.losses = {Term{"hinton", 0.9, 20.0}, Term{"ce", 0.1, 4.0}};
  WithItems back;
  back.kd.losses.clear();
  read(ConfigSource::from_string(dump(o), "dump"), back);
  ASSERT_EQ(back.kd.losses.size(), 2u);
  EXPECT_EQ(back.kd.losses[0].name, "hinton");
  EXPECT_DOUBLE_EQ(back.kd.losses[0].T, 20.0);
  EXPECT_DOUBLE_EQ(back.kd.losses[1].weight, 0.1);

  WithItems defaults;
  std::string text = help(defaults);
  EXPECT_NE(text.find("kd.losses (array of tables"), std::string::npos) << text;
  EXPECT_NE(text.find("kd.losses[].T (number, default 4)"), std::string::npos) << text;
  EXPECT_NE(text.find("kd.epochs"), std::string::npos) << text;
}

struct Ranged {
  int64_t epochs = 300;
  double decay = 0.0;
  double lr = 0.1;
  int64_t warmup = 0;
  void visit(Visitor& v) {
    v.field("epochs", epochs, "training epochs", Range::at_least(1));
    v.field("decay", decay, "EMA decay", Range::from_below(0, 1));
    v.field("lr", lr, "learning rate", Range::above(0));
    v.field("warmup", warmup, "warm-up epochs", Range::between(0, 10));
    v.rule(warmup <= epochs, "warmup (" + std::to_string(warmup) + ") must not exceed epochs (" +
                                 std::to_string(epochs) + ")");
  }
};

// Ranges and rules are checked as the settings are read, naming the key, the range, the value and
// where it came from; the edges are inside or outside exactly as declared.
TEST(ConfigIo, RangesAndRulesAreCheckedWhenRead) {
  auto read_set = [](const std::string& assignment) {
    ConfigSource source;
    source.set(assignment);
    Ranged ranged;
    return error_of([&] { read(source, ranged); });
  };
  EXPECT_EQ(read_set("decay=0"), "no error");
  EXPECT_EQ(read_set("decay=0.999"), "no error");
  EXPECT_EQ(read_set("decay=1"), "--set decay=1: key 'decay' must be in [0, 1), found 1");
  EXPECT_EQ(read_set("decay=-0.5"), "--set decay=-0.5: key 'decay' must be in [0, 1), found -0.5");
  EXPECT_EQ(read_set("decay=nan"), "--set decay=nan: key 'decay' must be in [0, 1), found nan");
  EXPECT_EQ(read_set("epochs=1"), "no error");
  EXPECT_EQ(read_set("epochs=0"), "--set epochs=0: key 'epochs' must be >= 1, found 0");
  EXPECT_EQ(read_set("lr=0"), "--set lr=0: key 'lr' must be > 0, found 0");
  EXPECT_EQ(read_set("warmup=10"), "no error");
  EXPECT_EQ(read_set("warmup=11"), "--set warmup=11: key 'warmup' must be in [0, 10], found 11");
  auto file = ConfigSource::from_string("epochs = 3\nwarmup = 5\n", "w.toml");
  Ranged ranged;
  EXPECT_EQ(error_of([&] { read(file, ranged); }),
            "settings: warmup (5) must not exceed epochs (3)");
  auto line = ConfigSource::from_string("\nepochs = -2\n", "e.toml");
  EXPECT_EQ(error_of([&] { read(line, ranged); }),
            "e.toml:2: key 'epochs' must be >= 1, found -2");
  Ranged defaults;
  const std::string text = help(defaults);
  EXPECT_NE(text.find("  decay (number, default 0)\n      EMA decay\n      allowed: in [0, 1)\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("  rule: warmup (0) must not exceed epochs (300)\n"), std::string::npos)
      << text;
}

TEST(ConfigIo, ClosestMatchIgnoresUnrelatedWords) {
  EXPECT_EQ(closest_match("epohcs", {"epochs", "lr"}), "epochs");
  EXPECT_EQ(closest_match("zzzzzzzz", {"epochs", "lr"}), "");
}

}  // namespace
}  // namespace distill::config
