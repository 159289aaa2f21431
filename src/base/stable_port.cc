#include "base/stable_port.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <random>

#include "base/strings.h"

namespace hivemesh {
namespace {

bool Bindable(int type, int port) {
  const int fd = ::socket(AF_INET, type, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

bool LoopbackPortFree(int port) {
  return Bindable(SOCK_STREAM, port) && Bindable(SOCK_DGRAM, port);
}

absl::StatusOr<int> StablePort() {
  int low = 32768, high = 60999;  // Linux's defaults
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  range >> low >> high;
  // Below the ephemeral range if there is room there, else above it.
  const int first = low > 11000 ? 10000 : high + 1;
  const int last = low > 11000 ? low - 1 : 65535;
  if (first > last) return absl::InternalError("no port lies outside the ephemeral range");
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(first, last);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port = pick(rng);
    if (LoopbackPortFree(port)) return port;
  }
  return absl::UnavailableError(
      StrCat("no port in [", first, ", ", last, "] is free for both TCP and UDP"));
}

}  // namespace hivemesh
