"""A test case over a secure mesh of real nodes: the first node creates the mesh, the others join
it with tokens from its admin API. Each class lists its nodes in setUpClass; every node started
is stopped when the class ends."""
import subprocess
import unittest

from hostile import Node


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
    def cli(cls, *args):
        return subprocess.run([cls.BINARY, *args, *cls.CLI_ARGS], capture_output=True, text=True,
                              timeout=30)

    @classmethod
    def join_args(cls):
        """--join and a fresh --token for the mesh n0 created."""
        out = cls.cli("token", "create", "--node", f"127.0.0.1:{cls.n0.port}")
        assert out.returncode == 0, out.stderr
        return ["--join", cls.n0.gossip, "--token", out.stdout.strip()]
