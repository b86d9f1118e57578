#include "src/eval/ddranking.h"

#include <cmath>
#include <filesystem>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "src/core/error.h"
#include "src/io/atomic_file.h"

namespace distill::eval {

double ddranking_normalise(double x) {
  return (std::exp(x) - std::exp(-1.0)) / (std::exp(1.0) - std::exp(-1.0));
}

DDRankingScores ddranking_scores(const DDRankingAccuracies& a, const DDRankingOptions& o) {
  DDRankingScores s;
  s.hlr = a.full_hard - a.set_hard;
  s.ior = a.set_own - a.random_own;
  s.alpha = o.w * s.ior - (1 - o.w) * s.hlr;
  s.lrs = ddranking_normalise(s.alpha);
  s.beta = o.gamma * (a.set_own - a.random_own) + (1 - o.gamma) * (a.set_no_aug - a.random_no_aug);
  s.ars = ddranking_normalise(s.beta);
  return s;
}

std::string format_ddranking_table(const std::vector<DDRankingRow>& rows) {
  size_t set_width = 5;
  for (const auto& r : rows) set_width = std::max(set_width, r.set.size());
  std::ostringstream out;
  out << std::left << std::setw(static_cast<int>(set_width + 2)) << "set" << std::setw(12)
      << "model" << std::setw(9) << "HLR" << std::setw(9) << "IOR" << std::setw(8) << "LRS"
      << std::setw(8) << "ARS"
      << "random real labelled by\n";
  for (const auto& r : rows) {
    auto points = [](double x) {
      std::ostringstream p;
      p << std::showpos << std::fixed << std::setprecision(2) << 100 * x;
      return p.str();
    };
    auto score = [](double x) {
      std::ostringstream p;
      p << std::fixed << std::setprecision(3) << x;
      return p.str();
    };
    out << std::left << std::setw(static_cast<int>(set_width + 2)) << r.set << std::setw(12)
        << r.model << std::setw(9) << points(r.scores.hlr) << std::setw(9) << points(r.scores.ior)
        << std::setw(8) << score(r.scores.lrs) << std::setw(8) << score(r.scores.ars)
        << r.label_source << "\n";
  }
  return out.str();
}

std::optional<CachedRuns> read_cached_runs(const std::string& file, const std::string& key) {
  if (file.empty() || !std::filesystem::exists(file)) return std::nullopt;
  nlohmann::json cached;
  try {
    cached = nlohmann::json::parse(io::read_file(file));
  } catch (const nlohmann::json::exception& e) {
    throw Error("cached accuracies '" + file + "' are not valid JSON (" + e.what() +
                "); remove the file to retrain");
  }
  // A file whose settings differ (a hash collision, or one edited by hand) is not used.
  if (!cached.contains("settings") || cached["settings"] != key) return std::nullopt;
  CachedRuns runs;
  runs.last = cached.at("last_accuracy").get<std::vector<double>>();
  runs.best = cached.at("best_accuracy").get<std::vector<double>>();
  return runs;
}

void write_cached_runs(const std::string& file, const std::string& key, const CachedRuns& runs) {
  if (file.empty()) return;
  nlohmann::json cached{{"settings", key}, {"last_accuracy", runs.last}, {"best_accuracy", runs.best}};
  io::write_file_atomic(file, cached.dump(2) + "\n");
}

}  // namespace distill::eval
