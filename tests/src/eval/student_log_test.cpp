// students.jsonl: what start/append write, read() gives back (seeds above 2^63, NaN accuracies),
// a line cut short by a crash is dropped, and bad files are errors naming the line.
#include "src/eval/student_log.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>

#include "src/core/error.h"
#include "src/io/atomic_file.h"
#include "tests/support/test_support.h"

namespace distill::eval {
namespace {

using testing::TempDir;

const std::string kSettings =
    "[run]\nseed = 1\n\n[eval]\nruns = 3\n    [eval.train]\n    epochs = 2\n";

std::string error_of(const StudentLog& log) {
  try {
    log.read();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(StudentLog, ReadsBackWhatWasWritten) {
  TempDir dir;
  const std::string path = dir.file("students.jsonl");
  const uint64_t big_seed = std::numeric_limits<uint64_t>::max() - 5;  // above 2^63
  {
    StudentLog log(path, kSettings);
    log.start({{"set.pt", "convnet", 0, 7, 0.1 + 0.2, 0.5, 12.5, {{3, 1}, {0, 4}},
                {{100, 0.25}, {200, 0.5}}}});
    log.append({"random-real", "resnet18", 2, big_seed, std::nan(""), 1.0 / 3.0});
  }
  std::vector<StudentResult> students = StudentLog(path, kSettings).read();
  ASSERT_EQ(students.size(), 2u);
  EXPECT_EQ(students[0].set, "set.pt");
  EXPECT_EQ(students[0].last, 0.1 + 0.2);  // doubles round-trip exactly
  EXPECT_EQ(students[0].seconds, 12.5);
  EXPECT_EQ(students[1].model, "resnet18");
  EXPECT_EQ(students[1].run, 2);
  EXPECT_EQ(students[1].seed, big_seed);
  EXPECT_TRUE(std::isnan(students[1].last));
  EXPECT_EQ(students[1].best, 1.0 / 3.0);
  EXPECT_TRUE(std::isnan(students[1].seconds));  // not measured
  // The confusion matrix and test curve come back; a student without them has none.
  EXPECT_EQ(students[0].confusion, (std::vector<std::vector<int64_t>>{{3, 1}, {0, 4}}));
  EXPECT_EQ(students[0].curve, (std::vector<std::pair<int64_t, double>>{{100, 0.25}, {200, 0.5}}));
  EXPECT_TRUE(students[1].confusion.empty());
  EXPECT_TRUE(students[1].curve.empty());
}

TEST(StudentLog, ALineCutShortIsDroppedAndRewrittenAway) {
  TempDir dir;
  const std::string path = dir.file("students.jsonl");
  {
    StudentLog log(path, kSettings);
    log.start({});
    log.append({"s", "convnet", 0, 1, 0.5, 0.5});
  }
  const std::string whole = io::read_file(path);
  std::ofstream(path, std::ios::app) << "{\"set\": \"s\", \"mod";
  StudentLog log(path, kSettings);
  std::vector<StudentResult> students = log.read();
  ASSERT_EQ(students.size(), 1u);
  log.start(students);
  EXPECT_EQ(io::read_file(path), whole);
}

TEST(StudentLog, BadFilesAreErrorsNamingTheLine) {
  TempDir dir;
  const std::string path = dir.file("students.jsonl");
  EXPECT_NE(error_of(StudentLog(path, kSettings)).find(path + " not found"), std::string::npos);

  io::write_file_atomic(path, "{\"settings\": \"[run]\\n");  // the header cut short
  EXPECT_NE(error_of(StudentLog(path, kSettings)).find("no complete header line"),
            std::string::npos);

  io::write_file_atomic(path, "{\"sett\": 1}\n");
  EXPECT_NE(error_of(StudentLog(path, kSettings)).find(path + ":1: expected the header"),
            std::string::npos);

  StudentLog log(path, kSettings);
  log.start({{"s", "convnet", 0, 1, 0.5, 0.5}});
  std::ofstream(path, std::ios::app) << "{\"set\": \"s\", \"model\": \"convnet\"}\nnot json\n";
  const std::string missing_key = error_of(StudentLog(path, kSettings));
  EXPECT_NE(missing_key.find(path +
                             ":3: expected a student {set, model, run, seed, last, best, seconds}"),
            std::string::npos)
      << missing_key;
}

TEST(StudentLog, OtherSettingsAreRefusedNamingTheFirstDifference) {
  TempDir dir;
  const std::string path = dir.file("students.jsonl");
  StudentLog(path, kSettings).start({});
  std::string other = kSettings;
  other.replace(other.find("epochs = 2"), 10, "epochs = 3");
  const std::string message = error_of(StudentLog(path, other));
  EXPECT_NE(message.find(path + ":1: the students were trained with other settings"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("in [eval.train]: recorded 'epochs = 2', now 'epochs = 3'"),
            std::string::npos)
      << message;
  EXPECT_NE(error_of(StudentLog(path, kSettings + "extra = 1\n")).find("recorded '(end)'"),
            std::string::npos);
}

// Settings that only add or leave out students may change on resume; the others may not.
TEST(StudentLog, ExtensibleSettingsMayDifferOnResume) {
  TempDir dir;
  const std::string path = dir.file("students.jsonl");
  StudentLog(path, kSettings).start({{"s", "convnet", 0, 1, 0.5, 0.5}});
  std::string more_runs = kSettings;
  more_runs.replace(more_runs.find("runs = 3"), 8, "runs = 5");
  EXPECT_EQ(StudentLog(path, more_runs, {"eval.runs"}).read().size(), 1u);
  const std::string strict = error_of(StudentLog(path, more_runs, {"eval.train.runs"}));
  EXPECT_NE(strict.find("in [eval]: recorded 'runs = 3', now 'runs = 5'"), std::string::npos)
      << strict;
}

// A key the recorded settings lack (a later version added it) is accepted at its default, so a
// new binary resumes an older run; at any other value, or when the run recorded the key with
// another value, it is a difference.
TEST(StudentLog, SettingsAddedLaterAreAcceptedAtTheirDefault) {
  TempDir dir;
  const std::string path = dir.file("students.jsonl");
  StudentLog(path, kSettings).start({{"s", "convnet", 0, 1, 0.5, 0.5}});
  auto with = [](const std::string& train_lines, const std::string& mixup) {
    return "[run]\nseed = 1\n\n[eval]\nmixup = " + mixup + "\nruns = 3\n    [eval.train]\n" +
           train_lines;
  };
  const std::string defaults = with("    epochs = 9\n    warmup = 0\n", "0.0");
  const std::string added = with("    epochs = 2\n    warmup = 0\n", "0.0");
  EXPECT_EQ(StudentLog(path, added, {}, defaults).read().size(), 1u);
  EXPECT_NE(error_of(StudentLog(path, added)).find("recorded 'runs = 3', now 'mixup = 0.0'"),
            std::string::npos);  // without the defaults, an added key is a difference

  const std::string other_value = with("    epochs = 2\n    warmup = 5\n", "0.0");
  const std::string refused = error_of(StudentLog(path, other_value, {}, defaults));
  EXPECT_NE(refused.find(":1: the students were recorded before the setting eval.train.warmup "
                         "existed, so they can only be resumed with it at its default "
                         "('warmup = 0'); now 'warmup = 5'"),
            std::string::npos)
      << refused;

  // A long array spans several lines: its whole value must be the default, in order.
  auto with_names = [](const std::string& first, const std::string& second) {
    return "[run]\nseed = 1\n\n[eval]\nnames = [\n    " + first + ",\n    " + second +
           "\n]\nruns = 3\n    [eval.train]\n    epochs = 2\n";
  };
  const std::string long_default = with_names("'a'", "'b'");
  EXPECT_EQ(StudentLog(path, long_default, {}, long_default).read().size(), 1u);
  EXPECT_NE(error_of(StudentLog(path, with_names("'b'", "'a'"), {}, long_default))
                .find("before the setting eval.names existed"),
            std::string::npos);
  EXPECT_NE(error_of(StudentLog(path, with_names("'a'", "'a'"), {}, long_default))
                .find("before the setting eval.names existed"),
            std::string::npos);

  // epochs is recorded (= 2): a run at the default (9) differs from it, default or not.
  const std::string at_default = with("    epochs = 9\n    warmup = 0\n", "0.0");
  EXPECT_NE(error_of(StudentLog(path, at_default, {}, defaults))
                .find("recorded 'epochs = 2', now 'epochs = 9'"),
            std::string::npos);

  // A key the recorded run had but this run lacks is a difference too.
  const std::string dropped = "[run]\nseed = 1\n\n[eval]\nruns = 3\n    [eval.train]\n";
  EXPECT_NE(
      error_of(StudentLog(path, dropped, {}, defaults)).find("recorded 'epochs = 2', now '(end)'"),
      std::string::npos);
}

}  // namespace
}  // namespace distill::eval
