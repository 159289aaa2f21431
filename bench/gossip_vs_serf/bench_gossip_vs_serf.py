#!/usr/bin/python3
"""Membership side by side on loopback: Serf (Debian's `serf`, -profile=lan) against hivemesh
(`hivemesh agent --gossip-profile lan`), started the same way in the same run.

For each cluster size (--sizes) and each system, N agents on 127.0.0.1 (free ports, no encryption,
agent i>0 joins agent 0 from its command line) and:

  converge   from spawning agents 1..N-1 (agent 0 already up) until every agent reports all N
             members alive. Includes the joining agents' process start.
  detect     `kill -9` of one non-seed agent until every other agent reports it failed (Serf
             status "failed", hivemesh state "dead"); the agent is then restarted with the same
             name and ports and rejoins, and all N must report all N alive before the next kill.
             Median, min and max over --kills kills.
  RSS        VmRSS from /proc/PID/status of each agent after convergence and --settle seconds of
             idling; mean over agents (also shown split into RssAnon and RssFile, the latter
             mostly shared libraries).
  bytes/s    gossip bytes sent per agent per second at rest (no polling) over --idle-seconds
             (30 s = one LAN push/pull interval), after the kills and at least --warmup seconds
             after convergence, so that periodic push/pull is in steady state (Serf's first comes
             30-60 s after an agent starts); mean over agents. --bytes-source counters
             (default): each agent's own cumulative count of bytes it sent over its gossip UDP
             and TCP sockets (Serf: memberlist's
             `memberlist.udp.sent` + `memberlist.tcp.sent` counters, received via a statsd sink
             per agent; hivemesh: `bytes_out` of GET /v1/mesh/stats). --bytes-source tcpdump:
             payload bytes of every UDP/TCP packet on `lo` with an agent's gossip port at either
             end, captured by tcpdump (not a default dependency), divided by N.

Membership is observed by polling every agent once per round, every --poll-ms, over one
persistent connection per agent for both systems: Serf's RPC protocol (msgpack over TCP, as
`serf members` speaks it) and hivemesh's GET /v1/mesh/members (HTTP keep-alive). A condition's
time is, over the agents, the latest of the times at which each agent first answered with it
(and kept answering with it until all did).

    bench/gossip_vs_serf/bench_gossip_vs_serf.py [--build build/release] [--sizes 5,20]
        [--kills 5] [--only serf|hivemesh] [--bytes-source counters|tcpdump] [--log-dir DIR]
"""
import argparse
import ctypes
import http.client
import json
import os
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONVERGE_TIMEOUT_S = 60.0
DETECT_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 20.0


class BenchError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------
# msgpack: the subset Serf's RPC uses (maps with string keys, strings, ints, bytes, arrays).

def mp_pack(obj):
    if obj is None:
        return b"\xc0"
    if isinstance(obj, bool):
        return b"\xc3" if obj else b"\xc2"
    if isinstance(obj, int):
        if 0 <= obj < 128:
            return bytes([obj])
        if 0 <= obj < 2**32:
            return b"\xce" + struct.pack(">I", obj)
        return b"\xd3" + struct.pack(">q", obj)
    if isinstance(obj, str):
        b = obj.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        return b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(obj, dict):
        assert len(obj) < 16
        out = bytes([0x80 | len(obj)])
        for k, v in obj.items():
            out += mp_pack(k) + mp_pack(v)
        return out
    raise TypeError(f"cannot pack {type(obj)}")


