#pragma once
// Starting the ranks of a small local job from a test: each rank is a child process (this test
// binary re-run on one worker test, or the distill binary) with the launcher variables torchrun
// would set, on 127.0.0.1 and a free port.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace distill::testing {

// A TCP port nobody listens on right now (bind to port 0, read it back, release it).
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

struct Rank {
  pid_t pid = -1;
  std::string log;  // the child's stdout+stderr
  int exit_code = -1;
  bool finished = false;
};

// Starts `argv` with RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT (+ `extra_env`
// "NAME=value" entries) set, output to `log`.
inline Rank start_rank(const std::vector<std::string>& argv, int rank, int world, int port,
                       const std::string& log, const std::vector<std::string>& extra_env = {}) {
  Rank r;
  r.log = log;
  pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<std::string> env = {"RANK=" + std::to_string(rank),
                                    "WORLD_SIZE=" + std::to_string(world),
                                    "LOCAL_RANK=" + std::to_string(rank), "MASTER_ADDR=127.0.0.1",
                                    "MASTER_PORT=" + std::to_string(port)};
    env.insert(env.end(), extra_env.begin(), extra_env.end());
    for (const auto& e : env) ::putenv(::strdup(e.c_str()));
    FILE* out = std::freopen(log.c_str(), "w", stdout);
    if (out) ::dup2(::fileno(stdout), 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  r.pid = pid;
  return r;
}

// Waits until every rank exited or `seconds` passed; ranks still running then are killed (and
// left with finished = false). Returns the seconds waited.
inline double wait_ranks(std::vector<Rank>& ranks, double seconds) {
  auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  for (;;) {
    bool all = true;
    for (auto& r : ranks) {
      if (r.finished || r.pid < 0) continue;
      int status = 0;
      if (::waitpid(r.pid, &status, WNOHANG) == r.pid) {
        r.finished = true;
        r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      } else {
        all = false;
      }
    }
    if (all) return elapsed();
    if (elapsed() > seconds) {
      for (auto& r : ranks) {
        if (!r.finished && r.pid > 0) {
          ::kill(r.pid, SIGKILL);
          ::waitpid(r.pid, nullptr, 0);
        }
      }
      return elapsed();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// This test binary (for re-running it as a worker).
inline std::string self_binary() {
  char buffer[4096];
  ssize_t n = ::readlink("/proc/self/exe", buffer, sizeof buffer - 1);
  return std::string(buffer, n > 0 ? static_cast<size_t>(n) : 0);
}

}  // namespace distill::testing
