"""What every test of tests/security/ shares: a node to attack, its memory and descriptors read
from /proc, its /metrics, and a canary that keeps sending normal inferences while an attack runs.

Each test starts real `hivemesh agent` processes (tests/integration/agent_node.py) on loopback,
attacks them over real sockets, the way anyone on the network could, and asserts a bound: memory
growth, open descriptors, status codes, the member table. Run one alone with

    /usr/bin/python3 tests/security/test_<name>.py path/to/hivemesh

Memory bounds and AddressSanitizer: the tests run the binary `make test` builds, with ASan. ASan
keeps freed memory in a quarantine (256 MiB by default), which would hide whether the node gives
memory back; nodes started here get a 16 MiB quarantine (HOSTILE_ASAN_OPTIONS), so what RSS shows
is what the node holds. ASan still costs memory of its own for every allocation (red zones around
each block, shadow memory, that quarantine): about three times a small allocation's size.
slack_mib() scales a bound by that factor for an instrumented binary; the release numbers are
what bench/hostile measures (and what docs/security.md reports).
"""
import http.client
import json
import os
import re
import resource
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from agent_node import AgentNode, wait_for  # noqa: E402,F401

MODELS = os.path.join(ROOT, "models")
HOSTILE_ASAN_OPTIONS = "quarantine_size_mb=16:thread_local_quarantine_size_kb=64"


ASAN_MEMORY_FACTOR = 3


def sanitized(binary):
    """True if `binary` was built with AddressSanitizer (it links libasan)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return "libasan" in out


def slack_mib(binary, mib=64):
    """A memory bound of `mib` MiB for a release binary, scaled for an ASan one."""
    return mib * (ASAN_MEMORY_FACTOR if sanitized(binary) else 1)


def binary_from_argv():
    """The hivemesh binary: the first command-line argument (CTest passes it)."""
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        raise SystemExit(f"usage: {sys.argv[0]} path/to/hivemesh")
    return sys.argv.pop(1)


class Node(AgentNode):
    """An agent on free loopback ports with its own state folder, serving `models` of
    `repository` (models/ by default): the names listed; None: every model of the repository;
    empty: none (an empty repository). `nofile`: the node's limit on open descriptors
    (RLIMIT_NOFILE), to run it out of them."""

    def __init__(self, binary, name, models=("identity",), args=(), grpc=False,
                 repository=MODELS, nofile=None, secure=False):
        if models is None:
            extra = ["--model-repository", repository]
        elif models:
            extra = ["--model-repository", repository, "--models", ",".join(models)]
        else:
            extra = ["--model-repository", tempfile.mkdtemp(prefix="hivemesh-empty-repo-")]
        extra += ["--log-level", "info"]
        env_before = os.environ.get("ASAN_OPTIONS")
        limit_before = resource.getrlimit(resource.RLIMIT_NOFILE)
        # The child inherits this process's environment and limits: give it a small ASan
        # quarantine, and the descriptor limit asked for (this process is single-threaded while
        # a node starts, and keeps few descriptors open).
        os.environ["ASAN_OPTIONS"] = ":".join(x for x in (env_before, HOSTILE_ASAN_OPTIONS) if x)
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, limit_before[1]))
        try:
            super().__init__(binary, name, [*extra, *args], grpc=grpc, secure=secure)
        finally:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, limit_before)
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
    runs. check() asserts that some were answered and none failed: the node kept serving.

    keepalive=True sends them all on one keep-alive connection opened before the attack instead,
    for attacks that leave the node unable to accept new connections by design (e.g. at its file
    descriptor limit): the node must keep serving the clients it has."""

    def __init__(self, node, pause=0.05, timeout=10, keepalive=False):
        self.node = node
        self.pause = pause
        self.timeout = timeout
        self.keepalive = keepalive
        self._conn = None
        self.ok = 0
        self.failures = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        if self.keepalive:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.node.port,
                                                    timeout=self.timeout)
            self._conn.connect()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self._conn:
            self._conn.close()
        return False

    def _infer(self):
        if not self.keepalive:
            return self.node.infer_identity(timeout=self.timeout)
        body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [3], "datatype": "FP32",
                                       "data": [1.0, 2.0, 3.0]}]})
        self._conn.request("POST", "/v2/models/identity/infer", body=body,
                           headers={"Content-Type": "application/json"})
        r = self._conn.getresponse()
        text = r.read().decode(errors="replace")
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text

    def _run(self):
        while not self._stop.is_set():
            try:
                status, body = self._infer()
                if status == 200 and body["outputs"][0]["data"] == [1.0, 2.0, 3.0]:
                    self.ok += 1
                else:
                    self.failures.append((status, str(body)[:200]))
            except Exception as e:  # noqa: BLE001 - any failure is a failure
                self.failures.append(("exception", repr(e)))
            self._stop.wait(self.pause)

    def repeat(self, attack, min_ok=3, max_rounds=1000):
        """Runs attack() once, and again until this canary has been answered `min_ok` times, so
        that normal requests meet even an attack the node refuses at once. Returns the rounds."""
        rounds = 0
        while rounds == 0 or (self.ok < min_ok and not self.failures and rounds < max_rounds):
            attack()
            rounds += 1
        return rounds

    def check(self, min_ok=3):
        assert not self.failures, f"normal requests failed during the attack: {self.failures[:5]}"
        assert self.ok >= min_ok, f"only {self.ok} normal requests answered during the attack"


