#include "src/dist/process_group.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if DISTILL_WITH_NCCL
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "src/core/error.h"
#include "src/dist/process_group_compat.h"

namespace distill::dist {
namespace {

int64_t parse_int(const char* name, const char* text) {
  std::string value(text);
  size_t used = 0;
  int64_t parsed = 0;
  try {
    parsed = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != value.size()) {
    throw Error("environment variable " + std::string(name) + "=\"" + value +
                "\": expected an integer");
  }
  return parsed;
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

std::string what_of(const std::exception& e) {
  if (auto* c10 = dynamic_cast<const c10::Error*>(&e))
    return first_line(c10->what_without_backtrace());
  return first_line(e.what());
}

bool is_loopback(const std::string& address) {
  return address == "localhost" || address.rfind("127.", 0) == 0 || address == "::1";
}

}  // namespace

LaunchEnv read_launch_env(const GetEnv& getenv_fn) {
  GetEnv get = getenv_fn ? getenv_fn : [](const char* name) { return std::getenv(name); };
  LaunchEnv env;
  const char* world = get("WORLD_SIZE");
  if (world == nullptr || *world == '\0') return env;
  env.world_size = parse_int("WORLD_SIZE", world);
  if (env.world_size < 1) {
    throw Error("environment variable WORLD_SIZE=" + std::string(world) + ": expected >= 1");
  }
  if (env.world_size == 1) return env;
  const char* rank = get("RANK");
  if (rank == nullptr || *rank == '\0') {
    throw Error("environment variable WORLD_SIZE=" + std::string(world) +
                " but RANK is not set (launch with torchrun, or set RANK for every process)");
  }
  env.rank = parse_int("RANK", rank);
  if (env.rank < 0 || env.rank >= env.world_size) {
    throw Error("environment variable RANK=" + std::string(rank) + ": expected 0.." +
                std::to_string(env.world_size - 1) + " for WORLD_SIZE=" + std::string(world));
  }
  if (const char* local = get("LOCAL_RANK"); local && *local) {
    env.local_rank = parse_int("LOCAL_RANK", local);
    if (env.local_rank < 0) {
      throw Error("environment variable LOCAL_RANK=" + std::string(local) + ": expected >= 0");
    }
  }
  if (const char* addr = get("MASTER_ADDR"); addr && *addr) env.master_addr = addr;
  if (const char* port = get("MASTER_PORT"); port && *port) {
    env.master_port = parse_int("MASTER_PORT", port);
    if (env.master_port < 1 || env.master_port > 65535) {
      throw Error("environment variable MASTER_PORT=" + std::string(port) +
                  ": expected a TCP port 1..65535");
    }
  }
  if (const char* agent = get("TORCHELASTIC_USE_AGENT_STORE");
      agent && std::string(agent) == "True") {
    env.agent_store = true;
    if (const char* restarts = get("TORCHELASTIC_RESTART_COUNT"); restarts && *restarts) {
      env.restart_count = parse_int("TORCHELASTIC_RESTART_COUNT", restarts);
    }
  }
  return env;
}

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<CollectiveBackend> group;
  std::string backend = "gloo";
  // Where collectives run: the CPU for Gloo, this rank's GPU for NCCL. Tensors elsewhere are
  // copied there and back.
  c10::Device device = c10::Device(c10::kCPU);

  at::Tensor on_device(const at::Tensor& tensor) const { return tensor.to(device).contiguous(); }
  std::string where;          // "rank 1 of 2" for messages
  mutable int64_t waits = 0;  // wait_for_peers calls so far (the same sequence on every rank)
  double liveness_s = 60;     // a peer whose heartbeat stops this long is taken for dead

  // The sign of life wait_for_peers watches: this rank's counter, raised every `interval` until
  // the group goes away. A failed raise (a store hiccup, or rank 0 gone) is retried at the next
  // beat: whoever waits on this rank finds a dead store out through its own store calls.
  std::thread heartbeat;
  std::mutex heartbeat_mutex;
  std::condition_variable heartbeat_stop_signal;
  bool heartbeat_stop = false;

  static std::string alive_key(int64_t rank) { return "distill/alive/" + std::to_string(rank); }

  void start_heartbeat(int64_t rank, std::chrono::milliseconds interval) {
    store->add(alive_key(rank), 1);
    heartbeat = std::thread([this, rank, interval] {
      std::unique_lock<std::mutex> lock(heartbeat_mutex);
      while (!heartbeat_stop_signal.wait_for(lock, interval, [this] { return heartbeat_stop; })) {
        try {
          store->add(alive_key(rank), 1);
        } catch (const std::exception&) {
        }
      }
    });
  }

