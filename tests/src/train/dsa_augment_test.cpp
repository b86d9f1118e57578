#include "src/train/dsa_augment.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <map>
#include <set>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/io/tensor_file.h"
#include "tests/support/test_support.h"

namespace distill::train {
namespace {

constexpr double kPi = 3.14159265358979323846;

at::Tensor random_images(std::vector<int64_t> shape, uint64_t seed,
                         at::ScalarType dtype = at::kDouble) {
  at::Generator gen = make_generator(seed);
  return at::rand(shape, gen, dtype);
}

at::Tensor ones_vec(int64_t n) { return at::ones({n}, at::kFloat); }
at::Tensor zeros_long(int64_t n) { return at::zeros({n}, at::kLong); }

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

DsaOptions multiple_mode() {
  DsaOptions o;
  o.mode = "multiple";
  return o;
}

// ---------------------------------------------------------------- single operations

TEST(DsaOps, NeutralParametersAreTheIdentity) {
  at::Tensor x = random_images({3, 3, 7, 9}, 1);
  const int64_t n = 3;
  EXPECT_LT(max_abs_diff(dsa::brightness(x, at::zeros({n})), x), 1e-12);
  EXPECT_LT(max_abs_diff(dsa::saturation(x, ones_vec(n)), x), 1e-12);
  EXPECT_LT(max_abs_diff(dsa::contrast(x, ones_vec(n)), x), 1e-12);
  EXPECT_TRUE(at::equal(dsa::translate(x, zeros_long(n), zeros_long(n)), x));
  EXPECT_TRUE(at::equal(dsa::flip(x, at::zeros({n}, at::kBool)), x));
  EXPECT_TRUE(at::equal(dsa::cutout(x, zeros_long(n), zeros_long(n), 0, 0), x));
  EXPECT_LT(max_abs_diff(dsa::scale(x, ones_vec(n), ones_vec(n)), x), 1e-9);
  EXPECT_LT(max_abs_diff(dsa::rotate(x, at::zeros({n})), x), 1e-9);
}

TEST(DsaOps, FlipMirrorsSelectedImagesAndTwiceIsIdentity) {
  at::Tensor x = random_images({4, 3, 5, 6}, 2);
  at::Tensor mask = at::tensor({1, 0, 1, 0}, at::kLong).to(at::kBool);
  at::Tensor y = dsa::flip(x, mask);
  for (int64_t i = 0; i < 4; ++i) {
    // Column j of a flipped image is column W-1-j of the original.
    for (int64_t j = 0; j < 6; ++j) {
      int64_t source = i % 2 == 0 ? 5 - j : j;
      EXPECT_TRUE(at::equal(y[i].select(2, j), x[i].select(2, source))) << i << "," << j;
    }
  }
  EXPECT_TRUE(at::equal(dsa::flip(y, mask), x));
}

TEST(DsaOps, TranslationMovesAPixelAndFillsWithZeros) {
  // One image with a single lit pixel at row 2, column 3 of a 6x8 image.
  at::Tensor x = at::zeros({1, 1, 6, 8}, at::kDouble);
  x[0][0][2][3] = 1.0;
  at::Tensor y = dsa::translate(x, at::tensor({1L}), at::tensor({-2L}));
  EXPECT_EQ(y.sum().item<double>(), 1.0);
  EXPECT_EQ(y[0][0][3][1].item<double>(), 1.0);

  // Shifting an all-ones image: the rows/columns moved in from outside are zero.
  at::Tensor ones = at::ones({2, 3, 6, 8}, at::kDouble);
  at::Tensor z = dsa::translate(ones, at::tensor({2L, -1L}), at::tensor({3L, -4L}));
  for (int64_t h = 0; h < 6; ++h) {
    for (int64_t w = 0; w < 8; ++w) {
      double first = (h >= 2 && w >= 3) ? 1.0 : 0.0;  // down 2, right 3
      double second = (h <= 4 && w <= 3) ? 1.0 : 0.0;  // up 1, left 4
      for (int64_t c = 0; c < 3; ++c) {
        ASSERT_EQ(z[0][c][h][w].item<double>(), first) << h << "," << w;
        ASSERT_EQ(z[1][c][h][w].item<double>(), second) << h << "," << w;
      }
    }
  }
  // A shift larger than the image leaves nothing.
  EXPECT_EQ(dsa::translate(ones, at::tensor({9L, 0L}), at::tensor({0L, -20L})).abs().sum().item<double>(),
            0.0);
}

TEST(DsaOps, CutoutZeroesExactlyTheSquare) {
  at::Tensor x = at::ones({2, 2, 5, 6}, at::kDouble);
  // Square of side 3: first image rows -1..1 (sticks out at the top), columns 2..4; second image
  // rows 3..5, columns 4..6 (sticks out at the bottom right).
  at::Tensor y = dsa::cutout(x, at::tensor({-1L, 3L}), at::tensor({2L, 4L}), 3, 3);
  for (int64_t h = 0; h < 5; ++h) {
    for (int64_t w = 0; w < 6; ++w) {
      double first = (h <= 1 && w >= 2 && w <= 4) ? 0.0 : 1.0;
      double second = (h >= 3 && w >= 4) ? 0.0 : 1.0;
      for (int64_t c = 0; c < 2; ++c) {
        ASSERT_EQ(y[0][c][h][w].item<double>(), first) << h << "," << w;
        ASSERT_EQ(y[1][c][h][w].item<double>(), second) << h << "," << w;
      }
    }
  }
}

TEST(DsaOps, ColorOpsMatchHandComputedValues) {
  // One pixel with channels (0.2, 0.5, 0.8) and one with (1, 1, 1): channel means 0.5 and 1.
  at::Tensor x = at::tensor({0.2, 1.0, 0.5, 1.0, 0.8, 1.0}, at::kDouble).view({1, 3, 1, 2});
  at::Tensor bright = dsa::brightness(x, at::tensor({0.25}));
  EXPECT_LT(max_abs_diff(bright, x + 0.25), 1e-12);

  // Saturation factor 2: (x - mean) * 2 + mean.
  at::Tensor sat = dsa::saturation(x, at::tensor({2.0}));
  at::Tensor sat_expected =
      at::tensor({-0.1, 1.0, 0.5, 1.0, 1.1, 1.0}, at::kDouble).view({1, 3, 1, 2});
  EXPECT_LT(max_abs_diff(sat, sat_expected), 1e-6);

  // Contrast factor 0.5 around the image mean (0.2+0.5+0.8+3)/6 = 0.75.
  at::Tensor con = dsa::contrast(x, at::tensor({0.5}));
  at::Tensor con_expected =
      at::tensor({0.475, 0.875, 0.625, 0.875, 0.775, 0.875}, at::kDouble).view({1, 3, 1, 2});
  EXPECT_LT(max_abs_diff(con, con_expected), 1e-6);

  // One channel: saturation has nothing to blend with.
  at::Tensor gray = random_images({2, 1, 4, 4}, 3);
  EXPECT_LT(max_abs_diff(dsa::saturation(gray, at::tensor({0.3f, 1.7f})), gray), 1e-12);
}

TEST(DsaOps, QuarterTurnMatchesRot90) {
  at::Tensor x = random_images({2, 3, 8, 8}, 4);
  at::Tensor y = dsa::rotate(x, at::full({2}, kPi / 2, at::kDouble));
  at::Tensor expected = at::rot90(x, 1, {2, 3});
  // Sampling points land on pixel centres up to rounding of cos(pi/2); compare the interior,
  // where no sample can fall off the border.
  auto inner = [](const at::Tensor& t) { return t.narrow(2, 1, 6).narrow(3, 1, 6); };
  EXPECT_LT(max_abs_diff(inner(y), inner(expected)), 1e-9);
  // The opposite angle turns the other way.
  at::Tensor back = dsa::rotate(x, at::full({2}, -kPi / 2, at::kDouble));
  EXPECT_LT(max_abs_diff(inner(back), inner(at::rot90(x, -1, {2, 3}))), 1e-9);
}

TEST(DsaOps, ScaleTwoZoomsOutAroundTheCentre) {
  // With align_corners the output pixel at normalized coordinate u samples the input at 2u:
  // on a 5-pixel axis output index 1 (u = -0.5) reads input index 0 (u = -1), index 2 reads 2,
  // and indices 0 and 4 read outside (zero).
  at::Tensor x = random_images({1, 1, 5, 5}, 5);
  at::Tensor y = dsa::scale(x, at::tensor({2.0}), at::tensor({2.0}));
  EXPECT_NEAR(y[0][0][1][1].item<double>(), x[0][0][0][0].item<double>(), 1e-9);
  EXPECT_NEAR(y[0][0][2][3].item<double>(), x[0][0][2][4].item<double>(), 1e-9);
  EXPECT_NEAR(y[0][0][3][2].item<double>(), x[0][0][4][2].item<double>(), 1e-9);
  EXPECT_NEAR(y[0][0][0][2].item<double>(), 0.0, 1e-9);
}

// ---------------------------------------------------------------- draws

TEST(DsaDraws, DefaultRangesFollowThePaper) {
  DsaAugment dsa(multiple_mode());
  at::Generator gen = make_generator(11);
  const int64_t n = 4000;
  DsaDraw d = dsa.draw(n, 32, 32, gen);
  ASSERT_EQ(d.groups.size(), 6u);
  auto in_range = [](const at::Tensor& t, double lo, double hi) {
    return t.min().item<double>() >= lo && t.max().item<double>() <= hi;
  };
  EXPECT_TRUE(in_range(d.brightness, -0.5, 0.5));
  EXPECT_TRUE(in_range(d.saturation, 0.0, 2.0));
  EXPECT_TRUE(in_range(d.contrast, 0.5, 1.5));
  EXPECT_TRUE(in_range(d.scale_x, 1 / 1.2, 1.2));
  EXPECT_TRUE(in_range(d.scale_y, 1 / 1.2, 1.2));
  EXPECT_TRUE(in_range(d.angle, -15 * kPi / 180, 15 * kPi / 180));
  EXPECT_GT(d.angle.max().item<double>(), 14 * kPi / 180);
  // Translation: every integer in [-4, 4] (0.125 * 32) on both axes, nothing else.
  for (const at::Tensor& shift : {d.shift_x, d.shift_y}) {
    EXPECT_EQ(shift.min().item<int64_t>(), -4);
    EXPECT_EQ(shift.max().item<int64_t>(), 4);
    EXPECT_EQ(std::get<0>(at::_unique(shift)).numel(), 9);
  }
  // Cutout: side 16 (0.5 * 32), centre in [0, 32].
  EXPECT_EQ(d.cutout_height, 16);
  EXPECT_EQ(d.cutout_width, 16);
  EXPECT_EQ((d.cutout_top + 8).min().item<int64_t>(), 0);
  EXPECT_EQ((d.cutout_top + 8).max().item<int64_t>(), 32);
  double flipped = d.flip.to(at::kDouble).mean().item<double>();
  EXPECT_NEAR(flipped, 0.5, 0.04);
}

TEST(DsaDraws, SingleModePicksEachGroupAboutEqually) {
  DsaAugment dsa;  // defaults: single mode, six groups
  at::Generator gen = make_generator(12);
  std::map<DsaGroup, int> counts;
  const int draws = 6000;
  for (int i = 0; i < draws; ++i) {
    DsaDraw d = dsa.draw(1, 8, 8, gen);
    ASSERT_EQ(d.groups.size(), 1u);
    counts[d.groups[0]]++;
  }
  ASSERT_EQ(counts.size(), 6u);
  // Expected 1000 each, standard deviation ~29.
  for (const auto& [group, count] : counts) EXPECT_NEAR(count, 1000, 150) << dsa_group_name(group);
}

TEST(DsaDraws, SameSeedSameOutputOtherSeedDiffers) {
  DsaAugment dsa(multiple_mode());
  at::Tensor x = random_images({4, 3, 16, 16}, 13, at::kFloat);
  at::Generator a = make_generator(5), b = make_generator(5), c = make_generator(6);
  at::Tensor ya = dsa(x, a), yb = dsa(x, b), yc = dsa(x, c);
  EXPECT_TRUE(at::equal(ya, yb));
  EXPECT_FALSE(at::allclose(ya, yc));
  // Consecutive calls on one generator differ too.
  EXPECT_FALSE(at::allclose(dsa(x, a), ya));
}

TEST(DsaDraws, StrategyNoneIsTheIdentity) {
  DsaOptions o;
  o.strategy = "none";
  DsaAugment dsa(o);
  EXPECT_FALSE(dsa.enabled());
  at::Generator gen = make_generator(1);
  at::Tensor x = random_images({2, 3, 8, 8}, 14);
  EXPECT_TRUE(at::equal(dsa(x, gen), x));
}

TEST(DsaDraws, StrategySelectsGroupsInOrder) {
  DsaOptions o;
  o.strategy = "flip_color";
  o.mode = "multiple";
  DsaAugment dsa(o);
  ASSERT_EQ(dsa.groups().size(), 2u);
  EXPECT_EQ(dsa.groups()[0], DsaGroup::kFlip);
  EXPECT_EQ(dsa.groups()[1], DsaGroup::kColor);
  at::Generator gen = make_generator(2);
  DsaDraw d = dsa.draw(3, 8, 8, gen);
  EXPECT_TRUE(d.flip.defined());
  EXPECT_TRUE(d.brightness.defined());
  EXPECT_FALSE(d.angle.defined());
  EXPECT_FALSE(d.shift_x.defined());
}

TEST(DsaDraws, UnknownGroupIsAnErrorNamingIt) {
  DsaOptions o;
  o.strategy = "color_crop_blur";
  try {
    DsaAugment dsa(o);
    FAIL();
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("dsa.strategy \"color_crop_blur\""), std::string::npos) << what;
    EXPECT_NE(what.find("unknown group \"blur\""), std::string::npos) << what;
    EXPECT_NE(what.find("cutout"), std::string::npos) << what;
  }
}

TEST(DsaDraws, MismatchedImagesAreAnError) {
  DsaAugment dsa;
  at::Generator gen = make_generator(3);
  DsaDraw d = dsa.draw(2, 8, 8, gen);
  try {
    dsa.apply(at::zeros({2, 3, 8, 9}), d);
    FAIL();
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("2 images of 8x8"), std::string::npos) << what;
    EXPECT_NE(what.find("[2, 3, 8, 9]"), std::string::npos) << what;
  }
  EXPECT_THROW(dsa.apply(at::zeros({3, 3, 8, 8}), d), Error);
  EXPECT_THROW(dsa.apply(at::zeros({3, 8, 8}), d), Error);
}

