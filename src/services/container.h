// Workloads that run an image (docs/services.md, "Workloads the node runs"): through podman, when
// the node has it. The node's supervisor runs `podman run` in the foreground, so that the
// container's output reaches the node's log, its exit is the workload's exit (restarted with
// backoff), and a stop (SIGTERM to podman, which passes it on) stops it. Pure: command lines
// only.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "services/manifest.h"

namespace hivemesh::services {

// The container's name for `workload` on the node `node`: "hivemesh-<node>-<workload>", with
// what a container name may not hold ([a-zA-Z0-9_.-] after the first) made '-'. One per node
// and workload, so two nodes on one machine do not take each other's.
std::string ContainerName(std::string_view node, std::string_view workload);

// `podman run` for `w` (which has an image): --rm, --replace (a container left by a node that
// died goes first), the host's network (the workload's ports are the host's, as for programs),
// every env variable passed by name (their values are in podman's environment, not its command
// line), `command` as the entrypoint and the rest of it with `args` after the image.
std::vector<std::string> PodmanRun(const std::string& podman, const std::string& name,
                                   const WorkloadSpec& w);

// `podman rm --force --time 0 <name>`: what a stop that had to kill podman leaves.
std::vector<std::string> PodmanRemove(const std::string& podman, const std::string& name);

// The first executable `program` in the folders of `path` (a PATH value), or nothing.
std::optional<std::string> FindInPath(std::string_view program, std::string_view path);

}  // namespace hivemesh::services
