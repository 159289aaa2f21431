#!/usr/bin/python3
"""A hot spot in a 4-node mesh: does offloading keep goodput and tail latency close to a perfectly
balanced mesh?

Four `hivemesh agent` nodes on loopback, joined in one mesh, each hosting the people detector
(models/people-detector copied into a repository per node: OpenCV's HOG, one worker instance,
frames downscaled to 640 wide). Requests are real video frames (scripts/fetch-frames.sh: JPEG
frames of Debian's vtest.avi, 768x576 pedestrians) sent as the model's BYTES input `image` with
the binary tensor extension (`Inference-Header-Content-Length: 0`, body = the JPEG).

Devices. Four devices share this machine's cores, so each node runs in its own CPU cgroup limited
to --cpu-per-node cores (default 0.45: the four use at most 1.8 of 2 cores, the rest is left to
this script), like a small device's own CPU: an idle node's cycles cannot be borrowed by a busy
one, and a node's capacity does not depend on what the others do. The script creates the cgroups
(cgroup v1 `cpu` or v2 `cpu.max`, which needs root) and removes them; --cpu-per-node 0 runs
without limits, where a node's capacity changes with the others' load (a lone busy node gets a
whole core, about twice its share when all are busy). A worker computes on one thread: the agents
run with OPENCV_FOR_THREADS_NUM=1 (--opencv-threads), as one core per device would.

Capacity is measured first, in the same run: all four nodes saturated at once (closed loop,
--calib-conns requests outstanding per node, `--routing-mode local`), and a node's capacity c =
the mesh's total successful responses per second / 4. (Pass --capacity to skip the measurement.)

Offered load. node-0 (the hot node) receives --hot x c, the three others --cold x c each; with the
defaults 3.0 and 0.1 the mesh as a whole is offered 3.3 c = 82.5% of its measured capacity 4 c,
so a mesh that spreads the load well can serve all of it, while node-0 alone cannot.
Arrivals are open loop: a precomputed schedule (Poisson, seeded, with exactly rate x seconds
requests per node so that every run offers the same load; --arrivals uniform for fixed spacing)
is sent on time whatever the responses, each request from its own thread over pooled keep-alive
connections, so that no request waits for another (the send lag is reported). Latency runs from
a request's scheduled send time to the end of its response.

Runs, each on a fresh mesh, with the same offered load:
  local      --routing-mode local: a node never offloads a model it hosts
  random     --routing-mode random: uniform among the nodes that host the model
  hivemesh   --routing-mode hivemesh: the default, load-aware routing
  balanced   the same total load spread evenly over the four nodes by the clients themselves,
             --routing-mode local: the reference (no hot spot, no hop)
Per run: offered rate, goodput (HTTP 200 with a detection result, per second of schedule) and
goodput/offered, p50/p99 latency of the successful requests, errors by kind, how many requests
each node served (response header Hivemesh-Served-By), and the cores used meanwhile by the agents
and by everything else on the machine: on a shared machine the spare CPU changes from run to run,
and runs that shared it are flagged (--rounds repeats the runs in rotated order and reports
medians). Goals: hivemesh goodput/offered >= 0.95 and hivemesh p99 / balanced p99 <= 1.5.

    bench/hotspot/bench_hotspot.py [--build build/release] [--seconds 15] [--frames DIR]
        [--capacity RPS] [--runs local,random,hivemesh,balanced] [--rounds 1] [--hot 3.0]
        [--cold 0.1] [--cpu-per-node 0.45] [--opencv-threads 1] [--log-dir DIR]
"""
import argparse
import glob
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "serving"))
from bench_serving import free_port, wait_http  # noqa: E402

MODEL = "people-detector"
NODES = 4  # node-0 is the hot node
INFER_PATH = f"/v2/models/{MODEL}/infer"
RUNS = ("local", "random", "hivemesh", "balanced")
# A run during which other processes used more than this many cores is flagged as disturbed. On
# a quiet machine "other" is ~0.2-0.3 cores: the kernel's share of the run's own loopback
# traffic, which no process is charged for.
DISTURBED_CORES = 0.25 * os.cpu_count()