TEST(DsaDraws, VisitListsEverySetting) {
  struct Names : config::Visitor {
    std::set<std::string> names;
    void field(const char* n, int64_t&, const char*) override { names.insert(n); }
    void field(const char* n, double&, const char*) override { names.insert(n); }
    void field(const char* n, bool&, const char*) override { names.insert(n); }
    void field(const char* n, std::string&, const char*) override { names.insert(n); }
    void field(const char* n, std::vector<std::string>&, const char*) override {
      names.insert(n);
    }
    void field(const char* n, std::vector<int64_t>&, const char*) override { names.insert(n); }
    void field(const char* n, std::vector<double>&, const char*) override { names.insert(n); }
    void choice(const char* n, std::string&, const char*,
                const std::vector<std::string>&) override {
      names.insert(n);
    }
    void enter(const char*) override {}
    void leave() override {}
  } visitor;
  DsaOptions o;
  o.visit(visitor);
  EXPECT_EQ(visitor.names,
            (std::set<std::string>{"strategy", "mode", "flip_prob", "scale_ratio",
                                   "rotate_degrees", "crop_ratio", "cutout_ratio", "brightness",
                                   "saturation", "contrast"}));
}

// ---------------------------------------------------------------- Siamese property, gradients

TEST(DsaSiamese, SameDrawSameTransformation) {
  DsaAugment dsa(multiple_mode());
  at::Generator gen = make_generator(21);
  at::Tensor x = random_images({5, 3, 12, 12}, 22, at::kFloat);
  DsaDraw d = dsa.draw(5, 12, 12, gen);
  EXPECT_TRUE(at::equal(dsa.apply(x, d), dsa.apply(x.clone(), d)));
  // A smaller batch receives the first images' parameters.
  EXPECT_TRUE(at::allclose(dsa.apply(x.narrow(0, 0, 2), d), dsa.apply(x, d).narrow(0, 0, 2)));
}

