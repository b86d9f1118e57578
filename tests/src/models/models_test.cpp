#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/io/tensor_file.h"
#include "src/models/model.h"
#include "tests/support/test_support.h"

namespace distill::models {
namespace {

ModelOptions arch_options(const std::string& arch) {
  ModelOptions o;
  o.arch = arch;
  return o;
}

TEST(Models, ConvNetShapesAndParamCount) {
  ModelOptions o;
  auto model = make_model(o, 1, 28, 10);
  // conv 1->128 3x3 (+bias), norm w+b, conv 128->128 x2, norms, linear 128*4*4 -> 10.
  int64_t expected = (128 * 9 + 128) + 256 + 2 * (128 * 128 * 9 + 128 + 256) + (2048 * 10 + 10);
  EXPECT_EQ(model->num_params(), expected);
  auto gen = make_generator(0);
  at::Tensor out = model->forward(at::randn({2, 1, 28, 28}), model->init_params(gen));
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 10}));
}

// Parameter counts computed by hand from the layer shapes of the reference networks.
TEST(Models, ParamCountsOfTheReferenceNetworks) {
  // AlexNet on CIFAR: convs 3->128 5x5, 128->192 5x5, 192->256, 256->192, 192->192 3x3, fc 3072.
  const int64_t alexnet = (3 * 25 * 128 + 128) + (128 * 25 * 192 + 192) + (192 * 9 * 256 + 256) +
                          (256 * 9 * 192 + 192) + (192 * 9 * 192 + 192) + (192 * 16 * 10 + 10);
  EXPECT_EQ(make_model(arch_options("alexnet"), 3, 32, 10)->num_params(), alexnet);
  // torchvision's resnet18(num_classes=1000) has 11,689,512 parameters.
  ModelOptions imagenet = arch_options("resnet18bn");
  imagenet.stem = "imagenet";
  EXPECT_EQ(make_model(imagenet, 3, 224, 1000)->num_params(), 11689512);
  // VGG-11 convs (+ bias + norm weight/bias per conv), classifier 512 -> 10.
  const std::vector<std::pair<int64_t, int64_t>> convs = {
      {3, 64}, {64, 128}, {128, 256}, {256, 256}, {256, 512}, {512, 512}, {512, 512}, {512, 512}};
  int64_t vgg = 512 * 10 + 10;
  for (auto [in, out] : convs) vgg += in * 9 * out + out + 2 * out;
  EXPECT_EQ(make_model(arch_options("vgg11"), 3, 32, 10)->num_params(), vgg);
  auto bn = make_model(arch_options("vgg11bn"), 3, 32, 10);
  EXPECT_EQ(bn->num_params(), vgg);
  int64_t buffers = 0;
  for (auto [in, out] : convs) buffers += 2 * out;
  EXPECT_EQ(bn->num_buffers(), buffers);
  EXPECT_EQ(make_model(arch_options("vgg11"), 3, 32, 10)->num_buffers(), 0);
}

// ------------------------------------------------------------------ parity with python3-torch

// One architecture on one input shape, checked against tests/python/models_parity.py.
struct ParityCase {
  std::string name;
  ModelOptions options;
  int64_t channels = 3;
  int64_t image_size = 32;
  // "own": the script's DC/DSA-style nn.Module; "torchvision": torchvision.models.resnet18.
  std::string reference = "own";
};

// gtest prints the case by name rather than as bytes.
void PrintTo(const ParityCase& c, std::ostream* os) { *os << c.name; }

