#pragma once
#include <cstdint>
#include <fstream>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace distill::eval {

// One trained student: enough for a resumed `distill eval` to skip it. `seed` is the student's
// own seed (from the run seed, the set kind, the architecture and the run index).
struct StudentResult {
  std::string set;
  std::string model;
  int64_t run = 0;
  uint64_t seed = 0;
  double last = 0;
  double best = 0;
  double seconds = std::numeric_limits<double>::quiet_NaN();  // its training's wall time
  // Its last test evaluation's confusion matrix (rows true class, columns predicted; empty when
  // not recorded, as in logs of earlier versions) and its test accuracy by epoch (eval_every).
  std::vector<std::vector<int64_t>> confusion;
  std::vector<std::pair<int64_t, double>> curve;
};

// students.jsonl, the record that lets an interrupted eval resume: a header line holding
// `settings` (the text of everything the students depend on, TOML-like: `[section]` lines and
// `key = value` lines), then one line per trained student.
class StudentLog {
 public:
  // `extensible`: settings ("section.key") a resumed run may change because they only add or drop
  // students, such as eval.runs: the students both runs have are the same students.
  // `defaults`: the settings text a run with every setting at its default would record. A key the
  // recorded settings lack (one a later version added) is accepted when this run has it at its
  // default, because a new setting's default keeps the earlier behaviour (README, Configuration);
  // any other value of it is a difference.
  StudentLog(std::string path, std::string settings, std::vector<std::string> extensible = {},
             std::string defaults = {});

  // The students recorded by an earlier run. Error when the file is missing, a line is not what
  // it should be, or the recorded settings differ from `settings` other than in `extensible` and
  // in keys added at their defaults (naming the first differing line). Only complete lines count: a
  // line cut short by a crash is dropped.
  std::vector<StudentResult> read() const;

  // Writes the file anew, atomically: the header and `students` (what read() returned when
  // resuming, else none), so a cut line is gone; later students are appended.
  void start(const std::vector<StudentResult>& students);
  void append(const StudentResult& student);

  const std::string& path() const { return path_; }

 private:
  void check_settings(const std::string& recorded, const std::string& where) const;

  std::string path_;
  std::string settings_;
  std::vector<std::string> extensible_;
  std::string defaults_;
  std::ofstream out_;
};

}  // namespace distill::eval
