#include "cli/demo/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/strings/str_split.h"
#include "base/strings.h"

namespace hivemesh::demo {

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& out_path,
                            const std::string& err_path) {
  const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0) {
    return absl::InternalError(StrCat("cannot open ", out_path, ": ", std::strerror(errno)));
  }
  const int err = err_path == out_path
                      ? out
                      : open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (err < 0) {
    close(out);
    return absl::InternalError(StrCat("cannot open ", err_path, ": ", std::strerror(errno)));
  }
  std::vector<std::string> args = argv;
  std::vector<char*> c_args;
  for (std::string& a : args) c_args.push_back(a.data());
  c_args.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    execvp(c_args[0], c_args.data());
    _exit(127);
  }
  const int fork_errno = errno;
  close(out);
  if (err != out) close(err);
  if (pid < 0) return absl::InternalError(StrCat("fork: ", std::strerror(fork_errno)));
  return pid;
}

std::string Stop(pid_t pid, std::chrono::milliseconds grace) {
  kill(pid, SIGTERM);
  return Reap(pid, std::chrono::steady_clock::now() + grace);
}

std::string Reap(pid_t pid, std::chrono::steady_clock::time_point deadline) {
  int status = 0;
  pid_t r = 0;
  while ((r = waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (r == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return "did not stop in time; killed";
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  return StrCat("exited with ", WIFEXITED(status) ? StrCat("status ", WEXITSTATUS(status))
                                                  : StrCat("signal ", WTERMSIG(status)));
}

std::string FindProgram(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  dirs += ":/usr/sbin:/sbin";
  for (absl::string_view dir : absl::StrSplit(dirs, ':', absl::SkipEmpty())) {
    const std::string candidate = StrCat(std::string(dir.data(), dir.size()), "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

}  // namespace hivemesh::demo