TEST(DsaSiamese, BatchAndCopyGetEqualGradients) {
  DsaAugment dsa(multiple_mode());
  at::Generator gen = make_generator(23);
  at::Tensor base = random_images({4, 3, 10, 10}, 24, at::kFloat);
  at::Tensor a = base.clone().requires_grad_(true);
  at::Tensor b = base.clone().requires_grad_(true);
  DsaDraw d = dsa.draw(4, 10, 10, gen);
  at::Tensor weights = random_images({4, 3, 10, 10}, 25, at::kFloat);
  auto ga = torch::autograd::grad({(dsa.apply(a, d) * weights).sum()}, {a});
  auto gb = torch::autograd::grad({(dsa.apply(b, d) * weights).sum()}, {b});
  EXPECT_TRUE(at::equal(ga[0], gb[0]));
  EXPECT_GT(ga[0].abs().sum().item<double>(), 0.0);
}

TEST(DsaSiamese, GradientMatchesCentralDifferences) {
  // Every group at once, with hand-set parameters that make each op non-trivial (a shift, a
  // cutout inside the image, one flipped image, non-unit scales and angles).
  DsaAugment dsa(multiple_mode());
  DsaDraw d;
  d.batch = 2;
  d.height = 6;
  d.width = 7;
  d.groups = dsa.groups();
  d.brightness = at::tensor({0.1f, -0.2f});
  d.saturation = at::tensor({1.5f, 0.4f});
  d.contrast = at::tensor({0.7f, 1.3f});
  d.shift_y = at::tensor({1L, -1L});
  d.shift_x = at::tensor({-2L, 1L});
  d.cutout_top = at::tensor({2L, -1L});
  d.cutout_left = at::tensor({1L, 4L});
  d.cutout_height = 2;
  d.cutout_width = 3;
  d.flip = at::tensor({1, 0}, at::kLong).to(at::kBool);
  d.scale_x = at::tensor({1.1f, 0.9f});
  d.scale_y = at::tensor({0.85f, 1.15f});
  d.angle = at::tensor({0.2f, -0.15f});

  at::Tensor x = random_images({2, 3, 6, 7}, 26);
  at::Tensor weights = random_images({2, 3, 6, 7}, 27);
  // A non-linear loss so the gradient depends on the output values, not only on the weights.
  auto loss = [&](const at::Tensor& input) {
    at::Tensor y = dsa.apply(input, d);
    return (y * weights).sum() + 0.5 * (y * y).sum();
  };
  at::Tensor leaf = x.clone().requires_grad_(true);
  at::Tensor grad = torch::autograd::grad({loss(leaf)}, {leaf})[0];

  at::Tensor numeric = at::zeros_like(x);
  const double h = 1e-6;
  at::Tensor flat = x.view({-1});
  for (int64_t i = 0; i < x.numel(); ++i) {
    at::Tensor plus = x.clone(), minus = x.clone();
    plus.view({-1})[i] += h;
    minus.view({-1})[i] -= h;
    numeric.view({-1})[i] = (loss(plus).item<double>() - loss(minus).item<double>()) / (2 * h);
  }
  EXPECT_LT(max_abs_diff(grad, numeric), 1e-6);
  EXPECT_GT(grad.abs().max().item<double>(), 0.1);
}