std::vector<ParityCase> parity_cases() {
  std::vector<ParityCase> cases;
  auto add = [&](const std::string& name, ModelOptions o, const std::string& reference = "own",
                 bool both_shapes = true) {
    cases.push_back({name + "_3x32", o, 3, 32, reference});
    if (both_shapes) cases.push_back({name + "_1x28", o, 1, 28, reference});
  };
  for (const std::string norm : {"instancenorm", "batchnorm", "groupnorm", "layernorm", "none"}) {
    ModelOptions o;
    o.norm = norm;
    add("convnet_" + norm, o);
  }
  for (const std::string act : {"sigmoid", "leakyrelu"}) {
    ModelOptions o;
    o.act = act;
    add("convnet_" + act, o);
  }
  {
    ModelOptions o;
    o.pool = "maxpool";
    add("convnet_maxpool", o);
    o.pool = "none";  // unpooled maps make a large classifier: keep the net small
    o.width = 32;
    o.depth = 2;
    add("convnet_nopool_w32_d2", o);
    o = ModelOptions();
    o.norm = "batchnorm";
    o.width = 64;
    o.depth = 2;
    o.pool = "maxpool";
    add("convnet_batchnorm_maxpool_w64_d2", o, "own", false);
  }
  add("convnetd4", arch_options("convnetd4"));
  add("convnetd5", arch_options("convnetd5"), "own", false);
  {
    ModelOptions o = arch_options("mlp");
    add("mlp", o, "own", false);
    o.hidden = {64, 32, 16};
    add("mlp_64_32_16", o);
  }
  for (const std::string arch :
       {"lenet", "alexnet", "vgg11", "vgg11bn", "resnet18", "resnet18bn"}) {
    add(arch, arch_options(arch));
  }
  for (const std::string arch : {"resnet18", "resnet18bn"}) {
    ModelOptions o = arch_options(arch);
    o.stem = "imagenet";
    add(arch + "_imagenet_torchvision", o, "torchvision");
    // torchvision's resnet18 with the CIFAR stem swapped in: checks names map 1:1 there too.
    add(arch + "_cifar_torchvision", arch_options(arch), "torchvision", false);
  }
  return cases;
}

constexpr int64_t kParityClasses = 10;
constexpr int64_t kParityBatch = 4;

// What distill computed for one case (kept in memory; params only go to the file).
struct OurOutputs {
  at::Tensor out_eval, out_train, embedding, buffers, buffers_train;
};

// Everything the single python run produced, computed once for all parity tests.
struct ParityRun {
  std::map<std::string, OurOutputs> ours;
  std::map<std::string, std::vector<TensorSpec>> specs;
  io::TensorDict theirs = io::make_dict();
  nlohmann::json report;
  std::string python_output;
  bool ok = false;
};

nlohmann::json options_json(const ModelOptions& o) {
  return {{"width", o.width}, {"depth", o.depth},   {"norm", o.norm}, {"act", o.act},
          {"pool", o.pool},   {"hidden", o.hidden}, {"stem", o.stem}};
}

ParityRun make_parity_run() {
  ParityRun run;
  testing::TempDir dir;
  nlohmann::json manifest = {{"cases", nlohmann::json::array()}};
  uint64_t index = 0;
  for (const ParityCase& c : parity_cases()) {
    auto model = make_model(c.options, c.channels, c.image_size, kParityClasses);
    auto gen = make_generator(2024, 7, index++);
    at::Tensor params = model->init_params(gen);
    at::Tensor x = at::randn({kParityBatch, c.channels, c.image_size, c.image_size}, gen);
    // Non-trivial running statistics, so eval mode really uses them.
    at::Tensor buffers = model->init_buffers();
    if (buffers.numel() > 0) {
      int64_t offset = 0;
      for (const auto& spec : model->buffer_specs()) {
        at::Tensor view = buffers.narrow(0, offset, spec.numel());
        if (spec.init == TensorSpec::Init::kOnes) {
          view.copy_(0.5 + at::rand({spec.numel()}, gen));
        } else {
          view.copy_(0.1 * at::randn({spec.numel()}, gen));
        }
        offset += spec.numel();
      }
    }
    OurOutputs ours;
    Features features;
    ForwardArgs eval_args;
    eval_args.buffers = buffers;
    eval_args.features = &features;
    ours.out_eval = model->forward(x, params, eval_args);
    for (const auto& [name, tensor] : features) {
      if (name == "embedding") ours.embedding = tensor;
    }
    ForwardArgs train_args;
    train_args.train = true;
    train_args.buffers = buffers.clone();
    ours.out_train = model->forward(x, params, train_args);
    ours.buffers = buffers;
    ours.buffers_train = train_args.buffers;

    io::TensorDict dict = io::make_dict();
    dict.insert("x", x);
    dict.insert("params", params);
    dict.insert("out_eval", ours.out_eval);
    dict.insert("out_train", ours.out_train);
    if (ours.embedding.defined()) dict.insert("embedding", ours.embedding);
    if (buffers.numel() > 0) {
      dict.insert("buffers", buffers);
      dict.insert("buffers_train", ours.buffers_train);
    }
    io::save_dict(dir.file(c.name + ".pt"), dict);
    manifest["cases"].push_back({{"name", c.name},
                                 {"file", c.name + ".pt"},
                                 {"arch", c.options.arch},
                                 {"options", options_json(c.options)},
                                 {"channels", c.channels},
                                 {"image_size", c.image_size},
                                 {"num_classes", kParityClasses},
                                 {"reference", c.reference}});
    run.ours[c.name] = ours;
    run.specs[c.name] = model->param_specs();
  }
  std::ofstream(dir.file("cases.json")) << manifest.dump();
  testing::CommandResult result = testing::run_python_script("models_parity.py", {dir.path()});
  run.python_output = result.output;
  if (result.exit_code != 0) return run;
  run.theirs = io::load_dict(dir.file("results.pt"));
  std::ifstream report(dir.file("results.json"));
  run.report = nlohmann::json::parse(report);
  run.ok = true;
  std::cout << "[ python ] reference torch " << run.report["torch"].get<std::string>()
            << "; relative max differences per case:\n"
            << run.python_output;
  return run;
}