def attack_rounds(canary, attack, min_rounds=2, min_ok=5, seconds=120):
    """Runs attack() (which returns a count) at least `min_rounds` times, and more until the
    canary has had `min_ok` answers (or `seconds` passed): the attack and normal traffic overlap.
    Returns (rounds, the counts' sum)."""
    rounds = total = 0
    deadline = time.monotonic() + seconds
    while rounds < min_rounds or (canary.ok < min_ok and time.monotonic() < deadline):
        total += attack()
        rounds += 1
    return rounds, total


def connect(port, source="127.0.0.1", timeout=10):
    """A TCP connection to the node on loopback from address `source`. Any 127.x.y.z is a
    loopback address on Linux: an attacker bound to 127.0.0.2 counts as another source than the
    canary on 127.0.0.1."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def readable(s, timeout=0.0):
    """True if `s` has bytes to read, or an end or error to report, within `timeout` seconds."""
    return bool(select.select([s], [], [], timeout)[0])


def closed_by_peer(s, timeout=10):
    """True if the peer closes `s` (end of stream or reset) within `timeout` seconds; whatever
    arrives before is read and dropped."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not readable(s, left):
            return False
        try:
            if not s.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


def node_private_key(name):
    """The node key of the agent started here as `name` (its state folder's node.key), to sign
    as that member would: a test's stand-in for a member's credential captured or made by a
    member itself."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    import agent_node
    with open(os.path.join(agent_node.STATE_ROOT, name, "node.key"), "rb") as f:
        return load_pem_private_key(f.read(), password=None)


def member_credential(sign, origin, target, purpose, unix_ms=None, nonce=None):
    """A Hivemesh-Credential value (identity/member_credential.h): `origin` proves itself to
    `target` for `purpose` ("link" or "request"), signed by `sign` (a private key's sign)."""
    import secrets
    ms = str(int(time.time() * 1000) if unix_ms is None else unix_ms)
    nonce = nonce or secrets.token_hex(8)
    signed = b"\0".join(x.encode() for x in (
        "hivemesh member credential v1", origin, target, purpose, ms, nonce))
    return f"v1 {origin} {purpose} {ms} {nonce} {sign(signed).hex()}"


def link_upgrade(credential=None):
    """The request that upgrades a connection to a mesh link, with a member credential or none."""
    extra = f"Hivemesh-Credential: {credential}\r\n" if credential else ""
    return ("GET /v2/health/live HTTP/1.1\r\nHost: node\r\nConnection: Upgrade\r\n"
            f"Upgrade: hivemesh-link/1\r\n{extra}Content-Length: 0\r\n\r\n").encode()

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


def non_loopback_ipv4():
    """An IPv4 address of this machine that is not loopback, or None if it has none. Sockets
    bound to it reach the node's loopback listener, and the node sees them come from this
    address: another machine, as far as an address check can tell."""
    import fcntl
    import struct
    siocgifaddr = 0x8915
    for _, name in socket.if_nameindex():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            packed = fcntl.ioctl(s.fileno(), siocgifaddr, struct.pack("256s", name.encode()[:15]))
            ip = socket.inet_ntoa(packed[20:24])
        except OSError:
            continue  # no IPv4 address on this interface
        finally:
            s.close()
        if ip.startswith("127.") or ip == "0.0.0.0":
            continue
        test = socket.socket()
        try:
            test.bind((ip, 0))
            return ip
        except OSError:
            continue
        finally:
            test.close()
    return None


def http_from(source_ip, port, method, path, body=b"", headers=None, timeout=10):
    """(status, body text) of one HTTP request to 127.0.0.1:port sent from a socket bound to
    `source_ip`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source_ip, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


class SourceRelay:
    """A TCP relay on a loopback port that connects on to 127.0.0.1:`port` from `source_ip`: a
    client that cannot choose its source address (e.g. a gRPC channel) reaches the node as if
    from that address. Use as a context manager; `port` is the relay's own."""

    def __init__(self, target_port, source_ip):
        self.target_port = target_port
        self.source_ip = source_ip
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self._sockets = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.listener.close()
        with self._lock:
            for s in self._sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        return False

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket()
            upstream.bind((self.source_ip, 0))
            upstream.connect(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def grpc_modules(work_dir):
    """(grpc, pb, pb_grpc): python3-grpcio and stubs generated from proto/grpc_service.proto
    into `work_dir`. Fails (never skips) if grpcio or the code generator is missing."""
    import subprocess
    try:
        import grpc
    except ImportError:
        raise AssertionError("python3-grpcio is not installed (scripts/install-deps.sh installs it)")
    plugin = "/usr/bin/grpc_python_plugin"
    if not os.path.exists(plugin):
        raise AssertionError("grpc_python_plugin is missing (package protobuf-compiler-grpc)")
    os.makedirs(work_dir, exist_ok=True)
    subprocess.run(["protoc", "-I", os.path.join(ROOT, "proto"), f"--python_out={work_dir}",
                    f"--grpc_python_out={work_dir}", f"--plugin=protoc-gen-grpc_python={plugin}",
                    os.path.join(ROOT, "proto", "grpc_service.proto")], check=True)
    sys.path.insert(0, work_dir)
    import grpc_service_pb2
    import grpc_service_pb2_grpc
    return grpc, grpc_service_pb2, grpc_service_pb2_grpc