def node_name(i):
    return f"node-{i}"


class CpuLimits:
    """One CPU cgroup per node, each limited to `cores` (cgroup v1 cpu or v2 cpu.max)."""

    PERIOD_US = 10000  # a short period: a throttled worker waits at most ~10 ms at a time

    def __init__(self, cores):
        self.cores, self.dirs = cores, []
        if cores <= 0:
            return
        quota = max(1000, int(cores * self.PERIOD_US))
        base = f"hivemesh-bench-{os.getpid()}"
        v1, v2 = "/sys/fs/cgroup/cpu", "/sys/fs/cgroup"
        try:
            if os.path.exists(os.path.join(v1, "cpu.cfs_quota_us")):
                for i in range(NODES):
                    d = os.path.join(v1, f"{base}-{i}")
                    os.mkdir(d)
                    self.dirs.append(d)
                    self._write(d, "cpu.cfs_period_us", self.PERIOD_US)
                    self._write(d, "cpu.cfs_quota_us", quota)
            elif "cpu" in open(os.path.join(v2, "cgroup.controllers")).read().split():
                for i in range(NODES):
                    d = os.path.join(v2, f"{base}-{i}")
                    os.mkdir(d)
                    self.dirs.append(d)
                    self._write(d, "cpu.max", f"{quota} {self.PERIOD_US}")
            else:
                raise OSError("no cgroup cpu controller is mounted")
        except OSError as e:
            self.remove()
            raise RuntimeError(f"cannot limit each node's CPU ({e}); run as root on a machine "
                               "with cgroup cpu control, or pass --cpu-per-node 0")

    @staticmethod
    def _write(d, name, value):
        with open(os.path.join(d, name), "w") as f:
            f.write(str(value))

    def enter(self, i):
        """For preexec_fn: moves the calling (child) process into node i's cgroup."""
        if self.dirs:
            self._write(self.dirs[i], "cgroup.procs", os.getpid())

    def remove(self):
        for d in self.dirs:
            try:
                os.rmdir(d)  # empty once its processes have exited
            except OSError:
                pass
        self.dirs = []


class Mesh:
    """NODES agents on loopback, node-0 the seed. stop() ends every process started, always."""

    def __init__(self, binary, work, routing_mode, tag, opencv_threads, limits):
        self.binary, self.work, self.mode, self.tag = binary, work, routing_mode, tag
        self.limits = limits
        self.env = dict(os.environ)
        if opencv_threads > 0:
            self.env["OPENCV_FOR_THREADS_NUM"] = str(opencv_threads)
        self.procs, self.http_ports, self.logs = [], [], []

    def start(self):
        seed = None
        for i in range(NODES):
            repo = os.path.join(self.work, f"repo-{i}")
            if not os.path.isdir(repo):
                shutil.copytree(os.path.join(ROOT, "models", MODEL), os.path.join(repo, MODEL))
            http, gossip = free_port(), free_port()
            cmd = [self.binary, "agent", "--node-name", node_name(i), "--model-repository", repo,
                   "--http-address", f"127.0.0.1:{http}", "--gossip-address", f"127.0.0.1:{gossip}",
                   "--routing-mode", self.mode, "--log-level", "warn", "--grpc-address", "off",
                   "--insecure", "--state-dir",
                   os.path.join(self.work, f"state-{self.tag}-{node_name(i)}")]
            if seed:
                cmd += ["--join", seed]
            else:
                seed = f"127.0.0.1:{gossip}"
            log_path = os.path.join(self.work, f"{self.tag}-{node_name(i)}.log")
            log = open(log_path, "w")
            self.logs.append(log_path)
            self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                               env=self.env,
                                               preexec_fn=lambda i=i: self.limits.enter(i)))
            log.close()
            self.http_ports.append(http)
        for port in self.http_ports:
            try:
                wait_http(f"http://127.0.0.1:{port}/v2/health/ready")
            except RuntimeError:
                raise RuntimeError(f"an agent did not become ready:\n{self.log_tails()}")
        self.wait_converged()

    def wait_converged(self, timeout=20.0):
        """Until every node sees all NODES alive, each with the model ready."""
        deadline = time.time() + timeout
        while True:
            pending = []
            for i, port in enumerate(self.http_ports):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/mesh/members",
                                                timeout=2) as r:
                        members = json.load(r)["members"]
                except OSError:
                    members = []
                ready = {m["name"] for m in members if m.get("state") == "alive" and any(
                    a["name"] == MODEL and a.get("ready") for a in m.get("models", []))}
                if len(ready) < NODES:
                    pending.append(f"{node_name(i)} sees {sorted(ready)}")
            if not pending:
                return
            if time.time() > deadline:
                raise RuntimeError("the mesh did not converge: " + "; ".join(pending))
            time.sleep(0.1)

    def log_tails(self):
        out = []
        for path in self.logs:
            with open(path, errors="replace") as f:
                out.append(f"--- {os.path.basename(path)}\n" + "".join(f.readlines()[-10:]))
        return "\n".join(out)

    def stop(self):
        """SIGTERM (the agents drain what they hold), then SIGKILL after 10 s."""
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


