#pragma once
#include <optional>
#include <string>
#include <vector>

#include "src/config/options.h"

namespace distill::eval {

// DD-Ranking (Li et al., NUS-HPC-AI-Lab 2025): scores that judge a distilled set by what its
// images add over random real images trained the same way, so that labels or augmentation alone
// cannot pass for distillation. Weights of the two terms of each score:
struct DDRankingOptions {
  double w = 0.5;      // LRS: weight of IOR against HLR
  double gamma = 0.5;  // ARS: weight of the with-augmentation gap against the without one

  void visit(config::Visitor& v) {
    v.field("w", w, "LRS: alpha = w * IOR - (1 - w) * HLR", config::Range::between(0, 1));
    v.field("gamma", gamma,
            "ARS: beta = gamma * (aug gap) + (1 - gamma) * (no-aug gap) between the set and random "
            "real",
            config::Range::between(0, 1));
  }
};

// The test accuracies (fractions in [0, 1]) the scores are made of; "random" is a class-balanced
// random real subset of the set's size, trained by the same protocol with labels from the same
// source as the set's (the same teacher or committee for soft labels, hard labels otherwise).
struct DDRankingAccuracies {
  double full_hard = 0;      // the whole real training split, hard labels
  double set_hard = 0;       // the set, hard labels (its own when they are hard)
  double set_own = 0;        // the set, its own labels and protocol (augmentation on)
  double random_own = 0;     // random real, the same label source, augmentation on
  double set_no_aug = 0;     // the set, its own labels, no augmentation
  double random_no_aug = 0;  // random real, the same label source, no augmentation
};

struct DDRankingScores {
  double hlr = 0;    // hard label recovery: full_hard - set_hard
  double ior = 0;    // improvement over random: set_own - random_own
  double alpha = 0;  // w * IOR - (1 - w) * HLR, in [-1, 1]
  double lrs = 0;    // label-robust score: alpha mapped to [0, 1]
  double beta = 0;   // gamma * (aug gap) + (1 - gamma) * (no-aug gap), in [-1, 1]
  double ars = 0;    // augmentation-robust score: beta mapped to [0, 1]
};

// (e^x - e^-1) / (e - e^-1): [-1, 1] onto [0, 1], monotone (DD-Ranking's normalisation).
double ddranking_normalise(double x);

DDRankingScores ddranking_scores(const DDRankingAccuracies& accuracies,
                                 const DDRankingOptions& options);

// One set scored for one student architecture (results.json's "ddranking" rows).
struct DDRankingRow {
  std::string set;
  std::string model;
  std::string label_source;  // "hard labels", or the committee that labels set and random alike
  DDRankingAccuracies accuracies;
  DDRankingScores scores;
};

// The rows as the table `distill eval` prints (fractions shown as percent points for the terms,
// scores in [0, 1]).
std::string format_ddranking_table(const std::vector<DDRankingRow>& rows);

// Full-data accuracies cached by the settings they depend on (training the whole split is the
// most expensive baseline and the same for every set): per-run last/best accuracies in a JSON file.
struct CachedRuns {
  std::vector<double> last, best;
};
std::optional<CachedRuns> read_cached_runs(const std::string& file, const std::string& key);
void write_cached_runs(const std::string& file, const std::string& key, const CachedRuns& runs);

}  // namespace distill::eval
