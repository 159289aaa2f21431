// The standard process metrics Prometheus clients export, read from /proc at scrape time:
//
//   process_start_time_seconds      gauge    when the process started, seconds since the epoch
//   process_cpu_seconds_total       counter  user + system CPU time
//   process_resident_memory_bytes   gauge    resident set size
//   process_open_fds                gauge    open file descriptors
//
// Thread safety: as the registry's.
#pragma once

#include "telemetry/metrics.h"

namespace hivemesh::telemetry {

void RegisterProcessMetrics(Registry& registry);

}  // namespace hivemesh::telemetry
