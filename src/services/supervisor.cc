#include "services/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "base/strings.h"
#include "spdlog/spdlog.h"

extern char** environ;

namespace hivemesh::services {
namespace {

using Clock = std::chrono::steady_clock;

std::string Describe(int wstatus) {
  if (WIFEXITED(wstatus)) return StrCat("exited ", WEXITSTATUS(wstatus));
  if (WIFSIGNALED(wstatus)) return StrCat("killed by signal ", WTERMSIG(wstatus));
  return "stopped";
}

// The node's environment with `extra` set over it.
std::vector<std::string> Environment(
    const std::vector<std::pair<std::string, std::string>>& extra) {
  std::vector<std::string> out;
  std::set<std::string> overridden;
  for (const auto& [k, v] : extra) overridden.insert(k);
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const size_t eq = entry.find('=');
    if (eq != std::string_view::npos && overridden.count(std::string(entry.substr(0, eq))) > 0) {
      continue;
    }
    out.emplace_back(entry);
  }
  for (const auto& [k, v] : extra) out.push_back(StrCat(k, "=", v));
  return out;
}

// Starts `spec` in a process group of its own, stdout and stderr on `out_fd`. The child's pid, or
// the errno of why not.
std::pair<pid_t, int> Spawn(const ProcessSpec& spec, int out_fd) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 2);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> argv;
  for (const std::string& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env = Environment(spec.env);
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  return {rc == 0 ? pid : 0, rc};
}

// Logs each complete line of `buffer` as the workload's, keeping a partial last line.
void LogLines(const std::string& workload, std::string& buffer, bool flush) {
  size_t start = 0;
  for (size_t nl; (nl = buffer.find('\n', start)) != std::string::npos; start = nl + 1) {
    spdlog::info("[{}] {}", workload, buffer.substr(start, std::min(nl - start, kMaxLogLine)));
  }
  buffer.erase(0, start);
  if (buffer.size() >= kMaxLogLine || (flush && !buffer.empty())) {
    spdlog::info("[{}] {}", workload, buffer.substr(0, kMaxLogLine));
    buffer.clear();
  }
}

}  // namespace

RestartBackoff::Duration RestartBackoff::After(Duration ran) {
  if (ran >= reset_after_ || next_ == Duration(0)) {
    next_ = initial_;
  } else {
    next_ = std::min(next_ * 2, max_);
  }
  return next_;
}

struct Supervisor::Watched {
  ProcessSpec spec;
  RestartBackoff backoff;
  absl::Mutex mu;
  absl::CondVar cv;
  bool stop ABSL_GUARDED_BY(mu) = false;
  ProcessStatus status ABSL_GUARDED_BY(mu);
  std::thread thread;
};

Supervisor::Supervisor(std::chrono::milliseconds grace, RestartBackoff backoff)
    : grace_(grace), backoff_(backoff) {}

Supervisor::~Supervisor() { StopAll(); }

void Supervisor::Run(const std::string& key, ProcessSpec spec) {
  Stop(key);
  auto w = std::make_unique<Watched>();
  w->backoff = backoff_;
  {
    absl::MutexLock lock(&w->mu);
    w->status.workload = spec.workload;
  }
  w->spec = std::move(spec);
  Watched* raw = w.get();
  absl::MutexLock lock(&mu_);
  watched_[key] = std::move(w);
  raw->thread = std::thread([this, raw] { Watch(raw); });
}

void Supervisor::Stop(const std::string& key) {
  std::unique_ptr<Watched> w;
  {
    absl::MutexLock lock(&mu_);
    auto it = watched_.find(key);
    if (it == watched_.end()) return;
    w = std::move(it->second);
    watched_.erase(it);
  }
  {
    absl::MutexLock lock(&w->mu);
    w->stop = true;
    w->cv.SignalAll();
  }
  w->thread.join();
}

