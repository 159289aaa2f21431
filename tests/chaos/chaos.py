#!/usr/bin/python3
"""The chaos suite: a mesh of real `hivemesh agent` processes, each in its own network namespace,
joined by veth pairs to a bridge, under a steady load whose every answer is checked, through a
schedule of faults: kill -9, a hung node (SIGSTOP), a drain, two nodes killed at once, a network
cut, a slow link, a flapping link, an asymmetric cut and packet loss (docs/resilience.md).

    chaos.py BINARY [--schedule short|full] [--rate RPS] [--max-p100-ms MS]

Node n1 hosts nothing (it only forwards); n2..n4 host `identity`. Clients send to every node that
is up, round-robin, at a fixed rate. A request "entered a live node" unless its entry node was
killed, stopped or cut while it was in flight (or a connection to it was refused: it never
entered). For those requests the suite asserts: none failed, none wrong, and (with
--max-p100-ms) none took longer. It prints a table per phase, then a line
`RESULT requests=... failed=... wrong=... p100_ms=...`; the exit status is 0 only if every bound
held. Needs root (ip netns, iptables, tc: scripts/install-deps.sh installs them).
"""
import argparse
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

NODES = 4
PORT_HTTP = 8000
PORT_GOSSIP = 7946
MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "models")


def sh(*cmd, check=True):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}")
    return r.stdout


class Net:
    """Namespaces hc<tag>-1..N, each with one veth on a bridge in namespace hc<tag>-hub, and a
    veth from the root namespace to the bridge (where the clients are)."""

    def __init__(self, n):
        self.tag = os.getpid() % 100000
        self.subnet = f"10.199.{os.getpid() % 250}"
        self.hub = f"hc{self.tag}-hub"
        self.ns = [f"hc{self.tag}-{i}" for i in range(1, n + 1)]
        self.root_if = f"hc{self.tag}r"
        try:
            sh("ip", "netns", "add", self.hub)
            self.hub_exec("ip", "link", "add", "br0", "type", "bridge")
            self.hub_exec("ip", "link", "set", "br0", "up")
            for i, ns in enumerate(self.ns, start=1):
                sh("ip", "netns", "add", ns)
                self.veth(f"hc{self.tag}n{i}", ns, f"{self.subnet}.{i}")
            self.veth(self.root_if, None, f"{self.subnet}.254")
        except Exception:
            self.close()
            raise

    def hub_exec(self, *cmd):
        return sh("ip", "netns", "exec", self.hub, *cmd)

    def veth(self, name, ns, address):
        # `name` in `ns` (None: the root namespace), its peer `b-<name>` on the bridge.
        peer = f"b{name}"[:15]
        sh("ip", "link", "add", name, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", self.hub)
        self.hub_exec("ip", "link", "set", peer, "master", "br0")
        self.hub_exec("ip", "link", "set", peer, "up")
        if ns is not None:
            sh("ip", "link", "set", name, "netns", ns)
            self.exec(ns, "ip", "link", "set", "lo", "up")
            self.exec(ns, "ip", "addr", "add", f"{address}/24", "dev", name)
            self.exec(ns, "ip", "link", "set", name, "up")
        else:
            sh("ip", "addr", "add", f"{address}/24", "dev", name)
            sh("ip", "link", "set", name, "up")

    def exec(self, ns, *cmd, check=True):
        return sh("ip", "netns", "exec", ns, *cmd, check=check)

    def address(self, i):
        return f"{self.subnet}.{i}"

    def close(self):
        sh("ip", "link", "del", self.root_if, check=False)
        for ns in [*self.ns, self.hub]:
            sh("ip", "netns", "del", ns, check=False)


class Agent:
    def __init__(self, binary, net, i, models, root):
        self.binary, self.net, self.i, self.models = binary, net, i, models
        self.name = f"n{i}"
        self.state = os.path.join(root, self.name)
        self.log_path = os.path.join(root, f"{self.name}.log")
        self.proc = None

    def start(self):
        repo = ["--model-repository", MODELS, "--models", ",".join(self.models)] if self.models \
            else ["--model-repository", tempfile.mkdtemp(prefix="hivemesh-chaos-empty-")]
        address = self.net.address(self.i)
        # The seed (n2) starts alone the first time; a restarted node joins any other.
        others = [f"{self.net.address(j)}:{PORT_GOSSIP}" for j in range(1, NODES + 1)
                  if j != self.i]
        if self.proc is None:
            others = [] if self.i == 2 else [f"{self.net.address(2)}:{PORT_GOSSIP}"]
        join = ["--join", ",".join(others)] if others else []
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.net.ns[self.i - 1], self.binary, "agent",
                 "--node-name", self.name, "--http-address", f"{address}:{PORT_HTTP}",
                 "--gossip-address", f"{address}:{PORT_GOSSIP}", "--gossip-profile", "local",
                 "--grpc-address", "off", "--state-dir", self.state, "--log-level", "info",
                 "--insecure", *repo, *join], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.tail()}")
            try:
                c = http.client.HTTPConnection(address, PORT_HTTP, timeout=2)
                c.request("GET", "/v2/health/ready")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become ready: {self.tail()}")

    def tail(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-3000:]

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self):
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def drain(self):
        self.signal(signal.SIGTERM)
        self.proc.wait(timeout=60)

    def iptables(self, *rule, check=True):
        return self.net.exec(self.net.ns[self.i - 1], "iptables", *rule, check=check)

    def tc(self, *args, check=True):
        return self.net.exec(self.net.ns[self.i - 1], "tc", *args, check=check)

    @property
    def dev(self):
        return f"hc{self.net.tag}n{self.i}"


