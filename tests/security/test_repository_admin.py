#!/usr/bin/python3
"""Who may load and unload models (admin_access), against real nodes in explicit mode.

loopback (the default): a client connecting from another address of this machine (a socket
bound to its non-loopback IPv4 address; the node sees that address, as it would see another
machine's) is refused 403 over REST and PERMISSION_DENIED over gRPC (through a relay that
connects from that address) for load and unload, and the model keeps serving; its read-only
calls (metadata, index, health, statistics, /metrics, /v1/mesh/members) and inferences still
work; a client on loopback may load and unload.

token: without a token, with a wrong one, with another scheme, the calls are refused from any
address (loopback included); with `Authorization: Bearer <token>` (gRPC metadata the same) they
work from any address. A node whose token file is missing or too short does not start.

Each refusal is counted (hivemesh_rejected_total{reason="admin_denied"}) while a canary keeps
inferring.

    test_repository_admin.py path/to/hivemesh
"""
import os
import shutil
import subprocess
import tempfile
import unittest

import hostile
from hostile import Canary, Node, attack_rounds, http_from, non_loopback_ipv4

IDENTITY = os.path.join(hostile.MODELS, "identity")
TOKEN = "7f3c9a1e5b2d4f608a9c1e3b5d7f9a2c"


class RepositoryAdminTest(unittest.TestCase):
    BINARY = None

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="repo-admin-")
        self.repo = os.path.join(self.work, "repo")
        for name in ("identity", "echo"):
            shutil.copytree(IDENTITY, os.path.join(self.repo, name))
        self.token_file = os.path.join(self.work, "admin.token")
        with open(os.open(self.token_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(TOKEN + "\n")
        self.nodes = []
        self.channels = []

    def tearDown(self):
        for c in self.channels:
            c.close()
        for n in self.nodes:
            n.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def node(self, args=()):
        n = Node(self.BINARY, f"admin-{len(self.nodes)}", models=("identity", "echo"),
                 repository=self.repo, grpc=True,
                 args=["--model-control-mode", "explicit", *args])
        self.nodes.append(n)
        return n

    def grpc_stub(self, port):
        grpc, pb, pb_grpc = hostile.grpc_modules(os.path.join(self.work, "stubs"))
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.channels.append(channel)
        return grpc, pb, pb_grpc.GRPCInferenceServiceStub(channel)

    def grpc_control(self, stub, pb, action, model, token=None):
        """None if the call succeeded, else the grpc.RpcError."""
        import grpc
        metadata = [("authorization", f"Bearer {token}")] if token else None
        request = (pb.RepositoryModelLoadRequest if action == "load"
                   else pb.RepositoryModelUnloadRequest)(model_name=model)
        call = stub.RepositoryModelLoad if action == "load" else stub.RepositoryModelUnload
        try:
            call(request, timeout=10, metadata=metadata)
            return None
        except grpc.RpcError as e:
            return e

    def serving(self, n, model):
        return n.request("GET", f"/v2/models/{model}/ready")[0] == 200

    def test_loopback_default_refuses_other_addresses(self):
        source = non_loopback_ipv4()
        self.assertIsNotNone(source, "this machine has no non-loopback IPv4 address to call from "
                             "(test_token_mode covers token access from any address)")
        n = self.node()
        grpc, pb, stub = self.grpc_stub(n.grpc_port)
        before = n.rejected("admin_denied")

        def attack():
            for model in ("identity", "echo"):
                for action in ("unload", "load"):
                    status, body = http_from(source, n.port, "POST",
                                             f"/v2/repository/models/{model}/{action}", b"{}")
                    self.assertEqual(status, 403, f"{action} {model} from {source}: {body}")
                    self.assertIn("admin_access", body)
                    self.assertTrue(self.serving(n, model), f"{model} still serves")
            with hostile.SourceRelay(n.grpc_port, source) as relay:
                _, _, far_stub = self.grpc_stub(relay.port)
                for action in ("unload", "load"):
                    e = self.grpc_control(far_stub, pb, action, "echo")
                    self.assertIsNotNone(e, f"gRPC {action} from {source} was allowed")
                    self.assertEqual(e.code(), grpc.StatusCode.PERMISSION_DENIED, e.details())
                    self.assertIn("admin_access", e.details())
                # Read-only gRPC calls from there still work.
                index = far_stub.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10)
                self.assertEqual({m.name for m in index.models}, {"identity", "echo"})
            return 6

        with Canary(n) as canary:
            rounds, refused = attack_rounds(canary, attack)
            self.assertTrue(self.serving(n, "echo"))
            # Reading and inferring from that address still work.
            for method, path in (("GET", "/v2/models/identity"), ("GET", "/v2/health/ready"),
                                 ("GET", "/v2/models/identity/stats"), ("GET", "/metrics"),
                                 ("GET", "/v1/mesh/members"), ("POST", "/v2/repository/index")):
                status, body = http_from(source, n.port, method, path)
                self.assertEqual(status, 200, f"{method} {path} from {source}: {body[:200]}")
            status, body = http_from(
                source, n.port, "POST", "/v2/models/identity/infer",
                b'{"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[5]}]}',
                {"Content-Type": "application/json"})
            self.assertEqual(status, 200, body)
            # From the node itself, over REST and gRPC: allowed.
            self.assertEqual(n.request("POST", "/v2/repository/models/echo/unload"), (200, "{}"))
            self.assertFalse(self.serving(n, "echo"))
            self.assertEqual(n.request("POST", "/v2/repository/models/echo/load"), (200, "{}"))
            self.assertIsNone(self.grpc_control(stub, pb, "unload", "echo"))
            self.assertIsNone(self.grpc_control(stub, pb, "load", "echo"))
            self.assertTrue(self.serving(n, "echo"))
        canary.check()
        denied = n.rejected("admin_denied") - before
        self.assertEqual(denied, refused, "each refusal is counted once")
        self.assertTrue(n.log_lines(rf"rejected \(admin_denied\) from {source}"))
        print(f"from {source}: {rounds} rounds, {refused} REST and gRPC admin calls refused; "
              f"canary: {canary.ok} ok")

    def test_token_mode(self):
        n = self.node(["--admin-access", "token", "--admin-token-file", self.token_file])
        grpc, pb, stub = self.grpc_stub(n.grpc_port)
        self.assertTrue(n.log_lines("admin_access: token"), "the start-up log says how")
        source = non_loopback_ipv4()
        before = n.rejected("admin_denied")
        bad = (None, "Bearer wrong-token-0123456789abcdef", f"Basic {TOKEN}", "Bearer ",
               f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}")

        def attack():
            for authorization in bad:
                headers = {"Authorization": authorization} if authorization is not None else {}
                for action in ("unload", "load"):
                    status, body = http_from("127.0.0.1", n.port, "POST",
                                             f"/v2/repository/models/echo/{action}", b"",
                                             headers)
                    self.assertEqual(status, 403, f"{action} with {authorization!r}: {body}")
                    self.assertIn("admin token", body)
                    self.assertNotIn(TOKEN, body)
            self.assertTrue(self.serving(n, "echo"))
            e = self.grpc_control(stub, pb, "unload", "echo")
            self.assertIsNotNone(e, "gRPC unload without a token was allowed")
            self.assertEqual(e.code(), grpc.StatusCode.PERMISSION_DENIED)
            e = self.grpc_control(stub, pb, "unload", "echo", token="not-the-token-0123456789")
            self.assertEqual(e.code() if e else None, grpc.StatusCode.PERMISSION_DENIED)
            self.assertTrue(self.serving(n, "echo"))
            return len(bad) * 2 + 2

        with Canary(n) as canary:
            rounds, refused = attack_rounds(canary, attack)
            # The right token works, from loopback and from another address.
            good = {"Authorization": f"Bearer {TOKEN}"}
            for ip in ("127.0.0.1", source) if source else ("127.0.0.1",):
                for action, serves in (("unload", False), ("load", True)):
                    status, body = http_from(ip, n.port, "POST",
                                             f"/v2/repository/models/echo/{action}", b"", good)
                    self.assertEqual((status, body), (200, "{}"), f"{action} from {ip}")
                    self.assertEqual(self.serving(n, "echo"), serves)
            self.assertIsNone(self.grpc_control(stub, pb, "unload", "echo", token=TOKEN))
            self.assertIsNone(self.grpc_control(stub, pb, "load", "echo", token=TOKEN))
            self.assertTrue(self.serving(n, "echo"))
        canary.check()
        self.assertEqual(n.rejected("admin_denied") - before, refused)
        self.assertNotIn(TOKEN, n.text(), "the token is never logged")
        print(f"token mode: {refused} calls without the right token refused; canary: "
              f"{canary.ok} ok")

    def test_token_mode_needs_a_readable_token_of_some_length(self):
        short = os.path.join(self.work, "short.token")
        with open(short, "w") as f:
            f.write("SHORT\n")
        for token_file, expected in ((os.path.join(self.work, "missing"), "cannot read"),
                                     (short, "at least 16"), ("", "admin_token_file")):
            result = subprocess.run(
                [self.BINARY, "agent", "--http-address", "127.0.0.1:0", "--gossip-address",
                 "127.0.0.1:0", "--grpc-address", "off", "--model-repository", self.repo,
                 "--insecure", "--admin-access", "token", "--admin-token-file", token_file,
                 # A state folder of its own: it gets that far before it reads the token (as
                 # root the default is the machine's /var/lib/hivemesh).
                 "--state-dir", os.path.join(self.work, "state")],
                capture_output=True, text=True, timeout=60)
            self.assertNotEqual(result.returncode, 0, f"started with {token_file!r}")
            self.assertIn(expected, result.stdout + result.stderr)
            self.assertNotIn("SHORT", result.stdout + result.stderr, "the token is not shown")


if __name__ == "__main__":
    hostile.run(RepositoryAdminTest)
