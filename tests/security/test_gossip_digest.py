"""Anti-entropy by digest (protocol 3; docs/membership.md, "Anti-entropy by digest"): the node
that starts an exchange sends (name, incarnation, state) for every member, and the answer holds
full entries only where the two views differ.

Asserted against two real agents over plaintext gossip, speaking the wire as a peer (or an
attacker) would:
- an empty digest is answered with every member's full entry, each with its own valid
  signature, and wants nothing; the node's own digest, sent back to it,
  gets an empty answer; a digest that knows a member at a higher incarnation, or a name the node
  does not know, gets those names wanted;
- hostile: a digest of 20,000 unknown names is answered with no more bytes than it carried and
  changes no member; a digest claiming more entries than its bytes hold gets no answer; a digest
  reply pushed unasked is merged like a push-pull (a self-signed entry of a new member is
  learned) and answered with an empty reply, whatever it wants.
"""
import unittest

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gossip_wire import (DIGEST, DIGEST_REPLY, STATE_ALIVE, Key, alive_body, digest, lbytes,
                         packet, parse_digest_reply, push_pull, push_pull_over_tcp, state_of,
                         varint)
from hostile import Node, run, wait_for


def check_signature(m):
    claim = b"hivemesh alive claim v2\0" + alive_body(
        m["incarnation"], m["node"], m["addr"], m["meta"], m["key"], b"", m["protocol_min"],
        m["protocol_max"])
    Ed25519PublicKey.from_public_bytes(m["key"]).verify(m["sig"], claim)


class GossipDigestTest(unittest.TestCase):
    BINARY = None

    def setUp(self):
        self.a = Node(self.BINARY, "a")
        self.b = Node(self.BINARY, "b", args=["--join", self.a.gossip])
        wait_for(lambda: len(self.a.members()) == 2 and len(self.b.members()) == 2, 30,
                 "a and b to see each other")

    def tearDown(self):
        self.b.stop()
        self.a.stop()

    def exchange(self, *messages):
        return push_pull_over_tcp(self.a.gossip, packet(*messages))

    def view(self):
        return {m["node"]: m for m in state_of(self.a.gossip)}

    def test_answers_carry_only_what_differs(self):
        view = self.view()
        self.assertEqual(set(view), {"a", "b"})
        for m in view.values():
            self.assertGreaterEqual(m["protocol_max"], 3, "both nodes speak digests")
        members, want = parse_digest_reply(self.exchange(digest([])))
        self.assertEqual(want, [])
        self.assertEqual({m["node"] for m in members}, {"a", "b"})
        for m in members:
            self.assertEqual(m["incarnation"], view[m["node"]]["incarnation"])
            check_signature(m)
        same = digest([(n, m["incarnation"], m["state"]) for n, m in view.items()])
        self.assertEqual(parse_digest_reply(self.exchange(same)), ([], []))
        newer = digest([("a", view["a"]["incarnation"], STATE_ALIVE),
                        ("b", view["b"]["incarnation"] + 1, STATE_ALIVE),
                        ("zz", 1, STATE_ALIVE)])
        self.assertEqual(parse_digest_reply(self.exchange(newer)), ([], ["b", "zz"]))

    def test_hostile_digests(self):
        huge = digest([(f"unknown-{i:05d}", 1, STATE_ALIVE) for i in range(20000)])
        reply = self.exchange(huge)
        self.assertGreater(len(reply), 0)
        self.assertLessEqual(len(reply), len(huge) + 1024)
        members, want = parse_digest_reply(reply)
        self.assertEqual(len(want), 20000)
        self.assertEqual({m["node"] for m in members}, {"a", "b"}, "the digest lacked them")
        lying = bytes([DIGEST]) + varint(1 << 20) + lbytes("a") + varint(1) + bytes([0])
        self.assertEqual(self.exchange(lying), b"", "a count its bytes cannot hold: no answer")
        self.assertEqual(set(self.view()), {"a", "b"})
        self.assertEqual(self.a.request("GET", "/v2/health/ready")[0], 200)

    def test_an_unasked_digest_reply_is_merged_and_answered_empty(self):
        key = Key()
        entry = push_pull([("pushed", "127.0.0.1:9", 1, b"", key)])[2:]  # members, no join flag
        pushed = bytes([DIGEST_REPLY]) + entry + varint(2) + lbytes("a") + lbytes("b")
        self.assertEqual(parse_digest_reply(self.exchange(pushed)), ([], []))
        wait_for(lambda: "pushed" in self.view(), 10, "the pushed member to be learned")


if __name__ == "__main__":
    run(GossipDigestTest)
