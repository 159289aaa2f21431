#include "services/container.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace hivemesh::services {
namespace {

using ::testing::ElementsAre;

TEST(ContainerTest, NamesAreOnePerNodeAndWorkloadAndValid) {
  EXPECT_EQ(ContainerName("cam-1", "detector"), "hivemesh-cam-1-detector");
  EXPECT_EQ(ContainerName("node a/b", "w"), "hivemesh-node-a-b-w");
}

TEST(ContainerTest, PodmanRunsTheImageOnTheHostNetworkWithEnvByName) {
  WorkloadSpec w;
  w.image = "localhost/detector:1";
  w.args = {"--port", "5000"};
  w.env = {{"MODEL", "yolo"}, {"TOKEN", "secret"}};
  EXPECT_THAT(PodmanRun("/usr/bin/podman", "hivemesh-n-d", w),
              ElementsAre("/usr/bin/podman", "run", "--rm", "--replace", "--name", "hivemesh-n-d",
                          "--network", "host", "--stop-timeout", "10", "--env", "MODEL", "--env",
                          "TOKEN", "localhost/detector:1", "--port", "5000"));
  w.command = {"/bin/serve", "-v"};
  w.env.clear();
  EXPECT_THAT(PodmanRun("podman", "c", w),
              ElementsAre("podman", "run", "--rm", "--replace", "--name", "c", "--network", "host",
                          "--stop-timeout", "10", "--entrypoint", "/bin/serve",
                          "localhost/detector:1", "-v", "--port", "5000"));
  EXPECT_THAT(PodmanRemove("podman", "c"),
              ElementsAre("podman", "rm", "--force", "--time", "0", "c"));
}

TEST(ContainerTest, ProgramsAreFoundInThePath) {
  EXPECT_EQ(FindInPath("sh", "/nonexistent:/bin"), "/bin/sh");
  EXPECT_EQ(FindInPath("no-such-program-here", "/bin:/usr/bin"), std::nullopt);
  EXPECT_EQ(FindInPath("/bin/sh", ""), "/bin/sh");
  EXPECT_EQ(FindInPath("sh", "/nonexistent"), std::nullopt);
}

}  // namespace
}  // namespace hivemesh::services
