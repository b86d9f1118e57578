#include "src/config/config_io.h"

#include <toml++/toml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "src/core/error.h"

namespace distill::config {

struct ConfigSource::Impl {
  toml::table table;
};

ConfigSource::ConfigSource() : impl_(std::make_unique<Impl>()) {}
ConfigSource::~ConfigSource() = default;
ConfigSource::ConfigSource(ConfigSource&&) noexcept = default;
ConfigSource& ConfigSource::operator=(ConfigSource&&) noexcept = default;

namespace {

std::string origin_of(const toml::node& node) {
  const auto& source = node.source();
  std::string path = source.path ? *source.path : std::string("<config>");
  if (path.rfind("--set", 0) == 0) return path;
  return path + ":" + std::to_string(source.begin.line);
}

std::string describe(const toml::node& node) {
  std::ostringstream out;
  switch (node.type()) {
    case toml::node_type::string: out << "string \"" << *node.value<std::string>() << "\""; break;
    case toml::node_type::integer: out << "integer " << *node.value<int64_t>(); break;
    case toml::node_type::floating_point: out << "float " << *node.value<double>(); break;
    case toml::node_type::boolean: out << "boolean " << (*node.value<bool>() ? "true" : "false"); break;
    case toml::node_type::array: out << "an array"; break;
    case toml::node_type::table: out << "a table"; break;
    default: out << "a date/time"; break;
  }
  return out.str();
}

std::string join(const std::vector<std::string>& path, const std::string& last) {
  std::string key;
  for (const auto& part : path) key += part + ".";
  return key + last;
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  std::string part;
  while (std::getline(stream, part, ',')) {
    part.erase(0, part.find_first_not_of(" \t"));
    part.erase(part.find_last_not_of(" \t") + 1);
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

}  // namespace

ConfigSource ConfigSource::from_string(const std::string& text, const std::string& name) {
  ConfigSource source;
  try {
    source.impl_->table = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    throw Error(name + ":" + std::to_string(e.source().begin.line) + ": TOML syntax error: " +
                std::string(e.description()));
  }
  return source;
}

ConfigSource ConfigSource::from_file(const std::string& path) {
  // A folder opens as an empty stream on Linux: it would read as an empty config and a default run
  // would start.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw Error("config file '" + path + "' is a folder; --config expects a TOML file");
  }
  std::ifstream in(path);
  if (!in) throw Error("config file '" + path + "' cannot be opened (no such file?)");
  std::stringstream text;
  text << in.rdbuf();
  return from_string(text.str(), path);
}

void ConfigSource::set(const std::string& assignment) {
  auto eq = assignment.find('=');
  std::string key = eq == std::string::npos ? "" : assignment.substr(0, eq);
  if (key.empty()) {
    throw Error("--set expects key.path=value, found '" + assignment + "'");
  }
  std::string text = assignment.substr(eq + 1);
  std::string origin = "--set " + assignment;
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + text, origin);
  } catch (const toml::parse_error&) {
    // Not a TOML value: take it as a bare string (--set data.name=cifar10), keeping the origin.
    std::ostringstream quoted;
    quoted << toml::value<std::string>(text);
    parsed = toml::parse("v = " + quoted.str(), origin);
  }
  std::vector<std::string> parts;
  std::stringstream stream(key);
  std::string part;
  while (std::getline(stream, part, '.')) parts.push_back(part);
  toml::table* current = &impl_->table;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    toml::node* child = current->get(parts[i]);
    if (!child) {
      current->insert(parts[i], toml::table{});
      child = current->get(parts[i]);
    }
    if (!child->is_table()) {
      throw Error(origin + ": '" + parts[i] + "' is not a section but " + describe(*child));
    }
    current = child->as_table();
  }
  current->insert_or_assign(parts.back(), std::move(*parsed.get("v")));
}

namespace detail {

class Reader : public Visitor {
 public:
  // `prefix` names where `table` sits when it is an item of an array of tables ("kd.losses[0].").
  explicit Reader(const toml::table& table, std::string prefix = "")
      : root_(table), prefix_(std::move(prefix)) {}

