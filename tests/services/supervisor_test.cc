// The supervisor (services/supervisor.h) with real child processes: started, restarted with
// backoff, stopped and reaped (no zombie, no grandchild left), and programs that cannot start.
#include "services/supervisor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <thread>

namespace hivemesh::services {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

// Waits (up to 20 s) for `done`.
template <typename F>
bool Eventually(F done) {
  for (int i = 0; i < 2000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return false;
}

// True while `pid` exists, a zombie included.
bool Exists(pid_t pid) { return pid > 0 && kill(pid, 0) == 0; }

ProcessSpec Shell(const std::string& script) {
  return ProcessSpec{"test", {"/bin/sh", "-c", script}, {}};
}

TEST(RestartBackoffTest, DoublesUpToTheMaxAndStartsOverAfterALongRun) {
  RestartBackoff b(milliseconds(1000), milliseconds(60000), milliseconds(60000));
  EXPECT_EQ(b.After(milliseconds(10)), milliseconds(1000));
  EXPECT_EQ(b.After(milliseconds(10)), milliseconds(2000));
  EXPECT_EQ(b.After(milliseconds(10)), milliseconds(4000));
  for (int i = 0; i < 10; ++i) b.After(milliseconds(10));
  EXPECT_EQ(b.After(milliseconds(10)), milliseconds(60000));
  EXPECT_EQ(b.After(milliseconds(60000)), milliseconds(1000)) << "a long run starts over";
}

TEST(SupervisorTest, AProcessIsStartedWithItsEnvironmentAndStoppedAndReaped) {
  const std::string out = ::testing::TempDir() + "/supervisor-env";
  std::remove(out.c_str());
  Supervisor s(milliseconds(2000));
  ProcessSpec spec = Shell("echo \"$GREETING\" > " + out + "; exec sleep 30");
  spec.env = {{"GREETING", "hello from the mesh"}};
  s.Run("a", spec);
  pid_t pid = 0;
  ASSERT_TRUE(Eventually([&] {
    std::vector<ProcessStatus> st = s.Status();
    pid = st.empty() ? 0 : st[0].pid;
    return pid > 0;
  }));
  ASSERT_TRUE(Eventually([&] {
    std::ifstream in(out);
    std::string line;
    return std::getline(in, line) && line == "hello from the mesh";
  }));
  EXPECT_EQ(getpgid(pid), pid) << "a process group of its own";
  s.Stop("a");
  EXPECT_FALSE(Exists(pid)) << "stopped and reaped: not even a zombie";
  EXPECT_TRUE(s.Keys().empty());
}

TEST(SupervisorTest, AProcessThatExitsIsRestartedWithBackoff) {
  Supervisor s(milliseconds(1000), RestartBackoff(milliseconds(20), milliseconds(100)));
  s.Run("flaky", Shell("exit 3"));
  ASSERT_TRUE(Eventually([&] { return s.Status()[0].starts >= 4; }));
  EXPECT_EQ(s.Status()[0].last_exit, "exited 3");
  s.StopAll();
}

TEST(SupervisorTest, AKilledProcessIsRestartedAndItsGrandchildrenDoNotOutliveIt) {
  const std::string child_file = ::testing::TempDir() + "/supervisor-grandchild";
  std::remove(child_file.c_str());
  Supervisor s(milliseconds(1000), RestartBackoff(milliseconds(20)));
  s.Run("tree", Shell("sleep 60 & echo $! > " + child_file + "; wait"));
  pid_t first = 0;
  ASSERT_TRUE(Eventually([&] { return (first = s.Status()[0].pid) > 0; }));
  pid_t grandchild = 0;
  ASSERT_TRUE(Eventually([&] {
    std::ifstream in(child_file);
    return static_cast<bool>(in >> grandchild) && grandchild > 0;
  }));
  ASSERT_TRUE(Exists(grandchild));
  kill(first, SIGKILL);
  ASSERT_TRUE(Eventually([&] {
    const ProcessStatus st = s.Status()[0];
    return st.starts >= 2 && st.pid > 0 && st.pid != first;
  }));
  EXPECT_EQ(s.Status()[0].last_exit, "killed by signal 9");
  // The grandchild's group was killed with it (it is reparented, so only its end shows).
  EXPECT_TRUE(Eventually([&] { return !Exists(grandchild); }));
  s.StopAll();
}

TEST(SupervisorTest, AProcessThatIgnoresSigtermIsKilledAfterTheGrace) {
  Supervisor s(milliseconds(300));
  s.Run("stubborn", Shell("trap '' TERM; while :; do sleep 1; done"));
  pid_t pid = 0;
  ASSERT_TRUE(Eventually([&] { return (pid = s.Status()[0].pid) > 0; }));
  std::this_thread::sleep_for(milliseconds(100));  // the trap is set
  s.Stop("stubborn");
  EXPECT_FALSE(Exists(pid));
}

TEST(SupervisorTest, AProgramThatDoesNotExistSaysSoAndIsTriedAgain) {
  Supervisor s(milliseconds(1000), RestartBackoff(milliseconds(20), milliseconds(50)));
  s.Run("missing", ProcessSpec{"missing", {"/nonexistent/program", "--flag"}, {}});
  ASSERT_TRUE(Eventually([&] { return !s.Status()[0].last_exit.empty(); }));
  EXPECT_THAT(s.Status()[0].last_exit,
              HasSubstr("cannot start /nonexistent/program: No such file or directory"));
  EXPECT_EQ(s.Status()[0].starts, 0);
  s.StopAll();
}

}  // namespace
}  // namespace hivemesh::services