const ParityRun& parity_run() {
  static const ParityRun run = make_parity_run();
  return run;
}

// max |ours - theirs| / max(1, max |theirs|): logits and running variances can be large.
double relative_difference(const at::Tensor& ours, const at::Tensor& theirs) {
  double scale = std::max(1.0, theirs.abs().max().item<double>());
  return (ours.to(at::kDouble) - theirs.to(at::kDouble)).abs().max().item<double>() / scale;
}

constexpr double kParityTolerance = 1e-4;

// One Python run covers every family (importing torch costs seconds), so the families are one test
// case, each failure naming its family.
void expect_matches_python(const ParityRun& run, const ParityCase& c) {
  ASSERT_TRUE(run.report["cases"].contains(c.name)) << run.python_output;
  const nlohmann::json& entry = run.report["cases"][c.name];
  ASSERT_FALSE(entry.contains("error")) << entry["error"].get<std::string>();

  // Same parameters, in the same order, under the same state_dict names.
  const std::vector<TensorSpec>& specs = run.specs.at(c.name);
  int64_t count = 0;
  for (const auto& spec : specs) count += spec.numel();
  EXPECT_EQ(entry["num_params"].get<int64_t>(), count);
  ASSERT_EQ(entry["names"].size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(entry["names"][i].get<std::string>(), specs[i].name) << "parameter " << i;
    EXPECT_EQ(entry["shapes"][i].get<std::vector<int64_t>>(), specs[i].shape) << specs[i].name;
  }

  const OurOutputs& ours = run.ours.at(c.name);
  auto theirs = [&](const std::string& key) {
    return io::get_tensor(run.theirs, c.name + "." + key, "results.pt");
  };
  ASSERT_EQ(ours.out_eval.sizes(), (std::vector<int64_t>{kParityBatch, kParityClasses}));
  EXPECT_LT(relative_difference(ours.out_eval, theirs("out_eval")), kParityTolerance);
  EXPECT_LT(relative_difference(ours.out_train, theirs("out_train")), kParityTolerance);
  if (ours.embedding.defined()) {
    EXPECT_LT(relative_difference(ours.embedding, theirs("embedding")), kParityTolerance);
  }
  if (ours.buffers_train.numel() > 0) {
    EXPECT_EQ(entry["num_buffers"].get<int64_t>(), ours.buffers_train.numel());
    EXPECT_LT(relative_difference(ours.buffers_train, theirs("buffers_train")), kParityTolerance);
    // Train mode must really have moved the statistics.
    EXPECT_FALSE(at::allclose(ours.buffers_train, ours.buffers));
  } else {
    EXPECT_EQ(entry["num_buffers"].get<int64_t>(), 0);
  }
}

TEST(ModelParity, EveryFamilyMatchesPythonReference) {
  DISTILL_REQUIRE_PYTHON();
  const ParityRun& run = parity_run();
  ASSERT_TRUE(run.ok) << run.python_output;
  for (const ParityCase& c : parity_cases()) {
    SCOPED_TRACE(c.name);
    expect_matches_python(run, c);
  }
}

// ------------------------------------------------------------------ initialization

