#!/usr/bin/python3
"""Gossip TCP of a secure mesh is mutual TLS (docs/identity.md, "Mutual TLS between nodes"), on
real nodes: push-pull, joins and watches go over TLS 1.3 with both sides' certificates checked,
and nothing else is gossiped. n0 created the mesh, n1 joined it. Shown here, each against the
real processes:

- a holder of the mesh's gossip key without a certificate (the key read from a node's state
  folder): a correctly sealed push-pull that would add a member is refused and closed, counted,
  and the member never appears (the same frame is taken by a node of an insecure mesh with that
  key: the frame is valid, only the missing certificate refuses it);
- a TLS exchange without a certificate, with another mesh's, and with an operator's client
  certificate of this mesh: refused after the handshake, counted;
- a TLS exchange that stalls after its first byte or in its handshake: cut within the head
  deadline;
- and the mesh itself: members see each other alive and their watches are up, over TLS only.

    test_gossip_tls.py path/to/hivemesh
"""
import json
import os
import socket
import ssl
import tempfile
import time
import unittest

from gossip_attack import connect, sealed_frame, wait_closed
from gossip_wire import Key, node_meta, packet, push_pull
from hostile import Node, binary_from_argv, wait_for
from secure_mesh import SecureMeshTest
from test_gossip_key_rotation import keys_file, unauthenticated
from test_mutual_tls import certificate_of, client_context

TLS_BYTE = b"T"


def tls_exchange(address, cert=None, timeout=10):
    """A gossip exchange over TLS to `address`: the first byte, the handshake presenting `cert`
    ((certificate path, key path) or None). Returns the TLS socket."""
    raw = connect(address, source="127.0.0.1", timeout=timeout)
    raw.sendall(TLS_BYTE)
    return client_context(cert).wrap_socket(raw, server_hostname="node")


def refused_after_handshake(s, seconds=10):
    """True if the node closes the TLS connection without a byte (TLS 1.3 checks the client's
    certificate after the client's side of the handshake is done)."""
    s.settimeout(seconds)
    try:
        return s.recv(1) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def intruder_push_pull(name):
    """A packet of a join push-pull claiming a new member `name`, signed by its own fresh key."""
    return packet(push_pull([(name, "127.0.0.1:9", 1, node_meta("127.0.0.1:9"), Key())],
                            join=True))


class GossipTlsTest(SecureMeshTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.n0 = cls.start("n0", ("identity",), [], secure=True)
        cls.n1 = cls.start("n1", (), cls.join_args())
        wait_for(lambda: cls.n1.infer_identity()[0] == 200, 30, "n1 to forward identity")

    def names(self, node):
        return {m["name"]: m["state"] for m in node.members()}

    def test_a_key_holder_without_a_certificate_cannot_gossip(self):
        key = keys_file("n0")[1][0]  # the mesh's gossip key, stolen from a state folder
        frame = sealed_frame(key, intruder_push_pull("intruder"), self.n0.gossip,
                             boot_id=int.from_bytes(os.urandom(8), "little"), counter=1)
        before = unauthenticated(self.n0)
        s = connect(self.n0.gossip, source="127.0.0.1")
        s.sendall(frame)
        closed, answer = wait_closed(s, 10)
        self.assertIsNotNone(closed, "the connection stayed open")
        self.assertEqual(answer, b"", "the node answered a frame without a certificate")
        s.close()
        wait_for(lambda: unauthenticated(self.n0) > before, 10, "the refusal to be counted")
        self.assertTrue(self.n0.log_lines(r"plain frame: this mesh's gossip TCP is mutual TLS"))
        time.sleep(1)
        self.assertNotIn("intruder", self.names(self.n0))

        # The frame itself is valid: a node of an insecure mesh keyed with that key takes it.
        plain = Node(self.BINARY, "keyed", models=(), args=["--gossip-keys", key])
        self.nodes.append(plain)
        frame = sealed_frame(key, intruder_push_pull("intruder"), plain.gossip,
                             boot_id=int.from_bytes(os.urandom(8), "little"), counter=1)
        s = connect(plain.gossip, source="127.0.0.1")
        s.sendall(frame)
        wait_for(lambda: "intruder" in self.names(plain), 10, "the keyed node to take the frame")
        s.close()

    def test_tls_without_a_members_certificate_is_refused(self):
        other = Node(self.BINARY, "other", models=(), secure=True)  # another mesh
        self.nodes.append(other)
        work = tempfile.mkdtemp(prefix="hivemesh-gossip-tls-")
        out = self.cli("cert", "issue-client", "ops", "--role", "operator", "--out", work,
                       "--node", f"127.0.0.1:{self.n0.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        operator = (os.path.join(work, "ops.pem"), os.path.join(work, "ops.key"))
        certs = {"none": None, "another mesh": certificate_of("other"), "an operator": operator}
        for what, cert in certs.items():
            time.sleep(1.1)  # the node logs a reason's refusals at most once a second
            before = unauthenticated(self.n0)
            s = tls_exchange(self.n0.gossip, cert)
            self.assertTrue(refused_after_handshake(s), what)
            s.close()
            wait_for(lambda: unauthenticated(self.n0) > before, 10, f"{what}: the refusal counted")
        self.assertTrue(self.n0.log_lines(r"only members gossip"))
        # A member's own certificate is taken (the handshake stays up, waiting for a frame).
        s = tls_exchange(self.n0.gossip, certificate_of("n1"))
        s.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            s.recv(1)
        s.close()

    def test_stalled_tls_exchanges_are_cut(self):
        # After the first byte only, and with half a ClientHello: both within the head deadline
        # (2 s by default), not the exchange's.
        for partial in (TLS_BYTE, TLS_BYTE + bytes([0x16, 3, 1, 0, 200, 1])):
            s = connect(self.n0.gossip, source="127.0.0.1")
            s.sendall(partial)
            closed, _ = wait_closed(s, 15)
            self.assertIsNotNone(closed, partial)
            self.assertLess(closed, 12, partial)
            s.close()
        self.assertTrue(self.n0.alive())

    def test_the_mesh_gossips_over_tls(self):
        wait_for(lambda: self.names(self.n0).get("n1") == "alive" and
                 self.names(self.n1).get("n0") == "alive", 20, "both members alive")
        stats = lambda n: json.loads(n.request("GET", "/v1/mesh/stats")[1])  # noqa: E731
        wait_for(lambda: stats(self.n0)["watched_by"] >= 1, 30, "n1's watch of n0 over TLS")
        # Push-pulls and watches over TLS, resuming sessions after the first (local profile:
        # a push-pull every few seconds).
        wait_for(lambda: stats(self.n1)["tls_resumed"] >= 1, 60, "a resumed gossip session")
        s = stats(self.n1)
        print(f"n1: {s['tls_handshakes']} gossip TLS handshakes, {s['tls_resumed']} resumed",
              flush=True)
        self.assertGreaterEqual(s["tls_handshakes"], s["tls_resumed"])


if __name__ == "__main__":
    GossipTlsTest.BINARY = binary_from_argv()
    unittest.main(verbosity=2)