class Load:
    """`rate` requests a second in all, from `threads` threads, to the nodes marked up,
    round-robin; each on a keep-alive connection per (thread, node)."""

    def __init__(self, net, rate, threads, timeout_ms):
        self.net, self.rate, self.timeout_ms = net, rate, timeout_ms
        self.up = set(range(1, NODES + 1))
        self.down = {i: [] for i in range(1, NODES + 1)}  # [start, end] while faulted
        self.results = []  # (sent, took, status, served_by, right, entry, error)
        self.refused = 0
        # Bumped when a node goes down: clients drop their connections to its old process (a
        # client of a real service opens a new one to a restarted server).
        self.epoch = {i: 0 for i in range(1, NODES + 1)}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(t, threads), daemon=True)
                        for t in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=120)

    def fault(self, i, entry_too=True):
        """Node i goes down now: no new requests; in-flight ones are excluded if entry_too."""
        with self.lock:
            self.up.discard(i)
            self.epoch[i] += 1
            if entry_too:
                self.down[i].append([time.monotonic(), None])

    def unfault(self, i):
        with self.lock:
            if self.down[i] and self.down[i][-1][1] is None:
                self.down[i][-1][1] = time.monotonic()
            self.up.add(i)

    def excluded(self, r):
        sent, took, entry = r[0], r[1], r[5]
        for start, end in self.down[entry]:
            if start <= sent + took and (end is None or end >= sent):
                return True
        return False

    def run(self, seed, threads):
        rng = random.Random(seed)
        conns = {}
        period = threads / self.rate
        next_at = time.monotonic() + rng.uniform(0, period)
        turn = seed
        while not self.stop_event.is_set():
            now = time.monotonic()
            if now < next_at:
                time.sleep(next_at - now)
            next_at = max(next_at + period, time.monotonic() - period)
            with self.lock:
                up = sorted(self.up)
                epochs = dict(self.epoch)
            if not up:
                continue
            turn += 1
            entry = up[turn % len(up)]
            conn, epoch = conns.get(entry, (None, None))
            if conn is not None and epoch != epochs[entry]:
                conn.close()
                conn = None
            if conn is None or conn.sock is None:
                conn = http.client.HTTPConnection(self.net.address(entry), PORT_HTTP, timeout=30)
                try:
                    conn.connect()
                except OSError:
                    with self.lock:
                        self.refused += 1
                    continue
                conns[entry] = (conn, epochs[entry])
            values = [round(rng.uniform(-1000, 1000), 3) for _ in range(4)]
            body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [4], "datatype": "FP32",
                                           "data": values}]})
            sent = time.monotonic()
            try:
                conn.request("POST", "/v2/models/identity/infer", body=body,
                             headers={"Content-Type": "application/json",
                                      "Inference-Timeout-Ms": str(self.timeout_ms)})
                r = conn.getresponse()
                text = r.read().decode(errors="replace")
                right = False
                if r.status == 200:
                    out = json.loads(text)["outputs"][0]["data"]
                    right = [float(x) for x in out] == values
                result = (sent, time.monotonic() - sent, r.status,
                          r.getheader("Hivemesh-Served-By", ""), right, entry,
                          "" if r.status == 200 else text[:200])
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                result = (sent, time.monotonic() - sent, 0, "", False, entry,
                          f"{type(e).__name__}: {e}")
            with self.lock:
                self.results.append(result)