TEST(Models, InitParamsFollowsPyTorchDefaults) {
  std::vector<std::pair<ModelOptions, int64_t>> archs;
  for (const std::string arch :
       {"convnet", "mlp", "lenet", "alexnet", "vgg11", "vgg11bn", "resnet18", "resnet18bn"}) {
    archs.push_back({arch_options(arch), 3});
  }
  ModelOptions ln;
  ln.norm = "layernorm";
  archs.push_back({ln, 1});
  for (const auto& [options, channels] : archs) {
    SCOPED_TRACE(options.arch + " " + options.norm);
    auto model = make_model(options, channels, 32, 10);
    auto gen = make_generator(5);
    at::Tensor flat = model->init_params(gen);
    auto tensors = Model::unflatten(flat, model->param_specs());
    const auto& specs = model->param_specs();
    std::vector<int64_t> last_weight_shape;
    for (size_t i = 0; i < specs.size(); ++i) {
      const TensorSpec& spec = specs[i];
      const at::Tensor& t = tensors[i];
      const bool is_weight =
          spec.name.size() > 7 && spec.name.compare(spec.name.size() - 7, 7, ".weight") == 0;
      if (spec.init != TensorSpec::Init::kFanInUniform) {
        // Norm layers: weight 1, bias 0 (nn.GroupNorm / BatchNorm2d / LayerNorm defaults).
        EXPECT_TRUE(at::all(t == (is_weight ? 1.0 : 0.0)).item<bool>()) << spec.name;
        EXPECT_EQ(spec.init, is_weight ? TensorSpec::Init::kOnes : TensorSpec::Init::kZeros);
        continue;
      }
      // fan_in from the weight's own shape (in * k * k), independent of the spec's field.
      if (is_weight) last_weight_shape = spec.shape;
      int64_t fan_in = 1;
      for (size_t d = 1; d < last_weight_shape.size(); ++d) fan_in *= last_weight_shape[d];
      ASSERT_EQ(spec.fan_in, fan_in) << spec.name;
      const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
      EXPECT_LE(t.abs().max().item<double>(), bound * (1 + 1e-6)) << spec.name;
      if (t.numel() >= 1000) {
        // U(-b, b): mean 0, std b / sqrt(3).
        EXPECT_NEAR(t.mean().item<double>(), 0.0, 0.1 * bound) << spec.name;
        EXPECT_NEAR(t.std().item<double>(), bound / std::sqrt(3.0), 0.05 * bound) << spec.name;
      }
    }
    // Reproducible from the seed, different for another seed.
    auto same = make_generator(5), other = make_generator(6);
    EXPECT_TRUE(at::equal(flat, model->init_params(same)));
    EXPECT_FALSE(at::equal(flat, model->init_params(other)));
  }
}

TEST(Models, InitBuffersAreZeroMeansAndUnitVariances) {
  auto model = make_model(arch_options("resnet18bn"), 3, 32, 10);
  auto buffers = Model::unflatten(model->init_buffers(), model->buffer_specs());
  ASSERT_EQ(buffers.size(), model->buffer_specs().size());
  for (size_t i = 0; i < buffers.size(); ++i) {
    const auto& name = model->buffer_specs()[i].name;
    const bool var = name.find("running_var") != std::string::npos;
    EXPECT_TRUE(at::all(buffers[i] == (var ? 1.0 : 0.0)).item<bool>()) << name;
  }
  EXPECT_EQ(model->buffer_specs().front().name, "bn1.running_mean");
  EXPECT_EQ(model->buffer_specs().back().name, "layer4.1.bn2.running_var");
}

// ------------------------------------------------------------------ gradients

