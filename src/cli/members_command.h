// `hivemesh members`: the mesh as one node sees it, as a table or JSON.
#pragma once

#include <string>

namespace hivemesh {

// Exit codes: 0 ok, 1 the node could not be reached or answered an error.
int RunMembersCommand(const std::string& node, const std::string& output);

}  // namespace hivemesh