# The first response body of each error status in the current run, to say why in the report.
FIRST_ERRORS = {}


def infer(conn, frame):
    """One request on a keep-alive connection: (outcome, served_by). outcome is "ok", an HTTP
    status code as text, or the name of a connection error."""
    try:
        conn.request("POST", INFER_PATH, body=frame,
                     headers={"Inference-Header-Content-Length": "0",
                              "Content-Type": "application/octet-stream"})
        resp = conn.getresponse()
        body = resp.read()
        served_by = resp.getheader("Hivemesh-Served-By", "")
    except (OSError, http.client.HTTPException) as e:
        conn.close()  # reconnects on the next request
        return type(e).__name__, ""
    if resp.status != 200:
        FIRST_ERRORS.setdefault(str(resp.status), body[:300].decode(errors="replace"))
        return str(resp.status), served_by
    try:
        outputs = {o["name"] for o in json.loads(body)["outputs"]}
    except (ValueError, KeyError, TypeError):
        return "bad-body", served_by
    return ("ok" if "count" in outputs else "bad-body"), served_by


def warm_up(ports, frames):
    """One request per node (loads the vision backend), so start-up is not measured."""
    for port in ports:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        outcome, _ = infer(conn, frames[0])
        conn.close()
        if outcome != "ok":
            raise RuntimeError(f"warm-up request to port {port} failed: {outcome}")


def measure_capacity(ports, frames, conns_per_node, seconds, warm=2.0):
    """Closed loop, conns_per_node requests outstanding at every node: successful responses per
    second over the mesh, counted after `warm` seconds."""
    start = time.monotonic()
    t_from, t_end = start + warm, start + warm + seconds
    counts = [0] * len(ports)
    lock = threading.Lock()

    def client(node, k):
        conn = http.client.HTTPConnection("127.0.0.1", ports[node], timeout=60)
        n = k
        while time.monotonic() < t_end:
            outcome, _ = infer(conn, frames[n % len(frames)])
            n += conns_per_node
            done = time.monotonic()
            if outcome == "ok" and t_from <= done <= t_end:
                with lock:
                    counts[node] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i, k), daemon=True)
               for i in range(len(ports)) for k in range(conns_per_node)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds, counts


