#pragma once
#include <array>
#include <cstdint>

// Every seeded random draw in distill comes from make_generator(seed, stream, index) (or
// mix_seed with the same arguments): one named stream per purpose, all listed here, so that two
// purposes never share draws and a new one cannot reuse an id by accident. The values are the
// ones each purpose had before they were gathered here (a changed value changes every seeded
// result that uses it).
namespace distill::streams {

// src/train: a Trainer's draws, under the trainer's own seed.
inline constexpr uint64_t kTrainerInit = 1;
inline constexpr uint64_t kTrainerShuffle = 2;
inline constexpr uint64_t kTrainerAugment = 3;
inline constexpr uint64_t kTrainerAuxInit = 4;
inline constexpr uint64_t kTrainerRankDropout = 5;

// src/eval: students and the random real baseline.
inline constexpr uint64_t kEvalStudent = 11;
inline constexpr uint64_t kEvalRealSubset = 12;

// trajectories/: experts, matching, distillation.
inline constexpr uint64_t kExpert = 21;
inline constexpr uint64_t kMatcherBatch = 31;
inline constexpr uint64_t kMatcherAugment = 32;
inline constexpr uint64_t kMttInit = 41;
inline constexpr uint64_t kMttIteration = 42;
inline constexpr uint64_t kMttExpertOrder = 43;
inline constexpr uint64_t kMttPerturbation = 44;
// The students of mtt.eval_every. Until issue 24 this was kMttIteration + 1, the id of
// kMttExpertOrder: seeds of eval students and of expert orders coincided.
inline constexpr uint64_t kMttEvalStudents = 45;

// synth/: committee and recovery.
inline constexpr uint64_t kCommitteeMember = 0xc0;
inline constexpr uint64_t kRecoverInit = 0x5e0;
inline constexpr uint64_t kCommitteeValSplit = 0x5e1;
inline constexpr uint64_t kRecoverStep = 0x5e2;
inline constexpr uint64_t kRecoverView = 0x5e3;
inline constexpr uint64_t kInferInit = 0x5e4;  // INFER's real batches
inline constexpr uint64_t kInferStep = 0x5e5;  // a compensator step's roll

// diffusion/: denoiser training, sampling, step distillation (+ stage for the last two).
inline constexpr uint64_t kDenoiserInit = 0xd1f0;
inline constexpr uint64_t kDenoiserEpoch = 0xd1f1;  // the epoch's permutation of the training set
inline constexpr uint64_t kDenoiserStep = 0xd1f2;   // a step's levels, noise and label dropout
inline constexpr uint64_t kSamplerNoise = 0xd1ff;   // `diffusion sample`: the starting noise
inline constexpr uint64_t kStudentInit = 0x1417;    // `diffusion distill`: the student's weights
inline constexpr uint64_t kProgressiveStep = 0x7064'0000;  // "pd" + stage
inline constexpr uint64_t kConsistencyStep = 0x6364'0000;  // "cd" + stage
inline constexpr uint64_t kScmStep = 0x7363'0000;          // "sc" + stage: sCM / TBCM steps

// src/cli: draws a command makes itself.
inline constexpr uint64_t kKdSubset = 0x6b64;
inline constexpr uint64_t kKdValidation = 0x6b65;  // self_distillation's and tgeo's held-out split
inline constexpr uint64_t kKdSearchBatch = 0x6b66;      // `kd search`: the scoring batch
inline constexpr uint64_t kKdSearchInit = 0x6b67;       // a candidate's weights (index: its name)
inline constexpr uint64_t kKdSearchEvolution = 0x6b68;  // the evolution's draws
inline constexpr uint64_t kKdTgeoValidation = 0x6b69;   // tgeo: a step's held-out batch
inline constexpr uint64_t kSubset = 0x5b5e7;

namespace detail {
inline constexpr std::array<uint64_t, 37> kAll = {
    kTrainerInit,     kTrainerShuffle,  kTrainerAugment,    kTrainerAuxInit,  kTrainerRankDropout,
    kEvalStudent,     kEvalRealSubset,  kExpert,            kMatcherBatch,    kMatcherAugment,
    kMttInit,         kMttIteration,    kMttExpertOrder,    kMttPerturbation, kMttEvalStudents,
    kCommitteeMember, kRecoverInit,     kCommitteeValSplit, kRecoverStep,     kRecoverView,
    kDenoiserInit,    kDenoiserEpoch,   kDenoiserStep,      kSamplerNoise,    kStudentInit,
    kProgressiveStep, kConsistencyStep, kKdSubset,          kSubset,          kInferInit,
    kInferStep,       kScmStep,         kKdValidation,      kKdSearchBatch,   kKdSearchInit,
    kKdSearchEvolution, kKdTgeoValidation};
// Pairwise distinct, and clear of the per-stage windows [base, base + 2^16) of the three
// distillation streams.
constexpr bool all_distinct() {
  constexpr uint64_t kStages = uint64_t{1} << 16;
  for (size_t i = 0; i < kAll.size(); ++i) {
    for (size_t j = i + 1; j < kAll.size(); ++j) {
      if (kAll[i] == kAll[j]) return false;
    }
    for (uint64_t base : {kProgressiveStep, kConsistencyStep, kScmStep}) {
      if (kAll[i] != base && kAll[i] >= base && kAll[i] < base + kStages) return false;
    }
  }
  return true;
}
static_assert(all_distinct(), "two random streams share an id (src/core/random_streams.h)");
}  // namespace detail

}  // namespace distill::streams