class Chaos:
    def __init__(self, binary, rate, threads, timeout_ms):
        self.root = tempfile.mkdtemp(prefix="hivemesh-chaos-")
        self.net = Net(NODES)
        self.agents = {}
        self.phases = []  # (name, start, end)
        try:
            for i in range(1, NODES + 1):
                models = [] if i == 1 else ["identity"]
                self.agents[i] = Agent(binary, self.net, i, models, self.root)
            # n2 is the seed: it starts first.
            for i in [2, 1, 3, 4]:
                self.agents[i].start()
            self.load = Load(self.net, rate, threads, timeout_ms)
            self.wait_mesh()
        except Exception:
            self.close()
            raise

    def wait_mesh(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection(self.net.address(1), PORT_HTTP, timeout=5)
                c.request("GET", "/v1/mesh/members")
                members = json.loads(c.getresponse().read())["members"]
                if sum(1 for m in members if m["state"] == "alive") == NODES:
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise RuntimeError("the mesh did not form: " + self.agents[1].tail())

    def close(self):
        for a in self.agents.values():
            a.kill()
        self.net.close()

    # --- faults -------------------------------------------------------------------------------
    def kill(self, *nodes):
        for i in nodes:
            self.load.fault(i)
        for i in nodes:
            self.agents[i].kill()

    def restart(self, *nodes):
        for i in nodes:
            self.agents[i].start()
            self.load.unfault(i)

    def stop_process(self, i):
        self.load.fault(i)
        self.agents[i].signal(signal.SIGSTOP)

    def cont(self, i):
        self.agents[i].signal(signal.SIGCONT)
        self.load.unfault(i)

    def drain(self, i):
        # A drain loses nothing that entered: requests in flight stay counted.
        self.load.fault(i, entry_too=False)
        self.agents[i].drain()

    def cut(self, i, source=None):
        """Drops everything to and from node i (only from `source`'s address: asymmetric)."""
        a = self.agents[i]
        if source is None:
            self.load.fault(i)
            a.iptables("-A", "INPUT", "-i", a.dev, "-j", "DROP")
            a.iptables("-A", "OUTPUT", "-o", a.dev, "-j", "DROP")
        else:
            a.iptables("-A", "INPUT", "-s", self.net.address(source), "-j", "DROP")

    def loss(self, i, probability):
        a = self.agents[i]
        self.load.fault(i)  # its own clients would see the loss: they are not the mesh's doing
        for chain, flag in (("INPUT", "-i"), ("OUTPUT", "-o")):
            a.iptables("-A", chain, flag, a.dev, "-m", "statistic", "--mode", "random",
                       "--probability", str(probability), "-j", "DROP")

    def heal(self, i):
        a = self.agents[i]
        a.iptables("-F", "INPUT")
        a.iptables("-F", "OUTPUT")
        a.tc("qdisc", "del", "dev", a.dev, "root", check=False)
        self.load.unfault(i)

    def slow(self, i, rate="2mbit"):
        a = self.agents[i]
        self.load.fault(i)  # its own clients' answers cross the slow link too
        a.tc("qdisc", "add", "dev", a.dev, "root", "tbf", "rate", rate, "burst", "32kbit",
             "latency", "400ms")

    # --- the schedule -------------------------------------------------------------------------
    def phase(self, name, fn):
        start = time.monotonic()
        print(f"[{time.strftime('%H:%M:%S')}] {name}", flush=True)
        fn()
        self.phases.append((name, start, time.monotonic()))

    def run(self, schedule):
        s = 1 if schedule == "full" else 0.4  # the short schedule's times are shorter
        w = lambda seconds: time.sleep(seconds * s)  # noqa: E731
        self.load.start()
        try:
            self.phase("baseline", lambda: w(10))
            self.phase("kill -9 n3, restart", lambda: (self.kill(3), w(5), self.restart(3), w(10)))
            hang = 15 if schedule == "full" else 6
            self.phase(f"SIGSTOP n4 {hang} s", lambda: (self.stop_process(4), time.sleep(hang),
                                                       self.cont(4), w(10)))
            self.phase("drain n2, restart", lambda: (self.drain(2), self.restart(2), w(10)))
            self.phase("kill -9 n3+n4 at once, restart",
                       lambda: (self.kill(3, 4), w(5), self.restart(3, 4), w(10)))
            cut = 20 if schedule == "full" else 8
            self.phase(f"cut n2 {cut} s", lambda: (self.cut(2), time.sleep(cut), self.heal(2),
                                                  w(10)))
            if schedule == "full":
                self.phase("slow link n3 (2 mbit/s)", lambda: (self.slow(3), w(15), self.heal(3),
                                                               w(5)))
                self.phase("flapping link n4", lambda: (
                    [(self.cut(4), time.sleep(1), self.heal(4), time.sleep(1)) for _ in range(5)],
                    w(10)))
                self.phase("asymmetric cut: n2 drops n1's packets", lambda: (
                    self.cut(2, source=1), w(10), self.heal(2), w(5)))
                self.phase("10% loss at n3", lambda: (self.loss(3, 0.1), w(15), self.heal(3),
                                                      w(5)))
            self.phase("after", lambda: w(5))
        finally:
            self.load.stop()


def percentile(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def report(chaos, max_p100_ms):
    load = chaos.load
    rows = []
    total_in = []
    for name, start, end in chaos.phases:
        mine = [r for r in load.results if start <= r[0] < end]
        counted = [r for r in mine if not load.excluded(r)]
        failed = [r for r in counted if r[2] != 200]
        wrong = [r for r in counted if r[2] == 200 and not r[4]]
        took = [r[1] * 1000 for r in counted]
        rows.append((name, len(mine), len(mine) - len(counted), len(failed), len(wrong),
                     percentile(took, 50), percentile(took, 99), max(took, default=0),
                     len(counted) / max(end - start, 1e-9)))
        total_in += counted
    head = ("phase", "requests", "excluded", "failed", "wrong", "p50 ms", "p99 ms", "p100 ms",
            "rps")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} | {row[3]} | {row[4]} | {row[5]:.1f} | "
              f"{row[6]:.1f} | {row[7]:.0f} | {row[8]:.0f} |")
    failed = [r for r in total_in if r[2] != 200]
    wrong = [r for r in total_in if r[2] == 200 and not r[4]]
    p100 = max((r[1] * 1000 for r in total_in), default=0)
    for r in failed[:10]:
        print(f"failed: entry n{r[5]} at +{r[0] - chaos.phases[0][1]:.2f} s after "
              f"{r[1] * 1000:.0f} ms: {r[2]} {r[6]}")
    slowest = sorted(total_in, key=lambda r: -r[1])[:5]
    for r in slowest:
        print(f"slow: entry n{r[5]} at +{r[0] - chaos.phases[0][1]:.2f} s took "
              f"{r[1] * 1000:.0f} ms, served by {r[3] or '-'} ({r[2]})")
    ok = not failed and not wrong and (max_p100_ms is None or p100 <= max_p100_ms)
    print(f"RESULT requests={len(total_in)} failed={len(failed)} wrong={len(wrong)} "
          f"excluded={sum(r[2] for r in rows)} refused_connections={load.refused} "
          f"p100_ms={p100:.0f} ok={int(ok)}")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("binary")
    parser.add_argument("--schedule", choices=["short", "full"], default="short")
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--timeout-ms", type=int, default=5000)
    parser.add_argument("--max-p100-ms", type=float, default=None)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("chaos.py needs root (network namespaces, iptables, tc)")
    for tool in ("ip", "iptables", "tc"):
        if shutil.which(tool) is None:
            sys.exit(f"chaos.py needs {tool}: run scripts/install-deps.sh")
    chaos = Chaos(os.path.abspath(args.binary), args.rate, args.threads, args.timeout_ms)
    try:
        chaos.run(args.schedule)
    finally:
        chaos.close()
    ok = report(chaos, args.max_p100_ms)
    if not ok or args.keep_logs:
        for a in chaos.agents.values():
            print(f"--- {a.name} log ({a.log_path}), last lines:\n{a.tail()[-1500:]}")
    if not args.keep_logs and ok:
        shutil.rmtree(chaos.root, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
