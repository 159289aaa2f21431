#include "base/stable_port.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

namespace hivemesh {
namespace {

bool Bindable(int type, int port) {
  const int fd = ::socket(AF_INET, type, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

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
    EXPECT_TRUE(Bindable(SOCK_STREAM, *port)) << *port;
    EXPECT_TRUE(Bindable(SOCK_DGRAM, *port)) << *port;
  }
}

}  // namespace
}  // namespace hivemesh
