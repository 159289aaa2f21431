#!/usr/bin/python3
"""Authorization in a secure mesh (docs/security.md, "Authorization"), on five real nodes.

n0 created the mesh (the issuer) and serves `identity` (REST and gRPC); n1, n2 and n3 joined
with tokens and serve it too; n4 joined and serves nothing, so it forwards. n3 takes admin calls
only with its admin token (admin_access: token), so what an operator certificate allows shows
on loopback. Shown here:

- `hivemesh cert issue-client` makes a key on the caller's side and gets it certified by the
  issuer as a client (or an operator): spiffe://<mesh>/client/<name>, files written 0600/0644;
- a client certificate is no member: it opens no mesh link and forwards nothing;
- an operator certificate is an admin on any node, without the node's admin token; a client
  certificate is not;
- a policy document applied at the issuer is in force on all five nodes within 5 s: anyone is
  refused with 403 saying no rule allows it, a denied client with 403 naming the deny rule, an
  allowed client infers on every node (n4 forwards for it), gRPC callers are held to it too;
  reads follow the verbs; refusals are counted (policy_denied);
- a bad document is refused naming the rule and field, and only an issuer applies one;
- a node that restarts alone enforces the policy it held; a saved policy someone loosened on
  disk stops the node; the empty document lifts the policy on every node within 5 s;
- a document an operator signs with its own key (`policy apply --operator-key`) is taken at any
  node, one that wants an admin token included, without it, and is in force on every node
  within 5 s; one signed with a client's key, or changed after signing, is refused with 403;
  an older version is not taken;
- `hivemesh token revoke --client NAME` makes every node refuse that client's bearer tokens
  issued so far within 5 s; tokens made afterwards, and other clients', still work.

    test_authorization.py path/to/hivemesh
"""
import json
import os
import re
import stat
import subprocess
import tempfile
import time
import unittest

from hostile import Node, binary_from_argv, wait_for
import agent_node  # noqa: E402 (on the path hostile sets)
from test_mutual_tls import BODY, exchange, forwarded, link_upgrade

POLICY = """\
kind: AuthorizationPolicy
rules:
  - name: cameras-infer
    from: [client:cam-*]
    models: [identity]
    verbs: [infer]
  - name: no-cam-7
    action: deny
    from: [client:cam-7]
    models: ["*"]
"""
OPS_POLICY = """\
kind: AuthorizationPolicy
rules:
  - name: ops-deny-all
    action: deny
    from: [anyone]
    models: ["*"]
"""
ADMIN_TOKEN = "n3-admin-token-0123456789abcdef"
SPREAD_S = 5  # the goal: a policy change in force on every node within this


def plain_inference(token=None):
    """An identity inference, with a client's bearer token or none."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST /v2/models/identity/infer HTTP/1.1\r\nHost: n\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n"
            f"Connection: close\r\n\r\n").encode() + BODY


def read_response_once(s):
    """(status, raw) of one keep-alive response: the head, then Content-Length bytes."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return None, buf
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    want = int(re.search(rb"(?i)content-length:\s*(\d+)", head)[1])
    while len(rest) < want:
        rest += s.recv(65536)
    return int(head.split(b" ", 2)[1]), head + b"\r\n\r\n" + rest


def connection_closed(s):
    """True once the peer has closed TLS connection `s` (a read gets nothing or fails)."""
    import select
    import ssl
    if not select.select([s], [], [], 0.2)[0] and not s.pending():
        return False
    try:
        return not s.recv(65536)
    except (ssl.SSLError, OSError):
        return True