class CpuMeter:
    """CPU used between its creation and cores(): by the given processes (with their threads),
    and by everything else on the machine except this script (whose load generator uses a
    steady ~0.25 cores), in cores (CPU seconds per second)."""

    def __init__(self, pids):
        self.pids = pids
        self.hz = os.sysconf("SC_CLK_TCK")
        self.start = (time.monotonic(), self._machine_busy(), self._procs(), self._self())

    @staticmethod
    def _self():
        t = os.times()
        return t.user + t.system  # this process, every thread, in seconds

    @staticmethod
    def _machine_busy():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v) - v[3] - v[4]  # all but idle and iowait

    def _procs(self):
        total = 0
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, IndexError, ValueError):
                pass
        return total

    def cores(self):
        t0, busy0, procs0, self0 = self.start
        wall = time.monotonic() - t0
        procs = (self._procs() - procs0) / self.hz / wall
        busy = (self._machine_busy() - busy0) / self.hz / wall
        script = (self._self() - self0) / wall
        return procs, max(0.0, busy - procs - script)


def make_schedule(counts, seconds, arrivals, seed, n_frames):
    """[(offset_s, node, frame_index)] sorted by time, counts[node] requests per node over
    `seconds`: uniform = evenly spaced (random phase); poisson = a Poisson process conditioned on
    its count (that many times drawn uniformly), so every run offers exactly the same load."""
    schedule = []
    for node, count in enumerate(counts):
        rng = random.Random(seed * 1000 + node)
        if arrivals == "uniform":
            phase = rng.uniform(0, seconds / max(1, count))
            times = [phase + k * seconds / count for k in range(count)]
        else:
            times = sorted(rng.uniform(0, seconds) for _ in range(count))
        first = node * 37  # each node starts at a different frame
        schedule += [(t, node, (first + k) % n_frames) for k, t in enumerate(times)]
    schedule.sort()
    return schedule


class ConnectionPool:
    """Keep-alive connections to one node, shared by the sender threads: the most recently used
    idle connection first, a new one when none is idle. A connection idle longer than IDLE_MAX_S
    is dropped rather than reused (the agent closes idle connections after --header-timeout-ms,
    10 s by default), and a reused connection found closed by the server is replaced and the
    request sent again once, as HTTP client pools do."""

    IDLE_MAX_S = 5.0

    def __init__(self, port):
        self.port = port
        self.lock = threading.Lock()
        self.idle = []  # [(connection, last used)]

    def _get(self):
        now = time.monotonic()
        with self.lock:
            while self.idle:
                conn, used = self.idle.pop()
                if now - used < self.IDLE_MAX_S:
                    return conn, True
                conn.close()
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120), False

    def infer(self, frame):
        conn, reused = self._get()
        outcome, served_by = infer(conn, frame)
        if reused and outcome in ("BrokenPipeError", "ConnectionResetError", "RemoteDisconnected"):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            outcome, served_by = infer(conn, frame)
        if conn.sock is not None:  # still open: neither an error nor `Connection: close`
            with self.lock:
                self.idle.append((conn, time.monotonic()))
        return outcome, served_by

    def close(self):
        with self.lock:
            for conn, _ in self.idle:
                conn.close()
            self.idle = []


