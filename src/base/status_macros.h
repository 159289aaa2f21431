// The project's one set of error macros.
//
// HM_RETURN_IF_ERROR(expr): returns the absl::Status `expr` from the enclosing function when it
// is not OK. The function may return absl::Status or any absl::StatusOr<T>.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define HM_RETURN_IF_ERROR(expr)             \
  do {                                       \
    absl::Status hm_status_ = (expr);        \
    if (!hm_status_.ok()) return hm_status_; \
  } while (0)

// HM_ASSIGN_OR_RETURN(lhs, expr): evaluates the absl::StatusOr<T> `expr`; returns its status from
// the enclosing function when it is not OK, else moves its value into `lhs`, which may be a
// declaration (`HM_ASSIGN_OR_RETURN(auto x, Parse(...))`) or an existing variable.
#define HM_ASSIGN_OR_RETURN(lhs, expr) \
  HM_ASSIGN_OR_RETURN_IMPL_(HM_STATUS_MACROS_CONCAT_(hm_statusor_, __LINE__), lhs, expr)

#define HM_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)     \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)

#define HM_STATUS_MACROS_CONCAT_INNER_(a, b) a##b
#define HM_STATUS_MACROS_CONCAT_(a, b) HM_STATUS_MACROS_CONCAT_INNER_(a, b)
