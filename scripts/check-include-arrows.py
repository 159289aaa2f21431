#!/usr/bin/python3
"""Checks that includes follow the module arrows of docs/architecture.md:
scripts/check-include-arrows.py [source root]

Every `#include "<module>/..."` in src/<module>/ must name the module itself or one it may use.
A new module, or a new arrow, is added here and in docs/architecture.md together. Prints each
include that breaks an arrow and exits 1 if there is one."""
import os
import re
import sys

# Who may include whom (besides itself). Lower modules first.
MAY_USE = {
    "base": set(),
    "tensor": {"base"},
    "codec": {"base", "tensor"},
    "identity": {"base"},
    "transport": {"base", "tensor"},
    "telemetry": {"base"},
    "serving": {"base", "tensor", "codec"},
    # Gossip's TCP exchanges of a secure mesh run over the transport's TLS stream (io_stream.h).
    "membership": {"base", "tensor", "codec", "identity", "transport"},
    "routing": {"base", "tensor", "codec", "identity", "transport", "serving"},
    "api": {"base", "tensor", "codec", "identity", "transport", "telemetry", "serving",
            "membership", "routing", "services", "bus"},
    # Manifests, the applied objects, workloads (docs/services.md): below api (whose REST front
    # end serves them) and agent.
    "services": {"base", "tensor", "codec", "identity", "transport", "telemetry", "serving",
                 "membership", "routing"},
    # The insight bus (docs/insights.md): beside services, below api and agent.
    "bus": {"base", "tensor", "codec", "identity", "transport", "telemetry", "serving",
            "membership", "routing"},
    "agent": {"base", "tensor", "codec", "identity", "transport", "telemetry", "serving",
              "membership", "routing", "api", "services", "bus"},
    # The command line talks to nodes over HTTP; it starts an agent (`hivemesh agent`), makes
    # gossip keys (`hivemesh keygen`) and a client's key (`hivemesh cert issue-client`) through
    # those modules' public headers.
    "cli": {"base", "tensor", "codec", "transport", "telemetry", "agent", "membership",
            "identity"},
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/[^"]+"', re.M)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))
    src = os.path.join(root, "src")
    broken = []
    modules = sorted(os.listdir(src))
    for module in modules:
        path = os.path.join(src, module)
        if not os.path.isdir(path):
            continue
        if module not in MAY_USE:
            broken.append(f"src/{module}/: a module the arrows do not know (add it to MAY_USE)")
            continue
        for dirpath, _, files in os.walk(path):
            for name in files:
                if not name.endswith((".h", ".cc")):
                    continue
                file = os.path.join(dirpath, name)
                with open(file, encoding="utf-8") as f:
                    text = f.read()
                for m in INCLUDE.finditer(text):
                    used = m.group(1)
                    if used == module or used in MAY_USE[module] or used not in MAY_USE:
                        continue
                    line = text.count("\n", 0, m.start()) + 1
                    broken.append(f"{os.path.relpath(file, root)}:{line}: {module} includes "
                                  f"{used} (allowed: {', '.join(sorted(MAY_USE[module])) or 'nothing'})")
    for b in broken:
        print(b)
    print(f"include arrows: {len(broken)} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