TEST(DsaSiamese, WorksForOneChannel) {
  DsaAugment dsa(multiple_mode());
  at::Generator gen = make_generator(28);
  at::Tensor x = random_images({3, 1, 28, 28}, 29, at::kFloat);
  at::Tensor y = dsa(x, gen);
  EXPECT_EQ(y.sizes(), x.sizes());
  EXPECT_EQ(y.scalar_type(), at::kFloat);
  EXPECT_TRUE(y.isfinite().all().item<bool>());
}

// ---------------------------------------------------------------- parity with python3-torch

void put_draw(io::TensorDict& dict, const std::string& name, const at::Tensor& x,
              const DsaDraw& d) {
  std::string groups;
  for (DsaGroup g : d.groups) groups += std::string(groups.empty() ? "" : ",") + dsa_group_name(g);
  dict.insert(name + ".x", x);
  dict.insert(name + ".groups", c10::IValue(groups));
  auto put = [&](const char* key, const at::Tensor& t) {
    if (t.defined()) dict.insert(name + "." + key, t);
  };
  put("brightness", d.brightness);
  put("saturation", d.saturation);
  put("contrast", d.contrast);
  put("shift_y", d.shift_y);
  put("shift_x", d.shift_x);
  put("cutout_top", d.cutout_top);
  put("cutout_left", d.cutout_left);
  put("flip", d.flip);
  put("scale_x", d.scale_x);
  put("scale_y", d.scale_y);
  put("angle", d.angle);
  dict.insert(name + ".cutout_size", at::tensor({d.cutout_height, d.cutout_width}));
}