def sign_policy(operator, version, document):
    """A policy document signed with `operator`'s key ((certificate path, key path)), as
    `hivemesh policy apply --operator-key` signs it (api/mesh_policy.h, SignedPolicy)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    with open(operator[1], "rb") as f:
        key = load_pem_private_key(f.read(), password=None)
    with open(operator[0]) as f:
        chain = f.read()
    message = b"hivemesh policy v1\0" + str(version).encode() + b"\0" + document.encode()
    return {"version": version, "document": document, "signature": key.sign(message).hex(),
            "signer": chain}


def put_policy(body):
    data = body.encode()
    return (f"PUT /v1/mesh/policy HTTP/1.1\r\nHost: n\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data


def metadata_request():
    return (b"GET /v2/models/identity HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n")


def repository_call(action, token=None):
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST /v2/repository/models/identity/{action} HTTP/1.1\r\nHost: n\r\n{auth}"
            f"Content-Length: 0\r\nConnection: close\r\n\r\n").encode()


class AuthorizationTest(unittest.TestCase):
    BINARY = None

    @classmethod
    def setUpClass(cls):
        cls.nodes = []
        cls.work = tempfile.mkdtemp(prefix="hivemesh-authz-")
        cls.n0 = cls.start("n0", ("identity",), [], secure=True, grpc=True)
        token_file = os.path.join(cls.work, "admin-token")
        with open(token_file, "w") as f:
            f.write(ADMIN_TOKEN)
        os.chmod(token_file, 0o600)
        joined = {"n1": [], "n2": [],
                  "n3": ["--admin-access", "token", "--admin-token-file", token_file,
                         "--model-control-mode", "explicit"]}
        for name, extra in joined.items():
            setattr(cls, name, cls.start(name, ("identity",), cls.join_args() + extra))
        cls.n4 = cls.start("n4", (), cls.join_args())
        cls.all = [cls.n0, cls.n1, cls.n2, cls.n3, cls.n4]
        wait_for(lambda: all(len([m for m in n.members() if m["state"] == "alive"]) == 5
                             for n in cls.all), 60, "every node to see five members")
        wait_for(lambda: cls.n4.infer_identity()[0] == 200, 30, "n4 to forward identity")
        cls.certs = {name: cls.issue_client(name, role)
                     for name, role in (("cam-app", "client"), ("cam-7", "client"),
                                        ("ops", "operator"))}

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes:
            n.stop()

    @classmethod
    def start(cls, name, models, args, secure=False, grpc=False):
        node = Node(cls.BINARY, name, models=models, args=args, secure=secure, grpc=grpc)
        cls.nodes.append(node)
        return node

    @classmethod
    def cli(cls, *args, stdin=None):
        return subprocess.run([cls.BINARY, *args], capture_output=True, text=True, timeout=30,
                              input=stdin)

    @classmethod
    def join_args(cls):
        out = cls.cli("token", "create", "--node", f"127.0.0.1:{cls.n0.port}")
        assert out.returncode == 0, out.stderr
        return ["--join", cls.n0.gossip, "--token", out.stdout.strip()]

    @classmethod
    def issue_client(cls, name, role):
        out = cls.cli("cert", "issue-client", name, "--role", role, "--out", cls.work,
                      "--node", f"127.0.0.1:{cls.n0.port}")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "/client/" + name in out.stdout, out.stdout
        return os.path.join(cls.work, f"{name}.pem"), os.path.join(cls.work, f"{name}.key")

    def client_token(self, name, models):
        out = self.cli("token", "create", "--role", "client", "--name", name, "--models", models,
                       "--ttl", "1h", "--node", f"127.0.0.1:{self.n0.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertTrue(out.stdout.startswith("HMC1."), out.stdout)
        return out.stdout.strip()

    def apply(self, document, node=None):
        path = os.path.join(self.work, "policy.yaml")
        with open(path, "w") as f:
            f.write(document)
        return self.cli("policy", "apply", path, "--node", f"127.0.0.1:{(node or self.n0).port}")

    def assert_status(self, result, status, words=None):
        got, raw = result
        self.assertEqual(got, status, raw[:500])
        if words:
            self.assertIn(words.encode(), raw, raw[:500])

    # -- client certificates ----------------------------------------------------------------

    def test_client_certificates_are_made_for_a_key_that_stays_here(self):
        from cryptography import x509
        cert_path, key_path = self.certs["cam-app"]
        self.assertEqual(stat.S_IMODE(os.stat(key_path).st_mode), 0o600)
        with open(cert_path, "rb") as f:
            pems = f.read().split(b"-----END CERTIFICATE-----")[:-1]
        chain = [x509.load_pem_x509_certificate(p + b"-----END CERTIFICATE-----\n")
                 for p in pems]
        self.assertEqual(len(chain), 2, "the certificate and its issuer's")
        uris = chain[0].extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(
                x509.UniformResourceIdentifier)
        mesh = json.loads(self.n0.request("GET", "/v2")[1])["mesh"]["id"]
        self.assertIn(f"spiffe://{mesh}/client/cam-app", uris)
        self.assertIn("urn:hivemesh:role:client", uris)
        self.assertFalse(any("/node/" in u for u in uris))
        with open(os.path.join(self.work, "ca.pem"), "rb") as f:
            root = x509.load_pem_x509_certificate(f.read())
        self.assertEqual(chain[1].issuer, root.subject)
        # Refusals name what is wrong.
        out = self.cli("cert", "issue-client", "bad name", "--out", self.work,
                       "--node", f"127.0.0.1:{self.n0.port}")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("outside [A-Za-z0-9._-]", out.stderr)
        out = self.cli("cert", "issue-client", "x", "--ttl", "400d", "--out", self.work,
                       "--node", f"127.0.0.1:{self.n0.port}")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("365", out.stderr)
        # Only an issuer certifies.
        out = self.cli("cert", "issue-client", "x", "--out", self.work,
                       "--node", f"127.0.0.1:{self.n1.port}")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("no issuer rights", out.stderr)

    def test_a_client_certificate_is_no_member(self):
        cert = self.certs["cam-app"]
        before = self.n1.rejected("forward_unauthenticated")
        self.assert_status(exchange(self.n1.port, link_upgrade(), cert=cert), 403, "client")
        for origin in ("cam-app", "client:cam-app"):
            self.assert_status(exchange(self.n1.port, forwarded(origin), cert=cert), 403,
                               "holds a client certificate")
        self.assertEqual(self.n1.rejected("forward_unauthenticated"), before + 2)
        # ...and it is no admin: the revoked-keys list and the policy are members' and admins'.
        self.assert_status(
            exchange(self.n3.port, b"GET /v1/mesh/policy HTTP/1.1\r\nHost: n\r\n"
                     b"Connection: close\r\n\r\n", cert=cert), 403, "admin")

    def test_bearer_tokens_of_a_client_are_revoked_on_every_node(self):
        live = [n for n in self.all if n.alive()]
        token = self.client_token("cam-tok", "identity")
        other = self.client_token("cam-other-tok", "identity")
        for n in live:
            status, raw = exchange(n.port, plain_inference(token), use_tls=False)
            self.assertEqual(status, 200, raw[:300])
        out = self.cli("token", "revoke", "--client", "cam-tok",
                       "--node", f"127.0.0.1:{self.n0.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        started = time.monotonic()

        def refused(n):
            status, raw = exchange(n.port, plain_inference(token), use_tls=False)
            return status == 403 and b"bearer tokens issued at or before" in raw

        wait_for(lambda: all(refused(n) for n in live), SPREAD_S + 5,
                 "every node to refuse the revoked client's token")
        print(f"a revoked client's bearer token was refused by {len(live)} nodes "
              f"{time.monotonic() - started:.2f} s after `token revoke --client`", flush=True)
        # Another client's token is untouched, and a token made for the client afterwards works.
        status, raw = exchange(self.n1.port, plain_inference(other), use_tls=False)
        self.assertEqual(status, 200, raw[:300])
        time.sleep(1.1)  # tokens carry their issue time in seconds
        fresh = self.client_token("cam-tok", "identity")
        for n in live:
            status, raw = exchange(n.port, plain_inference(fresh), use_tls=False)
            self.assertEqual(status, 200, raw[:300])
        # The revocation names the client; it is no member's (it closes nothing, rotates no key).
        status, text = self.n0.request("GET", "/v1/mesh/revocations")
        self.assertIn("tokens:cam-tok@", text)
        self.assertTrue(self.n0.log_lines(r"bearer tokens revoked: tokens:cam-tok@"))
        self.assertFalse(self.n0.log_lines(r"member tokens:cam-tok"))
        out = self.cli("token", "revoke", "--client", "not a name",
                       "--node", f"127.0.0.1:{self.n0.port}")
        self.assertNotEqual(out.returncode, 0)

    def test_an_operator_certificate_is_an_admin_without_the_nodes_token(self):
        ops, cam = self.certs["ops"], self.certs["cam-app"]
        # n3 wants its admin token: plain calls and a client certificate are refused.
        self.assert_status(exchange(self.n3.port, repository_call("unload"), use_tls=False),
                           403, "admin token")
        self.assert_status(exchange(self.n3.port, repository_call("unload"), cert=cam), 403,
                           "operator certificate")
        self.assert_status(exchange(self.n3.port, repository_call("unload"), cert=ops), 200)
        self.assert_status(exchange(self.n3.port, repository_call("load"), cert=ops), 200)
        wait_for(lambda: self.n3.infer_identity()[0] == 200, 30, "identity back on n3")

    def test_a_revoked_client_certificate_is_refused_on_every_node(self):
        import socket
        import ssl
        cert = self.issue_client("cam-9", "client")
        for n in self.all:
            status, raw = exchange(n.port, plain_inference(), cert=cert)
            self.assertEqual(status, 200, raw[:300])
        # A connection kept open on n2 with that certificate...
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(*cert)
        kept = ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.n2.port), timeout=10),
                               server_hostname="node")
        keepalive = plain_inference().replace(b"Connection: close", b"Connection: keep-alive")
        kept.sendall(keepalive)
        self.assertEqual(read_response_once(kept)[0], 200)
        out = self.cli("cert", "revoke", cert[0], "--node", f"127.0.0.1:{self.n0.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("revoked client cam-9", out.stdout)
        started = time.monotonic()
        # ...is closed by n2 once it learns the revocation, and every node refuses the key.
        wait_for(lambda: connection_closed(kept), 10, "n2 to close the revoked client's connection")
        print(f"n2 closed the revoked client's connection {time.monotonic() - started:.2f} s "
              "after the revocation", flush=True)
        kept.close()
        for n in self.all:
            wait_for(lambda: exchange(n.port, plain_inference(), cert=cert)[0] == 403, 10,
                     f"{n.name} to refuse the revoked certificate")
            self.assert_status(exchange(n.port, plain_inference(), cert=cert), 403, "revoked")
        # A member's certificate is revoked with `node revoke`, not this command.
        out = self.cli("cert", "revoke", os.path.join(agent_node.STATE_ROOT, "n1", "mesh",
                                                      "node.pem"),
                       "--node", f"127.0.0.1:{self.n0.port}")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("hivemesh node revoke n1", out.stderr)

    # -- the policy document --------------------------------------------------------------------

    def test_policy_in_force_on_five_nodes_within_5s_and_lifted_again(self):
        cam, cam7 = self.certs["cam-app"], self.certs["cam-7"]
        started = time.monotonic()
        out = self.apply(POLICY)
        self.assertEqual(out.returncode, 0, out.stderr)
        version = int(out.stdout.split()[2])
        denial = f"no rule of the mesh policy (version {version}) allows anyone to infer"

        def refusing(node):
            status, raw = exchange(node.port, plain_inference(), use_tls=False)
            return status == 403 and denial.encode() in raw

        pending = {n.name: n for n in self.all}
        spread = {}
        while pending and time.monotonic() - started < 30:
            for name, n in list(pending.items()):
                if refusing(n):
                    spread[name] = time.monotonic() - started
                    del pending[name]
            time.sleep(0.05)
        print("policy in force after: " +
              ", ".join(f"{k} {v:.2f} s" for k, v in sorted(spread.items())), flush=True)
        self.assertFalse(pending, f"never in force on {sorted(pending)}")
        self.assertLessEqual(max(spread.values()), SPREAD_S)

        for n in self.all:
            # An allowed client infers everywhere (n4 forwards: members are not held to it).
            status, raw = exchange(n.port, plain_inference(), cert=cam)
            self.assertEqual(status, 200, raw[:300])
            self.assert_status(exchange(n.port, plain_inference(), cert=cam7), 403,
                               "denied by rule 'no-cam-7'")
            # Reads are a verb of their own: cameras-infer allows only inference.
            self.assert_status(exchange(n.port, metadata_request(), cert=cam), 403,
                               "to read model 'identity'")
        self.assertIn(b'"served_by":"n', exchange(self.n4.port, plain_inference(), cert=cam)[1])
        # Listings show only what the caller may read: nothing, here.
        status, text = self.n0.request("POST", "/v2/repository/index", body="{}")
        self.assertEqual((status, json.loads(text)), (200, []))
        status, text = self.n0.request("GET", "/v2/models/stats")
        self.assertEqual((status, json.loads(text)), (200, {"model_stats": []}))
        self.assertGreater(self.n1.rejected("policy_denied"), 0)
        self.assertTrue(self.n1.log_lines(rf"mesh policy version {version} in force \(from "))

        # Bearer tokens signed by the mesh name a client for callers without a certificate.
        tokens = {name: self.client_token(name, models)
                  for name, models in (("cam-token", "identity"), ("cam-other", "other*"),
                                       ("dash", "*"))}
        for n in self.all:
            status, raw = exchange(n.port, plain_inference(tokens["cam-token"]), use_tls=False)
            self.assertEqual(status, 200, raw[:300])
        self.assert_status(exchange(self.n1.port, plain_inference(tokens["cam-other"]),
                                    use_tls=False), 403,
                           "does not cover model 'identity' (it covers other*)")
        self.assert_status(exchange(self.n1.port, plain_inference(tokens["dash"]),
                                    use_tls=False), 403,
                           f"no rule of the mesh policy (version {version}) allows client 'dash'")
        good = tokens["cam-token"]
        forged = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
        self.assert_status(exchange(self.n1.port, plain_inference(forged), use_tls=False), 403,
                           "not signed by an issuer")
        out = self.cli("token", "create", "--role", "client", "--name", "x", "--models", "a",
                       "--node", f"127.0.0.1:{self.n1.port}")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("no issuer rights", out.stderr)

        # gRPC callers present no certificate: they are anyone, or the client of their token.
        from grpc_stubs import grpc, pb, stub_for
        channel, stub = stub_for(self.n0.grpc_port)
        infer = pb.ModelInferRequest(model_name="identity", inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name="INPUT0", datatype="FP32", shape=[3],
                contents=pb.InferTensorContents(fp32_contents=[1.0, 2.0, 3.0]))])
        with self.assertRaises(grpc.RpcError) as refused:
            stub.ModelInfer(infer, timeout=10)
        self.assertEqual(refused.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("no rule of the mesh policy", refused.exception.details())
        with self.assertRaises(grpc.RpcError) as refused:
            stub.ModelMetadata(pb.ModelMetadataRequest(name="identity"), timeout=10)
        self.assertEqual(refused.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(len(stub.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10).models),
                         0)
        self.assertEqual(
            len(stub.ModelStatistics(pb.ModelStatisticsRequest(), timeout=10).model_stats), 0)
        answer = stub.ModelInfer(infer, timeout=10,
                                 metadata=[("authorization", f"Bearer {tokens['cam-token']}")])
        self.assertEqual(answer.model_name, "identity")
        self.assertEqual(len(answer.outputs), 1)
        with self.assertRaises(grpc.RpcError) as refused:
            stub.ModelInfer(infer, timeout=10,
                            metadata=[("authorization", f"Bearer {tokens['dash']}")])
        self.assertIn("allows client 'dash'", refused.exception.details())
        channel.close()

        # `policy show` on any node prints what is in force.
        out = self.cli("policy", "show", "--node", f"127.0.0.1:{self.n2.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(f"# version {version}", out.stdout)
        self.assertIn("no-cam-7", out.stdout)

        # A bad document is refused naming the rule and field; only an issuer applies one.
        out = self.apply("rules:\n  - name: oops\n    from: [root]\n    models: ['*']\n")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("rule 1 ('oops') from: 'root' is not anyone", out.stderr)
        out = self.apply("rules: []\n", node=self.n1)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("no issuer rights", out.stderr)
        self.assertTrue(refusing(self.n0), "a refused document changed the policy")

        # Hostile bodies at the issuer's calls: oversized and malformed, refused whole.
        big = b"rules: []\n#" + b"x" * (1 << 20)
        self.assert_status(exchange(self.n0.port, b"PUT /v1/mesh/policy HTTP/1.1\r\nHost: n\r\n"
                                    + f"Content-Length: {len(big)}\r\n".encode()
                                    + b"Connection: close\r\n\r\n" + big, use_tls=False),
                           400, "more than the limit of 65536")
        for body in (b"{", b"[]", b'{"name":"x"}', b'{"name":"x","public_key":"zz"}',
                     b'{"name":"x","public_key":"00","extra":1}'):
            self.assert_status(exchange(self.n0.port,
                                        b"POST /v1/mesh/client-certificates HTTP/1.1\r\n"
                                        b"Host: n\r\n" + f"Content-Length: {len(body)}\r\n".encode()
                                        + b"Connection: close\r\n\r\n" + body, use_tls=False),
                               400)
        self.assert_status(exchange(self.n1.port, plain_inference("HMC1." + "A" * 8000),
                                    use_tls=False), 403, "too long")
        self.assertTrue(refusing(self.n0), "a refused call changed the policy")

        self.restart_alone_keeps_the_policy(denial)

        started = time.monotonic()
        out = self.apply("")
        self.assertEqual(out.returncode, 0, out.stderr)
        live = [n for n in self.all if n.alive()]
        wait_for(lambda: all(exchange(n.port, plain_inference(), use_tls=False)[0] == 200
                             for n in live), 30, "the empty policy to lift the refusals")
        lifted = time.monotonic() - started
        print(f"policy lifted on {len(live)} nodes after {lifted:.2f} s", flush=True)
        self.assertLessEqual(lifted, SPREAD_S)
        status, text = self.n0.request("POST", "/v2/repository/index", body="{}")
        self.assertIn("identity", [m["name"] for m in json.loads(text)])

    def test_policy_signed_by_an_operator_is_taken_at_any_node(self):
        ops, cam = self.certs["ops"], self.certs["cam-app"]
        live = [n for n in self.all if n.alive()]
        self.assertGreaterEqual(len(live), 4)
        path = os.path.join(self.work, "ops-policy.yaml")
        with open(path, "w") as f:
            f.write(OPS_POLICY)
        # At n3, which wants an admin token, without one: the operator's signature is the
        # authority.
        sign = ["--operator-cert", ops[0], "--operator-key", ops[1]]
        started = time.monotonic()
        out = self.cli("policy", "apply", path, *sign, "--node", f"127.0.0.1:{self.n3.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("in force", out.stdout)
        version = int(out.stdout.split()[2])
        self.assertGreater(version, 10**12, "an operator's version is its signing time in ms")

        def refusing(node):
            status, raw = exchange(node.port, plain_inference(), use_tls=False)
            return status == 403 and b"denied by rule 'ops-deny-all'" in raw

        wait_for(lambda: all(refusing(n) for n in live), SPREAD_S + 5,
                 "the operator's policy in force on every node")
        print(f"an operator-signed policy was in force on {len(live)} nodes "
              f"{time.monotonic() - started:.2f} s after it was handed to one", flush=True)
        self.assertTrue(self.n0.log_lines(rf"mesh policy version {version} in force \(from "))

        # A client certificate's key signs nothing the mesh takes; nor does a changed document.
        out = self.cli("policy", "apply", path, "--operator-cert", cam[0], "--operator-key",
                       cam[1], "--node", f"127.0.0.1:{self.n1.port}")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("holds no operator certificate", out.stderr)
        signed = sign_policy(ops, version + 1, OPS_POLICY)
        tampered = dict(signed, document="")
        status, raw = exchange(self.n1.port, put_policy(json.dumps(tampered)), use_tls=False)
        self.assertEqual(status, 403, raw[:300])
        self.assertIn(b"is not operator 'ops'", raw)
        self.assertTrue(refusing(self.n1), "a refused document changed nothing")
        # Any program holding the operator's key signs in the same form; an older version is not
        # taken.
        status, raw = exchange(self.n1.port, put_policy(json.dumps(signed)), use_tls=False)
        self.assertEqual(status, 200, raw[:300])
        self.assertIn(b'"taken":true', raw)
        older = sign_policy(ops, version - 1, "")
        wait_for(lambda: self.n4_version() == version + 1, 10, "n4 to take the newer version")
        status, raw = exchange(self.n4.port, put_policy(json.dumps(older)), use_tls=False)
        self.assertEqual(status, 200, raw[:300])
        self.assertIn(b'"taken":false', raw)

        # The operator lifts it the same way.
        with open(path, "w") as f:
            f.write("")
        out = self.cli("policy", "apply", path, *sign, "--node", f"127.0.0.1:{self.n4.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        wait_for(lambda: all(exchange(n.port, plain_inference(), use_tls=False)[0] == 200
                             for n in live), SPREAD_S + 5, "the policy lifted on every node")

    def n4_version(self):
        out = self.cli("policy", "show", "-o", "json", "--node", f"127.0.0.1:{self.n4.port}")
        return json.loads(out.stdout)["version"] if out.returncode == 0 else None

    def restart_alone_keeps_the_policy(self, denial):
        # n2 stops and starts again joining no one: the policy it held is in force at once.
        self.n2.stop()
        alone = self.start("n2", ("identity",), [], secure=True)
        self.assert_status(exchange(alone.port, plain_inference(), use_tls=False), 403, denial)
        alone.stop()
        # Someone with the disk loosens the saved document: the node does not start with it.
        path = os.path.join(agent_node.STATE_ROOT, "n2", "mesh", "policy")
        with open(path) as f:
            saved = json.load(f)
        saved["document"] = ""
        with open(path, "w") as f:
            json.dump(saved, f)
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(
                [self.BINARY, "agent", "--node-name", "n2", "--http-address", "127.0.0.1:0",
                 "--gossip-address", "127.0.0.1:0", "--grpc-address", "off",
                 "--model-repository", tmp, "--state-dir",
                 os.path.join(agent_node.STATE_ROOT, "n2")],
                capture_output=True, text=True, timeout=60)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("not signed by an issuer of the mesh", proc.stdout + proc.stderr)
        os.remove(path)


if __name__ == "__main__":
    AuthorizationTest.BINARY = binary_from_argv()
    unittest.main(verbosity=2)