def run_open_loop(ports, frames, schedule):
    """Sends `schedule` on time, each request from its own thread (so that no request ever waits
    for an earlier one) over pooled keep-alive connections. Returns one (node, outcome,
    served_by, latency_s, lag_s) per scheduled request; latency runs from the scheduled send
    time, lag is how late the send was."""
    pools = [ConnectionPool(port) for port in ports]
    results = [None] * len(schedule)
    FIRST_ERRORS.clear()

    def send(i, when, node, f):
        sent = time.monotonic()
        outcome, served_by = pools[node].infer(frames[f])
        results[i] = (node, outcome, served_by, time.monotonic() - when, sent - when)

    threads = []
    t0 = time.monotonic() + 0.1
    for i, (offset, node, f) in enumerate(schedule):
        when = t0 + offset
        delay = when - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = threading.Thread(target=send, args=(i, when, node, f), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    for pool in pools:
        pool.close()
    return results


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def summarize(results, seconds):
    ok = sorted(r[3] for r in results if r[1] == "ok")
    errors = {}
    served = {node_name(i): 0 for i in range(NODES)}
    for _, outcome, served_by, _, _ in results:
        if outcome != "ok":
            errors[outcome] = errors.get(outcome, 0) + 1
        elif served_by:
            served[served_by] = served.get(served_by, 0) + 1
    return {"offered": len(results) / seconds, "goodput": len(ok) / seconds,
            "ratio": len(ok) / max(1, len(results)), "p50_ms": percentile(ok, 0.50) * 1e3,
            "p99_ms": percentile(ok, 0.99) * 1e3, "errors": errors, "served": served,
            "first_errors": dict(FIRST_ERRORS),
            "lag_p99_ms": percentile(sorted(r[4] for r in results), 0.99) * 1e3,
            "max_lag_ms": max((r[4] for r in results), default=0) * 1e3, "count": len(results)}


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def supports_routing_mode(binary):
    out = subprocess.run([binary, "agent", "--help"], capture_output=True, text=True)
    return "--routing-mode" in out.stdout + out.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--seconds", type=float, default=15, help="length of each run's schedule")
    ap.add_argument("--frames", help="folder of frame-*.jpg (default: scripts/fetch-frames.sh)")
    ap.add_argument("--runs", default=",".join(RUNS),
                    help="comma-separated subset of " + ",".join(RUNS))
    ap.add_argument("--hot", type=float, default=3.0, help="hot node's load, in node capacities")
    ap.add_argument("--cold", type=float, default=0.1, help="each other node's load, in capacities")
    ap.add_argument("--capacity", type=float,
                    help="a node's capacity in req/s (skips measuring it)")
    ap.add_argument("--calib-seconds", type=float, default=10)
    ap.add_argument("--calib-conns", type=int, default=2, help="requests outstanding per node")
    ap.add_argument("--arrivals", choices=["poisson", "uniform"], default="poisson")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat the runs (order rotated); figures are medians over rounds")
    ap.add_argument("--opencv-threads", type=int, default=1,
                    help="OPENCV_FOR_THREADS_NUM of every agent; 0 = OpenCV's default (all cores)")
    ap.add_argument("--cpu-per-node", type=float, default=0.45,
                    help="cores each node may use (its own CPU cgroup); 0 = no limit")
    ap.add_argument("--log-dir", help="keep the agents' logs here (default: a temp dir, removed)")
    args = ap.parse_args()
    runs = [r for r in args.runs.split(",") if r]
    if not runs or any(r not in RUNS for r in runs):
        sys.exit(f"--runs: choose from {','.join(RUNS)}")
    if args.rounds < 1 or args.seconds <= 0:
        sys.exit("--rounds and --seconds must be positive")

    binary = os.path.join(args.build, "hivemesh")
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} is missing: build it first (make release)")
    if not supports_routing_mode(binary):
        sys.exit(f"{binary} has no --routing-mode flag (agent --help does not list it): "
                 "this benchmark needs a build that has it")
    frames_dir = args.frames
    if not frames_dir:
        fetched = subprocess.run([os.path.join(ROOT, "scripts", "fetch-frames.sh"), args.build],
                                 stdout=subprocess.PIPE, text=True)
        if fetched.returncode != 0 or not fetched.stdout.strip():
            sys.exit("scripts/fetch-frames.sh failed (see above); or pass --frames DIR")
        frames_dir = fetched.stdout.strip().splitlines()[-1]
    paths = sorted(glob.glob(os.path.join(frames_dir, "frame-*.jpg")))
    if not paths:
        sys.exit(f"no frame-*.jpg in {frames_dir}")
    frames = []
    for p in paths:
        with open(p, "rb") as f:
            frames.append(f.read())

    # SIGTERM ends the run like Ctrl-C: through the finally clauses that stop the agents.
    signal.signal(signal.SIGTERM, raise_interrupt)
    work = args.log_dir or tempfile.mkdtemp(prefix="bench-hotspot-")
    os.makedirs(work, exist_ok=True)
    summaries = {}
    limits = None
    try:
        limits = CpuLimits(args.cpu_per_node)
        capacity = args.capacity
        per_node_calib = None
        if capacity is None:
            mesh = Mesh(binary, work, "local", "calibrate", args.opencv_threads, limits)
            try:
                mesh.start()
                warm_up(mesh.http_ports, frames)
                cpu = CpuMeter([p.pid for p in mesh.procs])
                total, per_node_calib = measure_capacity(mesh.http_ports, frames, args.calib_conns,
                                                         args.calib_seconds)
                calib_cores = cpu.cores()
            finally:
                mesh.stop()
            capacity = total / NODES
            if capacity <= 0:
                sys.exit("capacity measurement: no request succeeded")
        rates = [args.hot * capacity] + [args.cold * capacity] * (NODES - 1)
        counts = [round(r * args.seconds) for r in rates]
        total_rate = sum(counts) / args.seconds
        balanced = [sum(counts) // NODES + (1 if i < sum(counts) % NODES else 0)
                    for i in range(NODES)]
        print(f"{len(frames)} frames from {frames_dir}; {args.arrivals} arrivals, "
              f"{args.seconds:g} s per run", flush=True)
        if per_node_calib:
            print(f"capacity: {capacity:.2f} req/s per node (mesh saturated, local routing: "
                  f"{capacity * NODES:.2f} req/s in all, per node "
                  f"{', '.join(f'{c / args.calib_seconds:.2f}' for c in per_node_calib)}); "
                  f"meanwhile the agents used {calib_cores[0]:.2f} cores, other processes (not this script) "
                  f"{calib_cores[1]:.2f}, of {os.cpu_count()}", flush=True)
            expected = min(os.cpu_count(), NODES * args.cpu_per_node) if args.cpu_per_node > 0 \
                else os.cpu_count()
            if args.cpu_per_node > 0:
                print(f"each node limited to {args.cpu_per_node:g} cores (CPU cgroup)", flush=True)
            if calib_cores[0] < 0.8 * expected:
                print("WARNING: the agents got less than 80% of the machine while capacity was "
                      "measured (a busy machine?): capacity and offered load are understated",
                      flush=True)
        else:
            print(f"capacity: {capacity:.2f} req/s per node (given)", flush=True)
        print(f"offered: node-0 {rates[0]:.2f} req/s ({args.hot:g} c), others "
              f"{rates[1]:.2f} req/s ({args.cold:g} c) each; total {total_rate:.2f} req/s = "
              f"{total_rate / (capacity * NODES):.1%} of the mesh's capacity", flush=True)

        for rnd in range(args.rounds):
            # Later rounds rotate the order, so that a slow patch of a shared machine does not
            # always land on the same run.
            for run in runs[rnd % len(runs):] + runs[:rnd % len(runs)]:
                mode = "local" if run == "balanced" else run
                schedule = make_schedule(balanced if run == "balanced" else counts, args.seconds,
                                         args.arrivals, args.seed, len(frames))
                mesh = Mesh(binary, work, mode, f"{run}-{rnd}", args.opencv_threads, limits)
                try:
                    mesh.start()
                    warm_up(mesh.http_ports, frames)
                    time.sleep(1.0)  # load reports settle back to idle after the warm-up
                    cpu = CpuMeter([p.pid for p in mesh.procs])
                    results = run_open_loop(mesh.http_ports, frames, schedule)
                    mesh_cores, other_cores = cpu.cores()
                finally:
                    mesh.stop()
                s = summarize(results, args.seconds)
                s["mesh_cores"], s["other_cores"] = mesh_cores, other_cores
                summaries.setdefault(run, []).append(s)
                print(f"  round {rnd + 1} {run:<9} {s['goodput']:.2f}/{s['offered']:.2f} req/s "
                      f"good, p99 {s['p99_ms']:.0f} ms", flush=True)
    except KeyboardInterrupt:
        sys.exit("interrupted; every agent was stopped")
    except RuntimeError as e:
        sys.exit(f"bench_hotspot: {e}")
    finally:
        if limits:
            limits.remove()
        if not args.log_dir:
            shutil.rmtree(work, ignore_errors=True)
    report(summaries, runs, capacity, total_rate)


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def report(summaries, runs, capacity, total_rate):
    print()
    print(f"{'run':<12}{'offered/s':>10}{'good/s':>8}{'good/off':>9}{'p50 ms':>8}{'p99 ms':>8}"
          + "".join(f"{node_name(i):>8}" for i in range(NODES))
          + f"{'mesh cpu':>9}{'other cpu':>10}  errors")
    for run in runs:
        for rnd, s in enumerate(summaries[run]):
            label = run if len(summaries[run]) == 1 else f"{run} #{rnd + 1}"
            if s["other_cores"] > DISTURBED_CORES:
                label += " *"
            errors = ", ".join(f"{k}: {v}" for k, v in sorted(s["errors"].items())) or "-"
            print(f"{label:<12}{s['offered']:>10.2f}{s['goodput']:>8.2f}{s['ratio']:>9.3f}"
                  f"{s['p50_ms']:>8.0f}{s['p99_ms']:>8.0f}"
                  + "".join(f"{s['served'].get(node_name(i), 0):>8}" for i in range(NODES))
                  + f"{s['mesh_cores']:>9.2f}{s['other_cores']:>10.2f}  {errors}")
    print("node-N: successful requests that node served (Hivemesh-Served-By). Latency: from the "
          "scheduled send time, successful requests only. cpu: cores used during the run by the "
          "four agents, and by every other process on the machine (this script and its load "
          "generator excluded)")
    for run in runs:
        for s in summaries[run]:
            for status, body in sorted(s["first_errors"].items()):
                print(f"  {run} {status}: {body}")
    everything = [s for run in runs for s in summaries[run]]
    disturbed = sum(1 for s in everything if s["other_cores"] > DISTURBED_CORES)
    if disturbed:
        print(f"* {disturbed} of {len(everything)} runs shared the machine with other work (other "
              f"processes used over {DISTURBED_CORES:.2f} cores): their figures measure that "
              "work as much as the routing; rerun on a quiet machine or with --rounds")
    lag99 = max(s["lag_p99_ms"] for s in everything)
    lag = max(s["max_lag_ms"] for s in everything)
    print(f"load generator: send lag p99 {lag99:.1f} ms, largest {lag:.1f} ms (worst run)"
          + ("  WARNING: the generator fell behind its schedule (a busy machine?)"
             if lag99 > 50 else ""))

    # With several rounds, each figure below is the median over the rounds.
    agg = {run: {k: median([s[k] for s in summaries[run]])
                 for k in ("ratio", "p50_ms", "p99_ms", "other_cores")} for run in runs}
    fields = [f"capacity_rps={capacity:.2f}", f"offered_rps={total_rate:.2f}"]
    for run in runs:
        a = agg[run]
        fields += [f"{run}_goodput_ratio={a['ratio']:.3f}", f"{run}_p50_ms={a['p50_ms']:.0f}",
                   f"{run}_p99_ms={a['p99_ms']:.0f}"]
    if "hivemesh" in agg:
        h = agg["hivemesh"]
        verdict = "met" if h["ratio"] >= 0.95 else "NOT met"
        print(f"hivemesh goodput/offered: {h['ratio']:.3f} (goal >= 0.95: {verdict})")
        if "balanced" in agg:
            vs = h["p99_ms"] / agg["balanced"]["p99_ms"]
            verdict = "met" if vs <= 1.5 else "NOT met"
            print(f"hivemesh p99 / balanced p99: {vs:.2f} (goal <= 1.5: {verdict})")
            fields.append(f"hivemesh_p99_vs_balanced={vs:.2f}")
        for other in ("local", "random"):
            if other in agg:
                vs = h["p99_ms"] / agg[other]["p99_ms"]
                print(f"hivemesh p99 / {other} p99: {vs:.2f}")
                fields.append(f"hivemesh_p99_vs_{other}={vs:.2f}")
    fields.append(f"other_cpu_max={max(a['other_cores'] for a in agg.values()):.2f}")
    print("RESULT " + " ".join(fields))

if __name__ == "__main__":
    main()
