#!/usr/bin/python3
"""A node that joins no one creates a mesh (docs/identity.md), with real agents on loopback:

- its state folder gets a root CA, an issuer and the node's own certificate, which another X.509
  implementation (python3-cryptography) reads and checks: the chain's Ed25519 signatures, the
  SPIFFE id and the labels as URI SANs, the node's own key, 7 days of life, not a CA;
- GET /v2 says so (mesh id, CA digest, role, expiry, issuer rights), and the log says how to join
  it, with a token of 24 h;
- a restart keeps the mesh (the same digest); a node that joins it without a token or a
  certificate stops, saying to use --token (or --insecure), as one whose state folder holds
  another node's certificate, and one with a label a certificate cannot hold;
- a node started with --join and --token gets its certificate from the seed over TLS on the
  gossip port: same mesh, its own key and name, no issuer rights; the token's use is spent, so
  a second node with it is refused and exits saying so, as one with a wrong secret and one with
  a token of another mesh (refused before anything secret is sent); a restart keeps the
  certificate without the token;
- certificates are renewed at two thirds of their life (20 s certificates here), by the issuer
  for itself and from the issuer for a joined node; a node stopped past its certificate's life
  comes back and renews it by proving its key, with no token;
- `hivemesh node revoke NAME` at the issuer: the member's key is refused renewal (its
  certificate runs out) and joins with new tokens, also after the issuer restarts;
- `hivemesh token create|list|revoke` against the issuer: a token names the mesh's CA digest, is
  listed without its secret (which is on disk nowhere), is revoked, and survives a restart; bad
  input is refused naming the field; a node without issuer rights says so; with
  admin_access=token, a call without the admin token is refused.

    mesh_identity_test.py BINARY
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agent_node import STATE_ROOT, AgentNode, wait_for  # noqa: E402
BINARY = None
MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "models")


def load_chain(path):
    with open(path, "rb") as f:
        data = f.read()
    marker = b"-----END CERTIFICATE-----"
    return [x509.load_pem_x509_certificate(p + marker) for p in data.split(marker) if p.strip()]


def uris(cert):
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def check_signed_by(cert, issuer):
    issuer.public_key().verify(cert.signature, cert.tbs_certificate_bytes)  # Ed25519


class MeshIdentityTest(unittest.TestCase):
    def setUp(self):
        self.nodes = []

    def tearDown(self):
        for n in self.nodes:
            n.stop()

    def start(self, name, *args):
        node = AgentNode(BINARY, name,
                         args=["--model-repository", MODELS, "--models", "identity", *args],
                         secure=True)
        self.nodes.append(node)
        return node

    def v2(self, node):
        status, text = node.request("GET", "/v2")
        self.assertEqual(status, 200, text)
        return json.loads(text)

    def test_a_node_alone_creates_a_mesh_and_keeps_it(self):
        a = self.start("founder", "--labels", "zone=a")
        mesh = self.v2(a)["mesh"]
        self.assertIsNotNone(mesh, a.text())
        self.assertRegex(mesh["id"], r"^[0-9a-f]{32}$")
        self.assertRegex(mesh["ca_digest"], r"^[0-9a-f]{64}$")
        self.assertEqual(mesh["role"], "node")
        self.assertTrue(mesh["issuer"])
        self.assertAlmostEqual(mesh["certificate_expires"], time.time() + 7 * 86400, delta=900)
        self.assertIn(f"created a new mesh {mesh['id']}", a.text())
        # It says how to join, with a token of its own (24 h, unlimited uses).
        printed = re.search(r"hivemesh agent --join (\S+) --token (HM1-\S+)", a.text())
        self.assertIsNotNone(printed, a.text())
        self.assertEqual(printed[1], a.gossip)
        [record] = json.loads(self.cli(a, "list", "-o", "json").stdout)["tokens"]
        self.assertEqual(record["id"], printed[2].split("-")[2].split(".")[0])
        self.assertEqual(record["uses"], 0)

        folder = os.path.join(STATE_ROOT, "founder", "mesh")
        roots = load_chain(os.path.join(folder, "roots.pem"))
        leaf, issuer = load_chain(os.path.join(folder, "node.pem"))
        self.assertEqual(len(roots), 1)
        self.assertEqual(roots[0].fingerprint(hashes.SHA256()).hex(), mesh["ca_digest"])
        check_signed_by(roots[0], roots[0])
        check_signed_by(issuer, roots[0])
        check_signed_by(leaf, issuer)
        self.assertIn(f"spiffe://{mesh['id']}/node/founder", uris(leaf))
        self.assertIn("urn:hivemesh:role:node", uris(leaf))
        self.assertIn("urn:hivemesh:label:zone=a", uris(leaf))
        self.assertEqual(uris(roots[0]), [f"spiffe://{mesh['id']}"])
        self.assertFalse(leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        self.assertTrue(issuer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        life = leaf.not_valid_after - leaf.not_valid_before
        self.assertEqual(life.total_seconds(), 7 * 86400 + 300)
        # The certificate binds the node's own key (node.key), not a new one.
        with open(os.path.join(STATE_ROOT, "founder", "node.key"), "rb") as f:
            node_key = load_pem_private_key(f.read(), password=None)
        raw = lambda k: k.public_bytes(Encoding.Raw, PublicFormat.Raw)  # noqa: E731
        self.assertEqual(raw(leaf.public_key()), raw(node_key.public_key()))
        for key in ("root.key", "issuer.key"):
            self.assertEqual(os.stat(os.path.join(folder, key)).st_mode & 0o777, 0o600, key)

        # A restart keeps the mesh.
        a.stop()
        self.nodes.remove(a)
        again = self.start("founder", "--labels", "zone=a")
        self.assertEqual(self.v2(again)["mesh"]["ca_digest"], mesh["ca_digest"])
        self.assertNotIn("created a new mesh", again.text())

        # A node that joins without a token or a certificate stops, saying how to join.
        out = self.start_failing("joiner", "--join", again.gossip)
        self.assertIn("join with --token HM1-", out)
        self.assertIn("--insecure", out)
        self.assertFalse(os.path.exists(os.path.join(STATE_ROOT, "joiner", "mesh")))
        # Nor does a node whose state folder holds another node's certificate start.
        out = self.start_failing("impostor", "--state-dir", os.path.join(STATE_ROOT, "founder"))
        self.assertIn("node 'founder's, not 'impostor's", out)

    def cli(self, node, *args, admin_token_file=None):
        extra = ["--admin-token-file", admin_token_file] if admin_token_file else []
        return subprocess.run([BINARY, "token", args[0], "--node", f"127.0.0.1:{node.port}",
                               *extra, *args[1:]], capture_output=True, text=True, timeout=30)

    def test_tokens_are_made_listed_revoked_and_kept(self):
        a = self.start("issuer")
        digest = self.v2(a)["mesh"]["ca_digest"]
        made = self.cli(a, "create", "--ttl", "2h", "--uses", "3")
        self.assertEqual(made.returncode, 0, made.stderr)
        token = made.stdout.strip()
        m = re.fullmatch(r"HM1-([0-9a-f]{64})-([0-9a-f]{8})\.([0-9a-f]{32})", token)
        self.assertIsNotNone(m, token)
        self.assertEqual(m[1], digest)
        token_id, secret = m[2], m[3]

        listed = self.cli(a, "list", "-o", "json")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertNotIn(secret, listed.stdout)
        [record] = [t for t in json.loads(listed.stdout)["tokens"] if t["id"] == token_id]
        self.assertEqual((record["id"], record["role"], record["uses"], record["used"]),
                         (token_id, "node", 3, 0))
        self.assertFalse(record["revoked"])
        self.assertAlmostEqual(record["expires"], time.time() + 7200, delta=120)
        folder = os.path.join(STATE_ROOT, "issuer", "mesh")
        for name in os.listdir(folder):
            with open(os.path.join(folder, name), "rb") as f:
                self.assertNotIn(secret.encode(), f.read(), name)

        table = self.cli(a, "list")
        self.assertIn(token_id, table.stdout)
        self.assertIn("valid", table.stdout)
        revoked = self.cli(a, "revoke", token_id)
        self.assertEqual(revoked.returncode, 0, revoked.stderr)
        self.assertEqual(self.cli(a, "revoke", "0000ffff").returncode, 1)

        a.stop()
        self.nodes.remove(a)
        a = self.start("issuer")
        [record] = [t for t in json.loads(self.cli(a, "list", "-o", "json").stdout)["tokens"]
                    if t["id"] == token_id]
        self.assertTrue(record["revoked"], "the revocation was kept")

        bad = self.cli(a, "create", "--ttl", "2x")
        self.assertEqual(bad.returncode, 1)
        self.assertIn("'ttl'", bad.stderr)
        status, text = a.request("POST", "/v1/mesh/tokens", body='{"uses": -3}')
        self.assertEqual(status, 400, text)
        self.assertIn("'uses'", text)
        status, text = a.request("PUT", "/v1/mesh/tokens")
        self.assertEqual(status, 405, text)

        b = self.start("member", "--join", a.gossip,
                       "--token", self.cli(a, "create").stdout.strip())
        refused = self.cli(b, "list")
        self.assertEqual(refused.returncode, 1)
        self.assertIn("no issuer rights", refused.stderr)

    def start_failing(self, name, *args):
        """Runs a node that must exit non-zero; returns its output."""
        proc = subprocess.run(
            [BINARY, "agent", "--node-name", name, "--http-address", "127.0.0.1:0",
             "--gossip-address", "127.0.0.1:0", "--gossip-profile", "local", "--grpc-address",
             "off", "--state-dir", os.path.join(STATE_ROOT, name), "--model-repository", MODELS,
             "--models", "identity", *args], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        return proc.stdout + proc.stderr

    def test_a_node_joins_with_a_token(self):
        a = self.start("seed")
        mesh = self.v2(a)["mesh"]
        token = self.cli(a, "create", "--uses", "1").stdout.strip()
        b = self.start("newcomer", "--join", a.gossip, "--token", token)
        joined = self.v2(b)["mesh"]
        self.assertIsNotNone(joined, b.text())
        self.assertEqual((joined["id"], joined["ca_digest"]), (mesh["id"], mesh["ca_digest"]))
        self.assertFalse(joined["issuer"])
        self.assertNotIn(token, b.text(), "the token is never logged")
        leaf, _ = load_chain(os.path.join(STATE_ROOT, "newcomer", "mesh", "node.pem"))
        self.assertIn(f"spiffe://{mesh['id']}/node/newcomer", uris(leaf))
        [record] = [t for t in json.loads(self.cli(a, "list", "-o", "json").stdout)["tokens"]
                    if token.split("-")[2].startswith(t["id"])]
        self.assertEqual(record["used"], 1)

        self.assertIn("is used up", self.start_failing("second", "--join", a.gossip,
                                                       "--token", token))
        wrong = token[:-4] + ("0000" if not token.endswith("0000") else "1111")
        self.assertIn("unknown token or wrong secret",
                      self.start_failing("guesser", "--join", a.gossip, "--token", wrong))
        other = self.start("other-mesh")
        foreign = self.cli(other, "create").stdout.strip()
        out = self.start_failing("lost", "--join", a.gossip, "--token", foreign)
        self.assertIn("does not belong to the mesh the token names", out)
        self.assertIn("nothing was sent", out)
        self.assertIn("token: join token: is not of three parts",
                      self.start_failing("typo", "--join", a.gossip, "--token", "HM1-x"))

        # A restart without the token keeps the certificate.
        b.stop()
        self.nodes.remove(b)
        again = self.start("newcomer", "--join", a.gossip)
        self.assertEqual(self.v2(again)["mesh"]["ca_digest"], mesh["ca_digest"])

    def test_certificates_are_renewed_and_a_node_offline_past_their_life_recovers(self):
        # The case in real time: 20 s certificates (renewed at about 13 s); a node stopped
        # for 60 s, three times their life, comes back expired and renews with no token and no
        # operator, within a minute.
        a = self.start("short-lived", "--certificate-ttl", "20s")
        token = self.cli(a, "create").stdout.strip()
        b = self.start("roamer", "--join", a.gossip, "--token", token)
        first = self.v2(b)["mesh"]["certificate_expires"]
        # Valid now, and for no more than the 20 s it was given (a slow start may have eaten
        # into it, or seen it renewed already).
        self.assertGreater(first, time.time())
        self.assertLessEqual(first, time.time() + 20 + 1)
        wait_for(lambda: self.v2(b)["mesh"]["certificate_expires"] > first, 40,
                 "the joined node's certificate to be renewed")
        self.assertRegex(b.text(), r"certificate renewed by 127\.0\.0\.1:\d+")
        wait_for(lambda: "certificate renewed by this node" in a.text(), 40,
                 "the issuer to renew its own certificate")

        b.stop()
        self.nodes.remove(b)
        time.sleep(60)
        leaf, _ = load_chain(os.path.join(STATE_ROOT, "roamer", "mesh", "node.pem"))
        self.assertLess(leaf.not_valid_after.timestamp(), time.time(), "it expired offline")
        started = time.monotonic()
        back = self.start("roamer", "--join", a.gossip)  # no token: its key is its proof
        wait_for(lambda: self.v2(back)["mesh"]["certificate_expires"] > time.time(), 60,
                 "the node back from offline to renew its expired certificate")
        self.assertEqual(self.v2(back)["mesh"]["ca_digest"], self.v2(a)["mesh"]["ca_digest"])
        # A member again: alive in the issuer's membership, and serving.
        wait_for(lambda: any(m["name"] == "roamer" and m["state"] == "alive"
                             for m in json.loads(a.request("GET", "/v1/mesh/members")[1])[
                                 "members"]), 60, "the issuer to see the node alive again")
        self.assertEqual(back.request("GET", "/v2/health/ready")[0], 200)
        print(f"back and serving with a renewed certificate {time.monotonic() - started:.1f} s "
              "after it started, from 60 s offline with 20 s certificates", flush=True)
        self.assertLess(time.monotonic() - started, 60)

    def test_a_revoked_node_is_never_renewed_nor_let_in_again(self):
        a = self.start("revoker", "--certificate-ttl", "12s")
        b = self.start("doomed", "--join", a.gossip, "--token", self.cli(a, "create").stdout.strip())
        self.assertIsNotNone(self.v2(b)["mesh"])
        wait_for(lambda: any(m["name"] == "doomed" for m in json.loads(
            a.request("GET", "/v1/mesh/members")[1])["members"]), 30, "a to see the member")
        revoke = lambda name: subprocess.run(  # noqa: E731
            [BINARY, "node", "revoke", "--node", f"127.0.0.1:{a.port}", name],
            capture_output=True, text=True, timeout=30)
        done = revoke("doomed")
        self.assertEqual(done.returncode, 0, done.stderr)
        unknown = revoke("nobody")
        self.assertEqual(unknown.returncode, 1)
        self.assertIn("no member named nobody", unknown.stderr)
        status, text = a.request("GET", "/v1/mesh/revocations")
        self.assertEqual(status, 200, text)
        [r] = json.loads(text)["revocations"]
        self.assertEqual(r["name"], "doomed")
        # Its renewals are refused from now on, and its certificate runs out.
        wait_for(lambda: re.search(r"cannot renew.*revoked", b.text()), 30,
                 "the revoked node's renewal to be refused")
        wait_for(lambda: self.v2(b)["mesh"]["certificate_expires"] < time.time(), 30,
                 "the revoked node's certificate to run out")
        # A new token does not let its key in again, and the revocation survives a restart.
        b.stop()
        self.nodes.remove(b)
        a.stop()
        self.nodes.remove(a)
        a = self.start("revoker", "--certificate-ttl", "12s")
        self.assertEqual(json.loads(a.request("GET", "/v1/mesh/revocations")[1])
                         ["revocations"][0]["name"], "doomed")
        import shutil
        shutil.rmtree(os.path.join(STATE_ROOT, "doomed", "mesh"))
        out = self.start_failing("doomed", "--join", a.gossip, "--token",
                                 self.cli(a, "create").stdout.strip())
        self.assertIn("key was revoked", out)

    def test_tokens_need_the_admin_token_when_the_node_asks_for_one(self):
        with tempfile.NamedTemporaryFile("w", suffix=".token", delete=False) as f:
            f.write("0123456789abcdef0123456789abcdef\n")
        os.chmod(f.name, 0o600)
        a = self.start("guarded", "--admin-access", "token", "--admin-token-file", f.name)
        denied = self.cli(a, "create")
        self.assertEqual(denied.returncode, 1)
        self.assertIn("403", denied.stderr)
        allowed = self.cli(a, "create", admin_token_file=f.name)
        self.assertEqual(allowed.returncode, 0, allowed.stderr)
        os.unlink(f.name)

    def test_a_label_a_certificate_cannot_hold_stops_the_node_saying_so(self):
        out = self.start_failing("odd", "--labels", "zone=a/b")
        self.assertIn("cannot create a mesh: label zone", out)
        self.assertIn("--insecure", out)
        self.assertFalse(os.path.exists(os.path.join(STATE_ROOT, "odd", "mesh")))


if __name__ == "__main__":
    BINARY = sys.argv.pop(1)
    unittest.main()
