#!/usr/bin/python3
"""How fast an applied Service becomes routable at every node of a mesh (docs/services.md,
"Applied state"), against how fast Serf spreads a user event to every agent, in the same run.

hivemesh: a secure mesh of --nodes nodes on loopback (the first creates it, the others join
with tokens), release build. A Deployment (a `python3 -m http.server` on node 0) is applied and
serving first. Then, --trials times: a new Service selecting it is applied at node i mod N (the
CLI, `hivemesh apply`), and one thread per node sends `GET /` with `Host: <service>` every
--poll-ms until the node answers 200 through the mesh. A trial's time is from just before the
apply until the last node answered 200: the object has spread by anti-entropy, each node has
computed its route and the request went through it to the workload.

Serf: --nodes `serf agent -profile=lan` on loopback, each with an event handler that appends the
user event's payload and the time to a file; --trials times `serf event -coalesce=false` at agent
i mod N. A trial's time is from just before the command until the last agent's handler ran.

Printed: p50, p95 and max of each, and the ratio hivemesh/serf. The goal (issue: services):
p95 at most 3 s with 20 nodes.

    bench/service_spread/bench_service_spread.py [--build build/release] [--nodes 20]
        [--trials 20] [--poll-ms 20]
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "hop_overhead"))
sys.path.insert(0, os.path.join(ROOT, "bench", "serving"))
from bench_hop_tls import start_agent, token_from  # noqa: E402
from bench_serving import free_port  # noqa: E402


def free_gossip_port():
    """A loopback port free for both TCP and UDP (serf binds both)."""
    for _ in range(100):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    sys.exit("no free loopback port for TCP and UDP")


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))]


def members_alive(http_port):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=2)
        conn.request("GET", "/v1/mesh/members")
        r = conn.getresponse()
        body = r.read()
        conn.close()
        return sum(1 for m in json.loads(body)["members"] if m["state"] == "alive")
    except (OSError, ValueError, KeyError, http.client.HTTPException):
        return 0


def wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.1)


class Poller(threading.Thread):
    """Sends GET / with Host: `service` to one node until it answers 200; notes when."""

    def __init__(self, http_port, service, poll_s):
        super().__init__(daemon=True)
        self.port, self.service, self.poll_s = http_port, service, poll_s
        self.answered = None

    def run(self):
        conn = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/", headers={"Host": self.service})
                r = conn.getresponse()
                r.read()
                if r.status == 200:
                    self.answered = time.monotonic()
                    conn.close()
                    return
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(self.poll_s)


def serves_directly(port):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except (OSError, http.client.HTTPException):
        return False


def deployment(port):
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: upstream
  annotations:
    hivemesh.io/node-selector: role=backend
spec:
  replicas: 1
  selector:
    matchLabels: {{app: upstream}}
  template:
    metadata:
      labels: {{app: upstream}}
    spec:
      containers:
      - name: upstream
        command: ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]
"""


def service(name, port):
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: upstream}}
  ports:
  - port: {port}
    targetPort: {port}
