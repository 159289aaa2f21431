"""Joins over TLS on the gossip port (agent/join_service.h), attacked on a real issuer node:

- TLS records of garbage are cut; gossip on the same port goes on (a member joins after them);
- stalled handshakes hold at most kMaxJoinsAtOnce (4) places, each for at most the 5 s deadline;
  connections past the 4th are closed at once, and once the stalls are cut a real join succeeds;
- after a real TLS handshake (Python's ssl, trusting nothing): a request announcing 1 MiB is cut
  without an answer; a request that is not JSON is answered with an error; a guessed secret is
  refused with the same words as an unknown token, and spends no use;
- a renewal asked without a certificate, or with a self-made one of the same name, is refused.
"""
import datetime
import os
import tempfile
import json
import socket
import ssl
import struct
import subprocess
import time
import unittest

from gossip_attack import close_all, connect, wait_closed
from hostile import Node, run, wait_for

MAX_AT_ONCE = 4
DEADLINE = 5.0


def self_made_certificate(name):
    """(certificate PEM path, key PEM path) of a self-signed Ed25519 certificate naming the node
    `name` the way the mesh's certificates do, but signed by nobody the mesh trusts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import NameOID
    key = Ed25519PrivateKey.generate()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.UniformResourceIdentifier(f"spiffe://{'0' * 32}/node/{name}"),
                x509.UniformResourceIdentifier("urn:hivemesh:role:operator")]), critical=False)
            .sign(key, None))
    folder = tempfile.mkdtemp(prefix="hivemesh-forged-")
    cert_path, key_path = os.path.join(folder, "c.pem"), os.path.join(folder, "k.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def tls(address, client_cert=None):
    host, port = address.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if client_cert:
        ctx.load_cert_chain(*client_cert)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    raw = socket.create_connection((host, int(port)), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="seed")


def exchange(sock, body):
    sock.sendall(struct.pack(">I", len(body)) + body)
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack(">I", head)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return json.loads(data)


class JoinTlsTest(unittest.TestCase):
    BINARY = None

    def setUp(self):
        self.seed = Node(self.BINARY, "seed", secure=True)
        self.nodes = [self.seed]
        self.assertIsNotNone(self.v2(self.seed)["mesh"])

    def tearDown(self):
        for n in self.nodes:
            n.stop()

    def v2(self, node):
        status, text = node.request("GET", "/v2")
        self.assertEqual(status, 200, text)
        return json.loads(text)

    def token(self, uses=0):
        out = subprocess.run([self.BINARY, "token", "create", "--node",
                              f"127.0.0.1:{self.seed.port}", "--uses", str(uses)],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout.strip()

    def test_garbage_records_are_cut_and_gossip_goes_on(self):
        socks = [connect(self.seed.gossip) for _ in range(12)]
        for s in socks:
            s.sendall(b"\x16\x03\x01\x00\x05hello" + b"\x00" * 200)
        for s in socks:
            self.assertIsNotNone(wait_closed(s, DEADLINE + 3)[0], "a garbage record was kept open")
        close_all(socks)
        member = Node(self.BINARY, "member",
                      args=["--join", self.seed.gossip, "--token", self.token()])
        self.nodes.append(member)
        wait_for(lambda: len(self.seed.members()) == 2, 30, "the member to join by gossip")

    def test_stalled_handshakes_hold_at_most_four_places_for_the_deadline(self):
        stalled = [connect(self.seed.gossip) for _ in range(MAX_AT_ONCE)]
        for s in stalled:
            s.sendall(b"\x16")  # a handshake that never goes on
        time.sleep(0.5)  # the four are taken
        extra = [connect(self.seed.gossip) for _ in range(3)]
        for s in extra:
            s.sendall(b"\x16")
        for s in extra:
            after = wait_closed(s, 2)[0]
            self.assertIsNotNone(after, "a connection past the cap was kept")
        for s in stalled:
            after = wait_closed(s, DEADLINE + 3)[0]
            self.assertIsNotNone(after, "a stalled handshake outlived the deadline")
        close_all(stalled + extra)
        joiner = Node(self.BINARY, "joiner",
                      args=["--join", self.seed.gossip, "--token", self.token()])
        self.nodes.append(joiner)
        self.assertIsNotNone(self.v2(joiner)["mesh"])

    def test_bad_requests_after_the_handshake(self):
        token = self.token(uses=1)
        with tls(self.seed.gossip) as s:
            s.sendall(struct.pack(">I", 1 << 20) + b"{")
            s.settimeout(DEADLINE + 3)
            try:
                self.assertEqual(s.recv(1), b"", "an oversized request got an answer")
            except (ConnectionResetError, ssl.SSLError):
                pass
        with tls(self.seed.gossip) as s:
            answer = exchange(s, b"not json")
            self.assertEqual(answer["code"], "invalid_argument", answer)
        guessed = token[:-4] + ("0000" if not token.endswith("0000") else "1111")
        request = {"token": guessed, "name": "mallory", "labels": {},
                   "public_key": "11" * 32}
        with tls(self.seed.gossip) as s:
            answer = exchange(s, json.dumps(request).encode())
        self.assertEqual(answer["code"], "permission_denied", answer)
        self.assertIn("unknown token or wrong secret", answer["error"])
        request["token"] = token[:-41] + "ffffffff" + token[-33:]  # an id nobody made
        with tls(self.seed.gossip) as s:
            unknown = exchange(s, json.dumps(request).encode())
        self.assertEqual(unknown["error"], answer["error"], "a guess learns nothing")
        listed = subprocess.run([self.BINARY, "token", "list", "--node",
                                 f"127.0.0.1:{self.seed.port}", "-o", "json"],
                                capture_output=True, text=True, timeout=30)
        self.assertEqual(json.loads(listed.stdout)["tokens"][0]["used"], 0)

    def test_renewals_need_a_certificate_of_the_mesh(self):
        with tls(self.seed.gossip) as s:
            answer = exchange(s, b'{"renew": true}')
        self.assertEqual(answer["code"], "permission_denied", answer)
        self.assertIn("no certificate was presented", answer["error"])
        with tls(self.seed.gossip, client_cert=self_made_certificate("seed")) as s:
            answer = exchange(s, b'{"renew": true}')
        self.assertEqual(answer["code"], "permission_denied", answer)
        self.assertNotIn("certificate", answer)


if __name__ == "__main__":
    run(JoinTlsTest)
