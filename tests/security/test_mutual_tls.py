#!/usr/bin/python3
"""Mutual TLS between the nodes of a secure mesh (docs/identity.md), attacked on real nodes.

Node B created the mesh and serves the identity model; node A joined with a token and serves
nothing, so it forwards to B over a mesh link. In a secure mesh a node takes links and
forwarded requests only from a member that shows a certificate of the mesh in a TLS handshake:
the handshake proves the key, the node checks the chain against its roots, the validity, the
revocations it knows, and the key gossip binds the name to. Shown here:

- A forwards to B (a secure node refuses every other way, so the forward went over mutual TLS);
- plain HTTP: a link upgrade and a forwarded request are refused with 403, even with a valid
  member credential signed by A's own key (the insecure mode's proof);
- TLS without a certificate: the client API serves, links and forwarded requests are refused;
- TLS with a certificate of another mesh, a self-made one naming A, an expired one of the
  mesh, and a revoked one: every request on the connection is refused with 403 naming why;
- the mesh's gossip is sealed with keys only certified nodes get: a node started with --insecure
  cannot join it (it stops, saying why), and a secure node takes no --gossip-keys by hand;
- insecure nodes say so at start, in /v2, in the member list and in `hivemesh members`.

    test_mutual_tls.py path/to/hivemesh
"""
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from hostile import (MODELS, Node, closed_by_peer, link_upgrade, member_credential,
                     node_private_key, read_response, run, wait_for)
import agent_node  # noqa: E402 (on the path hostile sets)
from test_join_tls import self_made_certificate

BODY = json.dumps({"inputs": [{"name": "INPUT0", "shape": [3], "datatype": "FP32",
                               "data": [1.0, 2.0, 3.0]}]}).encode()
TTL_S = 15  # the certificates' life in this mesh: short, so one can run out during the test
HEADER_S = 2  # B's header_timeout, which bounds a TLS handshake too


def forwarded(origin, credential=None):
    """A forwarded inference naming `origin`, with a member credential or none."""
    extra = f"Hivemesh-Credential: {credential}\r\n" if credential else ""
    return (f"POST /v2/models/identity/infer HTTP/1.1\r\nHost: n\r\n"
            f"Content-Type: application/json\r\nHivemesh-Hops: 1\r\nHivemesh-Origin: {origin}\r\n"
            f"{extra}Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n").encode() + BODY


def plain_inference():
    return (f"POST /v2/models/identity/infer HTTP/1.1\r\nHost: n\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n"
            f"Connection: close\r\n\r\n").encode() + BODY


def client_context(cert=None):
    """A TLS 1.3 client context presenting `cert` ((certificate path, key path) or None), which
    checks nothing of the server (the tests look at what the node does)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


def exchange(port, data, cert=None, use_tls=True):
    """(status, response bytes) of `data` sent on a new connection, over TLS 1.3 presenting
    `cert` ((certificate path, key path) or None) unless `use_tls` is false."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = raw
    if use_tls:
        s = client_context(cert).wrap_socket(raw, server_hostname="node")
    try:
        s.sendall(data)
        return read_response(s)
    finally:
        s.close()


def certificate_of(name):
    """(certificate path, key path) of the node started here as `name`, from its state folder."""
    folder = os.path.join(agent_node.STATE_ROOT, name)
    return os.path.join(folder, "mesh", "node.pem"), os.path.join(folder, "node.key")


def not_after(cert_path):
    from cryptography import x509
    with open(cert_path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read()).not_valid_after.timestamp()


