#include "base/stable_port.h"

#include <gtest/gtest.h>

#include <fstream>

namespace hivemesh {
namespace {

TEST(StablePortTest, IsOutsideTheEphemeralRangeAndFreeForTcpAndUdp) {
  int low = 0, high = 0;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> low >> high;
  ASSERT_GT(high, low) << "cannot read the ephemeral port range";
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<int> port = StablePort();
    ASSERT_TRUE(port.ok()) << port.status();
    EXPECT_TRUE(*port < low || *port > high) << *port << " in [" << low << ", " << high << "]";
    EXPECT_GT(*port, 1023);
    EXPECT_LE(*port, 65535);
    EXPECT_TRUE(LoopbackPortFree(*port)) << *port;
  }
}

}  // namespace
}  // namespace hivemesh