class MpReader:
    """Decodes msgpack values from a blocking socket, buffering partial reads."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _take(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("serf rpc: connection closed")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _uint(self, n):
        return int.from_bytes(self._take(n), "big")

    def _str(self, n):
        return self._take(n).decode("utf-8", "replace")

    def unpack(self):
        t = self._take(1)[0]
        if t <= 0x7F:
            return t
        if t >= 0xE0:
            return t - 0x100
        if 0x80 <= t <= 0x8F:
            return self._map(t & 0x0F)
        if 0x90 <= t <= 0x9F:
            return [self.unpack() for _ in range(t & 0x0F)]
        if 0xA0 <= t <= 0xBF:
            return self._str(t & 0x1F)
        fixed = {0xC0: None, 0xC2: False, 0xC3: True}
        if t in fixed:
            return fixed[t]
        if t in (0xC4, 0xC5, 0xC6):  # bin 8/16/32
            return self._take(self._uint({0xC4: 1, 0xC5: 2, 0xC6: 4}[t]))
        if t in (0xCA, 0xCB):
            return struct.unpack(">f" if t == 0xCA else ">d", self._take(4 if t == 0xCA else 8))[0]
        if t in (0xCC, 0xCD, 0xCE, 0xCF):
            return self._uint({0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}[t])
        if t in (0xD0, 0xD1, 0xD2, 0xD3):
            n = {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}[t]
            return int.from_bytes(self._take(n), "big", signed=True)
        if t in (0xD9, 0xDA, 0xDB):
            return self._str(self._uint({0xD9: 1, 0xDA: 2, 0xDB: 4}[t]))
        if t in (0xDC, 0xDD):
            return [self.unpack() for _ in range(self._uint(2 if t == 0xDC else 4))]
        if t in (0xDE, 0xDF):
            return self._map(self._uint(2 if t == 0xDE else 4))
        raise ConnectionError(f"serf rpc: unsupported msgpack type 0x{t:02x}")

    def _map(self, n):
        out = {}
        for _ in range(n):
            k = self.unpack()
            out[k] = self.unpack()
        return out


# ---------------------------------------------------------------------------------------------
# Clients: one persistent connection per agent, the same polling cost for both systems.

class SerfClient:
    """Serf agent RPC (what `serf members -rpc-addr=...` does), kept open between polls."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=2.0)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = MpReader(self.sock)
        self.seq = 0
        self._call("handshake", {"Version": 1}, has_body=False)

    def _call(self, command, body, has_body):
        self.seq += 1
        msg = mp_pack({"Command": command, "Seq": self.seq})
        if body is not None:
            msg += mp_pack(body)
        self.sock.sendall(msg)
        header = self.reader.unpack()
        if header.get("Error"):
            raise ConnectionError(f"serf rpc {command}: {header['Error']}")
        return self.reader.unpack() if has_body else None

    def members(self):
        """{name: status}; status is alive, leaving, left or failed."""
        return {m["Name"]: m["Status"] for m in self._call("members", None, True)["Members"]}

    def close(self):
        self.sock.close()


class HivemeshClient:
    """GET /v1/mesh/members and /v1/mesh/stats over one keep-alive HTTP connection."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _get(self, path):
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise ConnectionError(f"GET {path}: HTTP {r.status}: {body[:200]!r}")
        return json.loads(body)

    def members(self):
        """{name: state}; state is alive, suspect, dead or left."""
        return {m["name"]: m["state"] for m in self._get("/v1/mesh/members")["members"]}

    def stats(self):
        return self._get("/v1/mesh/stats")

    def close(self):
        self.conn.close()


# ---------------------------------------------------------------------------------------------
# Processes and ports

def _die_with_parent():
    """preexec_fn: the agent gets SIGKILL if this script dies without cleaning up."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Ports:
    """Free loopback ports, each found by binding port 0; gossip ports are free for TCP and UDP."""

    def __init__(self):
        self.used = set()

    def take(self, udp_too=False):
        for _ in range(1000):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
                if port in self.used:
                    continue
                if udp_too:
                    try:
                        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                            u.bind(("127.0.0.1", port))
                    except OSError:
                        continue
            self.used.add(port)
            return port
        raise BenchError("no free loopback port found")


class Agent:
    def __init__(self, system, index, ports, workdir):
        self.system = system
        self.index = index
        self.name = f"{system.prefix}-{index}"
        self.gossip_port = ports.take(udp_too=True)
        self.ctl_port = ports.take()  # serf: RPC; hivemesh: HTTP
        self.ports = ports
        self.log_path = os.path.join(workdir, f"{self.name}.log")
        self.proc = None
        self.client = None
        self.starts = 0

    def start(self, join_port):
        cmd = self.system.command(self, join_port)
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"==== start #{self.starts}: {' '.join(cmd)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        log.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def disconnect(self):
        if self.client is not None:
            try:
                self.client.close()
            except OSError:
                pass
            self.client = None

    def query(self):
        """This agent's member table, or None while it does not answer."""
        try:
            if self.client is None:
                self.client = self.system.client(self.ctl_port)
            return self.client.members()
        except (OSError, ConnectionError, ValueError, KeyError, http.client.HTTPException):
            self.disconnect()
            return None

    def kill9(self):
        self.disconnect()
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        self.disconnect()
        if self.alive():
            self.proc.terminate()

    def log_tail(self, lines=25):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join("    " + l for l in text[-lines:])


