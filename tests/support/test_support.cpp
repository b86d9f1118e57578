#include "tests/support/test_support.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sys/wait.h>

namespace distill::testing {

namespace fs = std::filesystem;

TempDir::TempDir() {
  std::random_device device;
  fs::path base = fs::temp_directory_path();
  for (int attempt = 0; attempt < 100; ++attempt) {
    fs::path candidate = base / ("distill_test_" + std::to_string(device()));
    if (fs::create_directory(candidate)) {
      path_ = candidate.string();
      return;
    }
  }
  throw std::runtime_error("cannot create a temporary folder");
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string reference_python() {
  static const std::string python = [] {
    const char* override_python = std::getenv("DISTILL_REFERENCE_PYTHON");
    std::string candidate = override_python ? override_python : "/usr/bin/python3";
    if (!fs::exists(candidate)) return std::string();
    CommandResult probe = run_command(candidate + " -c 'import torch' 2>&1");
    return probe.exit_code == 0 ? candidate : std::string();
  }();
  return python;
}

bool tools_required() {
  const char* need = std::getenv("DISTILL_TESTS_NEED_TOOLS");
  return need != nullptr && std::string(need) == "1";
}

CommandResult run_command(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return result;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), n);
  int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

CommandResult run_python_script(const std::string& script, const std::vector<std::string>& args) {
  std::string command = "OMP_NUM_THREADS=1 " + reference_python() + " " + source_dir() +
                        "/tests/python/" + script;
  for (const auto& arg : args) command += " '" + arg + "'";
  CommandResult result = run_command(command);
  EXPECT_EQ(result.exit_code, 0) << command << "\n" << result.output;
  return result;
}

namespace {
std::string from_env_or(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}
}  // namespace

std::string distill_binary() { return from_env_or("DISTILL_BIN", DISTILL_TEST_BIN); }
std::string source_dir() { return from_env_or("DISTILL_SOURCE_DIR", DISTILL_TEST_SOURCE_DIR); }
std::string torchrun() { return from_env_or("DISTILL_TORCHRUN", DISTILL_TEST_TORCHRUN); }

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace distill::testing