TEST(DsaParity, MatchesTorchFunctionalReference) {
  DISTILL_REQUIRE_PYTHON();
  testing::TempDir dir;
  io::TensorDict cases = io::make_dict();
  std::map<std::string, std::pair<at::Tensor, DsaDraw>> expected;
  DsaAugment all(multiple_mode());
  at::Generator gen = make_generator(31);
  std::string names;
  uint64_t seed = 100;
  for (int64_t channels : {1, 3}) {
    // Non-square images expose any mix-up of the height and width conventions.
    for (int repeat = 0; repeat < 3; ++repeat) {
      at::Tensor x = random_images({6, channels, 16, 20}, ++seed, at::kFloat);
      DsaDraw d = all.draw(6, 16, 20, gen);
      std::string base = "c" + std::to_string(channels) + "r" + std::to_string(repeat);
      // Each group alone, then all of them composed.
      std::vector<std::pair<std::string, std::vector<DsaGroup>>> variants;
      for (DsaGroup g : all.groups()) variants.push_back({dsa_group_name(g), {g}});
      variants.push_back({"all", all.groups()});
      for (const auto& [suffix, groups] : variants) {
        DsaDraw v = d;
        v.groups = groups;
        std::string name = base + "_" + suffix;
        put_draw(cases, name, x, v);
        expected[name] = {x, v};
        names += (names.empty() ? "" : ",") + name;
      }
    }
  }
  cases.insert("cases", c10::IValue(names));
  io::save_dict(dir.file("cases.pt"), cases);
  testing::run_python_script("dsa_reference.py", {dir.file("cases.pt"), dir.file("out.pt")});
  io::TensorDict out = io::load_dict(dir.file("out.pt"));
  ASSERT_EQ(expected.size(), 2u * 3u * 7u);
  for (const auto& [name, input] : expected) {
    at::Tensor ours = all.apply(input.first, input.second);
    at::Tensor theirs = io::get_tensor(out, name + ".y", "out.pt");
    ASSERT_EQ(ours.sizes(), theirs.sizes()) << name;
    EXPECT_LT(max_abs_diff(ours, theirs), 1e-5) << name;
  }
}

}  // namespace
}  // namespace distill::train
