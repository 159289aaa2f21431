// Services reached by name (api/service_proxy.h): which Host values name a Service.
#include "api/service_proxy.h"

#include <gtest/gtest.h>

namespace hivemesh {
namespace {

TEST(ServiceProxyTest, AHostNamesAServiceByItsNameAloneOrUnderHivemesh) {
  EXPECT_EQ(ServiceNameOfHost("edge-camera-ai"), "edge-camera-ai");
  EXPECT_EQ(ServiceNameOfHost("edge-camera-ai:80"), "edge-camera-ai");
  EXPECT_EQ(ServiceNameOfHost("edge-camera-ai.hivemesh"), "edge-camera-ai");
  EXPECT_EQ(ServiceNameOfHost("edge-camera-ai.hivemesh:8000"), "edge-camera-ai");
  // Addresses and other names are not Services: the node's own API answers them.
  EXPECT_EQ(ServiceNameOfHost("127.0.0.1:8000"), "");
  EXPECT_EQ(ServiceNameOfHost("[::1]:8000"), "");
  EXPECT_EQ(ServiceNameOfHost("example.com"), "");
  EXPECT_EQ(ServiceNameOfHost("Edge_Camera"), "");
  EXPECT_EQ(ServiceNameOfHost(""), "");
  EXPECT_EQ(ServiceNameOfHost(std::string(300, 'a')), "");
}

}  // namespace
}  // namespace hivemesh
