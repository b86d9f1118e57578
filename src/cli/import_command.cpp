// `distill import`: a distilled set saved by the Python reference code (MTT, DATM, FTD, TESLA and
// their descendants save `images_best.pt`, `labels_best.pt` and a learned lr as bare tensors with
// torch.save) becomes a distill set file, so `distill eval` (and relabel, export, report) can score
// published sets next to distill's own. Sets saved as images (SRe2L, CV-DD: one folder of PNG or
// JPEG files per class) are read from `import.folder` and normalized as the data.
#include <ATen/ATen.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "src/cli/command.h"
#include "src/core/error.h"
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

// import.folder: class folders of images in [0, 1], put into the data's space (mean/std, ZCA).
void import_folder(ImportCommandOptions& o, const RunContext& run) {
  const ImportOptions& in = o.import;
  auto [train_set, test_set, norm] = data::load_normalized(o.data);
  if (train_set.height() != train_set.width()) {
    throw Error("import.folder: the data's images are " + std::to_string(train_set.height()) + "x" +
                std::to_string(train_set.width()) + "; folders are read as square images");
  }
  data::Dataset read =
      data::read_class_folders(in.folder, train_set.height(), train_set.channels());
  if (read.num_classes != train_set.num_classes) {
    throw Error("import.folder = '" + in.folder + "': " + std::to_string(read.num_classes) +
                " class folders, the data (" + o.data.name + ") has " +
                std::to_string(train_set.num_classes) + " classes");
  }
  data::Dataset normalized = data::normalize(read, norm);
  eval::SyntheticSet set;
  set.images = norm.zca ? norm.zca->apply(normalized.images) : normalized.images;
  set.labels = normalized.labels;
  set.num_classes = train_set.num_classes;
  set.mean = norm.mean;
  set.std = norm.std;
  set.zca_eps = norm.zca ? norm.zca->eps() : 0.0;
  set.dataset = o.data.name;
  set.method = in.method;
  eval::save_synthetic_set(run.out + "/syn.pt", set);
  eval::save_set_grid(run.out + "/grid.png", set, norm.zca.get());
  nlohmann::json results;
  results["folder"] = in.folder;
  results["class_folders"] = read.class_names;
  results["images"] = set.images.size(0);
  results["labels"] = "class ids";
  results["images_per_class"] = set.images_per_class();
  io::write_file_atomic(run.out + "/results.json", results.dump(2) + "\n");
  std::cout << "imported " << set.images.size(0) << " images (" << set.images_per_class()
            << " per class, " << read.num_classes << " class folders) from " << in.folder << " to "
            << run.out << "/syn.pt and " << run.out << "/grid.png\n";
}

void run_import(ImportCommandOptions& o, const Invocation& invocation) {
  refuse_resume(invocation, "import");
  require_single_process("import");
  const ImportOptions& in = o.import;
  if (!in.folder.empty()) {
    if (!in.images.empty() || !in.labels.empty() || !in.lr.empty()) {
      throw Error("import.folder = '" + in.folder + "' and import.images/labels/lr are two ways " +
                  "to give the set: set only one");
    }
    return import_folder(o, start_run(o.run, config::dump(o)));
  }
  // Inputs are checked before the data is read or anything is written.
  at::Tensor images = load_tensor(in.images, "import.images");
  at::Tensor labels = load_tensor(in.labels, "import.labels");
  std::optional<double> lr;
  if (!in.lr.empty()) {
    at::Tensor value = load_tensor(in.lr, "import.lr");
    if (value.numel() != 1 || !value.is_floating_point()) {
      throw Error("import.lr = '" + in.lr + "': expected a float scalar, found " +
                  shape_text(value.sizes()) + " of " +
                  std::string(c10::toString(value.scalar_type())));
    }
    lr = value.item<double>();
  }
  if (images.dim() != 4 || !images.is_floating_point()) {
    throw Error("import.images = '" + in.images + "': expected a float tensor N,C,H,W, found " +
                shape_text(images.sizes()) + " of " +
                std::string(c10::toString(images.scalar_type())));
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
                " images, found " + shape_text(labels.sizes()) + " of " +
                std::string(c10::toString(labels.scalar_type())));
  }

  std::string label_kind = "class ids";
  if (!hard) {
    labels = labels.to(at::kFloat);
    const bool rows_are_probabilities =
        (labels >= 0).all().item<bool>() &&
        at::allclose(labels.sum(1), at::ones({n}), /*rtol=*/0, /*atol=*/1e-4);
    if (in.labels_are == "probabilities" && !rows_are_probabilities) {
      throw Error("import.labels_are = \"probabilities\": the rows of '" + in.labels +
                  "' are not non-negative numbers summing to 1 (use \"logits\" or \"auto\")");
    }
    const bool as_logits =
        in.labels_are == "logits" || (in.labels_are == "auto" && !rows_are_probabilities);
    if (as_logits) labels = at::softmax(labels, 1);
    label_kind = as_logits ? "logits (softmax taken)" : "probabilities";
  }

  RunContext run = start_run(o.run, config::dump(o));
  auto [train_set, test_set, norm] = data::load_normalized(o.data);
  const std::vector<int64_t> expected = {train_set.channels(), train_set.height(),
                                         train_set.width()};
  if (images.sizes().slice(1).vec() != expected) {
    throw Error("import.images = '" + in.images + "': images are " +
                shape_text(images.sizes().slice(1)) + ", the data (" + o.data.name + ") has " +
                shape_text(expected));
  }
  const int64_t classes = train_set.num_classes;
  if (hard) {
    labels = labels.to(at::kLong);
    if (labels.min().item<int64_t>() < 0 || labels.max().item<int64_t>() >= classes) {
      throw Error("import.labels = '" + in.labels + "': class ids must lie in 0.." +
                  std::to_string(classes - 1) + " (the data's " + std::to_string(classes) +
                  " classes), found " + std::to_string(labels.min().item<int64_t>()) + ".." +
                  std::to_string(labels.max().item<int64_t>()));
    }
  } else if (labels.size(1) != classes) {
    throw Error("import.labels = '" + in.labels + "': " + std::to_string(labels.size(1)) +
                " scores per image, the data has " + std::to_string(classes) + " classes");
  }

  eval::SyntheticSet set;
  set.images = images.to(at::kFloat).contiguous();
  set.labels = labels.contiguous();
  set.num_classes = classes;
  set.mean = norm.mean;
  set.std = norm.std;
  set.lr = lr;
  set.zca_eps = norm.zca ? norm.zca->eps() : 0.0;
  set.dataset = o.data.name;
  set.method = in.method;
  eval::save_synthetic_set(run.out + "/syn.pt", set);
  eval::save_set_grid(run.out + "/grid.png", set, norm.zca.get());

  nlohmann::json results;
  results["images_file"] = in.images;
  results["labels_file"] = in.labels;
  if (!in.lr.empty()) results["lr_file"] = in.lr;
  results["images"] = n;
  results["labels"] = label_kind;
  results["images_per_class"] = set.images_per_class();
  if (lr) results["lr"] = *lr;
  io::write_file_atomic(run.out + "/results.json", results.dump(2) + "\n");
  std::cout << "imported " << n << " images (" << set.images_per_class()
            << " per class, labels: " << label_kind
            << (lr ? ", learned lr " + std::to_string(*lr) : std::string()) << ") to " << run.out
            << "/syn.pt and " << run.out << "/grid.png\n";
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
