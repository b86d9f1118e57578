#include "src/eval/student_log.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
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
  nlohmann::json line{{"set", s.set},
                      {"model", s.model},
                      {"run", s.run},
                      {"seed", s.seed},
                      {"last", number_json(s.last)},
                      {"best", number_json(s.best)},
                      {"seconds", number_json(s.seconds)}};
  if (!s.confusion.empty()) line["confusion"] = s.confusion;
  if (!s.curve.empty()) {
    nlohmann::json curve = nlohmann::json::array();
    for (const auto& [epoch, accuracy] : s.curve) curve.push_back({epoch, number_json(accuracy)});
    line["curve"] = curve;
  }
  return line.dump() + "\n";
}

std::string trimmed(const std::string& line) {
  const size_t first = line.find_first_not_of(' ');
  return first == std::string::npos ? "" : line.substr(first);
}

}  // namespace

StudentLog::StudentLog(std::string path, std::string settings, std::vector<std::string> extensible,
                       std::string defaults)
    : path_(std::move(path)),
      settings_(std::move(settings)),
      extensible_(std::move(extensible)),
      defaults_(std::move(defaults)) {}

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
      StudentResult student{j.at("set").get<std::string>(), j.at("model").get<std::string>(),
                            j.at("run").get<int64_t>(), j.at("seed").get<uint64_t>(),
                            number_from(j.at("last")), number_from(j.at("best")),
                            number_from(j.value("seconds", nlohmann::json()))};
      if (j.contains("confusion")) {
        student.confusion = j.at("confusion").get<std::vector<std::vector<int64_t>>>();
      }
      if (j.contains("curve")) {
        for (const nlohmann::json& point : j.at("curve")) {
          student.curve.emplace_back(point.at(0).get<int64_t>(), number_from(point.at(1)));
        }
      }
      students.push_back(std::move(student));
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
    std::string key;      // "eval.train.epochs"; empty for a line outside any section
    std::string text;     // "epochs = 2"
  };
  // The value lines of a settings text, trimmed; section headers and blank lines only place them.
  // A line without " = " continues the value above it (a long array), so it keeps that key.
  auto lines_of = [](const std::string& text) {
    std::vector<Line> lines;
    std::istringstream in(text);
    std::string section, key;
    for (std::string line; std::getline(in, line);) {
      line = trimmed(line);
      if (line.empty()) continue;
      // "[eval.train]" (a nested array's element such as "[1, 2]," is part of a value).
      if (line.front() == '[' && line.back() == ']' &&
          line.find_first_of(" ,'\"") == std::string::npos) {
        section = line;
        key.clear();
        continue;
      }
      if (line.find(" = ") != std::string::npos && section.size() > 2) {
        key = section.substr(1, section.size() - 2) + "." + line.substr(0, line.find(" = "));
      }
      lines.push_back({section, key, line});
    }
    return lines;
  };
  // Each key's whole value: its lines in order (a long array spans several).
  auto values_of = [](const std::vector<Line>& lines) {
    std::map<std::string, std::string> values;
    for (const Line& l : lines) {
      if (!l.key.empty()) values[l.key] += l.text + "\n";
    }
    return values;
  };
  const std::vector<Line> all_was = lines_of(recorded), all_now = lines_of(settings_);
  const std::map<std::string, std::string> was_values = values_of(all_was),
                                           now_values = values_of(all_now),
                                           default_values = values_of(lines_of(defaults_));
  // A key the recorded settings lack (one added since).
  auto added = [&](const Line& line) {
    return !line.key.empty() && was_values.count(line.key) == 0;
  };
  auto compared = [&](const std::vector<Line>& lines, bool is_now) {
    std::vector<Line> kept;
    for (const Line& line : lines) {
      if (std::find(extensible_.begin(), extensible_.end(), line.key) != extensible_.end())
        continue;
      // Added since the students were recorded, its whole value at its default: the earlier
      // behaviour.
      if (is_now && added(line) && default_values.count(line.key) &&
          now_values.at(line.key) == default_values.at(line.key))
        continue;
      kept.push_back(line);
    }
    return kept;
  };
  const std::vector<Line> was = compared(all_was, false), now = compared(all_now, true);
  auto same = [](const Line& a, const Line& b) {
    return a.section == b.section && a.text == b.text;
  };
  size_t i = 0;
  while (i < was.size() && i < now.size() && same(was[i], now[i])) ++i;
  if (i == was.size() && i == now.size()) return;
  if (i < now.size() && added(now[i]) && default_values.count(now[i].key)) {
    // A setting added since, not at its default.
    std::string fallback = default_values.at(now[i].key);
    fallback.pop_back();
    throw Error(where + ": the students were recorded before the setting " + now[i].key +
                " existed, so they can only be resumed with it at its default ('" + fallback +
                "'); now '" + now[i].text + "'");
  }
  const std::string& section = i < now.size() ? now[i].section : was[i].section;
  throw Error(where +
              ": the students were trained with other settings, so they cannot be resumed "
              "(resume with the same settings, or start over: another --out, or delete " +
              path_ + "); first difference" + (section.empty() ? "" : " in " + section) +
              ": recorded '" + (i < was.size() ? was[i].text : "(end)") + "', now '" +
              (i < now.size() ? now[i].text : "(end)") + "'");
}

}  // namespace distill::eval
