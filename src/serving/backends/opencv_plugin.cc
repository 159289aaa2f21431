// libhivemesh_opencv.so: the OpenCV backends as a plugin (see opencv_backends.h).
#include "serving/backends/opencv_backends.h"

extern "C" __attribute__((visibility("default"))) void hivemesh_register_opencv_backends(
    hivemesh::BackendRegistry* registry) {
  hivemesh::RegisterOpenCvBackends(*registry);
}
