#!/usr/bin/python3
"""Runs the README's quickstart shell snippets, as written, against a fresh build.

Two substitutions only: the binary path (the build under test instead of build/release) and the
ports (free ones instead of 8000-8002 and 7946-7948, so the test never collides with a running
node); the `make release` line is skipped because the build under test is already built. Each command's
output must contain what the README promises.
"""
import os
import re
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Substrings the quickstart's output must contain, in order of appearance.
EXPECTED = [
    '{"ready":true}',
    '"extensions":["binary_tensor_data","statistics","model_repository"]',
    '{"name":"vibration-anomaly","version":"1","state":"READY"',
    '"platform":"onnx_onnxv1"',
    '"id":"1","parameters":{"served_by":"','"outputs":[{"name":"OUTPUT0","datatype":"FP32","shape":[4],"data":[1,2,3,4]}]',
    '"model_name":"vibration-anomaly"',
    '"model_name":"people-detector"',
    '"model_name":"face-detector"',
    'Inference-Header-Content-Length: ',
    '"model_name":"identity"',
    '"model_stats":[{"name":"identity"',
    'NAME',
]


def main():
    binary = sys.argv[1]
    text = open(os.path.join(ROOT, "README.md")).read()
    quickstart = text[text.index("## Five-minute quickstart"):text.index("## Configuration")]
    snippets = re.findall(r"```sh\n(.*?)```", quickstart, re.S)
    if len(snippets) < 6:
        sys.exit(f"expected the quickstart's shell snippets, found {len(snippets)}")
    ports = {}
    for fixed in ("8000", "8001", "8002", "7946", "7947", "7948"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports[fixed] = str(s.getsockname()[1])
    script = "set -euo pipefail\ntrap 'kill %1 2>/dev/null || true' EXIT\n"
    for snippet in snippets:
        snippet = "\n".join(l for l in snippet.splitlines() if l.strip() != "make release")
        snippet = snippet.replace("build/release/hivemesh", binary)
        snippet = re.sub(r"\b(800[0-2]|794[6-8])\b", lambda m: ports[m.group(1)], snippet)
        script += snippet + "\necho\n"
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    out = result.stdout
    print(out)
    print(result.stderr, file=sys.stderr)
    if result.returncode != 0:
        sys.exit(f"the quickstart failed with exit code {result.returncode}")
    pos = 0
    for want in EXPECTED:
        at = out.find(want, pos)
        if at < 0:
            sys.exit(f"quickstart output lacks (after position {pos}): {want}")
        pos = at
    if not re.search(r"^\s+1\s+2\s+3\s*$", out, re.M):
        sys.exit("the binary output did not come back as the FP32 values 1 2 3")
    scores = re.search(r'"model_name":"vibration-anomaly".*?"data":\[([^\]]*)\]', out)
    p_normal, p_fault = (float(x) for x in scores.group(1).split(","))
    if p_fault <= p_normal:
        sys.exit(f"the fault example was not classified as a fault: {scores.group(1)}")
    people = re.search(r'"model_name":"people-detector".*?"name":"count".*?"data":\[(\d+)\]', out)
    faces = re.search(r'"model_name":"face-detector".*?"name":"count".*?"data":\[(\d+)\]', out)
    if int(people.group(1)) < 1 or int(faces.group(1)) < 1:
        sys.exit("expected at least one person and one face in the sample photos")
    table = out[out.rindex("NAME"):]
    for node, zone in (("cam-1", "zone=line-1"), ("cam-2", "zone=line-1"), ("gateway", "zone=office")):
        if not re.search(rf"^{node}\s+alive\s+.*{zone}", table, re.M):
            sys.exit(f"hivemesh members does not show {node} alive with {zone}:\n{table}")
    print("README quickstart: every snippet ran and gave the documented output")


if __name__ == "__main__":
    main()
