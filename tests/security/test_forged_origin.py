#!/usr/bin/python3
"""Posing as a member: forwarded requests and mesh links from someone who merely reaches a node.

Node B serves the identity model; node A serves nothing and forwards to B. A node takes
forwarded requests (Hivemesh-Hops) only from members of its mesh. That used to be a header:
`Hivemesh-Origin: <a member's name>` (names are public at GET /v2 and /v1/mesh/members) made any
client a member, on a plain request and on a mesh link alike. Now a forwarded request must come
on a link its origin opened with a signed link credential, or carry a request credential of its
own: signed by the key gossip bound the origin's name to, addressed to this node, fresh, and used
once (identity/member_credential.h).

The attacker here also holds A's node key (read from A's state folder), the way someone who
captured one of A's credentials on the wire would hold one valid credential: it may use that
once, for the node and the purpose it was made for, and never again.

    test_forged_origin.py path/to/hivemesh
"""
import json
import time
import unittest

import gossip_wire as gw
from hostile import (Node, link_upgrade, member_credential, node_private_key, raw_http, run,
                     wait_for)

BODY = json.dumps({"inputs": [{"name": "INPUT0", "shape": [3], "datatype": "FP32",
                               "data": [1.0, 2.0, 3.0]}]}).encode()


def forwarded(port, origin, credential=None):
    """(status, response bytes) of a plain forwarded inference sent to the node at `port`,
    naming `origin`, with a member credential or none."""
    extra = f"Hivemesh-Credential: {credential}\r\n" if credential else ""
    head = (f"POST /v2/models/identity/infer HTTP/1.1\r\nHost: n\r\nContent-Type: application/json\r\n"
            f"Hivemesh-Hops: 1\r\nHivemesh-Origin: {origin}\r\n{extra}"
            f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n")
    return raw_http(port, head.encode() + BODY)


def upgrade(port, credential=None):
    """(status, response bytes) of a mesh link upgrade sent to the node at `port`."""
    return raw_http(port, link_upgrade(credential))


class ForgedOriginTest(unittest.TestCase):
    BINARY = None

    @classmethod
    def setUpClass(cls):
        cls.b = Node(cls.BINARY, "b", models=("identity",), args=["--gossip-profile", "local"])
        cls.a = Node(cls.BINARY, "a", models=(),
                     args=["--gossip-profile", "local", "--join", cls.b.gossip])
        wait_for(lambda: cls.served_by_b(), 30, "a to forward identity to b")
        cls.a_key = node_private_key("a")

    @classmethod
    def tearDownClass(cls):
        cls.a.stop()
        cls.b.stop()

    @classmethod
    def served_by_b(cls):
        status, body = cls.a.infer_identity()
        return status == 200 and body["parameters"]["served_by"] == "b"

    def assert_refused(self, result, reason_text, status=403):
        got, raw = result
        self.assertEqual(got, status, raw[:300])
        self.assertIn(reason_text.encode(), raw, raw[:300])

    def test_a_members_name_in_a_header_is_not_enough(self):
        before = self.b.rejected("forward_unauthenticated")
        for origin in ("a", "b"):  # a member's name, and the node's own (public at GET /v2)
            self.assert_refused(forwarded(self.b.port, origin), "no Hivemesh-Credential")
        # A credential signed by another key than the one gossip bound `a` to.
        stranger = gw.Key()
        self.assert_refused(
            forwarded(self.b.port, "a",
                      member_credential(stranger.sign, 'a', 'b', 'request')),
            "signature is not 'a''s")
        # A name that is no member at all.
        self.assert_refused(
            forwarded(self.b.port, "ghost",
                      member_credential(stranger.sign, 'ghost', 'b', 'request')),
            "not a live member")
        self.assertEqual(self.b.rejected("forward_unauthenticated"), before + 4)

    def test_a_mesh_link_needs_a_members_link_credential(self):
        before = self.b.rejected("link_unauthenticated")
        self.assert_refused(upgrade(self.b.port), "mesh links are for members")
        stranger = gw.Key()
        self.assert_refused(
            upgrade(self.b.port, member_credential(stranger.sign, 'a', 'b', 'link')),
            "signature is not 'a''s")
        # A's own credential, made for a plain request: not for a link.
        self.assert_refused(
            upgrade(self.b.port, member_credential(self.a_key.sign, 'a', 'b', 'request')),
            "not 'link'")
        self.assertEqual(self.b.rejected("link_unauthenticated"), before + 3)
        # The real thing opens a link.
        status, _ = upgrade(self.b.port, member_credential(self.a_key.sign, 'a', 'b', 'link'))
        self.assertEqual(status, 101)

    def test_a_captured_credential_serves_once_for_its_node_and_time(self):
        sign = self.a_key.sign
        # Addressed to another node, or too old: refused.
        self.assert_refused(
            forwarded(self.b.port, "a", member_credential(sign, 'a', 'c', 'request')),
            "signature is not 'a''s for this node")
        old = int(time.time() * 1000) - 10 * 60 * 1000
        self.assert_refused(
            forwarded(self.b.port, "a",
                      member_credential(sign, 'a', 'b', 'request', unix_ms=old)),
            "ms, more than")
        # The credential names a, the request another origin.
        self.assert_refused(
            forwarded(self.b.port, "b", member_credential(sign, 'a', 'b', 'request')),
            "carries the credential of 'a'")
        # A valid one serves once...
        once = member_credential(sign, 'a', 'b', 'request')
        status, raw = forwarded(self.b.port, "a", once)
        self.assertEqual(status, 200, raw[:300])
        replayed = self.b.rejected("credential_replayed")
        # ...and a replay of it is refused and counted.
        self.assert_refused(forwarded(self.b.port, "a", once), "already used")
        self.assertEqual(self.b.rejected("credential_replayed"), replayed + 1)

    def test_the_mesh_still_forwards(self):
        before = (self.b.rejected("forward_unauthenticated"), self.b.rejected("link_unauthenticated"))
        for _ in range(20):
            self.assertTrue(self.served_by_b())
        after = (self.b.rejected("forward_unauthenticated"), self.b.rejected("link_unauthenticated"))
        self.assertEqual(after, before)


if __name__ == "__main__":
    run(ForgedOriginTest)