// d(sum(out * w))/d(params) by autograd vs central finite differences, in double precision, on
// the first element of up to `tensors` parameter tensors (spread over the net, first and last
// included) and `coordinates` random ones. Inputs must keep every norm non-degenerate: instance
// norm on 1x1 maps outputs its bias exactly, which puts the next ReLU on its kink.
void check_gradient(const Model& model, int64_t channels, int64_t image_size, bool train,
                    size_t tensors, int64_t coordinates) {
  auto gen = make_generator(11);
  at::Tensor params = model.init_params(gen).to(at::kDouble);
  at::Tensor x = at::randn({3, channels, image_size, image_size}, gen).to(at::kDouble);
  at::Tensor w = at::randn({3, 10}, gen).to(at::kDouble);
  at::Tensor buffers = model.init_buffers().to(at::kDouble);
  auto loss = [&](const at::Tensor& p) {
    ForwardArgs args;
    args.train = train;
    args.buffers = buffers.clone();  // train mode updates them; keep every evaluation identical
    at::Tensor out = model.forward(x, p, args);
    EXPECT_EQ(out.scalar_type(), at::kDouble);
    return (out * w).sum().item<double>();
  };
  at::Tensor leaf = params.clone().requires_grad_(true);
  ForwardArgs args;
  args.train = train;
  args.buffers = buffers.clone();
  at::Tensor objective = (model.forward(x, leaf, args) * w).sum();
  at::Tensor grad = torch::autograd::grad({objective}, {leaf})[0];
  ASSERT_EQ(grad.sizes(), params.sizes());

  const auto& specs = model.param_specs();
  std::vector<int64_t> starts;
  int64_t offset = 0;
  for (const auto& spec : specs) {
    starts.push_back(offset);
    offset += spec.numel();
  }
  std::vector<int64_t> picks;
  const size_t count = std::min(tensors, specs.size());
  for (size_t k = 0; k < count; ++k) {
    picks.push_back(starts[count == 1 ? 0 : k * (specs.size() - 1) / (count - 1)]);
  }
  at::Tensor random = at::randint(params.numel(), {coordinates}, gen);
  for (int64_t i = 0; i < coordinates; ++i) picks.push_back(random[i].item<int64_t>());
  const double eps = 1e-6;
  auto* data = params.data_ptr<double>();
  for (int64_t i : picks) {
    const double original = data[i];
    data[i] = original + eps;
    const double up = loss(params);
    data[i] = original - eps;
    const double down = loss(params);
    data[i] = original;
    const double numeric = (up - down) / (2 * eps);
    const double analytic = grad[i].item<double>();
    EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(numeric)))
        << model.arch() << " coordinate " << i;
  }
}

TEST(Models, ConvNetGradientMatchesFiniteDifferences) {
  ModelOptions o;
  o.width = 4;
  o.depth = 2;
  for (const std::string norm : {"instancenorm", "batchnorm", "groupnorm", "layernorm", "none"}) {
    SCOPED_TRACE(norm);
    o.norm = norm;
    auto model = make_model(o, 3, 8, 10);
    check_gradient(*model, 3, 8, norm == "batchnorm", 100, 10);
  }
  o.norm = "instancenorm";
  o.pool = "maxpool";
  o.act = "sigmoid";
  check_gradient(*make_model(o, 1, 6, 10), 1, 6, false, 100, 10);
}

TEST(Models, ResNetGradientMatchesFiniteDifferences) {
  // Through residual additions, strided convs and downsample shortcuts. Batch norm in train mode
  // normalizes over the batch, so 1x1 maps are fine there; instance norm needs 2x2 in layer4.
  ModelOptions imagenet = arch_options("resnet18bn");
  imagenet.stem = "imagenet";
  check_gradient(*make_model(imagenet, 1, 16, 10), 1, 16, true, 12, 4);
  check_gradient(*make_model(arch_options("resnet18"), 3, 16, 10), 3, 16, false, 12, 4);
}

// ------------------------------------------------------------------ features

TEST(Models, EveryFamilyReportsItsNamedFeatures) {
  for (const std::string arch : {"convnet", "convnetd4", "mlp", "lenet", "alexnet", "vgg11",
                                 "vgg11bn", "resnet18", "resnet18bn"}) {
    SCOPED_TRACE(arch);
    auto model = make_model(arch_options(arch), 3, 32, 10);
    auto gen = make_generator(3);
    Features features;
    ForwardArgs args;
    args.buffers = model->init_buffers();
    args.features = &features;
    at::Tensor out = model->forward(at::randn({2, 3, 32, 32}, gen), model->init_params(gen), args);
    std::vector<std::string> names;
    for (const auto& [name, tensor] : features) {
      names.push_back(name);
      EXPECT_EQ(tensor.size(0), 2) << name;
    }
    EXPECT_EQ(names, model->feature_names());
    EXPECT_FALSE(names.empty());
    // The embedding is what the classifier reads: its width is the last weight's fan-in.
    if (!names.empty() && names.back() == "embedding") {
      const auto& specs = model->param_specs();
      EXPECT_EQ(features.back().second.dim(), 2);
      EXPECT_EQ(features.back().second.size(1), specs[specs.size() - 2].shape[1]);
    }
  }
  auto resnet = make_model(arch_options("resnet18"), 3, 32, 10);
  Features features;
  ForwardArgs args;
  args.features = &features;
  auto gen = make_generator(3);
  resnet->forward(at::randn({1, 3, 32, 32}, gen), resnet->init_params(gen), args);
  ASSERT_EQ(features.size(), 5u);
  EXPECT_EQ(features[0].second.sizes(), (std::vector<int64_t>{1, 64, 32, 32}));
  EXPECT_EQ(features[3].second.sizes(), (std::vector<int64_t>{1, 512, 4, 4}));
  EXPECT_EQ(features[4].second.sizes(), (std::vector<int64_t>{1, 512}));
}