  // A key's value as text, "" while the key does not exist yet (get() would block until it does).
  std::string text(const std::string& key) const {
    if (!store->check({key})) return "";
    const std::vector<uint8_t> value = store->get(key);
    return std::string(value.begin(), value.end());
  }

  // A counter's value without changing it (add(key, 0) would append a record to a FileStore at
  // every poll); -1 while the key does not exist yet.
  int64_t counter(const std::string& key) const {
    const std::string value = text(key);
    return value.empty() ? -1 : std::stoll(value);
  }

  ~Impl() {
    if (!heartbeat.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(heartbeat_mutex);
      heartbeat_stop = true;
    }
    heartbeat_stop_signal.notify_all();
    heartbeat.join();
  }

  // Runs a collective and turns any failure into one clear line.
  template <class Fn>
  void run(const char* op, double timeout_s, Fn&& fn) const {
    try {
      fn();
    } catch (const std::exception& e) {
      throw RuntimeFailure(
          where + ": " + op + " failed: " + what_of(e) +
          " (another rank died, or did not reach the same " + op + " within " +
          "run.dist.timeout_s = " + std::to_string(static_cast<int64_t>(timeout_s)) + " s)");
    }
  }
};

ProcessGroup::ProcessGroup() = default;
ProcessGroup::~ProcessGroup() = default;

std::shared_ptr<ProcessGroup> ProcessGroup::from_environment(const config::DistOptions& options) {
  return create(options, read_launch_env());
}

std::shared_ptr<ProcessGroup> ProcessGroup::create(const config::DistOptions& options,
                                                   const LaunchEnv& env) {
  auto group = std::make_shared<ProcessGroup>();
  if (env.world_size <= 1) return group;
  if (!(options.timeout_s > 0)) {
    throw Error("run.dist.timeout_s must be > 0, found " + std::to_string(options.timeout_s));
  }
  if (options.backend == "nccl") {
#if DISTILL_WITH_NCCL
    if (!at::hasCUDA()) {
      throw Error("run.dist.backend = \"nccl\": NCCL runs collectives between GPUs and rank " +
                  std::to_string(env.rank) +
                  " sees no GPU; use run.dist.backend = \"gloo\" or \"auto\"");
    }
#else
    // A CPU-only LibTorch (Debian's) has no NCCL.
    throw Error(
        "run.dist.backend = \"nccl\": this distill's LibTorch (" TORCH_VERSION
        ") is built without CUDA, hence without NCCL; use run.dist.backend = \"gloo\" or "
        "\"auto\", or build against a CUDA LibTorch (README: LibTorch lines and GPUs)");
#endif
  }
  // Gloo writes to its peers' sockets: when a peer dies, a write to the closed connection raises
  // SIGPIPE, whose default action kills this rank silently instead of letting the collective
  // fail with the error below. Python ignores SIGPIPE at start-up, which is why torch.distributed
  // never shows this; a C++ program must do the same.
  std::signal(SIGPIPE, SIG_IGN);
  if (options.backend != "auto" && options.backend != "gloo") {
    throw Error("run.dist.backend: unknown backend '" + options.backend + "' (auto, gloo, nccl)");
  }
  group->rank_ = env.rank;
  group->world_size_ = env.world_size;
  group->local_rank_ = env.local_rank;
  group->timeout_s_ = options.timeout_s;
  group->impl_ = std::make_unique<Impl>();
  Impl& impl = *group->impl_;
  impl.where = "rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout_s * 1000));
  const std::string endpoint = options.store == "file" ? "file store '" + options.store_path + "'"
                                                       : "TCP store " + env.master_addr + ":" +
                                                             std::to_string(env.master_port);
  try {
    if (options.store == "file") {
      if (options.store_path.empty()) {
        throw Error(
            "run.dist.store = \"file\" needs run.dist.store_path (a fresh file every rank "
            "can reach)");
      }
      impl.store = c10::make_intrusive<c10d::FileStore>(options.store_path,
                                                        static_cast<int>(env.world_size));
      impl.store->setTimeout(timeout);
    } else {
      c10d::TCPStoreOptions tcp;
      tcp.port = static_cast<std::uint16_t>(env.master_port);
      tcp.isServer = env.rank == 0 && !env.agent_store;
      tcp.numWorkers = static_cast<size_t>(env.world_size);
      tcp.waitWorkers = !env.agent_store;
      tcp.timeout = timeout;
      tcp.multiTenant = true;  // several groups of one process may share the server
      c10::intrusive_ptr<c10d::Store> store =
          c10::make_intrusive<c10d::TCPStore>(env.master_addr, tcp);
      if (env.agent_store) {
        impl.store = c10::make_intrusive<c10d::PrefixStore>(
            "/worker/attempt_" + std::to_string(env.restart_count), store);
      } else {
        impl.store = store;
      }
    }
    // Every group of a process gets its own key space (Gloo's rendezvous keys and ours), the
    // same on every rank since the ranks create their groups in the same order: groups made one
    // after another (tests) or a reused FileStore never see each other's keys.
    static std::atomic<int64_t> groups_created{0};
    impl.store = c10::make_intrusive<c10d::PrefixStore>(
        "distill/pg" + std::to_string(groups_created++), impl.store);
#if DISTILL_WITH_NCCL
    if (options.backend == "nccl") {
      auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
      nccl_options->timeout = timeout;
      impl.backend = "nccl";
      // torchrun starts one process per GPU of a node: LOCAL_RANK picks it.
      impl.device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(
                                                env.local_rank % at::detail::getCUDAHooks().getNumGPUs()));
      impl.group = c10::make_intrusive<c10d::ProcessGroupNCCL>(
          impl.store, static_cast<int>(env.rank), static_cast<int>(env.world_size), nccl_options);
    }
#endif
    if (!impl.group) {
      auto gloo_options = c10d::ProcessGroupGloo::Options::create(timeout);
      const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
      if (interface && *interface) {
        gloo_options->devices.push_back(
            c10d::ProcessGroupGloo::createDeviceForInterface(interface));
      } else if (is_loopback(env.master_addr) || options.store == "file") {
        // One machine: loopback needs no resolvable host name.
        gloo_options->devices.push_back(
            c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      impl.group = c10::make_intrusive<c10d::ProcessGroupGloo>(
          impl.store, static_cast<int>(env.rank), static_cast<int>(env.world_size), gloo_options);
    }
    // Nobody leaves before everybody has joined: a rank that fails right after its own set-up
    // would otherwise break the connections another rank is still making.
    impl.group->barrier()->wait();
    // A peer silent for a minute is dead (or hung) even when collectives may wait longer; it
    // beats at least 4 times per window, so a live but busy peer never looks dead.
    impl.liveness_s = std::min(options.timeout_s, 60.0);
    impl.start_heartbeat(env.rank,
                         std::chrono::milliseconds(std::clamp<int64_t>(
                             static_cast<int64_t>(impl.liveness_s * 1000 / 4), 10, 5000)));
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw RuntimeFailure(
        impl.where + ": could not join the job through the " + endpoint +
        " within run.dist.timeout_s = " + std::to_string(static_cast<int64_t>(options.timeout_s)) +
        " s: " + what_of(e));
  }
  return group;
}

std::string ProcessGroup::backend() const { return impl_ ? impl_->backend : "none"; }

void ProcessGroup::all_reduce(at::Tensor& tensor, Reduce op) const {
  if (!impl_) return;
  at::Tensor staged = impl_->on_device(tensor);
  impl_->run("all_reduce", timeout_s_, [&] {
    std::vector<at::Tensor> tensors = {staged};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    impl_->group->allreduce(tensors, opts)->wait();
  });
  // Gloo has no AVG reduction: divide the sum.
  if (op == Reduce::kMean) staged.div_(static_cast<double>(world_size_));
  if (!staged.is_same(tensor)) tensor.copy_(staged);
}

void ProcessGroup::broadcast(at::Tensor& tensor, int64_t root) const {
  if (!impl_) return;
  at::Tensor staged = impl_->on_device(tensor);
  impl_->run("broadcast", timeout_s_, [&] {
    std::vector<at::Tensor> tensors = {staged};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    impl_->group->broadcast(tensors, opts)->wait();
  });
  if (!staged.is_same(tensor)) tensor.copy_(staged);
}

std::vector<at::Tensor> ProcessGroup::all_gather(const at::Tensor& tensor) const {
  if (!impl_) return {tensor.clone()};
  at::Tensor staged = impl_->on_device(tensor);
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int64_t r = 0; r < world_size_; ++r) outputs[0].push_back(at::empty_like(staged));
  impl_->run("all_gather", timeout_s_, [&] {
    std::vector<at::Tensor> inputs = {staged};
    impl_->group->allgather(outputs, inputs)->wait();
  });
  for (auto& t : outputs[0]) t = t.to(tensor.device());
  return outputs[0];
}

std::vector<std::vector<double>> ProcessGroup::all_gather(const std::vector<double>& values) const {
  if (!impl_) return {values};
  // Lengths first, then the values padded to the longest.
  at::Tensor length = at::full({1}, static_cast<int64_t>(values.size()), at::kLong);
  std::vector<at::Tensor> lengths = all_gather(length);
  int64_t longest = 0;
  for (const auto& l : lengths) longest = std::max(longest, l.item<int64_t>());
  at::Tensor padded = at::zeros({longest}, at::kDouble);
  std::copy(values.begin(), values.end(), padded.data_ptr<double>());
  std::vector<at::Tensor> gathered = all_gather(padded);
  std::vector<std::vector<double>> result;
  for (size_t r = 0; r < gathered.size(); ++r) {
    const double* data = gathered[r].data_ptr<double>();
    result.emplace_back(data, data + lengths[r].item<int64_t>());
  }
  return result;
}

void ProcessGroup::barrier() const {
  if (!impl_) return;
  impl_->run("barrier", timeout_s_, [&] { impl_->group->barrier()->wait(); });
}

bool ProcessGroup::any(bool flag) const {
  if (!impl_) return flag;
  at::Tensor count = at::full({1}, flag ? 1.0 : 0.0, at::kFloat);
  all_reduce(count, Reduce::kSum);
  return count.item<float>() > 0;
}

std::pair<int64_t, int64_t> ProcessGroup::share_of(int64_t count) const {
  return {count * rank_ / world_size_, count * (rank_ + 1) / world_size_};
}

void ProcessGroup::wait_for_peers(const std::string& what) const {
  if (!impl_) return;
  using Clock = std::chrono::steady_clock;
  const int64_t index = impl_->waits++;
  const std::string place = std::to_string(index) + ":" + what;  // where each rank waits
  // Arrivals count only at the same place: a peer waiting for something else never passes for
  // one that arrived here (the place check below names it).
  const std::string prefix = "distill/wait_" + place + "/";
  const std::string waiting = impl_->where + ": waiting for the other ranks' " + what + ": ";
  auto place_key = [](int64_t r) { return "distill/at/" + std::to_string(r); };
  // Per peer: its last heartbeat count and when this rank saw it change.
  std::vector<int64_t> beats(world_size_, -2);
  std::vector<Clock::time_point> changed(world_size_, Clock::now());
  auto last_liveness_check = Clock::now() - std::chrono::seconds(1);
  try {
    impl_->store->set(place_key(rank_), std::vector<uint8_t>(place.begin(), place.end()));
    impl_->store->set(prefix + std::to_string(rank_), std::vector<uint8_t>{1});
    for (;;) {
      std::vector<int64_t> missing;
      for (int64_t r = 0; r < world_size_; ++r) {
        if (r != rank_ && !impl_->store->check({prefix + std::to_string(r)})) missing.push_back(r);
      }
      if (missing.empty()) break;
      if (Clock::now() - last_liveness_check >= std::chrono::seconds(1)) {
        last_liveness_check = Clock::now();
        for (int64_t r : missing) {
          // A peer waiting elsewhere (another wait, or the same count for something else) would
          // wait for this rank forever: the ranks' code paths diverged.
          if (const std::string theirs = impl_->text(place_key(r)); !theirs.empty()) {
            const int64_t their_index = std::stoll(theirs.substr(0, theirs.find(':')));
            if (their_index > index || (their_index == index && theirs != place)) {
              throw RuntimeFailure(waiting + "rank " + std::to_string(r) + " waits for '" +
                                   theirs.substr(theirs.find(':') + 1) + "' (wait " +
                                   std::to_string(their_index) + ") while this rank is at wait " +
                                   std::to_string(index) + ": the ranks took different paths");
            }
          }
          const int64_t beat = impl_->counter(Impl::alive_key(r));
          if (beat != beats[r]) {
            beats[r] = beat;
            changed[r] = Clock::now();
          } else if (std::chrono::duration<double>(Clock::now() - changed[r]).count() >
                     impl_->liveness_s) {
            throw RuntimeFailure(
                waiting + "rank " + std::to_string(r) + " has shown no sign of life for " +
                std::to_string(static_cast<int64_t>(impl_->liveness_s)) +
                " s (min(run.dist.timeout_s, 60 s)): it died or its process hangs");
          }
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  } catch (const RuntimeFailure&) {
    throw;
  } catch (const std::exception& e) {
    throw RuntimeFailure(waiting + "the store failed: " + what_of(e) +
                         " (the process hosting it died or exited)");
  }
  // Everybody has arrived; leave together, so that no rank goes on (rank 0 might finish and take
  // the store down) while a peer is still polling for the last arrival. Then this rank's arrival
  // key is no longer read by anyone.
  barrier();
  try {
    impl_->store->deleteKey(prefix + std::to_string(rank_));
  } catch (const std::exception&) {
  }
}

}  // namespace distill::dist
