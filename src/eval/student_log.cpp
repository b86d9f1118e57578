#include "src/eval/student_log.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "src/core/error.h"
#include "src/io/atomic_file.h"

namespace distill::eval {
namespace {

// JSON has no NaN: a non-finite number is written as null and read back as NaN.
nlohmann::json number_json(double value) {
  return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(nullptr);
}

double number_from(const nlohmann::json& value) {
  return value.is_null() ? std::nan("") : value.get<double>();
}

std::string student_line(const StudentResult& s) {
  return nlohmann::json{{"set", s.set},
                        {"model", s.model},
                        {"run", s.run},
                        {"seed", s.seed},
                        {"last", number_json(s.last)},
                        {"best", number_json(s.best)},
                        {"seconds", number_json(s.seconds)}}
             .dump() +
         "\n";
}

std::string trimmed(const std::string& line) {
  const size_t first = line.find_first_not_of(' ');
  return first == std::string::npos ? "" : line.substr(first);
}

}  // namespace

StudentLog::StudentLog(std::string path, std::string settings, std::vector<std::string> extensible)
    : path_(std::move(path)), settings_(std::move(settings)), extensible_(std::move(extensible)) {}

std::vector<StudentResult> StudentLog::read() const {
  if (!std::filesystem::exists(path_)) {
    throw Error("--resume: " + path_ +
                " not found: this eval recorded no student to resume (run it without --resume)");
  }
  const std::string text = io::read_file(path_);
  std::vector<StudentResult> students;
  size_t begin = 0;
  for (int line = 1;; ++line) {
    const size_t end = text.find('\n', begin);
    if (end == std::string::npos) break;  // the rest, if any, is a line cut short
    const std::string where = path_ + ":" + std::to_string(line);
    nlohmann::json j = nlohmann::json::parse(text.substr(begin, end - begin), nullptr,
                                             /*allow_exceptions=*/false);
    begin = end + 1;
    if (j.is_discarded()) throw Error(where + ": not a JSON line");
    try {
      if (line == 1) {
        check_settings(j.at("settings").get<std::string>(), where);
        continue;
      }
      students.push_back({j.at("set").get<std::string>(), j.at("model").get<std::string>(),
                          j.at("run").get<int64_t>(), j.at("seed").get<uint64_t>(),
                          number_from(j.at("last")), number_from(j.at("best")),
                          number_from(j.value("seconds", nlohmann::json()))});
    } catch (const nlohmann::json::exception& e) {
      throw Error(where + ": expected " +
                  (line == 1
                       ? std::string("the header {\"settings\": \"...\"}")
                       : std::string("a student {set, model, run, seed, last, best, seconds}")) +
                  " (" + e.what() + ")");
    }
  }
  if (begin == 0) throw Error(path_ + ": no complete header line, so nothing to resume");
  return students;
}

void StudentLog::start(const std::vector<StudentResult>& students) {
  std::string text = nlohmann::json{{"settings", settings_}}.dump() + "\n";
  for (const StudentResult& s : students) text += student_line(s);
  io::write_file_atomic(path_, text);
  out_.open(path_, std::ios::binary | std::ios::app);
  if (!out_) {
    throw RuntimeFailure("cannot append to " + path_ + ": " + std::strerror(errno));
  }
}

void StudentLog::append(const StudentResult& student) {
  out_ << student_line(student) << std::flush;
  if (!out_) throw RuntimeFailure("cannot append to " + path_ + ": " + std::strerror(errno));
}

// Names the first setting that differs: students trained under other settings must not be mixed
// into this run's scores.
void StudentLog::check_settings(const std::string& recorded, const std::string& where) const {
  if (recorded == settings_) return;
  struct Line {
    std::string section;  // "[eval.train]"
    std::string text;
  };
  // The lines that must agree: trimmed, the extensible keys left out.
  auto compared_lines = [this](const std::string& text) {
    std::vector<Line> lines;
    std::istringstream in(text);
    std::string section;
    for (std::string line; std::getline(in, line);) {
      line = trimmed(line);
      if (!line.empty() && line.front() == '[') {
        section = line;
      } else if (section.size() > 2) {
        const std::string key =
            section.substr(1, section.size() - 2) + "." + line.substr(0, line.find(" ="));
        if (std::find(extensible_.begin(), extensible_.end(), key) != extensible_.end()) continue;
      }
      lines.push_back({section, line});
    }
    return lines;
  };
  const std::vector<Line> was = compared_lines(recorded), now = compared_lines(settings_);
  size_t i = 0;
  while (i < was.size() && i < now.size() && was[i].text == now[i].text) ++i;
  if (i == was.size() && i == now.size()) return;
  const std::string& section = i < now.size() ? now[i].section : was[i].section;
  throw Error(where +
              ": the students were trained with other settings, so they cannot be resumed "
              "(resume with the same settings, or start over: another --out, or delete " +
              path_ + "); first difference" + (section.empty() ? "" : " in " + section) +
              ": recorded '" + (i < was.size() ? was[i].text : "(end)") + "', now '" +
              (i < now.size() ? now[i].text : "(end)") + "'");
}

}  // namespace distill::eval
