"""A test case over a secure mesh of real nodes: the first node creates the mesh, the others join
it with tokens from its admin API. Each class lists its nodes in setUpClass; every node started
is stopped when the class ends."""
import subprocess
import threading
import unittest

from hostile import Node, wait_for


class SecureMeshTest(unittest.TestCase):
    BINARY = None
    # Arguments every node of the class starts with, and every CLI call ends with.
    NODE_ARGS = ()
    CLI_ARGS = ()

    @classmethod
    def setUpClass(cls):
        cls.nodes = []

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes:
            n.stop()

    @classmethod
    def start(cls, name, models, args, secure=False):
        node = Node(cls.BINARY, name, models=models, args=[*cls.NODE_ARGS, *args], secure=secure)
        cls.nodes.append(node)
        return node

    @classmethod
    def cli(cls, *args, stdin=None):
        return subprocess.run([cls.BINARY, *args, *cls.CLI_ARGS], capture_output=True, text=True,
                              timeout=30, input=stdin)

    @classmethod
    def start_forwarding_mesh(cls, n0_args=()):
        """n0 creates the mesh and serves `identity`; n1 joins and serves it too; n2 joins and
        serves nothing, so it forwards; `away` joins, for a test to stop through what it does.
        `live` is n0, n1 and n2."""
        cls.n0 = cls.start("n0", ("identity",), list(n0_args), secure=True)
        cls.n1 = cls.start("n1", ("identity",), cls.join_args())
        cls.n2 = cls.start("n2", (), cls.join_args())
        cls.away = cls.start("away", (), cls.join_args())
        cls.live = [cls.n0, cls.n1, cls.n2]
        wait_for(lambda: cls.n2.infer_identity()[0] == 200, 30, "n2 to forward identity")
        wait_for(lambda: cls.away.infer_identity()[0] == 200, 30, "away to forward identity")

    @classmethod
    def join_args(cls):
        """--join and a fresh --token for the mesh n0 created."""
        out = cls.cli("token", "create", "--node", f"127.0.0.1:{cls.n0.port}")
        assert out.returncode == 0, out.stderr
        return ["--join", cls.n0.gossip, "--token", out.stdout.strip()]


class InferenceLoad:
    """Inferences without pause, on a thread, for as long as the `with` block runs: one to n2
    (forwarded) and one to n1 (local) each round, then `also(results)`. The statuses are in
    results["forwarded"] and results["local"]."""

    def __init__(self, forwarding, local, also=None):
        self.forwarding, self.local, self.also = forwarding, local, also
        self.results = {"forwarded": [], "local": []}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.is_set():
            self.results["forwarded"].append(self.forwarding.infer_identity()[0])
            self.results["local"].append(self.local.infer_identity()[0])
            if self.also:
                self.also(self.results)
