// `hivemesh infer <model>`: one inference through a node, from an image file (the model's BYTES
// input, sent with the binary tensor extension), a whole KServe v2 request body (--json), or
// values on the command line (--data, for the model's one numeric input). Prints the outputs as a
// table with the node that served them and the latency, or the node's response body (-o json).
//
// --image and --data need the model's metadata: it is asked of --node, and, if --node does not
// host the model, of a member of the mesh that does (found in --node's member list). The
// inference itself always goes to --node, which serves or forwards it.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "cli/cli_common.h"

namespace hivemesh::cli {

struct InferFlags {
  NodeFlags node;
  std::string model;
  std::string version;
  std::string image;  // file
  std::string json;   // file, "-" for stdin
  std::string data;   // "1,2,3" or a JSON array
  std::string input;  // which input --image/--data fills, when the model has several
};

// The time the CLI waits beyond --timeout-ms (which is also the request's deadline at the node,
// Inference-Timeout-Ms), so that a node's own 504 arrives before the CLI gives up.
inline constexpr int kInferAnswerGraceMs = 500;

CLI::App* AddInferCommand(CLI::App& app, InferFlags& flags);
int RunInfer(const InferFlags& flags);

}  // namespace hivemesh::cli