void Supervisor::StopAll() {
  // Every process is told at once, so that their graces run side by side.
  std::map<std::string, std::unique_ptr<Watched>> all;
  {
    absl::MutexLock lock(&mu_);
    all.swap(watched_);
  }
  for (auto& [key, w] : all) {
    absl::MutexLock lock(&w->mu);
    w->stop = true;
    w->cv.SignalAll();
  }
  for (auto& [key, w] : all) w->thread.join();
}

std::vector<std::string> Supervisor::Keys() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [key, w] : watched_) out.push_back(key);
  return out;
}

std::vector<ProcessStatus> Supervisor::Status() const {
  absl::MutexLock lock(&mu_);
  std::vector<ProcessStatus> out;
  for (const auto& [key, w] : watched_) {
    absl::MutexLock w_lock(&w->mu);
    out.push_back(w->status);
  }
  return out;
}

void Supervisor::Watch(Watched* w) {
  const std::string& name = w->spec.workload;
  const auto stopping = [w] {
    absl::MutexLock lock(&w->mu);
    return w->stop;
  };
  while (!stopping()) {
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
      spdlog::error("workload {}: no pipe for its output: {}", name, std::strerror(errno));
      return;
    }
    const auto [pid, error] = Spawn(w->spec, pipefd[1]);
    close(pipefd[1]);
    const Clock::time_point started = Clock::now();
    std::string last_exit;
    if (pid == 0) {
      close(pipefd[0]);
      last_exit = StrCat("cannot start ", w->spec.argv[0], ": ", std::strerror(error));
      spdlog::error("workload {}: {}", name, last_exit);
    } else {
      {
        absl::MutexLock lock(&w->mu);
        w->status.pid = pid;
        ++w->status.starts;
      }
      spdlog::info("workload {} started (pid {})", name, pid);
      int out = pipefd[0];
      fcntl(out, F_SETFL, O_NONBLOCK);
      std::string buffer;
      int wstatus = 0;
      bool exited = false, stop_sent = false;
      Clock::time_point kill_at{};
      while (!exited) {
        if (out >= 0) {
          pollfd p{out, POLLIN, 0};
          poll(&p, 1, 100);
          char chunk[4096];
          for (;;) {
            const ssize_t n = read(out, chunk, sizeof(chunk));
            if (n > 0) {
              buffer.append(chunk, static_cast<size_t>(n));
              LogLines(name, buffer, false);
              continue;
            }
            if (n == 0) {  // every writer closed it
              close(out);
              out = -1;
            }
            break;
          }
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        if (waitpid(pid, &wstatus, WNOHANG) == pid) {
          exited = true;
          break;
        }
        if (!stop_sent && stopping()) {
          kill(-pid, SIGTERM);
          stop_sent = true;
          kill_at = Clock::now() + grace_;
        } else if (stop_sent && Clock::now() >= kill_at) {
          kill(-pid, SIGKILL);
          kill_at = Clock::time_point::max();
        }
      }
      kill(-pid, SIGKILL);  // what the process left in its group
      if (out >= 0) {
        char chunk[4096];
        ssize_t n;
        while ((n = read(out, chunk, sizeof(chunk))) > 0)
          buffer.append(chunk, static_cast<size_t>(n));
        close(out);
      }
      LogLines(name, buffer, true);
      last_exit = Describe(wstatus);
    }
    {
      absl::MutexLock lock(&w->mu);
      w->status.pid = 0;
      w->status.last_exit = last_exit;
      if (w->stop) break;
    }
    const auto ran = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
    const auto delay = w->backoff.After(ran);
    spdlog::warn("workload {} {}: started again in {} ms", name, last_exit, delay.count());
    absl::MutexLock lock(&w->mu);
    const absl::Time until = absl::Now() + absl::Milliseconds(delay.count());
    while (!w->stop && !w->cv.WaitWithDeadline(&w->mu, until)) {
    }
  }
  spdlog::info("workload {} stopped", name);
}

}  // namespace hivemesh::services