// ------------------------------------------------------------------ bad input

void expect_error(const ModelOptions& o, int64_t channels, int64_t size,
                  const std::vector<std::string>& fragments) {
  try {
    make_model(o, channels, size, 10);
    ADD_FAILURE() << o.arch << " accepted " << channels << "x" << size << "x" << size;
  } catch (const Error& e) {
    for (const auto& fragment : fragments) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
          << "'" << e.what() << "' lacks '" << fragment << "'";
    }
  }
}

TEST(Models, TooSmallImagesAreErrorsNamingArchAndSize) {
  expect_error(arch_options("alexnet"), 3, 7, {"alexnet", "at least 8x8", "found 7x7"});
  EXPECT_NO_THROW(make_model(arch_options("alexnet"), 3, 8, 10));
  expect_error(arch_options("alexnet"), 1, 3, {"alexnet", "at least 4x4", "found 3x3"});
  EXPECT_NO_THROW(make_model(arch_options("alexnet"), 1, 4, 10));
  expect_error(arch_options("vgg11"), 3, 31, {"vgg11", "at least 32x32", "found 31x31"});
  expect_error(arch_options("vgg11bn"), 1, 27, {"vgg11bn", "at least 28x28", "found 27x27"});
  EXPECT_NO_THROW(make_model(arch_options("vgg11bn"), 1, 28, 10));
  expect_error(arch_options("convnet"), 3, 4, {"convnet", "4x4"});
  expect_error(arch_options("convnetd5"), 3, 16, {"convnet depth 5", "16x16"});
  expect_error(arch_options("lenet"), 3, 15, {"lenet", "15"});
}

TEST(Models, ResNetAcceptsAnyImageSize) {
  // Every stride-2 layer maps s >= 1 to ceil(s / 2), so ResNet has no minimum size.
  for (const std::string stem : {"cifar", "imagenet"}) {
    ModelOptions o = arch_options("resnet18");
    o.stem = stem;
    auto model = make_model(o, 3, 3, 10);
    auto gen = make_generator(1);
    at::Tensor out = model->forward(at::randn({2, 3, 3, 3}, gen), model->init_params(gen));
    EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 10})) << stem;
  }
}

TEST(Models, BadOptionsAreErrors) {
  ModelOptions o = arch_options("resnet18");
  o.stem = "tiny";
  expect_error(o, 3, 32, {"model.stem", "tiny"});
  expect_error(arch_options("densenet"), 3, 32, {"model.arch", "densenet"});
  try {
    make_model(arch_options("vgg11"), 3, 32, 1);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vgg11"), std::string::npos);
  }
}

TEST(Models, BatchNormModelsNeedTheirBuffers) {
  auto model = make_model(arch_options("resnet18bn"), 3, 8, 10);
  auto gen = make_generator(1);
  try {
    model->forward(at::randn({2, 3, 8, 8}, gen), model->init_params(gen));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("resnet18bn"), std::string::npos);
  }
}

