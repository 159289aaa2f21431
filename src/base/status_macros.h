// HM_RETURN_IF_ERROR(expr): returns the absl::Status `expr` from the enclosing function when it
// is not OK. The function may return absl::Status or any absl::StatusOr<T>.
#pragma once

#include "absl/status/status.h"

#define HM_RETURN_IF_ERROR(expr)             \
  do {                                       \
    absl::Status hm_status_ = (expr);        \
    if (!hm_status_.ok()) return hm_status_; \
  } while (0)
