"""What every test of tests/security/ shares: a node to attack, its memory and descriptors read
from /proc, its /metrics, and a canary that keeps sending normal inferences while an attack runs.

Each test starts real `hivemesh agent` processes (tests/integration/agent_node.py) on loopback,
attacks them over real sockets, the way anyone on the network could, and asserts a bound: memory
growth, open descriptors, status codes, the member table. Run one alone with

    /usr/bin/python3 tests/security/test_<name>.py path/to/hivemesh

Memory bounds and AddressSanitizer: the tests run the binary `make test` builds, with ASan. ASan
keeps freed memory in a quarantine (256 MiB by default), which would hide whether the node gives
memory back; nodes started here get a 16 MiB quarantine (HOSTILE_ASAN_OPTIONS), so what RSS shows
is what the node holds.
"""
import http.client
import json
import os
import re
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from agent_node import AgentNode, wait_for  # noqa: E402,F401

MODELS = os.path.join(ROOT, "models")
HOSTILE_ASAN_OPTIONS = "quarantine_size_mb=16:thread_local_quarantine_size_kb=64"


def binary_from_argv():
    """The hivemesh binary: the first command-line argument (CTest passes it)."""
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        raise SystemExit(f"usage: {sys.argv[0]} path/to/hivemesh")
    return sys.argv.pop(1)


class Node(AgentNode):
    """An agent on free loopback ports with its own state folder, serving `models` (names from
    models/; empty: none)."""

    def __init__(self, binary, name, models=("identity",), args=(), grpc=False):
        extra = ["--model-repository", MODELS, "--log-level", "info"]
        if models:
            extra += ["--models", ",".join(models)]
        else:
            extra += ["--models", "identity", "--model-control-mode", "explicit"]
        env_before = os.environ.get("ASAN_OPTIONS")
        # The child inherits this process's environment: give it a small ASan quarantine.
        os.environ["ASAN_OPTIONS"] = ":".join(x for x in (env_before, HOSTILE_ASAN_OPTIONS) if x)
        try:
            super().__init__(binary, name, [*extra, *args], grpc=grpc)
        finally:
            if env_before is None:
                del os.environ["ASAN_OPTIONS"]
            else:
                os.environ["ASAN_OPTIONS"] = env_before

    @property
    def pid(self):
        return self.proc.pid

    def rss_mib(self):
        return _status_kib(self.pid, "VmRSS") / 1024

    def peak_rss_mib(self):
        """The most the process has held so far (VmHWM)."""
        return _status_kib(self.pid, "VmHWM") / 1024

    def reset_peak_rss(self):
        """Starts VmHWM again from the current RSS (Linux: write 5 to clear_refs)."""
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")

    def open_fds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cpu_seconds(self):
        """User + system CPU time the process has used."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def alive(self):
        return self.proc.poll() is None

    def metrics(self):
        """{(name, ((label, value), ...)): value} from GET /metrics."""
        status, text = self.request("GET", "/metrics")
        assert status == 200, (status, text[:200])
        return parse_metrics(text)

    def metric(self, name, **labels):
        """The sum of `name`'s samples whose labels include `labels` (0 if none)."""
        total = 0.0
        for (n, ls), v in self.metrics().items():
            if n == name and all(dict(ls).get(k) == str(want) for k, want in labels.items()):
                total += v
        return total

    def rejected(self, reason):
        return self.metric("hivemesh_rejected_total", reason=reason)

    def infer_identity(self, values=(1.0, 2.0, 3.0), timeout=10):
        """(status, parsed JSON or text) of one identity inference on a new connection."""
        body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [len(values)],
                                       "datatype": "FP32", "data": list(values)}]})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("POST", "/v2/models/identity/infer", body=body,
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            text = r.read().decode(errors="replace")
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text
        finally:
            conn.close()

    def members(self):
        status, text = self.request("GET", "/v1/mesh/members")
        assert status == 200, (status, text[:200])
        return json.loads(text)["members"]

    def log_lines(self, pattern):
        return [line for line in self.text().splitlines() if re.search(pattern, line)]


def _status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = tuple(sorted(_LABEL.findall(m[3] or "")))
        try:
            out[(m[1], labels)] = float(m[4])
        except ValueError:
            pass
    return out


class Canary:
    """Normal identity inferences, one at a time on fresh connections, for as long as an attack
    runs. check() asserts that some were answered and none failed: the node kept serving."""

    def __init__(self, node, pause=0.05, timeout=10):
        self.node = node
        self.pause = pause
        self.timeout = timeout
        self.ok = 0
        self.failures = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False

    def _run(self):
        while not self._stop.is_set():
            try:
                status, body = self.node.infer_identity(timeout=self.timeout)
                if status == 200 and body["outputs"][0]["data"] == [1.0, 2.0, 3.0]:
                    self.ok += 1
                else:
                    self.failures.append((status, str(body)[:200]))
            except Exception as e:  # noqa: BLE001 - any failure is a failure
                self.failures.append(("exception", repr(e)))
            self._stop.wait(self.pause)

    def check(self, min_ok=3):
        assert not self.failures, f"normal requests failed during the attack: {self.failures[:5]}"
        assert self.ok >= min_ok, f"only {self.ok} normal requests answered during the attack"


def raw_http(port, data, read=True, timeout=10):
    """Sends raw bytes on a new connection; returns (status or None, response bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        if not read:
            return None, b""
        return read_response(s)
    finally:
        s.close()


def read_response(s):
    """(status, bytes) of one HTTP response on socket `s`, read until it closes or the whole
    Content-Length body is in; (None, b"") if the peer closed without answering."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            chunk = b""
        if not chunk:
            break
        buf += chunk
    if b"\r\n\r\n" not in buf:
        return None, buf
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
    want = int(m[1]) if m else 0
    while len(rest) < want:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, head + b"\r\n\r\n" + rest


def run(test_case_class):
    """unittest.main for one TestCase class, with the binary taken from argv first; further
    arguments name the tests to run (e.g. ImageBombTest.test_png_declaring_8192_squared)."""
    import unittest
    test_case_class.BINARY = binary_from_argv()
    unittest.main(argv=[sys.argv[0], "-v", *sys.argv[1:]])
