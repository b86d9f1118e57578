// `distill import`: a distilled set saved by the Python reference code (MTT, DATM, FTD, TESLA and
// their descendants save `images_best.pt`, `labels_best.pt` and a learned lr as bare tensors with
// torch.save) becomes a distill set file, so `distill eval` (and relabel, export, report) can score
// published sets next to distill's own. Sets saved as images (SRe2L, CV-DD: one folder of PNG or
// JPEG files per class) are read from `import.folder` and normalized as the data.
#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "src/cli/command.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/data/dataset.h"
#include "src/data/readers.h"
#include "src/data/zca.h"
#include "src/eval/synthetic_set.h"
#include "src/io/atomic_file.h"
#include "src/io/tensor_file.h"

namespace distill::cli {
namespace {

struct ImportOptions {
  std::string folder;
  std::string images;
  std::string labels;
  std::string lr;
  std::string labels_are = "auto";
  std::string method = "imported";
  void visit(config::Visitor& v) {
    v.field("folder", folder,
            "instead of images/labels: a folder of class folders of images (SRe2L and CV-DD save "
            "their sets so), classes sorted by name, resized to the data's size and normalized as "
            "the data");
    v.field("images", images,
            "torch.save'd float tensor N,C,H,W in the data's normalized (or ZCA) space, e.g. "
            "images_best.pt");
    v.field("labels", labels, "torch.save'd labels: int N class ids or float N,K (labels_best.pt)");
    v.field("lr", lr, "optional torch.save'd scalar: the learned student lr (syn_lr_best.pt)");
    v.choice("labels_are", labels_are,
             "how to read float labels: auto (rows of non-negative numbers summing to 1 are "
             "probabilities, anything else logits), probabilities, or logits (softmax taken)",
             {"auto", "probabilities", "logits"});
    v.field("method", method, "the method name the set records");
  }
};

struct ImportCommandOptions {
  static constexpr bool kHasPresets = false;
  config::RunOptions run;
  data::DataOptions data;
  ImportOptions import;
  void visit(config::Visitor& v) {
    v.section("run", run);
    v.section("data", data);
    v.section("import", import);
  }
};

at::Tensor load_tensor(const std::string& path, const std::string& key) {
  if (path.empty()) {
    throw Error(key + ": a file is needed (set " + key +
                " = \"FILE.pt\"), or import.folder for a set saved as images");
  }
  c10::IValue value = io::load_ivalue(path);
  if (!value.isTensor()) {
    throw Error(key + " = '" + path + "': expected a tensor saved with torch.save, found a " +
                value.tagKind());
  }
  return value.toTensor().detach().cpu();
}

std::string shape_text(at::IntArrayRef sizes) {
  std::string text;
  for (size_t i = 0; i < sizes.size(); ++i) text += (i ? "x" : "") + std::to_string(sizes[i]);
  return text.empty() ? "a scalar" : text;
}

std::string type_text(const at::Tensor& t) {
  return shape_text(t.sizes()) + " of " + std::string(c10::toString(t.scalar_type()));
}

// A set in the data's space, with what results.json and the summary line say about it.
struct ImportedSet {
  eval::SyntheticSet set;
  nlohmann::json results;
  std::string summary;
  std::shared_ptr<const data::Zca> zca;
};

// The data's space: its normalization and shape. Reading it first lets every check run before
// the run folder is touched.
struct DataSpace {
  data::Normalization norm;
  std::vector<int64_t> shape;  // C, H, W
  int64_t classes = 0;
};

DataSpace data_space(const data::DataOptions& options) {
  auto [train_set, test_set, norm] = data::load_normalized(options);
  return {
      norm, {train_set.channels(), train_set.height(), train_set.width()}, train_set.num_classes};
}

eval::SyntheticSet empty_set(const DataSpace& space, const data::DataOptions& data,
                             const ImportOptions& in) {
  eval::SyntheticSet set;
  set.num_classes = space.classes;
  set.mean = space.norm.mean;
  set.std = space.norm.std;
  set.zca_eps = space.norm.zca ? space.norm.zca->eps() : 0.0;
  set.dataset = data.name;
  set.method = in.method;
  return set;
}

// import.folder: class folders of images in [0, 1], put into the data's space (mean/std, ZCA).
ImportedSet import_folder(const ImportCommandOptions& o) {
  const ImportOptions& in = o.import;
  if (!in.images.empty() || !in.labels.empty() || !in.lr.empty()) {
    throw Error("import.folder = '" + in.folder + "' and import.images/labels/lr are two ways " +
                "to give the set: set only one");
  }
  DataSpace space = data_space(o.data);
  if (space.shape[1] != space.shape[2]) {
    throw Error("import.folder: the data's images are " + shape_text(space.shape) +
                "; folders are read as square images");
  }
  data::Dataset read = data::read_class_folders(in.folder, space.shape[1], space.shape[0]);
  if (read.num_classes != space.classes) {
    throw Error("import.folder = '" + in.folder + "': " + std::to_string(read.num_classes) +
                " class folders, the data (" + o.data.name + ") has " +
                std::to_string(space.classes) + " classes");
  }
  ImportedSet imported{empty_set(space, o.data, in), {}, {}, space.norm.zca};
  data::Dataset normalized = data::normalize(read, space.norm);
  imported.set.images =
      space.norm.zca ? space.norm.zca->apply(normalized.images) : normalized.images;
  imported.set.labels = normalized.labels;
  imported.results["folder"] = in.folder;
  imported.results["class_folders"] = read.class_names;
  imported.results["labels"] = "class ids";
  imported.summary = std::to_string(read.num_classes) + " class folders of " + in.folder;
  return imported;
}

// import.images/labels/lr: tensors as the Python reference code saves them.
ImportedSet import_tensors(const ImportCommandOptions& o) {
  const ImportOptions& in = o.import;
  at::Tensor images = load_tensor(in.images, "import.images");
  at::Tensor labels = load_tensor(in.labels, "import.labels");
  std::optional<double> lr;
  if (!in.lr.empty()) {
    at::Tensor value = load_tensor(in.lr, "import.lr");
    if (value.numel() != 1 || !value.is_floating_point()) {
      throw Error("import.lr = '" + in.lr + "': expected a float scalar, found " +
                  type_text(value));
    }
    lr = value.item<double>();
    if (!(std::isfinite(*lr) && *lr > 0)) {
      throw Error("import.lr = '" + in.lr + "': expected a learning rate > 0, found " +
                  std::to_string(*lr));
    }
  }
  if (images.dim() != 4 || !images.is_floating_point()) {
    throw Error("import.images = '" + in.images + "': expected a float tensor N,C,H,W, found " +
                type_text(images));
  }
  const int64_t n = images.size(0);
  if (n == 0) throw Error("import.images = '" + in.images + "': the tensor holds no images");
  if (const int64_t bad = (~at::isfinite(images)).sum().item<int64_t>(); bad > 0) {
    throw Error("import.images = '" + in.images + "': " + std::to_string(bad) +
                " values are NaN or infinite");
  }
  const bool hard = !labels.is_floating_point();
  if ((hard && labels.dim() != 1) || (!hard && labels.dim() != 2) || labels.size(0) != n) {
    throw Error("import.labels = '" + in.labels + "': expected " + std::to_string(n) +
                " class ids (int, N) or " + std::to_string(n) +
                " rows of class scores (float, N,K) for the " + std::to_string(n) +
                " images, found " + type_text(labels));
  }
  std::string label_kind = "class ids";
  if (!hard) {
    labels = labels.to(at::kFloat);
    if (const int64_t bad = (~at::isfinite(labels)).sum().item<int64_t>(); bad > 0) {
      throw Error("import.labels = '" + in.labels + "': " + std::to_string(bad) +
                  " values are NaN or infinite");
    }
    const bool non_negative = (labels >= 0).all().item<bool>();
    const double off = (labels.sum(1) - 1).abs().max().item<double>();
    const bool probabilities = non_negative && off <= 1e-4;
    if (in.labels_are == "probabilities" && !probabilities) {
      throw Error("import.labels_are = \"probabilities\": the rows of '" + in.labels +
                  "' are not non-negative numbers summing to 1 (use \"logits\" or \"auto\")");
    }
    if (in.labels_are == "auto" && non_negative && !probabilities && off <= 1e-2) {
      // Rounded (fp16) probabilities or logits that happen to look like them: ask.
      throw Error("import.labels = '" + in.labels +
                  "': rows are non-negative and sum to 1 within " + std::to_string(off) +
                  ": set import.labels_are = \"probabilities\" or " + "\"logits\"");
    }
    const bool as_logits = in.labels_are == "logits" || (in.labels_are == "auto" && !probabilities);
    if (as_logits) labels = at::softmax(labels, 1);
    label_kind = as_logits ? "logits (softmax taken)" : "probabilities";
  }

  DataSpace space = data_space(o.data);
  if (images.sizes().slice(1).vec() != space.shape) {
    throw Error("import.images = '" + in.images + "': images are " +
                shape_text(images.sizes().slice(1)) + ", the data (" + o.data.name + ") has " +
                shape_text(space.shape));
  }
  if (hard) {
    labels = labels.to(at::kLong);
    const int64_t low = labels.min().item<int64_t>(), high = labels.max().item<int64_t>();
    if (low < 0 || high >= space.classes) {
      throw Error("import.labels = '" + in.labels + "': class ids must lie in 0.." +
                  std::to_string(space.classes - 1) + " (the data's " +
                  std::to_string(space.classes) + " classes), found " + std::to_string(low) + ".." +
                  std::to_string(high));
    }
  } else if (labels.size(1) != space.classes) {
    throw Error("import.labels = '" + in.labels + "': " + std::to_string(labels.size(1)) +
                " scores per image, the data has " + std::to_string(space.classes) + " classes");
  }

  ImportedSet imported{empty_set(space, o.data, in), {}, {}, space.norm.zca};
  imported.set.images = images.to(at::kFloat).contiguous();
  imported.set.labels = labels.contiguous();
  imported.set.lr = lr;
  imported.results["images_file"] = in.images;
  imported.results["labels_file"] = in.labels;
  if (lr) {
    imported.results["lr_file"] = in.lr;
    imported.results["lr"] = *lr;
  }
  imported.results["labels"] = label_kind;
  imported.summary = "labels: " + label_kind + (lr ? ", learned lr " + std::to_string(*lr) : "");
  return imported;
}

void run_import(ImportCommandOptions& o, const Invocation& invocation) {
  refuse_resume(invocation, "import");
  require_single_process("import");
  set_threads(o.run.threads);  // the data is read (and ZCA fitted) before the run starts
  // Everything is read and checked before the run folder is touched.
  ImportedSet imported = o.import.folder.empty() ? import_tensors(o) : import_folder(o);
  RunContext run = start_run(o.run, config::dump(o), invocation);
  std::filesystem::remove(run.out + "/results.json");  // an earlier run's would look finished
  const eval::SyntheticSet& set = imported.set;
  eval::save_synthetic_set(run.out + "/syn.pt", set);
  eval::save_set_grid(run.out + "/grid.png", set, imported.zca.get());
  imported.results["images"] = set.images.size(0);
  imported.results["images_per_class"] = set.images_per_class();
  io::write_file_atomic(run.out + "/results.json", imported.results.dump(2) + "\n");
  std::cout << "imported " << set.images.size(0) << " images (" << set.images_per_class()
            << " per class, " << imported.summary << ") to " << run.out << "/syn.pt and " << run.out
            << "/grid.png\n";
}

}  // namespace

Command import_command() {
  return make_command<ImportCommandOptions>(
      "import",
      "a set saved by the Python reference code (images_best.pt, labels_best.pt, lr) as a set file",
      "distill import --images images_best.pt --labels labels_best.pt --lr syn_lr_best.pt "
      "--set data.format=cifar10 --set data.path=data/cifar-10-batches-bin --set data.name=cifar10 "
      "--out runs/mtt_c10_ipc10",
      {{"images", "import.images"}, {"labels", "import.labels"}, {"lr", "import.lr"}}, run_import);
}

}  // namespace distill::cli