  void field(const char* name, int64_t& value, const char* help) override {
    if (const toml::node* node = find(name)) {
      if (!node->is_integer()) fail(*node, name, "an integer");
      value = *node->value<int64_t>();
    }
  }
  void field(const char* name, double& value, const char* help) override {
    if (const toml::node* node = find(name)) {
      if (!node->is_number()) fail(*node, name, "a number");
      value = *node->value<double>();
    }
  }
  void field(const char* name, bool& value, const char* help) override {
    if (const toml::node* node = find(name)) {
      if (!node->is_boolean()) fail(*node, name, "true or false");
      value = *node->value<bool>();
    }
  }
  void field(const char* name, std::string& value, const char* help) override {
    if (const toml::node* node = find(name)) {
      if (!node->is_string()) fail(*node, name, "a string");
      value = *node->value<std::string>();
    }
  }
  void choice(const char* name, std::string& value, const char* help,
              const std::vector<std::string>& choices) override {
    if (const toml::node* node = find(name)) {
      if (!node->is_string()) fail(*node, name, "a string");
      std::string found = *node->value<std::string>();
      if (std::find(choices.begin(), choices.end(), found) == choices.end()) {
        std::string list;
        for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
        std::string hint = closest_match(found, choices);
        throw Error(origin_of(*node) + ": key '" + prefix_ + join(path_, name) +
                    "' expects one of {" +
                    list + "}, found \"" + found + "\"" +
                    (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
      }
      value = found;
    }
  }
  void field(const char* name, std::vector<std::string>& value, const char* help) override {
    read_list(name, value, "strings", [&](const toml::node& n) -> std::optional<std::string> {
      if (auto v = n.value<std::string>(); v && n.is_string()) return *v;
      return std::nullopt;
    });
  }
  void field(const char* name, std::vector<int64_t>& value, const char* help) override {
    read_list(name, value, "integers", [&](const toml::node& n) -> std::optional<int64_t> {
      if (n.is_integer()) return *n.value<int64_t>();
      return std::nullopt;
    });
  }
  void field(const char* name, std::vector<double>& value, const char* help) override {
    read_list(name, value, "numbers", [&](const toml::node& n) -> std::optional<double> {
      if (n.is_number()) return *n.value<double>();
      return std::nullopt;
    });
  }

  void item_list(const char* name, const ItemList& items, const char* help) override {
    const toml::node* node = find(name);
    if (!node) return;
    const toml::array* array = node->as_array();
    if (!array) fail(*node, name, "an array of tables, e.g. [{name = \"a\"}, {name = \"b\"}]");
    items.resize(array->size());
    for (size_t i = 0; i < array->size(); ++i) {
      const toml::node& item = *array->get(i);
      const std::string item_key = prefix_ + join(path_, name) + "[" + std::to_string(i) + "]";
      if (!item.is_table()) {
        throw Error(origin_of(item) + ": key '" + item_key + "' expects a table ({key = value, "
                    "...}), found " + describe(item));
      }
      Reader reader(*item.as_table(), item_key + ".");
      items.visit(i, reader);
      reader.finish();
    }
  }

  void finish() const { check_unknown(root_, {}); }

  void rule(bool holds, const std::string& message) override {
    if (!holds) throw Error("settings: " + message);
  }

 protected:
  void enter(const char* name) override {
    path_.push_back(name);
    known_sections_.insert(join({}, key_of(path_)));
  }
  void check_range(const char* name, double value, const Range& range) override {
    if (range.contains(value)) return;
    const toml::node* node = find(name);
    std::ostringstream found;
    found << value;
    throw Error((node ? origin_of(*node) : std::string("default")) + ": key '" + prefix_ +
                join(path_, name) + "' must be " + range.text() + ", found " + found.str());
  }
  void leave() override { path_.pop_back(); }

 private:
  static std::string key_of(const std::vector<std::string>& path) {
    std::string key;
    for (size_t i = 0; i < path.size(); ++i) key += (i ? "." : "") + path[i];
    return key;
  }

  const toml::node* find(const char* name) {
    std::string key = join(path_, name);
    known_keys_.push_back(key);
    const toml::table* table = &root_;
    std::vector<std::string> walked;
    for (const auto& part : path_) {
      const toml::node* child = table->get(part);
      walked.push_back(part);
      if (!child) return nullptr;
      if (!child->is_table()) {
        throw Error(origin_of(*child) + ": key '" + prefix_ + key_of(walked) +
                    "' should be a section (table), found " + describe(*child));
      }
      table = child->as_table();
    }
    return table->get(name);
  }

  [[noreturn]] void fail(const toml::node& node, const char* name, const char* expected) const {
    throw Error(origin_of(node) + ": key '" + prefix_ + join(path_, name) + "' expects " + expected +
                ", found " + describe(node));
  }

  template <class T, class Convert>
  void read_list(const char* name, std::vector<T>& value, const char* what, Convert convert) {
    const toml::node* node = find(name);
    if (!node) return;
    std::vector<T> out;
    if (const toml::array* array = node->as_array()) {
      for (const toml::node& item : *array) {
        auto converted = convert(item);
        if (!converted) fail(item, name, (std::string("an array of ") + what).c_str());
        out.push_back(*converted);
      }
    } else if (node->is_string()) {
      // "a,b,c" is accepted so --set eval.models=convnet,mlp works without TOML quoting.
      for (const std::string& part : split_commas(*node->value<std::string>())) {
        std::optional<T> converted;
        if constexpr (std::is_same_v<T, std::string>) {
          converted = part;
        } else {
          try {
            toml::table parsed = toml::parse("v = " + part, std::string("--set"));
            if (const toml::node* item = parsed.get("v")) converted = convert(*item);
          } catch (const toml::parse_error&) {
          }
        }
        if (!converted) fail(*node, name, (std::string("an array of ") + what).c_str());
        out.push_back(*converted);
      }
    } else {
      fail(*node, name, (std::string("an array of ") + what).c_str());
    }
    value = std::move(out);
  }

  static bool is_command_section(const std::string& name) {
    static const std::vector<std::string> sections = {
        "train", "subset", "eval", "experts", "mtt", "kd", "bench", "report", "committee", "synth",
        "diffusion", "committee_labels", "import", "distill"};
    return std::find(sections.begin(), sections.end(), name) != sections.end();
  }

  static bool holds_set_value(const toml::table& table) {
    for (const auto& [key, node] : table) {
      if (node.is_table() ? holds_set_value(*node.as_table())
                          : origin_of(node).rfind("--set", 0) == 0) {
        return true;
      }
    }
    return false;
  }

  void check_unknown(const toml::table& table, const std::vector<std::string>& path) const {
    for (const auto& [key, node] : table) {
      std::vector<std::string> child_path = path;
      child_path.push_back(std::string(key.str()));
      std::string full = key_of(child_path);
      bool is_known_key =
          std::find(known_keys_.begin(), known_keys_.end(), full) != known_keys_.end();
      if (is_known_key) continue;
      if (node.is_table() && known_sections_.count(full)) {
        check_unknown(*node.as_table(), child_path);
        continue;
      }
      // A preset may configure a whole pipeline (experts, mtt, eval, ...): each command reads
      // its own sections and leaves the other commands' top-level sections to them.
      // Only from files: `--set mtt.ipc=1` given to another command is still an error.
      if (path.empty() && node.is_table() && is_command_section(full) &&
          !holds_set_value(*node.as_table())) {
        continue;
      }
      std::vector<std::string> candidates = known_keys_;
      candidates.insert(candidates.end(), known_sections_.begin(), known_sections_.end());
      std::string hint = closest_match(full, candidates);
      throw Error(origin_of(node) + ": unknown key '" + prefix_ + full + "'" +
                  (hint.empty() ? "" : " (did you mean '" + prefix_ + hint + "'?)") +
                  "; see --help for the settings of this command");
    }
  }

  const toml::table& root_;
  std::string prefix_;
  std::vector<std::string> path_;
  std::vector<std::string> known_keys_;
  std::set<std::string> known_sections_;
};

void read_visit(const ConfigSource& source, const std::function<void(Visitor&)>& visit_all) {
  Reader reader(source.impl().table);
  visit_all(reader);
  reader.finish();
}

namespace {

class Writer : public Visitor {
 public:
  Writer() { stack_.push_back(&root_); }
  void field(const char* name, int64_t& value, const char*) override { put(name, value); }
  void field(const char* name, double& value, const char*) override { put(name, value); }
  void field(const char* name, bool& value, const char*) override { put(name, value); }
  void field(const char* name, std::string& value, const char*) override { put(name, value); }
  void choice(const char* name, std::string& value, const char*,
              const std::vector<std::string>&) override {
    put(name, value);
  }
  void field(const char* name, std::vector<std::string>& value, const char*) override {
    put_list(name, value);
  }
  void field(const char* name, std::vector<int64_t>& value, const char*) override {
    put_list(name, value);
  }
  void field(const char* name, std::vector<double>& value, const char*) override {
    put_list(name, value);
  }
  void item_list(const char* name, const ItemList& items, const char*) override {
    toml::array array;
    for (size_t i = 0; i < items.size(); ++i) {
      Writer item;
      items.visit(i, item);
      array.push_back(std::move(item.root_));
    }
    stack_.back()->insert_or_assign(name, std::move(array));
  }
  std::string text() const {
    std::ostringstream out;
    out << toml::toml_formatter(root_) << "\n";
    return out.str();
  }
  const toml::table& table() const { return root_; }

 protected:
  void enter(const char* name) override {
    stack_.back()->insert_or_assign(name, toml::table{});
    stack_.push_back(stack_.back()->get(name)->as_table());
  }
  void leave() override { stack_.pop_back(); }

 private:
  template <class T>
  void put(const char* name, const T& value) {
    stack_.back()->insert_or_assign(name, value);
  }
  template <class T>
  void put_list(const char* name, const std::vector<T>& values) {
    toml::array array;
    for (const auto& v : values) array.push_back(v);
    stack_.back()->insert_or_assign(name, std::move(array));
  }
  toml::table root_;
  std::vector<toml::table*> stack_;
};

class HelpPrinter : public Visitor {
 public:
  void field(const char* name, int64_t& value, const char* help) override {
    line(name, "integer", std::to_string(value), help);
  }
  void field(const char* name, double& value, const char* help) override {
    std::ostringstream v;
    v << value;
    line(name, "number", v.str(), help);
  }
  void field(const char* name, bool& value, const char* help) override {
    line(name, "bool", value ? "true" : "false", help);
  }
  void field(const char* name, std::string& value, const char* help) override {
    line(name, "string", "\"" + value + "\"", help);
  }
  void choice(const char* name, std::string& value, const char* help,
              const std::vector<std::string>& choices) override {
    std::string list;
    for (const auto& c : choices) list += (list.empty() ? "" : "|") + c;
    line(name, list, "\"" + value + "\"", help);
  }
  void field(const char* name, std::vector<std::string>& value, const char* help) override {
    std::string v;
    for (const auto& s : value) v += (v.empty() ? "" : ", ") + ("\"" + s + "\"");
    line(name, "strings", "[" + v + "]", help);
  }
  void field(const char* name, std::vector<int64_t>& value, const char* help) override {
    std::string v;
    for (auto x : value) v += (v.empty() ? "" : ", ") + std::to_string(x);
    line(name, "integers", "[" + v + "]", help);
  }
  void field(const char* name, std::vector<double>& value, const char* help) override {
    std::ostringstream v;
    for (size_t i = 0; i < value.size(); ++i) v << (i ? ", " : "") << value[i];
    line(name, "numbers", "[" + v.str() + "]", help);
  }
  // Lists the item's settings under `name[].key`, with the default list written out.
  void item_list(const char* name, const ItemList& items, const char* help) override {
    Writer defaults;
    defaults.item_list(name, items, help);
    // Compact: [{name = "hinton", T = 4}, ...] with numbers in %g form.
    std::ostringstream value;
    value << "[";
    const toml::array& list = *defaults.table().get(name)->as_array();
    for (size_t i = 0; i < list.size(); ++i) {
      value << (i ? ", " : "") << "{";
      bool first = true;
      for (const auto& [key, node] : *list.get(i)->as_table()) {
        value << (first ? "" : ", ") << key.str() << " = ";
        first = false;
        if (node.is_string()) {
          value << "\"" << *node.value<std::string>() << "\"";
        } else if (node.is_number()) {
          value << *node.value<double>();
        } else if (node.is_boolean()) {
          value << (*node.value<bool>() ? "true" : "false");
        } else {
          value << "...";
        }
      }
      value << "}";
    }
    value << "]";
    line(name, "array of tables", value.str(), help);
    path_.push_back(std::string(name) + "[]");
    items.visit_default(*this);
    path_.pop_back();
  }
  std::string text() const { return out_.str(); }

  void rule(bool, const std::string& message) override { out_ << "  rule: " << message << "\n"; }

 protected:
  void enter(const char* name) override { path_.push_back(name); }
  void leave() override { path_.pop_back(); }
  void check_range(const char* name, double, const Range& range) override {
    out_ << "      allowed: " << range.text() << "\n";
  }

 private:
  void line(const char* name, const std::string& type, const std::string& def, const char* help) {
    std::string key = join(path_, name);
    out_ << "  " << key << " (" << type << ", default " << def << ")\n      " << help << "\n";
  }
  std::vector<std::string> path_;
  std::ostringstream out_;
};

}  // namespace

std::string dump_visit(const std::function<void(Visitor&)>& visit_all) {
  Writer writer;
  visit_all(writer);
  return writer.text();
}

std::string help_visit(const std::function<void(Visitor&)>& visit_all) {
  HelpPrinter printer;
  visit_all(printer);
  return printer.text();
}

namespace {

// Checks the declared ranges, choices and rules of settings filled in code (a library caller's
// options), with the messages the reader gives.
class Checker : public Visitor {
 public:
  explicit Checker(const std::string& prefix) {
    if (!prefix.empty()) path_.push_back(prefix);
  }
  void field(const char*, int64_t&, const char*) override {}
  void field(const char*, double&, const char*) override {}
  void field(const char*, bool&, const char*) override {}
  void field(const char*, std::string&, const char*) override {}
  void field(const char*, std::vector<std::string>&, const char*) override {}
  void field(const char*, std::vector<int64_t>&, const char*) override {}
  void field(const char*, std::vector<double>&, const char*) override {}
  void choice(const char* name, std::string& value, const char*,
              const std::vector<std::string>& choices) override {
    if (std::find(choices.begin(), choices.end(), value) != choices.end()) return;
    std::string list;
    for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
    throw Error("key '" + join(path_, name) + "' expects one of {" + list + "}, found \"" + value +
                "\"");
  }
  void rule(bool holds, const std::string& message) override {
    if (!holds) throw Error("settings: " + message);
  }
  void item_list(const char* name, const ItemList& items, const char*) override {
    for (size_t i = 0; i < items.size(); ++i) {
      path_.push_back(std::string(name) + "[" + std::to_string(i) + "]");
      items.visit(i, *this);
      path_.pop_back();
    }
  }

 protected:
  void enter(const char* name) override { path_.push_back(name); }
  void leave() override { path_.pop_back(); }
  void check_range(const char* name, double value, const Range& range) override {
    if (range.contains(value)) return;
    std::ostringstream found;
    found << value;
    throw Error("key '" + join(path_, name) + "' must be " + range.text() + ", found " +
                found.str());
  }

 private:
  std::vector<std::string> path_;
};

}  // namespace

void check_visit(const std::string& prefix, const std::function<void(Visitor&)>& visit_all) {
  Checker checker(prefix);
  visit_all(checker);
}

}  // namespace detail

std::string Range::text() const {
  auto number = [](double x) {
    std::ostringstream out;
    out << x;
    return out.str();
  };
  const bool has_min = std::isfinite(min);
  const bool has_max = std::isfinite(max);
  if (has_min && !has_max) return (min_open ? "> " : ">= ") + number(min);
  if (!has_min && has_max) return (max_open ? "< " : "<= ") + number(max);
  return std::string("in ") + (min_open ? "(" : "[") + number(min) + ", " + number(max) +
         (max_open ? ")" : "]");
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  auto distance = [](const std::string& a, const std::string& b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      size_t diagonal = row[0];
      row[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
        diagonal = up;
      }
    }
    return row[b.size()];
  };
  std::string best;
  size_t best_distance = std::string::npos;
  for (const auto& candidate : candidates) {
    size_t d = distance(word, candidate);
    if (d < best_distance) {
      best_distance = d;
      best = candidate;
    }
  }
  // Accept up to a third of the word's length in edits (at least 2): typos, not unrelated words.
  size_t limit = std::max<size_t>(2, word.size() / 3);
  return best_distance <= limit ? best : "";
}

}  // namespace distill::config
