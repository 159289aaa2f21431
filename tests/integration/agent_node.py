"""`hivemesh agent` processes for the Python integration tests.

An AgentNode starts on free ports (port 0: REST, gossip, and gRPC if asked), with its log in a
temporary folder, reads its addresses from the log once it is ready, and stops with SIGTERM
(SIGKILL if it has not exited 20 s later). wait_for polls a condition with a deadline.
"""
import atexit
import http.client
import os
import re
import signal
import socket
import subprocess
import shutil
import tempfile
import time

# State folders, one per node name: a node restarted under its name finds its key again, as on a
# device (the mesh binds a name to its key). Removed when the test process exits.
STATE_ROOT = tempfile.mkdtemp(prefix="hivemesh-state-")
atexit.register(shutil.rmtree, STATE_ROOT, True)


def wait_for(fn, seconds, what, retry_on=()):
    """fn()'s first truthy value within `seconds`; exceptions in `retry_on` count as not yet."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except retry_on as e:
            last = e
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))


def free_port():
    """A port nothing listens on now, for a process that takes its port from its configuration."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, timeout=5):
    """(status, body) of GET http://127.0.0.1:port/path; (0, b"") when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


def use_podman_here(folder):
    """Points podman at a containers.conf in `folder` with what this kind of machine needs: runc,
    the cgroupfs cgroup manager (systemd is not PID 1) and no default ulimits."""
    conf = os.path.join(folder, "containers.conf")
    with open(conf, "w") as f:
        f.write('[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n'
                'runtime = "runc"\n')
    os.environ["CONTAINERS_CONF"] = conf


# Every node started, so that none outlives the test process: a test class whose setUpClass
# fails never reaches its tearDownClass.
STARTED = []


def _stop_leftovers():
    for node in STARTED:
        node.stop()


atexit.register(_stop_leftovers)


class AgentNode:
    def __init__(self, binary, name, args=(), grpc=False, secure=False):
        self.name = name
        # Most tests run a mesh without certificates (--insecure); `secure` nodes create a mesh
        # or join one with --token (docs/identity.md).
        security = [] if secure or "--token" in args else ["--insecure"]
        self.dir = tempfile.mkdtemp(prefix=f"hivemesh-{name}-")
        self.log_path = os.path.join(self.dir, "agent.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [binary, "agent", "--node-name", name, "--http-address", "127.0.0.1:0",
             "--gossip-address", "127.0.0.1:0", "--gossip-profile", "local",
             "--grpc-address", "127.0.0.1:0" if grpc else "off",
             "--state-dir", os.path.join(STATE_ROOT, name), *security, *args],
            stdout=self.log, stderr=subprocess.STDOUT)
        STARTED.append(self)
        text = wait_for(self._started, 30, f"node {name} to start")
        self.port = int(re.search(r"KServe v2 REST on http://127\.0\.0\.1:(\d+) ", text)[1])
        self.gossip = re.search(r"gossip on (\S+) ", text)[1]
        grpc_port = re.search(r"KServe v2 gRPC on 127\.0\.0\.1:(\d+)", text)
        self.grpc_port = int(grpc_port[1]) if grpc_port else None

    def _started(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"node {self.name} exited {self.proc.returncode}:\n{self.text()}")
        text = self.text()
        return text if " serving models from " in text else None

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def request(self, method, path, body=None, headers=None):
        """(status, body text) of one HTTP request on a new connection (JSON unless `headers`
        say otherwise)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body,
                         headers=headers or {"Content-Type": "application/json"})
            r = conn.getresponse()
            return r.status, r.read().decode()
        finally:
            conn.close()

    def stop(self):
        if self.log.closed:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
