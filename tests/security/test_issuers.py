#!/usr/bin/python3
"""More than one issuer (docs/identity.md, "More than one issuer"), on real nodes.

`a` creates the mesh (root key, issuer, the control versions). `b` joins with an issuer token
(`hivemesh token create --role issuer`) and so holds issuer rights of its own: an issuer key it
made, certified by the root. Every node certificate lives 20 s. Shown here:

- a node joins at `b` with a token made at `a`, and a token's uses are counted across issuers: a
  single-use token spent at `b` is refused at `a`;
- every node learns both issuer certificates, and takes what either signs: a policy applied at
  `b` is in force on every node, a bearer token `b` made is accepted by a node `a` certified;
- a revocation made at `b` reaches every node; `a`, which holds the control versions, adopts it
  and rotates the gossip keys;
- with `a` stopped, the mesh goes on: certificates are renewed at `b`, a node joins at `b`
  with a token made there, inferences are forwarded; `a` comes back and serves;
- revoking the issuer `b` (at `a`) revokes its issuer key too: a certificate `b` signed is
  refused by `a` and is not renewed there;
- hostile input: tokens handed over by a member that is no issuer, or over plain HTTP, are
  refused; an issuer token is made only where the root key is.

    test_issuers.py path/to/hivemesh
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from hostile import binary_from_argv, wait_for
import agent_node  # noqa: E402 (on the path hostile sets)
from secure_mesh import SecureMeshTest
from test_authorization import POLICY, plain_inference
from test_mutual_tls import certificate_of, exchange, link_upgrade

TTL_S = 20


def issuer_names(node):
    """The issuer certificates `node` knows, by the name of the node each was made for."""
    status, text = node.request("GET", "/v1/mesh/issuers")
    assert status == 200, text
    return sorted(line.split("hivemesh issuer ")[1] for line in subject_lines(text))


def subject_lines(pem):
    from cryptography import x509
    end = "-----END CERTIFICATE-----"
    blocks = [b + end for b in pem.split(end) if b.strip()]
    return [x509.load_pem_x509_certificate(b.encode()).subject.rfc4514_string().replace("CN=", "")
            for b in blocks]


def issuer_of(name):
    """The issuer's name on the certificate node `name` holds now."""
    from cryptography import x509
    with open(certificate_of(name)[0], "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return cert.issuer.rfc4514_string().replace("CN=", "")


def not_after(name):
    from cryptography import x509
    with open(certificate_of(name)[0], "rb") as f:
        return x509.load_pem_x509_certificate(f.read()).not_valid_after.timestamp()


class IssuersTest(SecureMeshTest):
    NODE_ARGS = ("--certificate-ttl", f"{TTL_S}s")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.a = cls.start("a", ("identity",), [], secure=True)
        cls.b = cls.start("b", (), ["--join", cls.a.gossip, "--token", cls.token(cls.a, "issuer")])
        # c joins at b with a token a made; d joins at b with one b made, serves nothing and
        # forwards.
        cls.c = cls.start("c", ("identity",), ["--join", cls.b.gossip, "--token", cls.token(cls.a)])
        cls.d = cls.start("d", (), ["--join", cls.b.gossip, "--token", cls.token(cls.b)])
        wait_for(lambda: cls.d.infer_identity()[0] == 200, 30, "d to forward identity")

    @classmethod
    def token(cls, node, role="node", uses=None):
        args = ["token", "create", "--role", role, "--node", f"127.0.0.1:{node.port}"]
        if uses is not None:
            args += ["--uses", str(uses)]
        out = cls.cli(*args)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def test_1_an_issuer_token_grants_issuer_rights(self):
        status, text = self.b.request("GET", "/v2")
        self.assertEqual(status, 200)
        self.assertTrue(json.loads(text)["mesh"]["issuer"], text)
        mesh = os.path.join(agent_node.STATE_ROOT, "b", "mesh")
        self.assertTrue(os.path.exists(os.path.join(mesh, "issuer.granted")))
        self.assertEqual(os.stat(os.path.join(mesh, "issuer.key")).st_mode & 0o777, 0o600)
        # Every node knows both issuers (joins hand them out; the rest learn them by gossip).
        wait_for(lambda: all(issuer_names(n) == ["a", "b"] for n in (self.a, self.b, self.c,
                                                                       self.d)),
                 30, "every node to know both issuers")
        # c and d were certified by b.
        with open(certificate_of("d")[0]) as f:
            self.assertEqual(subject_lines(f.read())[1], "hivemesh issuer b")
        # Only where the root key is is an issuer token made.
        out = self.cli("token", "create", "--role", "issuer", "--node", f"127.0.0.1:{self.b.port}")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("root key", out.stderr)
        # b does not rotate the gossip keys: the node that created the mesh does.
        out = self.cli("gossip-keys", "rotate", "--node", f"127.0.0.1:{self.b.port}")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("node that created the mesh", out.stderr)

    def test_2_token_uses_count_across_issuers(self):
        once = self.token(self.a, uses=1)
        e = self.start("e", (), ["--join", self.b.gossip, "--token", once])
        self.assertEqual(e.infer_identity()[0], 200)

        def used_at_a():
            out = self.cli("token", "list", "--output", "json", "--node",
                           f"127.0.0.1:{self.a.port}")
            tokens = json.loads(out.stdout)["tokens"]
            return any(t["id"] == once.split("-")[2].split(".")[0] and t["used"] == 1
                       for t in tokens)

        wait_for(used_at_a, 15, "a to learn the use spent at b")
        refused = subprocess.run(
            [self.BINARY, "agent", "--node-name", "f", "--http-address", "127.0.0.1:0",
             "--gossip-address", "127.0.0.1:0", "--gossip-profile", "local", "--grpc-address",
             "off", "--state-dir", os.path.join(agent_node.STATE_ROOT, "f"),
             "--model-repository", tempfile.mkdtemp(prefix="hivemesh-empty-repo-"), "--join",
             self.a.gossip, "--token", once],
            capture_output=True, text=True, timeout=90)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("used up", refused.stdout + refused.stderr)
        e.stop()

    def test_3_what_either_issuer_signs_counts_everywhere(self):
        path = os.path.join(agent_node.STATE_ROOT, "policy.yaml")
        with open(path, "w") as f:
            f.write(POLICY)
        out = self.cli("policy", "apply", path, "--node", f"127.0.0.1:{self.b.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        started = time.monotonic()
        # A bearer token b made, at a (whose own certificate a signed) and at the others.
        bearer = self.cli("token", "create", "--role", "client", "--name", "cam-1", "--models",
                          "identity", "--ttl", "1h", "--node", f"127.0.0.1:{self.b.port}")
        self.assertEqual(bearer.returncode, 0, bearer.stderr)
        token = bearer.stdout.strip()

        def enforced(n):
            status, _ = exchange(n.port, plain_inference(), use_tls=False)
            return status == 403

        wait_for(lambda: all(enforced(n) for n in (self.a, self.c, self.d)), 10,
                 "b's policy to be in force on every node")
        print(f"a policy applied at issuer b was in force on a, c and d "
              f"{time.monotonic() - started:.2f} s later", flush=True)
        for n in (self.a, self.b, self.c):
            status, raw = exchange(n.port, plain_inference(token), use_tls=False)
            self.assertEqual(status, 200, raw[:300])
        # Lifted at a (an empty document): the versions of both issuers are one sequence.
        with open(path, "w") as f:
            f.write("")
        out = self.cli("policy", "apply", path, "--node", f"127.0.0.1:{self.a.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        wait_for(lambda: not any(enforced(n) for n in (self.a, self.b, self.c, self.d)), 10,
                 "the policy to be lifted everywhere")

    def test_4_a_revocation_at_b_is_adopted_by_a_which_rotates_the_keys(self):
        rogue = self.start("rogue", (), ["--join", self.b.gossip, "--token", self.token(self.b)])
        wait_for(lambda: any(m["name"] == "rogue" and m["state"] == "alive"
                             for m in self.a.members()), 30, "a to see rogue")
        version_before = self.keys_version("a")
        out = self.cli("node", "revoke", "rogue", "--node", f"127.0.0.1:{self.b.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        wait_for(lambda: self.a.log_lines(r"member rogue's key is revoked \(by b\)"), 10,
                 "a to take b's revocation")
        wait_for(lambda: self.keys_version("a") >= version_before + 3, 30,
                 "a to rotate the gossip keys after the revocation")
        cert = certificate_of("rogue")
        for n in (self.a, self.c):
            status, raw = exchange(n.port, link_upgrade(), cert=cert)
            self.assertEqual(status, 403, raw[:300])
            self.assertIn(b"revoked", raw)
        status, text = self.a.request("GET", "/v1/mesh/revocations")
        self.assertIn('"rogue"', text, "a keeps the revocation as its own")
        rogue.stop()

    def test_5_the_mesh_goes_on_without_its_creator(self):
        self.a.stop()
        self.nodes.remove(self.a)
        stopped = time.time()
        # The certificates are renewed at b: each outlives the moment a stopped by a full life.
        wait_for(lambda: all(not_after(n) > stopped + TTL_S - 1 for n in ("b", "c", "d")),
                 TTL_S + 15, "b, c and d to be renewed while a is away")
        g = self.start("g", (), ["--join", self.b.gossip, "--token", self.token(self.b)])
        wait_for(lambda: g.infer_identity()[0] == 200, 30, "g to forward to c")
        status, body = self.d.infer_identity()
        self.assertEqual(status, 200)
        self.assertEqual(body["parameters"]["served_by"], "c")
        # a comes back (its certificate expired meanwhile), through a member, and serves again.
        type(self).a = self.start("a", ("identity",), ["--join", self.b.gossip], secure=True)
        wait_for(lambda: any(m["name"] == "a" and m["state"] == "alive"
                             for m in self.c.members()), 60, "a to be a member again")
        g.stop()

    def test_7_revoking_an_issuer_revokes_what_it_signs(self):
        # A node whose certificate b signed: h (a name no other test used, so its state folder
        # holds no older certificate) joins at b, with a token b made. (The others renew
        # at whichever member answers first, so whose certificate they hold is a matter of
        # timing.) Its certificate is copied as it is before the revocation.
        h = self.start("h", (), ["--join", self.b.gossip, "--token", self.token(self.b)])
        self.assertEqual(issuer_of("h"), "hivemesh issuer b")
        frozen = tempfile.mkdtemp(prefix="hivemesh-cert-")
        cert = tuple(shutil.copy(path, frozen) for path in certificate_of("h"))
        out = self.cli("node", "revoke", "b", "--node", f"127.0.0.1:{self.a.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertTrue(self.a.log_lines(r"issuer b's issuer key is revoked too"))
        # Refused by a, though h itself was not revoked.
        wait_for(lambda: exchange(self.a.port, link_upgrade(), cert=cert)[0] == 403, 10,
                 "a to refuse a certificate the revoked issuer signed")
        status, raw = exchange(self.a.port, link_upgrade(), cert=cert)
        self.assertIn(b"revoked", raw)
        # Renewed nowhere: a refuses (its issuer is revoked), and h asks b no more.
        wait_for(lambda: h.log_lines(r"signed by a revoked issuer"), TTL_S + 10,
                 "a to refuse renewing h's certificate")
        self.assertTrue(h.log_lines(r"is revoked \(hivemesh issuer b\); not renewed there|"
                                    r"is revoked \(b\); not renewed there"))

    @staticmethod
    def keys_version(name):
        with open(os.path.join(agent_node.STATE_ROOT, name, "mesh", "gossip.keys")) as f:
            for line in f.read().splitlines():
                if line.startswith("version "):
                    return int(line.split()[1])
        return 0


if __name__ == "__main__":
    IssuersTest.BINARY = binary_from_argv()
    unittest.main(argv=["test_issuers"], verbosity=2)