// Synchronised batch norm with one replica (the sum over replicas is the identity) is batch norm
// on the same batch: at::batch_norm is the independent truth for the output, the gradients of
// input and parameters, and the running-statistics update (unbiased variance, momentum .1).
TEST(Models, SynchronisedBatchNormOfOneReplicaIsBatchNorm) {
  for (const std::string arch : {"convnet", "resnet18bn"}) {
    ModelOptions o = arch_options(arch);
    o.norm = "batchnorm";
    o.width = 4;
    o.depth = 2;
    auto model = make_model(o, 2, 8, 3);
    auto gen = make_generator(5);
    const at::Tensor params = model->init_params(gen).to(at::kDouble);
    const at::Tensor x = at::randn({6, 2, 8, 8}, gen).to(at::kDouble);
    const at::Tensor start = model->init_buffers().to(at::kDouble).uniform_(0.5, 1.5, gen);
    auto run = [&](bool synchronised) {
      at::Tensor p = params.clone().requires_grad_(true);
      at::Tensor input = x.clone().requires_grad_(true);
      ForwardArgs args;
      args.train = true;
      args.buffers = start.clone();
      int calls = 0;
      if (synchronised) {
        args.sum_over_replicas = [&calls](const at::Tensor& t) {
          ++calls;
          return t;
        };
      }
      at::Tensor out = model->forward(input, p, args);
      auto grads = torch::autograd::grad({(out * out).sum()}, {p, input});
      if (synchronised) EXPECT_EQ(calls, static_cast<int>(model->buffer_specs().size() / 2));
      return std::vector<at::Tensor>{out, grads[0], grads[1], args.buffers};
    };
    auto plain = run(false), synchronised = run(true);
    const char* what[] = {"output", "parameter gradient", "input gradient", "running statistics"};
    for (size_t i = 0; i < plain.size(); ++i) {
      EXPECT_TRUE(at::allclose(synchronised[i], plain[i], 1e-8, 1e-10))
          << arch << " " << what[i] << ": max |diff| "
          << (synchronised[i] - plain[i]).abs().max().item<double>();
    }
    EXPECT_FALSE(at::equal(plain[3], start)) << arch << ": the pass updated the statistics";
  }
}

// The norm-input observer (synth/ recovery): one entry per batch-norm layer in forward order; the
// first is the first convolution's output computed here by hand, the statistics are the buffers
// as they were before a training-mode pass updated them.
TEST(Models, NormInputsReportEveryBatchNormLayer) {
  ModelOptions o;
  o.norm = "batchnorm";
  o.width = 4;
  auto model = make_model(o, 1, 8, 3);
  auto gen = make_generator(2);
  at::Tensor params = model->init_params(gen);
  at::Tensor buffers = model->init_buffers();
  buffers.uniform_(0.5, 1.5, gen);
  const at::Tensor before = buffers.clone();
  at::Tensor x = at::randn({5, 1, 8, 8}, gen);
  std::vector<NormInput> seen;
  ForwardArgs args;
  args.train = true;
  args.buffers = buffers;
  args.norm_inputs = &seen;
  model->forward(x, params, args);
  ASSERT_EQ(seen.size(), 3u);  // depth 3
  auto p = Model::unflatten(params, model->param_specs());
  at::Tensor conv1 = at::conv2d(x, p[0], p[1], {1, 1}, {3, 3});  // one channel: padding 3
  EXPECT_TRUE(at::allclose(seen[0].input, conv1, 1e-5, 1e-6));
  auto b = Model::unflatten(before, model->buffer_specs());
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_TRUE(at::equal(seen[i].running_mean, b[2 * i]));
    EXPECT_TRUE(at::equal(seen[i].running_var, b[2 * i + 1]));
  }
  EXPECT_FALSE(at::equal(buffers, before));  // the training pass did update them
  std::vector<NormInput> resnet_seen;
  auto resnet = make_model(arch_options("resnet18bn"), 1, 8, 3);
  ForwardArgs resnet_args;
  resnet_args.buffers = resnet->init_buffers();
  resnet_args.norm_inputs = &resnet_seen;
  resnet->forward(at::randn({2, 1, 8, 8}, gen), resnet->init_params(gen), resnet_args);
  EXPECT_EQ(resnet_seen.size(), 20u);  // stem + 16 in blocks + 3 downsample shortcuts
  // Instance-norm models report nothing.
  std::vector<NormInput> none;
  ForwardArgs plain;
  plain.norm_inputs = &none;
  make_model(ModelOptions{}, 1, 8, 3)->forward(x, make_model(ModelOptions{}, 1, 8, 3)->init_params(gen), plain);
  EXPECT_TRUE(none.empty());
}

}  // namespace
}  // namespace distill::models
