# Every third-party dependency is found here, once. All come from Debian 12 packages that
# scripts/install-deps.sh installs.
find_package(Threads REQUIRED)
find_package(absl REQUIRED)
find_package(simdjson REQUIRED)
find_package(OpenSSL REQUIRED)

if(NOT HIVEMESH_FUZZ_ONLY)
  find_package(PNG REQUIRED)
  find_package(yaml-cpp REQUIRED)
  find_package(fmt REQUIRED)
  find_package(spdlog REQUIRED)
  # The insight outbox (bus/outbox.h): SQLite in WAL mode.
  find_package(SQLite3 REQUIRED)
  find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
  find_path(BOOST_ASIO_INCLUDE_DIR boost/asio.hpp REQUIRED)
  find_path(BOOST_BEAST_INCLUDE_DIR boost/beast.hpp REQUIRED)

  # Debian ships OpenCV's CMake config only with the libopencv-dev meta package, which we do not
  # install; the component libraries are found directly.
  find_path(OPENCV_INCLUDE_DIR opencv2/core.hpp PATH_SUFFIXES opencv4 REQUIRED)
  foreach(component core imgproc dnn objdetect)
    find_library(OPENCV_${component}_LIBRARY opencv_${component} REQUIRED)
    add_library(opencv::${component} UNKNOWN IMPORTED)
    set_target_properties(opencv::${component} PROPERTIES
      IMPORTED_LOCATION ${OPENCV_${component}_LIBRARY}
      INTERFACE_INCLUDE_DIRECTORIES ${OPENCV_INCLUDE_DIR})
  endforeach()

  # The agent's allocator (src/cli/CMakeLists.txt); not with the sanitizers, which bring their own.
  find_library(JEMALLOC_LIBRARY jemalloc REQUIRED)

  find_path(TURBOJPEG_INCLUDE_DIR turbojpeg.h REQUIRED)
  find_library(TURBOJPEG_LIBRARY turbojpeg REQUIRED)
  add_library(turbojpeg::turbojpeg UNKNOWN IMPORTED)
  set_target_properties(turbojpeg::turbojpeg PROPERTIES
    IMPORTED_LOCATION ${TURBOJPEG_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${TURBOJPEG_INCLUDE_DIR})
endif()

if(NOT HIVEMESH_FUZZ_ONLY)
  # gRPC API (src/api/grpc): Debian's grpc++ through pkg-config (its CMake package expects
  # upstream's bundled layout), protobuf through CMake's FindProtobuf, and the code generators
  # protoc and grpc_cpp_plugin (protobuf-compiler, protobuf-compiler-grpc).
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(GRPCPP REQUIRED IMPORTED_TARGET grpc++)
  find_package(Protobuf REQUIRED)
  find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
  find_program(GRPC_PYTHON_PLUGIN grpc_python_plugin)
  # The MQTT client of the insight bridge (bus/mqtt_bridge.h): libmosquitto.
  pkg_check_modules(MOSQUITTO REQUIRED IMPORTED_TARGET libmosquitto)
  # The service manager's notifications (agent/service_notify.h): libsystemd's sd_notify.
  pkg_check_modules(SYSTEMD REQUIRED IMPORTED_TARGET libsystemd)
endif()