def stop_all(agents, grace_s=3.0):
    for a in agents:
        a.stop()
    deadline = time.monotonic() + grace_s
    for a in agents:
        if a.proc is None:
            continue
        try:
            a.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            a.proc.kill()
            a.proc.wait()


# ---------------------------------------------------------------------------------------------
# Systems

class StatsdCounters:
    """One UDP statsd listener per Serf agent; sums memberlist.{udp,tcp}.sent (bytes sent)."""

    KEYS = (b"memberlist.udp.sent", b"memberlist.tcp.sent")

    def __init__(self):
        self.lock = threading.Lock()
        self.sel = selectors.DefaultSelector()
        self.totals = {}
        self.stopping = False
        self.thread = None

    def add(self, name, ports):
        # The listener's port comes from `ports` too: a port 0 bind could otherwise land on a
        # port already promised to an agent that has not started yet.
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", ports.take(udp_too=True)))
        s.setblocking(False)
        with self.lock:
            self.totals[name] = 0.0
        self.sel.register(s, selectors.EVENT_READ, name)
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return s.getsockname()[1]

    def _run(self):
        while not self.stopping:
            for key, _ in self.sel.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(65536)
                except OSError:
                    continue
                add = 0.0
                for line in data.split(b"\n"):
                    name, _, rest = line.partition(b":")
                    if name.endswith(self.KEYS) and rest.endswith(b"|c"):
                        add += float(rest[:-2])
                with self.lock:
                    self.totals[key.data] += add

    def snapshot(self):
        with self.lock:
            return dict(self.totals)

    def close(self):
        self.stopping = True
        if self.thread is not None:
            self.thread.join()
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


class Serf:
    label = "serf"
    prefix = "serf"
    failed_state = "failed"
    client = SerfClient

    def __init__(self, workdir, bytes_source):
        self.workdir = workdir
        self.statsd = StatsdCounters() if bytes_source == "counters" else None
        self.configs = {}

    def command(self, agent, join_port):
        cmd = ["serf", "agent", f"-node={agent.name}", f"-bind=127.0.0.1:{agent.gossip_port}",
               f"-rpc-addr=127.0.0.1:{agent.ctl_port}", "-profile=lan", "-log-level=info"]
        if self.statsd is not None:
            if agent.name not in self.configs:
                path = os.path.join(self.workdir, f"{agent.name}.json")
                with open(path, "w") as f:
                    port = self.statsd.add(agent.name, agent.ports)
                    json.dump({"statsd_addr": f"127.0.0.1:{port}"}, f)
                self.configs[agent.name] = path
            cmd.append(f"-config-file={self.configs[agent.name]}")
        if join_port is not None:
            cmd.append(f"-join=127.0.0.1:{join_port}")
        return cmd

    def bytes_snapshot(self, agents):
        totals = self.statsd.snapshot()
        now = time.monotonic()
        return {a.name: (now, totals[a.name]) for a in agents}

    def close(self):
        if self.statsd is not None:
            self.statsd.close()


class Hivemesh:
    label = "hivemesh"
    prefix = "hm"
    failed_state = "dead"
    client = HivemeshClient

    def __init__(self, workdir, binary):
        self.binary = binary
        self.workdir = workdir
        self.models = os.path.join(workdir, "empty-models")
        os.makedirs(self.models, exist_ok=True)

    def command(self, agent, join_port):
        cmd = [self.binary, "agent", "--node-name", agent.name,
               "--http-address", f"127.0.0.1:{agent.ctl_port}",
               "--gossip-address", f"127.0.0.1:{agent.gossip_port}", "--gossip-profile", "lan",
               "--model-repository", self.models, "--log-level", "info",
               "--grpc-address", "off",  # gossip only, like serf
               "--insecure",  # no certificates: serf's agents have none
               "--state-dir", os.path.join(self.workdir, "state", agent.name)]
        if join_port is not None:
            cmd += ["--join", f"127.0.0.1:{join_port}"]
        return cmd

    def bytes_snapshot(self, agents):
        out = {}
        for a in agents:
            try:
                stats = HivemeshClient(a.ctl_port)
                try:
                    out[a.name] = (time.monotonic(), float(stats.stats()["bytes_out"]))
                finally:
                    stats.close()
            except (OSError, ConnectionError, ValueError, KeyError,
                    http.client.HTTPException) as e:
                raise BenchError(f"hivemesh: GET /v1/mesh/stats on {a.name} failed: {e}")
        return out

    def close(self):
        pass


