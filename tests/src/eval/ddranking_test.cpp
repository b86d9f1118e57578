#include "src/eval/ddranking.h"

#include <gtest/gtest.h>

#include <cmath>

namespace distill::eval {
namespace {

// The normalisation maps the ends and the middle of [-1, 1] where its formula says.
TEST(DDRanking, NormalisationMapsMinusOneToZeroAndOneToOne) {
  EXPECT_NEAR(ddranking_normalise(-1), 0.0, 1e-15);
  EXPECT_NEAR(ddranking_normalise(1), 1.0, 1e-15);
  // (1 - e^-1) / (e - e^-1), by hand (python: math).
  EXPECT_NEAR(ddranking_normalise(0), 0.26894142136999516, 1e-15);
  EXPECT_LT(ddranking_normalise(0.1), ddranking_normalise(0.2));
}

// Hand-computed (python3 math on the same numbers): HLR = 0.9 - 0.5, IOR = 0.7 - 0.6,
// alpha = 0.5 * 0.1 - 0.5 * 0.4, beta = 0.5 * (0.7 - 0.6) + 0.5 * (0.65 - 0.62).
TEST(DDRanking, ScoresAreTheirFormulas) {
  DDRankingAccuracies a;
  a.full_hard = 0.9;
  a.set_hard = 0.5;
  a.set_own = 0.7;
  a.random_own = 0.6;
  a.set_no_aug = 0.65;
  a.random_no_aug = 0.62;
  DDRankingScores s = ddranking_scores(a, DDRankingOptions{});
  EXPECT_NEAR(s.hlr, 0.4, 1e-12);
  EXPECT_NEAR(s.ior, 0.1, 1e-12);
  EXPECT_NEAR(s.alpha, -0.15, 1e-12);
  EXPECT_NEAR(s.lrs, 0.2096783673804665, 1e-12);
  EXPECT_NEAR(s.beta, 0.065, 1e-12);
  EXPECT_NEAR(s.ars, 0.2975148370316832, 1e-12);
  // Other weights: alpha = 0.8 * 0.1 - 0.2 * 0.4 = 0, beta = 0.3 * 0.1 + 0.7 * 0.03.
  DDRankingScores t = ddranking_scores(a, DDRankingOptions{0.8, 0.3});
  EXPECT_NEAR(t.alpha, 0.0, 1e-12);
  EXPECT_NEAR(t.lrs, 0.26894142136999516, 1e-12);
  EXPECT_NEAR(t.beta, 0.051, 1e-12);
  EXPECT_NEAR(t.ars, 0.2912026705782999, 1e-12);
}

// A set no better than random real of its size, recovering nothing of the full data: the lowest
// scores; a set that equals the full data and beats random by everything: the highest.
TEST(DDRanking, ExtremesReachTheEndsOfTheScale) {
  DDRankingAccuracies worst{1.0, 0.0, 0.0, 1.0, 0.0, 1.0};
  DDRankingScores w = ddranking_scores(worst, DDRankingOptions{});
  EXPECT_NEAR(w.alpha, -1.0, 1e-12);
  EXPECT_NEAR(w.lrs, 0.0, 1e-12);
  EXPECT_NEAR(w.ars, 0.0, 1e-12);
  DDRankingAccuracies best{1.0, 1.0, 1.0, 0.0, 1.0, 0.0};
  DDRankingScores b = ddranking_scores(best, DDRankingOptions{});
  EXPECT_NEAR(b.alpha, 0.5, 1e-12);  // HLR 0 costs nothing, IOR 1 earns w
  EXPECT_NEAR(b.ars, 1.0, 1e-12);
}

}  // namespace
}  // namespace distill::eval