class MutualTlsTest(unittest.TestCase):
    BINARY = None

    @classmethod
    def setUpClass(cls):
        cls.nodes = []
        cls.b = cls.start("b", ("identity",), ["--certificate-ttl", f"{TTL_S}s",
                                               "--header-timeout-ms", str(HEADER_S * 1000)],
                          secure=True)
        cls.a = cls.start("a", (), ["--join", cls.b.gossip, "--token", cls.token()])
        wait_for(lambda: cls.served_by_b(cls.a), 30, "a to forward identity to b")

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes:
            n.stop()

    @classmethod
    def start(cls, name, models, args, secure=False, repository=None):
        extra = {"repository": repository} if repository else {}
        node = Node(cls.BINARY, name, models=models,
                    args=["--gossip-profile", "local", *args], secure=secure, **extra)
        cls.nodes.append(node)
        return node

    @classmethod
    def token(cls):
        out = subprocess.run([cls.BINARY, "token", "create", "--node", f"127.0.0.1:{cls.b.port}"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    @staticmethod
    def served_by_b(node):
        status, body = node.infer_identity()
        return status == 200 and body["parameters"]["served_by"] == "b"

    def assert_refused(self, result, words):
        status, raw = result
        self.assertEqual(status, 403, raw[:400])
        self.assertIn(words.encode(), raw, raw[:400])

    def test_members_forward_over_mutual_tls(self):
        for _ in range(20):
            self.assertTrue(self.served_by_b(self.a))
        self.assertFalse(self.a.log_lines(r"certificate is refused"))

    def test_plain_links_and_forwards_are_refused_even_with_a_members_credential(self):
        links_before = self.b.rejected("link_unauthenticated")
        forwards_before = self.b.rejected("forward_unauthenticated")
        key = node_private_key("a")
        self.assert_refused(exchange(self.b.port, link_upgrade(), use_tls=False), "mutual TLS")
        self.assert_refused(
            exchange(self.b.port, link_upgrade(member_credential(key.sign, "a", "b", "link")),
                     use_tls=False), "mutual TLS")
        self.assert_refused(
            exchange(self.b.port,
                     forwarded("a", member_credential(key.sign, "a", "b", "request")),
                     use_tls=False), "mutual TLS")
        self.assertEqual(self.b.rejected("link_unauthenticated"), links_before + 2)
        self.assertEqual(self.b.rejected("forward_unauthenticated"), forwards_before + 1)
        # Clients still infer over plain HTTP.
        status, raw = exchange(self.b.port, plain_inference(), use_tls=False)
        self.assertEqual(status, 200, raw[:300])

    def test_tls_without_a_certificate_is_a_client_not_a_member(self):
        status, raw = exchange(self.b.port, plain_inference())
        self.assertEqual(status, 200, raw[:300])
        self.assertIn(b'"served_by":"b"', raw)
        self.assert_refused(exchange(self.b.port, link_upgrade()), "mutual TLS")
        self.assert_refused(exchange(self.b.port, forwarded("a")), "mutual TLS")

    def test_certificates_the_mesh_did_not_issue_are_refused(self):
        before = self.b.rejected("tls_peer_refused")
        stranger = self.start("stranger", (), [], secure=True)  # a mesh of its own
        other_mesh = certificate_of("stranger")
        self.assert_refused(exchange(self.b.port, link_upgrade(), cert=other_mesh), "refused")
        self.assert_refused(exchange(self.b.port, plain_inference(), cert=other_mesh), "refused")
        self.assert_refused(exchange(self.b.port, forwarded("stranger"), cert=other_mesh),
                            "refused")
        forged = self_made_certificate("a")
        self.assert_refused(exchange(self.b.port, link_upgrade(), cert=forged), "refused")
        self.assertGreaterEqual(self.b.rejected("tls_peer_refused"), before + 4)
        stranger.stop()

    def test_an_expired_certificate_of_the_mesh_is_refused(self):
        gone = self.start("gone", (), ["--join", self.b.gossip, "--token", self.token()])
        gone.stop()  # no renewal from now on
        cert = certificate_of("gone")
        wait_for(lambda: time.time() > not_after(cert[0]) + 1, TTL_S + 10,
                 "gone's certificate to expire")
        self.assert_refused(exchange(self.b.port, link_upgrade(), cert=cert), "expired")

    def test_a_revoked_certificate_is_refused_while_still_valid(self):
        revoked = self.start("revoked", (), ["--join", self.b.gossip, "--token", self.token()])
        wait_for(lambda: any(m["name"] == "revoked" for m in self.b.members()), 30,
                 "b to see the new member")
        # It forwards to b over a mesh link, until its key is revoked: b closes the link at
        # once and refuses the next one, so its requests no longer reach b.
        wait_for(lambda: self.served_by_b(revoked), 30, "the member to forward to b")
        out = subprocess.run([self.BINARY, "node", "revoke", "revoked", "--node",
                              f"127.0.0.1:{self.b.port}"], capture_output=True, text=True,
                             timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertTrue(self.b.log_lines(r"member revoked's key is revoked: closing its connections"))
        started = time.monotonic()
        wait_for(lambda: revoked.infer_identity()[0] != 200, 10,
                 "the revoked member's requests to stop reaching b")
        print(f"the revoked member's requests stopped reaching b "
              f"{time.monotonic() - started:.2f} s after the revocation", flush=True)
        self.assertFalse(self.served_by_b(revoked))
        cert = certificate_of("revoked")
        self.assertGreater(not_after(cert[0]), time.time())
        self.assert_refused(exchange(self.b.port, link_upgrade(), cert=cert), "revoked")
        revoked.stop()

    def test_a_revocation_reaches_every_node(self):
        # "echo" (the identity model under another name) runs on `host` only, so `rogue`'s
        # requests for it go over a link to `host`, a node that did not revoke anything itself.
        repo = tempfile.mkdtemp(prefix="hivemesh-echo-")
        shutil.copytree(os.path.join(MODELS, "identity"), os.path.join(repo, "echo"))
        host = self.start("host", ("echo",), ["--join", self.b.gossip, "--token", self.token()],
                          repository=repo)
        rogue = self.start("rogue", (), ["--join", self.b.gossip, "--token", self.token()])

        def echo_status():
            status, text = rogue.request("POST", "/v2/models/echo/infer", body=BODY.decode())
            return status, text

        wait_for(lambda: echo_status()[0] == 200, 30, "rogue to forward echo to host")
        self.assertIn('"served_by":"host"', echo_status()[1])
        out = subprocess.run([self.BINARY, "node", "revoke", "rogue", "--node",
                              f"127.0.0.1:{self.b.port}"], capture_output=True, text=True,
                             timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        started = time.monotonic()
        wait_for(lambda: echo_status()[0] != 200, 15, "host to stop serving the revoked member")
        print(f"host stopped serving the revoked member {time.monotonic() - started:.2f} s after "
              "the revocation at b", flush=True)
        # Checked at once: rogue renews no more, and its certificate runs out within TTL_S.
        self.assert_refused(exchange(host.port, link_upgrade(), cert=certificate_of("rogue")),
                            "revoked")
        wait_for(lambda: host.log_lines(r"member rogue's key is revoked \(by b\)"), 10,
                 "host to log the revocation it fetched")
        # Gossip drops it too: dead in the membership of the issuer and of the other node.
        for n in (self.b, host):
            wait_for(lambda: [m["state"] for m in n.members() if m["name"] == "rogue"] == ["dead"],
                     10, f"{n.name} to hold the revoked member dead")
        rogue.stop()
        host.stop()

    def test_stalled_and_garbage_handshakes_are_cut_within_the_header_timeout(self):
        before = self.b.rejected("tls_handshake_failed")
        stalled = [socket.create_connection(("127.0.0.1", self.b.port)) for _ in range(3)]
        for s in stalled:
            s.sendall(b"\x16\x03\x01")  # a handshake record that never comes whole
        garbage = socket.create_connection(("127.0.0.1", self.b.port))
        garbage.sendall(b"\x16\x03\x01\x00\x05hello" + b"\x00" * 200)
        self.assertTrue(closed_by_peer(garbage, 5), "a garbage record was kept open")
        started = time.monotonic()
        for s in stalled:
            self.assertTrue(closed_by_peer(s, HEADER_S + 5), "a stalled handshake was kept open")
        self.assertLess(time.monotonic() - started, HEADER_S + 5)
        for s in stalled + [garbage]:
            s.close()
        wait_for(lambda: self.b.rejected("tls_handshake_failed") >= before + 4, 10,
                 "the cut handshakes to be counted")
        self.assertTrue(self.served_by_b(self.a), "the mesh stopped serving")

    def test_an_insecure_node_cannot_join_a_secure_mesh(self):
        # The mesh's gossip is sealed with its own keys, which only a node with a certificate
        # gets: an insecure node cannot even gossip with it, and stops saying why.
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(
                [self.BINARY, "agent", "--node-name", "outsider", "--http-address", "127.0.0.1:0",
                 "--gossip-address", "127.0.0.1:0", "--grpc-address", "off", "--gossip-profile",
                 "local", "--model-repository", tmp, "--state-dir", os.path.join(tmp, "state"),
                 "--insecure", "--join", self.b.gossip],
                capture_output=True, text=True, timeout=60)
        out = proc.stdout + proc.stderr
        self.assertNotEqual(proc.returncode, 0, out[-2000:])
        self.assertIn("INSECURE", out)
        self.assertIn("encrypts its gossip", out)
        self.assertFalse(any(m["name"] == "outsider" for m in self.b.members()))
        v2 = json.loads(self.b.request("GET", "/v2")[1])
        self.assertFalse(v2["insecure"])
        self.assertTrue(v2["gossip"]["encrypted"], "a secure mesh seals its gossip")

    def test_a_secure_node_takes_no_gossip_keys_by_hand(self):
        with tempfile.TemporaryDirectory() as tmp:
            state = os.path.join(tmp, "state")  # a copy: b's own folder is b's
            shutil.copytree(os.path.join(agent_node.STATE_ROOT, "b"), state)
            proc = subprocess.run(
                [self.BINARY, "agent", "--node-name", "b", "--http-address", "127.0.0.1:0",
                 "--gossip-address", "127.0.0.1:0", "--grpc-address", "off",
                 "--model-repository", tmp, "--state-dir", state,
                 "--gossip-keys", "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="],
                capture_output=True, text=True, timeout=60)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("get their gossip keys from the mesh", proc.stdout + proc.stderr)

    def test_insecure_nodes_say_so_everywhere(self):
        first = self.start("lab-1", (), [])
        second = self.start("lab-2", (), ["--join", first.gossip])
        self.assertTrue(first.log_lines(r"INSECURE"))
        v2 = json.loads(first.request("GET", "/v2")[1])
        self.assertTrue(v2["insecure"])
        self.assertIsNone(v2["mesh"])
        self.assertIn("insecure_warning", v2)
        wait_for(lambda: len(first.members()) == 2, 30, "the insecure mesh to form")
        self.assertTrue(all(m["insecure"] for m in first.members()))
        self.assertFalse(any(m["insecure"] for m in self.b.members()))
        table = subprocess.run([self.BINARY, "members", "--node", f"127.0.0.1:{first.port}"],
                               capture_output=True, text=True, timeout=30)
        self.assertRegex(table.stdout, r"lab-2\s+alive \(insecure\)")
        second.stop()
        first.stop()

if __name__ == "__main__":
    run(MutualTlsTest)