"""


def run_hivemesh(args, work):
    binary = os.path.join(args.build, "hivemesh")
    empty = os.path.join(work, "empty")
    os.makedirs(empty)
    procs, https = [], []
    times = []
    try:
        p, seed_http, seed_gossip = start_agent(binary, work, "node-00", empty, 1,
                                                ["--labels", "role=backend"])
        procs.append(p)
        https.append(seed_http)
        for i in range(1, args.nodes):
            p, h, _ = start_agent(binary, work, f"node-{i:02d}", empty, 1,
                                  ["--labels", "role=front", "--join", seed_gossip,
                                   "--token", token_from(binary, seed_http)])
            procs.append(p)
            https.append(h)
        wait(lambda: all(members_alive(h) == args.nodes for h in https), 120,
             f"{args.nodes} members alive at every node")
        w_port = free_port()
        subprocess.run([binary, "apply", "-f", "-", "--node", f"127.0.0.1:{seed_http}"],
                       input=deployment(w_port), text=True, check=True, capture_output=True)
        # The workload listens before any Service names its port (on one machine, a node
        # listening on a Service's port would take it from a workload still starting).
        wait(lambda: serves_directly(w_port), 30, "the workload to listen")
        first = Poller(seed_http, "warmup", 0.05)
        subprocess.run([binary, "apply", "-f", "-", "--node", f"127.0.0.1:{seed_http}"],
                       input=service("warmup", w_port), text=True, check=True,
                       capture_output=True)
        first.run()
        if first.answered is None:
            sys.exit("the workload never served through the mesh")
        for t in range(args.trials):
            name = f"svc-{t}"
            pollers = [Poller(h, name, args.poll_ms / 1000) for h in https]
            for p in pollers:
                p.start()
            at = https[t % len(https)]
            start = time.monotonic()
            subprocess.run([binary, "apply", "-f", "-", "--node", f"127.0.0.1:{at}"],
                           input=service(name, w_port), text=True, check=True,
                           capture_output=True)
            for p in pollers:
                p.join()
            missing = [i for i, p in enumerate(pollers) if p.answered is None]
            if missing:
                sys.exit(f"trial {t}: nodes {missing} never routed {name}")
            times.append(max(p.answered for p in pollers) - start)
            print(f"hivemesh trial {t}: applied at node-{t % len(https):02d}, routable at all "
                  f"{args.nodes} nodes after {times[-1]:.3f} s", flush=True)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    return times


HANDLER = """#!/bin/sh
read payload
echo "$payload $(date +%s.%N)" >> "$1"
"""


def run_serf(args, work):
    handler = os.path.join(work, "handler.sh")
    with open(handler, "w") as f:
        f.write(HANDLER)
    os.chmod(handler, 0o755)
    procs, rpcs, files = [], [], []
    times = []
    try:
        seed = None
        for i in range(args.nodes):
            bind, rpc = free_gossip_port(), free_port()
            out = os.path.join(work, f"serf-{i}.events")
            open(out, "w").close()
            cmd = ["serf", "agent", "-node", f"serf-{i:02d}", "-bind", f"127.0.0.1:{bind}",
                   "-rpc-addr", f"127.0.0.1:{rpc}", "-profile", "lan",
                   "-event-handler", f"user:spread={handler} {out}"]
            if seed is not None:
                cmd += ["-join", seed]
            seed = seed or f"127.0.0.1:{bind}"
            log = open(os.path.join(work, f"serf-{i}.log"), "w")
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
            rpcs.append(rpc)
            files.append(out)
            if i == 0:  # the others join it: it must be up first
                wait(lambda: subprocess.run(["serf", "members", "-rpc-addr",
                                             f"127.0.0.1:{rpc}"], capture_output=True
                                            ).returncode == 0, 30, "the first serf agent")

        def alive():
            out = subprocess.run(["serf", "members", "-rpc-addr", f"127.0.0.1:{rpcs[0]}",
                                  "-status", "alive"], capture_output=True, text=True)
            return out.returncode == 0 and len(out.stdout.splitlines()) == args.nodes
        try:
            wait(alive, 120, f"{args.nodes} serf members alive")
        except SystemExit:
            for i, p in enumerate(procs):
                if p.poll() is not None:
                    with open(os.path.join(work, f"serf-{i}.log")) as f:
                        print(f"serf-{i} exited {p.returncode}:\n{f.read()[-1000:]}",
                              file=sys.stderr)
            raise
        time.sleep(2)
        for t in range(args.trials):
            payload = f"trial-{t}"
            start_wall, start = time.time(), time.monotonic()
            subprocess.run(["serf", "event", "-rpc-addr", f"127.0.0.1:{rpcs[t % len(rpcs)]}",
                            "-coalesce=false", "spread", payload], check=True,
                           capture_output=True)
            seen = {}
            deadline = start + 60
            while len(seen) < args.nodes and time.monotonic() < deadline:
                for i, path in enumerate(files):
                    if i in seen:
                        continue
                    with open(path) as f:
                        for line in f:
                            parts = line.split()
                            if len(parts) == 2 and parts[0] == payload:
                                seen[i] = float(parts[1])
                time.sleep(args.poll_ms / 1000)
            if len(seen) < args.nodes:
                sys.exit(f"serf trial {t}: {args.nodes - len(seen)} agents never got the event")
            times.append(max(seen.values()) - start_wall)
            print(f"serf trial {t}: at all {args.nodes} agents after {times[-1]:.3f} s",
                  flush=True)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--poll-ms", type=int, default=20)
    ap.add_argument("--log-dir", help="keep the nodes' logs here (HIVEMESH_BENCH_LOG=info for "
                                      "more than warnings)")
    ap.add_argument("--skip-serf", action="store_true", help="hivemesh only (no ratio)")
    args = ap.parse_args()
    for tool in ("serf", "python3"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: scripts/install-deps.sh installs it")
    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o755)
        serf = run_serf(args, work) if not args.skip_serf else [1.0]
        try:
            mesh = run_hivemesh(args, work)
        finally:
            if args.log_dir:
                os.makedirs(args.log_dir, exist_ok=True)
                for name in os.listdir(work):
                    if name.endswith(".log"):
                        shutil.copy(os.path.join(work, name), args.log_dir)
    row = {}
    for label, times in (("hivemesh", mesh), ("serf", serf)):
        row[label] = (statistics.median(times), percentile(times, 95), max(times))
        print(f"{label:9s} p50 {row[label][0]:.3f} s  p95 {row[label][1]:.3f} s  "
              f"max {row[label][2]:.3f} s  ({len(times)} trials, {args.nodes} nodes)")
    ratio = row["hivemesh"][1] / row["serf"][1] if row["serf"][1] > 0 else float("inf")
    print(f"hivemesh (applied Service routable everywhere) vs serf (user event everywhere): "
          f"p95 {row['hivemesh'][1]:.3f} vs {row['serf'][1]:.3f} s ({ratio:.2f}x); "
          f"goal: p95 <= 3 s: {'met' if row['hivemesh'][1] <= 3.0 else 'NOT met'}")
    print(f"RESULT nodes={args.nodes} trials={args.trials} "
          f"mesh_p50_s={row['hivemesh'][0]:.3f} mesh_p95_s={row['hivemesh'][1]:.3f} "
          f"mesh_max_s={row['hivemesh'][2]:.3f} serf_p50_s={row['serf'][0]:.3f} "
          f"serf_p95_s={row['serf'][1]:.3f} ratio_p95={ratio:.2f}")


if __name__ == "__main__":
    main()
