#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <functional>
#include <string>
#include <vector>

#include "src/core/error.h"

namespace distill::config {

// The values a numeric setting allows, declared next to the setting:
//   v.field("ema_decay", ema_decay, "...", Range::from_below(0, 1));   // 0 <= x < 1
// Readers refuse anything outside (naming key, range and value) before a command does any work;
// --help shows the range.
struct Range {
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_open = false;  // true: min itself is excluded
  bool max_open = false;

  static Range at_least(double lo) { return {lo, std::numeric_limits<double>::infinity(), false, false}; }
  static Range above(double lo) { return {lo, std::numeric_limits<double>::infinity(), true, false}; }
  static Range between(double lo, double hi) { return {lo, hi, false, false}; }  // lo <= x <= hi
  static Range from_below(double lo, double hi) { return {lo, hi, false, true}; }  // lo <= x < hi
  static Range above_up_to(double lo, double hi) { return {lo, hi, true, false}; }  // lo < x <= hi
  static Range strictly_between(double lo, double hi) { return {lo, hi, true, true}; }  // lo < x < hi

  bool contains(double x) const {
    if (std::isnan(x)) return false;
    return (min_open ? x > min : x >= min) && (max_open ? x < max : x <= max);
  }
  std::string text() const;  // ">= 1", "> 0", "in [0, 1)"
};

// Every options struct lists its settings once, in `void visit(Visitor& v)`:
//   v.field("epochs", epochs, "training epochs");
//   v.choice("optimizer", optimizer, "update rule", {"sgd", "adam", "adamw"});
//   v.section("data", data);
// The TOML reader, --set, --help, `config --dump` and the run folder's config.toml are all
// visitors over that one list, so they cannot disagree.
class Visitor {
 public:
  virtual ~Visitor() = default;
  virtual void field(const char* name, int64_t& value, const char* help) = 0;
  virtual void field(const char* name, double& value, const char* help) = 0;
  virtual void field(const char* name, bool& value, const char* help) = 0;
  virtual void field(const char* name, std::string& value, const char* help) = 0;
  virtual void field(const char* name, std::vector<std::string>& value, const char* help) = 0;
  virtual void field(const char* name, std::vector<int64_t>& value, const char* help) = 0;
  virtual void field(const char* name, std::vector<double>& value, const char* help) = 0;
  // A number restricted to `range` (readers check it once the value is read).
  void field(const char* name, int64_t& value, const char* help, const Range& range) {
    field(name, value, help);
    check_range(name, static_cast<double>(value), range);
  }
  void field(const char* name, double& value, const char* help, const Range& range) {
    field(name, value, help);
    check_range(name, value, range);
  }
  // A rule between settings, stated after the settings it reads, e.g.
  //   v.rule(warmup <= epochs, "train.warmup_epochs must not exceed train.epochs");
  // Readers throw `message` (with the values) when `holds` is false; --help lists the rules.
  virtual void rule(bool holds, const std::string& message) {}

  // A string restricted to `choices`; readers reject anything else, naming the choices.
  virtual void choice(const char* name, std::string& value, const char* help,
                      const std::vector<std::string>& choices) = 0;

  template <class Options>
  void section(const char* name, Options& options) {
    enter(name);
    options.visit(*this);
    leave();
  }

  // An array of tables whose items share one options struct, e.g. KD losses:
  //   v.items("losses", losses, "...");   // losses = [{name = "hinton", T = 4}, {name = "ce"}]
  // Each item is visited like a section; readers name an item's keys `losses[0].T`.
  template <class Item>
  void items(const char* name, std::vector<Item>& list, const char* help) {
    ItemList access;
    access.size = [&list] { return list.size(); };
    // Items read from a file start from Item{}, not from the default list's entries.
    access.resize = [&list](size_t n) { list.assign(n, Item{}); };
    access.visit = [&list](size_t i, Visitor& v) { list[i].visit(v); };
    access.visit_default = [](Visitor& v) {
      Item item;
      item.visit(v);
    };
    item_list(name, access, help);
  }

  // Type-erased access to a std::vector<Item> for item_list().
  struct ItemList {
    std::function<size_t()> size;
    std::function<void(size_t)> resize;
    std::function<void(size_t, Visitor&)> visit;
    std::function<void(Visitor&)> visit_default;  // a default-constructed item (for help)
  };
  // Visitors that handle arrays of tables override this; the default refuses, naming the key,
  // rather than silently skipping the setting.
  virtual void item_list(const char* name, const ItemList& items, const char* help) {
    throw Error(std::string("setting '") + name +
                "' is an array of tables, which this visitor "
                "does not support");
  }

 protected:
  virtual void enter(const char* name) = 0;
  virtual void leave() = 0;
  // Called after field(name, value, ...) of a ranged setting; readers check, help shows.
  virtual void check_range(const char* name, double value, const Range& range) {}
};

// Multi-process runs (src/dist): which launcher variables and c10d pieces to use. A process
// started without WORLD_SIZE (or with WORLD_SIZE=1) is a single process and touches none of this.
struct DistOptions {
  std::string backend = "auto";
  std::string store = "tcp";
  std::string store_path;
  double timeout_s = 1800;

  void visit(Visitor& v) {
    v.choice("backend", backend, "c10d backend: auto (gloo on CPU), gloo or nccl",
             {"auto", "gloo", "nccl"});
    v.choice("store", store,
             "rendezvous: tcp (TCPStore at MASTER_ADDR:MASTER_PORT) or file (FileStore at "
             "store_path, on a file system every rank sees)",
             {"tcp", "file"});
    v.field("store_path", store_path, "store = file: the FileStore path (fresh for each job)");
    v.field("timeout_s", timeout_s,
            "seconds a rank waits in a collective for the others before failing (a dead or hung "
            "peer); after sharded work (experts, committee, recovery, students) ranks wait for "
            "the slowest as long as every peer shows signs of life within min(timeout_s, 60 s)");
  }
};

// Settings shared by every command; --device/--threads/--seed/--out are shorthands for these.
struct RunOptions {
  std::string device = "auto";
  int64_t threads = 0;
  int64_t seed = 0;
  std::string out;  // empty: a fresh runs/<command>/<UTC time> (src/cli/run_context.cpp)
  bool progress = true;
  bool report_on_checkpoint = false;
  DistOptions dist;

  void visit(Visitor& v) {
    v.field("device", device, "auto, cpu, cuda or cuda:N (auto falls back to CPU)");
    v.field("threads", threads, "CPU threads; 0 = all cores (more than the cores: capped, with a warning)",
            Range::at_least(0));
    v.field("seed", seed, "seed of every random draw; same seed, same result on CPU");
    v.field("out", out,
            "run folder for config.toml, metrics.jsonl, checkpoints, results; empty = a fresh "
            "runs/<command>/<UTC time>. A folder holding a run needs --resume or --overwrite");
    v.field("progress", progress, "show a progress bar (TTY) or periodic lines");
    v.field("report_on_checkpoint", report_on_checkpoint,
            "train, mtt: also refresh RUN_DIR/report.html at every checkpoint, not only at the end");
    v.section("dist", dist);
  }
};

}  // namespace distill::config
