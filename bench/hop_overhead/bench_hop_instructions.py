#!/usr/bin/python3
"""The CPU work of one mesh hop, against nginx as a reverse proxy, counted in instructions.

bench_hop_overhead.py measures a hop's latency; at concurrency 1 on a small machine that is
mostly how the kernel places threads, and it moves by a few microseconds from run to run. This
bench counts what the processes themselves execute instead, which does not move: user-space
instructions per request, under valgrind's callgrind, at concurrency 1 with the identity model.

Two paths, as in bench_hop_overhead.py: through node A (which forwards to node B over a mesh
link, in the mesh tensor form) and through nginx-light (in front of B, upstream keep-alive). Each
process of interest runs under callgrind in turn, with the others running natively:
  - the proxy: node A, or one nginx worker (master_process off);
  - node B, driven through A and through nginx.
The JSON work moves between the paths: through A, node A decodes the client's JSON and writes
the JSON answer while B reads and writes the mesh tensor form; through nginx, B does the JSON
work. So the comparisons that matter are the whole path (proxy + B) and the hop itself: the
path through A minus B's work behind nginx (which is what B does for a direct call), against
nginx's own instructions.

    bench/hop_overhead/bench_hop_instructions.py [--build build/release] [--seconds 5]
"""
import argparse
import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "serving"))
from bench_serving import free_port, run_wrk, wait_http  # noqa: E402
from bench_hop_overhead import write_nginx_conf  # noqa: E402

BODY = json.dumps({"inputs": [{"name": "INPUT0", "shape": [16], "datatype": "FP32",
                               "data": [float(i) / 8 for i in range(16)]}]})


def callgrind(cmd, out):
    """`cmd` under callgrind with instrumentation off until switched on."""
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={out}"] + cmd


def control(pid, *args):
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def total_instructions(out_prefix):
    """Instructions in the latest dump that callgrind_control -d wrote (<prefix>.<n>); each dump
    holds what was counted since the one before."""
    folder, base = os.path.split(out_prefix)
    parts = [int(f[len(base) + 1:]) for f in os.listdir(folder)
             if f.startswith(base + ".") and f[len(base) + 1:].isdigit()]
    if not parts:
        sys.exit(f"callgrind wrote no dump for {out_prefix}")
    text = subprocess.run(["callgrind_annotate", f"{out_prefix}.{max(parts)}"],
                          capture_output=True, text=True, check=True).stdout
    m = re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", text)
    if not m:
        sys.exit(f"no PROGRAM TOTALS in the callgrind dump of {out_prefix}")
    return int(m.group(1).replace(",", ""))


# The nodes' state folders (as root the default is the machine's /var/lib/hivemesh).
STATE = tempfile.mkdtemp(prefix="bench-hop-state-")
atexit.register(shutil.rmtree, STATE, True)


def agent_cmd(binary, name, repo, http, gossip, join=None):
    cmd = [binary, "agent", "--node-name", name, "--model-repository", repo,
           "--http-address", f"127.0.0.1:{http}", "--gossip-address", f"127.0.0.1:{gossip}",
           "--http-threads", "2", "--log-level", "warn", "--grpc-address", "off", "--insecure",
           "--state-dir", os.path.join(STATE, name)]
    return cmd + (["--join", join] if join else [])


def stop_all(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=60)