class TcpdumpCapture:
    """Payload bytes of UDP/TCP packets on lo with one of `ports` at either end."""

    def __init__(self, ports, path):
        if shutil.which("tcpdump") is None:
            raise BenchError("--bytes-source tcpdump: tcpdump is not installed")
        self.ports = set(ports)
        self.path = path
        expr = " or ".join(f"port {p}" for p in sorted(self.ports))
        self.err = open(path + ".err", "w+b")
        with open(path, "wb") as out:
            self.proc = subprocess.Popen(["tcpdump", "-i", "lo", "-nn", "-q", "-l", "-t",
                                          f"(udp or tcp) and ({expr})"],
                                         stdout=out, stderr=self.err, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 10
        while b"listening on" not in open(path + ".err", "rb").read():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("tcpdump did not start: "
                                 + open(path + ".err", "rb").read().decode(errors="replace"))
            time.sleep(0.02)
        self.t0 = time.monotonic()

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)
        elapsed = time.monotonic() - self.t0
        total = 0
        with open(self.path, "rb") as f:
            for line in f:
                # "IP 127.0.0.1.40001 > 127.0.0.1.40002: UDP, length 148" / "...: tcp 212"
                parts = line.split()
                if len(parts) >= 2 and parts[-2] in (b"length", b"tcp"):
                    total += int(parts[-1])
        self.err.close()
        return total, elapsed


# ---------------------------------------------------------------------------------------------
# Measurement

def check_running(agents):
    for a in agents:
        if not a.alive():
            raise BenchError(f"{a.system.label}: agent {a.name} exited with code "
                             f"{a.proc.returncode}; its log ends:\n{a.log_tail()}")


