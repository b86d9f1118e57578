#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "src/config/options.h"

namespace distill::config {

// The raw settings of one invocation: a TOML file (optional) with `--set key.path=value`
// overrides applied on top. Values remember where they came from for error messages.
class ConfigSource {
 public:
  ConfigSource();
  ~ConfigSource();
  ConfigSource(ConfigSource&&) noexcept;
  ConfigSource& operator=(ConfigSource&&) noexcept;

  // Parses a TOML file; Error with file:line on a syntax error.
  static ConfigSource from_file(const std::string& path);
  static ConfigSource from_string(const std::string& text, const std::string& name);

  // Applies "a.b.c=value"; the value is read as TOML (numbers, booleans, arrays, quoted strings)
  // and otherwise taken as a bare string, so `--set data.name=cifar10` works.
  void set(const std::string& assignment);

  struct Impl;  // holds the parsed TOML table (kept out of this header: toml++ is heavy)
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Fills `options` from `source`. Errors name the key, the expected type and the file:line (or
// the --set argument). Keys that no setting consumes are errors with a "did you mean" hint.
template <class Options>
void read(const ConfigSource& source, Options& options);

// The effective settings as TOML text (what `config --dump` prints and runs save).
template <class Options>
std::string dump(Options& options);

// One line per setting: "  section.key (type, default: value)  help".
template <class Options>
std::string help(Options& options);

// Checks settings filled in code (not read from a file) against their declared ranges, choices
// and rules, with the reader's messages: what a library entry point calls on the options it is
// given, so every rule is written once, next to its setting. `prefix` names the section in
// messages ("mtt.matching").
template <class Options>
void check(const Options& options, const std::string& prefix);

// Closest candidate by edit distance, or "" when none is close.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

namespace detail {
void read_visit(const ConfigSource& source, const std::function<void(Visitor&)>& visit_all);
std::string dump_visit(const std::function<void(Visitor&)>& visit_all);
std::string help_visit(const std::function<void(Visitor&)>& visit_all);
void check_visit(const std::string& prefix, const std::function<void(Visitor&)>& visit_all);
}  // namespace detail

template <class Options>
void read(const ConfigSource& source, Options& options) {
  detail::read_visit(source, [&](Visitor& v) { options.visit(v); });
}

template <class Options>
std::string dump(Options& options) {
  return detail::dump_visit([&](Visitor& v) { options.visit(v); });
}

template <class Options>
void check(const Options& options, const std::string& prefix) {
  Options copy = options;  // visiting needs mutable fields; checking changes none
  detail::check_visit(prefix, [&](Visitor& v) { copy.visit(v); });
}

template <class Options>
std::string help(Options& options) {
  return detail::help_visit([&](Visitor& v) { options.visit(v); });
}

}  // namespace distill::config