def wait_forwarding(a_http, timeout=120):
    """Until node A forwards to node B (A or B may be running slowly under callgrind)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        req = urllib.request.Request(f"http://127.0.0.1:{a_http}/v2/models/identity/infer",
                                     data=BODY.encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                if r.headers.get("Hivemesh-Served-By") == "node-b":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit("node A never forwarded to node B")


def measure(pid, url, seconds, work, out):
    """Instructions per request of process `pid` (under callgrind) while wrk drives `url`."""
    run_wrk(url, 1, 2, work, BODY)  # warm up: links open, caches filled
    control(pid, "-i", "on")
    requests = run_wrk(url, 1, seconds, work, BODY)["requests"]
    control(pid, "-i", "off")
    control(pid, "-d")
    time.sleep(0.5)
    return total_instructions(out) / requests, requests


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate", "wrk", "/usr/sbin/nginx"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/install-deps.sh")
    binary = os.path.join(args.build, "hivemesh")
    models = os.path.join(ROOT, "models")
    per = {}
    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o755)
        empty = os.path.join(work, "empty")
        os.makedirs(empty)
        url = "http://127.0.0.1:{}/v2/models/identity/infer"

        def start(cmd, name):
            return subprocess.Popen(cmd, stdout=open(os.path.join(work, f"{name}.log"), "w"),
                                    stderr=subprocess.STDOUT)

        # Phase 1: the proxies under callgrind, node B native.
        procs = []
        try:
            b_http, b_gossip = free_port(), free_port()
            procs.append(start(agent_cmd(binary, "node-b", models, b_http, b_gossip), "b"))
            wait_http(f"http://127.0.0.1:{b_http}/v2/health/ready")
            a_http = free_port()
            out = os.path.join(work, "a.callgrind")
            a = start(callgrind(agent_cmd(binary, "node-a", empty, a_http, free_port(),
                                          f"127.0.0.1:{b_gossip}"), out), "a")
            procs.append(a)
            wait_forwarding(a_http)
            per["A"] = measure(a.pid, url.format(a_http), args.seconds, work, out)
            n_port = free_port()
            out = os.path.join(work, "nginx.callgrind")
            conf = write_nginx_conf(work, n_port, b_http, 1, single_process=True)
            n = start(callgrind(["/usr/sbin/nginx", "-c", conf, "-p", work], out), "nginx")
            procs.append(n)
            wait_http(f"http://127.0.0.1:{n_port}/v2/health/ready", timeout=60)
            per["nginx"] = measure(n.pid, url.format(n_port), args.seconds, work, out)
        finally:
            stop_all(procs)

        # Phase 2: node B under callgrind, node A and nginx native.
        procs = []
        try:
            b_http, b_gossip = free_port(), free_port()
            out = os.path.join(work, "b.callgrind")
            b = start(callgrind(agent_cmd(binary, "node-b", models, b_http, b_gossip), out), "b2")
            procs.append(b)
            wait_http(f"http://127.0.0.1:{b_http}/v2/health/ready", timeout=120)
            a_http = free_port()
            procs.append(start(agent_cmd(binary, "node-a", empty, a_http, free_port(),
                                         f"127.0.0.1:{b_gossip}"), "a2"))
            wait_forwarding(a_http)
            n_port = free_port()
            conf = write_nginx_conf(work, n_port, b_http, 2)
            procs.append(start(["/usr/sbin/nginx", "-c", conf, "-p", work], "nginx2"))
            wait_http(f"http://127.0.0.1:{n_port}/v2/health/ready")
            per["B via A"] = measure(b.pid, url.format(a_http), args.seconds, work, out)
            per["B via nginx"] = measure(b.pid, url.format(n_port), args.seconds, work, out)
        finally:
            stop_all(procs)

    print("identity model, wrk at concurrency 1, user-space instructions per request (callgrind)")
    print(f"{'process':<16}{'instructions':>14}{'requests':>10}")
    for name, (ins, reqs) in per.items():
        print(f"{name:<16}{ins:>14.0f}{reqs:>10}")
    mesh = per["A"][0] + per["B via A"][0]
    nginx = per["nginx"][0] + per["B via nginx"][0]
    # What the hop itself adds to the path: the whole path minus what B does when called directly
    # (which is B's work behind nginx: the same JSON request, the same HTTP/1.1 connection).
    hop = mesh - per["B via nginx"][0]
    print(f"path through A (A + B): {mesh:.0f}; through nginx (nginx + B): {nginx:.0f}; "
          f"ratio {mesh / nginx:.2f}")
    print(f"the hop itself: mesh {hop:.0f} (A + B behind A - B behind nginx), "
          f"nginx {per['nginx'][0]:.0f}; ratio {hop / per['nginx'][0]:.2f}")
    print("RESULT "
          f"a_instr_per_request={per['A'][0]:.0f} nginx_instr_per_request={per['nginx'][0]:.0f} "
          f"b_via_a_instr_per_request={per['B via A'][0]:.0f} "
          f"b_via_nginx_instr_per_request={per['B via nginx'][0]:.0f} "
          f"mesh_path_instr_per_request={mesh:.0f} nginx_path_instr_per_request={nginx:.0f} "
          f"mesh_vs_nginx_path={mesh / nginx:.2f} mesh_hop_instr_per_request={hop:.0f} "
          f"mesh_vs_nginx_hop={hop / per['nginx'][0]:.2f}")


if __name__ == "__main__":
    main()
