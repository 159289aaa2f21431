#!/usr/bin/python3
"""The cost of one mesh hop, against nginx as a reverse proxy, in the same run.

Node B serves the identity model; node A does not host it and forwards every request to B
(the mesh's forwarding path: the mesh tensor form over a mesh link to B). nginx-light runs as a
reverse proxy in front of B with upstream keep-alive. wrk drives the same identity JSON request at
concurrency 1 and 32 against: B directly, A (one hop), and nginx (one hop). The added latency of
a hop = its p50/p99 minus the direct p50/p99. Node A's I/O threads and nginx's worker processes
are the same number (--proxy-threads, default 2: one per core here).

With --syscalls, one more run per hop at concurrency 32 counts the system calls the proxy (A or
nginx) and B make per request (`perf stat`, package linux-perf; root or perf_event_paranoid <= 1).

    bench/hop_overhead/bench_hop_overhead.py [--build build/release] [--seconds 4] [--rounds 3]
                                             [--proxy-threads 2] [--syscalls]
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "serving"))
from bench_serving import free_port, run_wrk, wait_http  # noqa: E402


def start_agent(binary, work, name, repo, threads, join=None):
    http, gossip = free_port(), free_port()
    cmd = [binary, "agent", "--node-name", name, "--model-repository", repo,
           "--http-address", f"127.0.0.1:{http}", "--gossip-address", f"127.0.0.1:{gossip}",
           "--http-threads", str(threads), "--log-level", "warn", "--grpc-address", "off",
           "--insecure",  # the plain hop, as nginx proxies plain HTTP
           "--state-dir", os.path.join(work, "state", name)]
    if join:
        cmd += ["--join", join]
    log = open(os.path.join(work, f"{name}.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{http}/v2/health/ready")
    return proc, http, f"127.0.0.1:{gossip}"


def write_nginx_conf(work, port, b_http, workers, single_process=False):
    """nginx as a reverse proxy on `port` in front of node B, with upstream keep-alive; with
    `single_process`, one worker and no master (so that a tool can run that one process)."""
    path = os.path.join(work, f"nginx-{port}.conf")
    with open(path, "w") as f:
        f.write(f"""worker_processes {1 if single_process else workers};
{"master_process off;" if single_process else ""}
daemon off;
pid {work}/nginx-{port}.pid;
error_log {work}/nginx-{port}-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream node_b {{ server 127.0.0.1:{b_http}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://node_b;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
""")
    return path


def start_nginx(conf, work, ready_port):
    """nginx with `conf`, once it answers /v2/health/ready on `ready_port`."""
    nginx = subprocess.Popen(["/usr/sbin/nginx", "-c", conf, "-p", work],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{ready_port}/v2/health/ready")
    return nginx


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


# The inference every hop benchmark sends: 16 FP32 values to the identity model.
HOP_BODY = json.dumps({"inputs": [{"name": "INPUT0", "shape": [16], "datatype": "FP32",
                                   "data": [float(i) / 8 for i in range(16)]}]})


def wait_forwarded(a_http, body, served_by, seconds=15):
    """Waits until the node at `a_http` answers an identity inference served by `served_by`."""
    deadline = time.time() + seconds
    while True:
        req = urllib.request.Request(f"http://127.0.0.1:{a_http}/v2/models/identity/infer",
                                     data=body.encode(), method="POST")
        try:
            with urllib.request.urlopen(req) as r:
                if r.headers.get("Hivemesh-Served-By") == served_by:
                    return
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit(f"the node at {a_http} never forwarded to {served_by}")
        time.sleep(0.05)


def run_rounds(paths, rounds, seconds, work, body):
    """wrk at concurrency 1 and 32 on each (label, port) of `paths`, `rounds` times; the order of
    the paths rotates from round to round, so that a slow patch of a shared machine lands on all
    of them and no path always runs right after the same other one."""
    results = []
    for n in range(rounds):
        r = {}
        order = paths[n % len(paths):] + paths[:n % len(paths)]
        for conns in (1, 32):
            for label, port in order:
                r[(label, conns)] = run_wrk(f"http://127.0.0.1:{port}/v2/models/identity/infer",
                                            conns, seconds, work, body)
        results.append(r)
    return results


def hop_table(paths, rounds, direct):
    """Prints each path's median req/s, p50 and p99 over `rounds`, and the hop it adds: its p50 and
    p99 minus those of path `direct` in the same round. Returns (added, results): per (label,
    conns), the median hop (p50, p99) and the median figures."""
    print(f"{'path':<24}{'conns':>6}{'req/s':>10}{'p50 us':>9}{'p99 us':>9}{'hop p50':>9}{'hop p99':>9}")
    added, results = {}, {}
    for key in [(label, conns) for conns in (1, 32) for label, _ in paths]:
        label, conns = key
        hops50 = [r[key]["p50_us"] - r[(direct, conns)]["p50_us"] for r in rounds]
        hops99 = [r[key]["p99_us"] - r[(direct, conns)]["p99_us"] for r in rounds]
        results[key] = {k: median([r[key][k] for r in rounds]) for k in ("rps", "p50_us", "p99_us")}
        added[key] = (median(hops50), median(hops99))
        r = results[key]
        print(f"{label:<24}{conns:>6}{r['rps']:>10.0f}{r['p50_us']:>9.0f}{r['p99_us']:>9.0f}"
              f"{added[key][0]:>9.0f}{added[key][1]:>9.0f}"
              + (f"   hop p50, p99 by round: {', '.join(f'{h:.0f}' for h in hops50)}; "
                 f"{', '.join(f'{h:.0f}' for h in hops99)}"
                 if label != direct and len(rounds) > 1 else ""))
    return added, results


def count_syscalls(url, seconds, work, body, groups):
    """Runs wrk at c=32 while perf counts each group's system calls; returns calls per request."""
    counters = {}
    for name, pids in groups.items():
        out = os.path.join(work, f"perf-{name}.csv")
        counters[name] = (out, subprocess.Popen(
            ["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-o", out,
             "-p", ",".join(pids), "--", "sleep", str(seconds + 1)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(0.3)
    requests = run_wrk(url, 32, seconds, work, body)["requests"]
    per = {}
    for name, (out, proc) in counters.items():
        proc.wait(timeout=seconds + 30)
        with open(out) as f:
            line = next(l for l in f if "raw_syscalls" in l)
        count = line.split(",")[0]
        if not count.isdigit():
            sys.exit(f"perf could not count system calls ({line.strip()}): run as root or lower "
                     "/proc/sys/kernel/perf_event_paranoid")
        per[name] = int(count) / requests
    return per


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--proxy-threads", type=int, default=2,
                    help="I/O threads of node A and nginx worker processes (the same for both)")
    ap.add_argument("--syscalls", action="store_true",
                    help="also count system calls per request on the proxy and on B (perf)")
    args = ap.parse_args()
    if args.syscalls and not shutil.which("perf"):
        sys.exit("--syscalls needs perf: apt-get install --no-install-recommends linux-perf")
    binary = os.path.join(args.build, "hivemesh")
    body = HOP_BODY
    procs = []
    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o755)
        try:
            os.makedirs(os.path.join(work, "empty"))
            b, b_http, b_gossip = start_agent(binary, work, "node-b", os.path.join(ROOT, "models"), 2)
            procs.append(b)
            a, a_http, _ = start_agent(binary, work, "node-a", os.path.join(work, "empty"),
                                        args.proxy_threads, b_gossip)
            procs.append(a)
            wait_forwarded(a_http, body, "node-b")
            nginx_port = free_port()
            conf = write_nginx_conf(work, nginx_port, b_http, args.proxy_threads)
            nginx = start_nginx(conf, work, nginx_port)
            procs.append(nginx)

            # The report takes the median of each figure over rounds.
            paths = [("direct to B", b_http), ("through A (mesh hop)", a_http),
                     ("through nginx", nginx_port)]
            rounds = run_rounds(paths, args.rounds, args.seconds, work, body)
            syscalls = {}
            if args.syscalls:
                nginx_workers = subprocess.run(["pgrep", "-P", str(nginx.pid)], capture_output=True,
                                               text=True).stdout.split()
                for label, port, proxy in (("through A (mesh hop)", a_http, [str(a.pid)]),
                                           ("through nginx", nginx_port, nginx_workers)):
                    syscalls[label] = count_syscalls(
                        f"http://127.0.0.1:{port}/v2/models/identity/infer", args.seconds, work,
                        body, {"proxy": proxy, "B": [str(b.pid)]})
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)

    print(f"identity model, wrk keep-alive, {args.seconds}s per row, {args.rounds} round(s), "
          "medians over rounds; a hop = the row minus 'direct to B' in the same round")
    added, results = hop_table(paths, rounds, "direct to B")
    for label, per in syscalls.items():
        print(f"system calls per request at c=32, {label}: proxy {per['proxy']:.2f}, "
              f"B {per['B']:.2f}")
    m1, n1 = added[("through A (mesh hop)", 1)], added[("through nginx", 1)]
    m32, n32 = added[("through A (mesh hop)", 32)], added[("through nginx", 32)]
    print(f"mesh hop vs nginx hop at c=1: p50 {m1[0]:.0f} vs {n1[0]:.0f} us, p99 {m1[1]:.0f} vs {n1[1]:.0f} us")
    # How steady that is: the rounds (each a paired comparison) in which the mesh hop's p50 was
    # at most nginx's.
    paired = {conns: sum(1 for r in rounds
                         if r[("through A (mesh hop)", conns)]["p50_us"]
                         <= r[("through nginx", conns)]["p50_us"]) for conns in (1, 32)}
    print(f"rounds in which the mesh hop's p50 was at most nginx's: {paired[1]} of {len(rounds)} "
          f"at c=1, {paired[32]} of {len(rounds)} at c=32")
    print("RESULT "
          f"hop_c1_p50_us={m1[0]:.0f} hop_c1_p99_us={m1[1]:.0f} nginx_hop_c1_p50_us={n1[0]:.0f} "
          f"nginx_hop_c1_p99_us={n1[1]:.0f} hop_c32_p50_us={m32[0]:.0f} hop_c32_p99_us={m32[1]:.0f} "
          f"nginx_hop_c32_p50_us={n32[0]:.0f} nginx_hop_c32_p99_us={n32[1]:.0f} "
          f"direct_c32_rps={results[('direct to B', 32)]['rps']:.0f} "
          f"mesh_c32_rps={results[('through A (mesh hop)', 32)]['rps']:.0f} "
          f"nginx_c32_rps={results[('through nginx', 32)]['rps']:.0f} "
          f"c1_rounds_mesh_p50_at_most_nginx={paired[1]} "
          f"c32_rounds_mesh_p50_at_most_nginx={paired[32]} rounds={len(rounds)}"
          + "".join(f" {key}_syscalls_per_request={per['proxy']:.2f}"
                    f" {key}_b_syscalls_per_request={per['B']:.2f}"
                    for key, per in (("mesh", syscalls.get("through A (mesh hop)")),
                                     ("nginx", syscalls.get("through nginx"))) if per))


if __name__ == "__main__":
    main()
