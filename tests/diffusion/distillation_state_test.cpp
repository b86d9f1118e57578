// Resumable distillation loops: a PD or CD run interrupted at any step, saved to a file and
// resumed (with a differently seeded generator, so only the saved state can make it match) ends
// bit-identical to an uninterrupted run. Also the vectorised noise levels of the fit stage.
#include "diffusion/distillation_state.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "diffusion/consistency_distillation.h"
#include "diffusion/mlp_denoiser.h"
#include "diffusion/parameterization.h"
#include "diffusion/progressive_distillation.h"
#include "diffusion/trajectory_points.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "tests/diffusion/mixture_fixture.h"
#include "tests/support/test_support.h"

namespace distill::diffusion {
namespace {

struct Toy {
  GaussianMixture teacher = fixture::three_component_mixture();
  GaussianMixture teacher_f32 =
      GaussianMixture(teacher.weights().to(at::kFloat), teacher.means().to(at::kFloat),
                      teacher.covariances().to(at::kFloat));
  MlpDenoiserNet net{2, MlpDenoiserOptions{{16, 16}, 3}};
  PreconditionOptions pre;
  Denoiser teacher_fn() const {
    GaussianMixture t = teacher_f32;
    return [t](const at::Tensor& x, const at::Tensor& s) { return t(x, s); };
  }
  StudentFactory student() const {
    return [this](const at::Tensor& params) { return precondition(net.network(params), pre); };
  }
  DataSource data() const {
    GaussianMixture t = teacher_f32;
    return [t](int64_t n, at::Generator& g) { return t.sample(n, g); };
  }
};

using Runner = std::function<void(DistillationState&, const LoopControl&)>;

// Runs straight, then once per stop point: interrupted after `stop` steps (state written to a
// file by on_checkpoint), resumed from the file. Returns the straight state; expects the resumed
// ones equal, bit for bit.
DistillationState expect_resume_equals_straight(const Runner& run, const at::Tensor& init,
                                                const std::vector<int64_t>& stops,
                                                int64_t checkpoint_every) {
  DistillationState straight;
  straight.params = init.clone();
  straight.seed = 11;
  int64_t steps_seen = 0;
  LoopControl plain;
  plain.on_step = [&](int64_t, int64_t, double) { ++steps_seen; };
  run(straight, plain);
  for (int64_t stop : stops) {
    testing::TempDir dir;
    const std::string file = dir.file("checkpoint.pt");
    DistillationState first;
    first.params = init.clone();
    first.seed = 11;
    int64_t done = 0, checkpoints = 0;
    LoopControl control;
    control.checkpoint_every = checkpoint_every;
    control.on_step = [&](int64_t, int64_t, double) { ++done; };
    control.stop_requested = [&] { return done == stop; };
    control.on_checkpoint = [&](const DistillationState& s) {
      io::save_checkpoint(file, s);
      ++checkpoints;
    };
    EXPECT_THROW(run(first, control), Interrupted) << stop;
    EXPECT_GE(checkpoints, 1);
    DistillationState resumed;
    io::load_checkpoint(file, resumed);
    int64_t rest = 0;
    LoopControl after;
    after.on_step = [&](int64_t, int64_t, double) { ++rest; };
    run(resumed, after);
    EXPECT_EQ(stop + rest, steps_seen) << stop;
    EXPECT_TRUE(at::equal(resumed.params, straight.params)) << "stopped after " << stop;
    EXPECT_EQ(resumed.target.defined(), straight.target.defined());
    if (straight.target.defined()) {
      EXPECT_TRUE(at::equal(resumed.target, straight.target)) << "stopped after " << stop;
    }
    EXPECT_EQ(resumed.stage, straight.stage);
    EXPECT_EQ(resumed.seed, 11u);
  }
  return straight;
}

TEST(DistillationResume, ProgressiveWithFitStageIsBitIdenticalToAStraightRun) {
  Toy setup;
  setup.pre.output = "v";
  ProgressiveOptions o;
  o.teacher_steps = 4;
  o.student_steps = 1;
  o.fit_iterations = 5;
  o.iterations = 6;
  o.batch = 32;
  EXPECT_EQ(stage_count(o), 3);
  EXPECT_EQ(total_iterations(o), 17);
  at::Generator init_gen = make_generator(1);
  at::Tensor init = setup.net.init_params(init_gen);
  Runner run = [&](DistillationState& s, const LoopControl& c) {
    progressive_distillation(setup.teacher_fn(), setup.student(), s, setup.data(), o, c);
  };
  // Mid-fit, at the fit's end (a stage boundary), mid-halving, last-but-one step.
  DistillationState straight = expect_resume_equals_straight(run, init, {3, 5, 9, 16}, 2);
  EXPECT_EQ(straight.stage, 3);
  EXPECT_FALSE(at::equal(straight.params, init));
  // The entry point with a generator runs the same loop from a seed drawn from it.
  at::Generator gen = make_generator(4);
  at::Generator copy = make_generator(4);
  DistillationState state;
  state.params = init.clone();
  state.seed = draw_seed(copy);
  progressive_distillation(setup.teacher_fn(), setup.student(), state, setup.data(), o, {});
  at::Tensor same = progressive_distillation(setup.teacher_fn(), setup.student(), init.clone(),
                                             setup.data(), o, gen);
  EXPECT_TRUE(at::equal(same, state.params));
}

TEST(DistillationResume, ConsistencyWithEmaTargetIsBitIdenticalToAStraightRun) {
  Toy setup;
  setup.pre.output = "consistency";
  ConsistencyOptions o;
  o.discretisation = 6;
  o.iterations = 10;
  o.batch = 32;
  o.ema_decay = 0.9;
  at::Generator init_gen = make_generator(2);
  at::Tensor init = setup.net.init_params(init_gen);
  Runner run = [&](DistillationState& s, const LoopControl& c) {
    consistency_distillation(setup.teacher_fn(), setup.student(), s, setup.data(), o, c);
  };
  DistillationState straight = expect_resume_equals_straight(run, init, {1, 4, 9}, 3);
  EXPECT_FALSE(at::equal(straight.target, straight.params));  // the EMA lags
}

TEST(DistillationResume, DataFreePointsResumeBitIdentically) {
  Toy setup;
  setup.pre.output = "consistency";
  ConsistencyOptions o;
  o.discretisation = 6;
  o.iterations = 6;
  o.batch = 16;
  TrainingData points = TrainingData::from_points(
      teacher_trajectory_points(setup.teacher_fn(), {2}, at::kFloat, o.sigma_max, 4));
  at::Generator init_gen = make_generator(3);
  at::Tensor init = setup.net.init_params(init_gen);
  Runner run = [&](DistillationState& s, const LoopControl& c) {
    consistency_distillation(setup.teacher_fn(), setup.student(), s, points, o, c);
  };
  expect_resume_equals_straight(run, init, {2, 5}, 0);
}

TEST(DistillationResume, StateOfAnotherShapeOrStageIsAnError) {
  Toy setup;
  ConsistencyOptions o;
  o.iterations = 2;
  DistillationState s;
  s.params = at::zeros({setup.net.num_params()});
  s.stage = 1;
  try {
    consistency_distillation(setup.teacher_fn(), setup.student(), s, setup.data(), o, {});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("one stage"), std::string::npos) << e.what();
  }
  testing::TempDir dir;
  io::TensorDict dict = io::make_dict();
  dict.insert("stage", int64_t{0});
  io::save_dict(dir.file("ck.pt"), dict);
  try {
    DistillationState partial;
    io::load_checkpoint(dir.file("ck.pt"), partial);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ck.pt': missing an integer 'iteration'"),
              std::string::npos)
        << e.what();
  }
}

// The fit stage draws its levels as one tensor expression; it must give the scalar formula's
// values (which the per-sample loop used before).
TEST(ScheduleSigma, TensorFormEqualsTheScalarOne) {
  at::Generator gen = make_generator(5);
  at::Tensor t = at::cat({at::rand({200}, gen, at::TensorOptions().dtype(at::kDouble)),
                          at::tensor({0.0, 1e-9, 0.5, 1.0}, at::kDouble)});
  for (const std::string name : {"karras", "vp_cosine"}) {
    ScheduleOptions o;
    o.name = name;
    at::Tensor got = schedule_sigma(o, t);
    for (int64_t i = 0; i < t.size(0); ++i) {
      const double want = schedule_sigma(o, t[i].item<double>());
      EXPECT_NEAR(got[i].item<double>(), want, 1e-13 * (1 + want)) << name << " t " << t[i];
    }
  }
  ScheduleOptions o;
  EXPECT_THROW(schedule_sigma(o, at::tensor({1.5}, at::kDouble)), Error);
}

}  // namespace
}  // namespace distill::diffusion
