#!/usr/bin/python3
"""Runs the README's quickstart shell snippets (from "## Quickstart" to "## Configuration"), as
written, against a fresh build.

Two substitutions only: the binary path (the build under test instead of build/release) and the
ports (free ones instead of 8000-8001, 8010-8011, 8020-8021 and 7946-7948, so the test never
collides with a running node); the `make release` line is skipped because the build under test is already built. Each command's
output must contain what the README promises.
"""
import os
import re
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What the quickstart's output must show, in order of appearance: (what, regular expression).
EXPECTED = [
    ("members: cam-1 alive in zone line-1", r"(?m)^cam-1\s+alive\s+\S+\s+\S+\s+zone=line-1"),
    ("members: cam-2 alive", r"(?m)^cam-2\s+alive\s+\S+\s+\S+\s+zone=line-1"),
    ("members: gateway alive", r"(?m)^gateway\s+alive\s+\S+\s+\S+\s+zone=line-1"),
    ("models: identity on the gateway only", r"(?m)^identity\s+1\s+1/1\s+gateway\s"),
    ("models: the people detector on all three",
     r"(?m)^people-detector\s+1\s+3/3\s+cam-1, cam-2, gateway\s"),
    ("curl through cam-1, served by the gateway",
     r'"model_name":"identity".*"served_by":"gateway".*"data":\[1,2,3,4\]'),
    ("infer --image: people counted on cam-2", r"(?m)^count\s+INT32\s+\[1\]\s+[1-9]\d*\s*$"),
    ("... served by cam-2", r"served by cam-2 in "),
    ("infer --image: faces found on the gateway", r"(?m)^count\s+INT32\s+\[1\]\s+[1-9]\d*\s*$"),
    ("... served by the gateway", r"served by gateway in "),
    ("infer --json: the fault window's scores", r"(?m)^scores\s+FP32\s+\[1,2\]\s+\[(.*)\]\s*$"),
    ("... served by a camera node", r"served by cam-[12] in "),
    ("metrics: cam-1 offloaded the identity request",
     r'hivemesh_inference_requests_total\{model="identity",route="offloaded",outcome="success"\} 1'),
    ("top: three nodes", r"hivemesh top: 3 nodes"),
    ("single node: ready", r'\{"ready":true\}'),
    ("single node: extensions",
     r'"extensions":\["binary_tensor_data","statistics","model_repository"\]'),
    ("single node: repository index", r'\{"name":"vibration-anomaly","version":"1","state":"READY"'),
    ("single node: model metadata", r'"platform":"onnx_onnxv1"'),
    ("single node: JSON tensors, id echoed",
     r'"id":"1","parameters":\{"served_by":"[^"]+"\},"outputs":\[\{"name":"OUTPUT0","datatype":"FP32","shape":\[4\],"data":\[1,2,3,4\]\}\]'),
    ("single node: raw image", r'"model_name":"people-detector".*"name":"count".*"data":\[[1-9]'),
    ("single node: binary response header", r"Inference-Header-Content-Length: \d+"),
    ("single node: raw FP32 output", r"(?m)^\s+1\s+2\s+3\s*$"),
    ("single node: statistics", r'"model_stats":\[\{"name":"identity"'),
]


def main():
    binary = sys.argv[1]
    text = open(os.path.join(ROOT, "README.md")).read()
    quickstart = text[text.index("## Quickstart"):text.index("## Configuration")]
    snippets = re.findall(r"```sh\n(.*?)```", quickstart, re.S)
    if len(snippets) < 6:
        sys.exit(f"expected the quickstart's shell snippets, found {len(snippets)}")
    ports = {}
    for fixed in ("8000", "8001", "8010", "8011", "8020", "8021", "7946", "7947", "7948"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports[fixed] = str(s.getsockname()[1])
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
    for snippet in snippets:
        snippet = "\n".join(l for l in snippet.splitlines() if l.strip() != "make release")
        snippet = snippet.replace("build/release/hivemesh", binary)
        snippet = re.sub(r"\b(80[0-2][01]|794[6-8])\b", lambda m: ports[m.group(1)], snippet)
        script += snippet + "\necho\n"
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    out = result.stdout
    print(out)
    print(result.stderr, file=sys.stderr)
    if result.returncode != 0:
        sys.exit(f"the quickstart failed with exit code {result.returncode}")
    pos = 0
    for what, pattern in EXPECTED:
        m = re.compile(pattern).search(out, pos)
        if not m:
            sys.exit(f"quickstart output lacks {what} (/{pattern}/ after position {pos})")
        if what.startswith("infer --json"):
            p_normal, p_fault = (float(x) for x in m.group(1).split(","))
            if p_fault <= p_normal:
                sys.exit(f"the fault example was not classified as a fault: {m.group(1)}")
        pos = m.end()
    print("README quickstart: every snippet ran and gave the documented output")


if __name__ == "__main__":
    main()