def wait_answering(agent, timeout=READY_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_running([agent])
        if agent.query() is not None:
            return
        time.sleep(0.01)
    raise BenchError(f"{agent.system.label}: {agent.name} did not answer on 127.0.0.1:"
                     f"{agent.ctl_port} within {timeout:.0f} s; its log ends:\n{agent.log_tail()}")


def poll_until(observers, running, holds, timeout, poll_s, what):
    """Polls every observer once per round until holds(members) is true for all of them in one
    round. Returns the seconds from now (the caller's t0 is taken just before) to the latest of
    the observers' first answers of the streak that ended the wait."""
    t0 = time.monotonic()
    since = {}
    last = {}
    while True:
        round_start = time.monotonic()
        for a in observers:
            members = a.query()
            now = time.monotonic()
            last[a.name] = members
            if members is not None and holds(members):
                since.setdefault(a.name, now)
            else:
                since.pop(a.name, None)
        if len(since) == len(observers):
            return max(since.values()) - t0
        check_running(running)
        if time.monotonic() - t0 > timeout:
            lagging = [a for a in observers if a.name not in since]
            detail = "\n".join(f"  {a.name} sees: {last.get(a.name)}" for a in lagging[:5])
            logs = "\n".join(f"  log of {a.name}:\n{a.log_tail(15)}" for a in lagging[:2])
            raise BenchError(f"{what} within {timeout:.0f} s; {len(lagging)} of {len(observers)} "
                             f"agents lag:\n{detail}\n{logs}")
        time.sleep(max(0.0, poll_s - (time.monotonic() - round_start)))


def all_alive(names):
    def holds(members):
        return all(members.get(n) == "alive" for n in names)
    return holds


def rss_kib(pid):
    """(VmRSS, RssAnon, RssFile) in KiB; RssFile is mostly shared libraries' pages."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                fields[key] = int(rest.split()[0])
    if "VmRSS" not in fields:
        raise BenchError(f"no VmRSS for pid {pid}")
    return fields["VmRSS"], fields.get("RssAnon", 0), fields.get("RssFile", 0)


def run_system(system, n, args, ports, workdir):
    label = system.label
    agents = [Agent(system, i, ports, workdir) for i in range(n)]
    names = [a.name for a in agents]
    seed = agents[0]
    poll_s = args.poll_ms / 1000.0
    result = {}
    try:
        seed.start(None)
        wait_answering(seed)
        t0 = time.monotonic()
        for a in agents[1:]:
            a.start(seed.gossip_port)
        spawn_s = time.monotonic() - t0
        conv = poll_until(agents, agents, all_alive(names), CONVERGE_TIMEOUT_S, poll_s,
                          f"{label}: {n} agents did not converge (all see all {n} alive)")
        # poll_until counts from its own start, which follows the spawns: add them back.
        result["converge_s"] = conv + spawn_s
        t_converged = time.monotonic()
        print(f"  {label} n={n}: converged in {result['converge_s']:.3f} s", flush=True)

        for a in agents:
            a.disconnect()  # idle means idle: no polling connections held open
        time.sleep(args.settle)
        check_running(agents)
        rss = [rss_kib(a.proc.pid) for a in agents]
        result["rss_mib"] = statistics.mean(r[0] for r in rss) / 1024.0
        result["rss_anon_mib"] = statistics.mean(r[1] for r in rss) / 1024.0
        result["rss_file_mib"] = statistics.mean(r[2] for r in rss) / 1024.0
        print(f"  {label} n={n}: RSS {result['rss_mib']:.1f} MiB/agent "
              f"(anon {result['rss_anon_mib']:.1f}, file {result['rss_file_mib']:.1f})", flush=True)

        detect = []
        for k in range(args.kills):
            victim = agents[1 + k % (n - 1)]
            others = [a for a in agents if a is not victim]
            victim.kill9()
            t = poll_until(others, others, lambda m, v=victim.name: m.get(v) == system.failed_state,
                           DETECT_TIMEOUT_S, poll_s,
                           f"{label}: n={n} kill {k + 1}: {victim.name} not marked "
                           f"{system.failed_state} by all")
            detect.append(t)
            for attempt in range(5):
                victim.start(seed.gossip_port)
                try:
                    wait_answering(victim)
                    break
                except BenchError:
                    if attempt == 4:
                        raise
                    time.sleep(0.5)  # e.g. a port briefly taken: try again
            poll_until(agents, agents, all_alive(names), CONVERGE_TIMEOUT_S, poll_s,
                       f"{label}: n={n} kill {k + 1}: restarted {victim.name} not seen alive by all")
            print(f"  {label} n={n}: kill {k + 1}/{args.kills} of {victim.name} detected by all in "
                  f"{t:.3f} s", flush=True)
        result["detect_s"] = statistics.median(detect)
        result["detect_min_s"] = min(detect)
        result["detect_max_s"] = max(detect)

        # Bytes at rest in steady state: after the kills, once the cluster has been up --warmup
        # seconds (Serf's first periodic push/pull comes 30-60 s after an agent starts) and the
        # last rejoin has had --settle seconds to quiesce; no polling connections held open.
        for a in agents:
            a.disconnect()
        time.sleep(max(args.settle, args.warmup - (time.monotonic() - t_converged)))
        check_running(agents)
        if args.bytes_source == "tcpdump":
            cap = TcpdumpCapture([a.gossip_port for a in agents],
                                 os.path.join(workdir, f"{label}-{n}.tcpdump"))
            time.sleep(args.idle_seconds)
            total, elapsed = cap.stop()
            result["bytes_per_s"] = total / elapsed / n
        else:
            before = system.bytes_snapshot(agents)
            time.sleep(args.idle_seconds)
            after = system.bytes_snapshot(agents)
            rates = [(after[k][1] - before[k][1]) / (after[k][0] - before[k][0]) for k in after]
            result["bytes_per_s"] = statistics.mean(rates)
        check_running(agents)
        print(f"  {label} n={n}: {result['bytes_per_s']:.0f} B/s/agent at rest over "
              f"{args.idle_seconds:.0f} s", flush=True)

        return result
    finally:
        stop_all(agents)


# ---------------------------------------------------------------------------------------------
# Report

ROWS = [("converge", "converge_s", "time until all see all alive, s", "{:.3f}"),
        ("detect", "detect_s", "kill -9 detected by all, median s", "{:.3f}"),
        ("rss", "rss_mib", "RSS per agent, MiB", "{:.1f}"),
        ("bytes", "bytes_per_s", "bytes/s sent per agent at rest", "{:.0f}")]


def report(results, sizes, systems, args):
    bytes_how = ("each agent's own counter of gossip bytes sent (serf: memberlist.udp.sent + "
                 "tcp.sent via statsd; hivemesh: bytes_out of /v1/mesh/stats)"
                 if args.bytes_source == "counters" else
                 "tcpdump on lo, UDP+TCP payload bytes of packets to or from the gossip ports / N")
    print()
    print(f"Membership on loopback, LAN profiles; polling every {args.poll_ms} ms over persistent "
          f"connections; {args.kills} kills per size; idle window {args.idle_seconds:.0f} s")
    print(f"bytes measured as: {bytes_how}")
    kv = [f"bytes_source={args.bytes_source}"]
    ratios = []
    for n in sizes:
        print()
        print(f"n = {n}")
        print(f"{'metric':<36}{'serf':>12}{'hivemesh':>12}{'ratio hm/serf':>15}")
        for key, field, title, fmt in ROWS:
            vals = {s: results[(s, n)][field] for s in systems}
            cells = [fmt.format(vals[s]) if s in vals else "-" for s in ("serf", "hivemesh")]
            ratio = "-"
            if len(vals) == 2 and vals["serf"] > 0:
                r = vals["hivemesh"] / vals["serf"]
                ratio = f"{r:.2f}"
                ratios.append((f"n{n} {key}", r))
                kv.append(f"n{n}_{key}_ratio={r:.3f}")
            print(f"{title:<36}{cells[0]:>12}{cells[1]:>12}{ratio:>15}")
        for s in systems:
            r = results[(s, n)]
            print(f"  {s}: detect min {r['detect_min_s']:.3f} s, max {r['detect_max_s']:.3f} s; "
                  f"RSS = anon {r['rss_anon_mib']:.1f} + file-backed {r['rss_file_mib']:.1f} MiB")
            short = "serf" if s == "serf" else "hm"
            kv += [f"n{n}_{short}_converge_s={r['converge_s']:.3f}",
                   f"n{n}_{short}_detect_s={r['detect_s']:.3f}",
                   f"n{n}_{short}_detect_min_s={r['detect_min_s']:.3f}",
                   f"n{n}_{short}_detect_max_s={r['detect_max_s']:.3f}",
                   f"n{n}_{short}_rss_mib={r['rss_mib']:.1f}",
                   f"n{n}_{short}_rss_anon_mib={r['rss_anon_mib']:.1f}",
                   f"n{n}_{short}_bytes_per_s={r['bytes_per_s']:.0f}"]
    if ratios:
        over = [f"{k} {r:.2f}" for k, r in ratios if r > 1.0]
        print()
        print("goal: every ratio <= 1.0: " + ("met" if not over else "NOT met (" + ", ".join(over) + ")"))
    print("RESULT " + " ".join(kv))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"),
                    help="folder holding the hivemesh binary")
    ap.add_argument("--sizes", default="5,20", help="cluster sizes, comma-separated")
    ap.add_argument("--kills", type=int, default=5, help="kill -9 rounds per size")
    ap.add_argument("--only", choices=["serf", "hivemesh"], help="run one system (debugging)")
    ap.add_argument("--poll-ms", type=int, default=25, help="period of a poll round (every agent once)")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="idle seconds after convergence before RSS is read")
    ap.add_argument("--idle-seconds", type=float, default=30.0,
                    help="bytes window; 30 s = one LAN push/pull interval, so each agent does "
                         "exactly one push/pull in it (a 10 s window varies by that)")
    ap.add_argument("--warmup", type=float, default=65.0,
                    help="least seconds between convergence and the bytes window")
    ap.add_argument("--bytes-source", choices=["counters", "tcpdump"], default="counters",
                    help="agents' own byte counters, or tcpdump on lo (needs tcpdump)")
    ap.add_argument("--log-dir", help="keep agents' logs here (default: a temp dir, removed)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if any(n < 2 for n in sizes) or args.kills < 1:
        ap.error("sizes must be >= 2 and --kills >= 1")
    systems = [args.only] if args.only else ["serf", "hivemesh"]
    binary = os.path.join(args.build, "hivemesh")
    if "hivemesh" in systems and not os.access(binary, os.X_OK):
        ap.error(f"{binary} not found; build first or pass --build")
    if "serf" in systems and shutil.which("serf") is None:
        ap.error("serf not found; run scripts/install-deps.sh")

    # SIGTERM behaves like Ctrl-C: unwind through the finally blocks that stop the agents.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    tmp = tempfile.mkdtemp(prefix="gossip-vs-serf-")
    workdir = args.log_dir or tmp
    os.makedirs(workdir, exist_ok=True)
    ports = Ports()
    results = {}
    try:
        for n in sizes:
            for s in systems:
                system = (Serf(workdir, args.bytes_source) if s == "serf"
                          else Hivemesh(tmp, binary))
                try:
                    results[(s, n)] = run_system(system, n, args, ports, workdir)
                finally:
                    system.close()
        report(results, sizes, systems, args)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        if args.log_dir:
            print(f"agents' logs are in {args.log_dir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; agents stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
