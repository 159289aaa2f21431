#!/usr/bin/python3
"""Forged gossip against real nodes in plaintext mode (anyone on the network can send it):
claims about a member's name, its death, its incarnation, and a flood of fake members.

Node B serves the identity model; node A serves nothing and forwards to B. An attacker sends A
(and B) UDP gossip packets it wrote itself (gossip_wire.py). Before names were bound to keys,
one forged alive made A send B's inferences to the attacker, one forged dead evicted B for good
(its refutation wrapped at 2^32 - 1), and 20,000 forged alives gave A 15,765 members.

    test_gossip_claims.py path/to/hivemesh
"""
import socket
import threading
import time
import unittest

import gossip_wire as gw
from hostile import Canary, Node, run, slack_mib, wait_for


class RogueServer:
    """A TCP listener that counts the connections it is sent (it never answers)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            c.close()

    def close(self):
        self.sock.close()


class GossipClaimsTest(unittest.TestCase):
    BINARY = None

    def setUp(self):
        self.b = Node(self.BINARY, "b", models=("identity",), args=["--gossip-profile", "local"])
        self.a = Node(self.BINARY, "a", models=(),
                      args=["--gossip-profile", "local", "--join", self.b.gossip])
        self.addCleanup(self.a.stop)
        self.addCleanup(self.b.stop)
        wait_for(lambda: self.view("a", "b") and self.view("a", "b")["state"] == "alive", 30,
                 "a to see b alive")
        wait_for(lambda: self.served_by_b(), 30, "a to forward identity to b")

    def view(self, observer, name):
        node = self.a if observer == "a" else self.b
        for m in node.members():
            if m["name"] == name:
                return m
        return None

    def served_by_b(self):
        status, body = self.a.infer_identity()
        return status == 200 and body["parameters"]["served_by"] == "b"

    def test_a_forged_claim_cannot_take_over_a_members_name(self):
        rogue = RogueServer()
        self.addCleanup(rogue.close)
        before = self.view("a", "b")
        evil_meta = gw.node_meta(f"127.0.0.1:{rogue.port}", models=[("identity", ["1"])])
        attacker = gw.Key()
        inc = before["incarnation"] + 1000
        # Anyone can read b's public key and signed claim from a plaintext push-pull.
        real = next(m for m in gw.state_of(self.a.gossip) if m["node"] == "b")
        self.assertEqual(len(real["key"]), 32)
        forged = [
            # Unsigned, as before names were bound to keys.
            gw.alive(inc, "b", self.b.gossip, evil_meta),
            # Signed by the attacker's own key.
            gw.alive(inc, "b", self.b.gossip, evil_meta, signer=attacker),
            # Carrying b's real public key, with a signature that is not b's.
            gw.alive(inc, "b", self.b.gossip, evil_meta, signer=attacker, key=real["key"]),
            # b's own signature, over other fields (its real claim with the metadata swapped).
            gw.alive(inc, "b", self.b.gossip, evil_meta, key=real["key"], sig=real["sig"]),
            # The old two-step: "b left" (so its name is free), then claim it.
            gw.dead(inc, "b", "b", sig=attacker.sign(b"x")),
            gw.alive(inc + 1, "b", f"127.0.0.1:{rogue.port}", evil_meta, signer=attacker),
        ]
        with Canary(self.a) as canary:
            for m in forged:
                gw.send_udp(self.a.gossip, gw.packet(m))
            gw.send_udp(self.a.gossip, gw.packet(*forged[:4]))
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                self.assertTrue(self.served_by_b(), "an inference through a was not served by b")
        canary.check()
        after = self.view("a", "b")
        self.assertEqual(rogue.accepted, 0, "a sent something to the attacker's address")
        for field in ("address", "api_address", "incarnation", "key", "state"):
            self.assertEqual(after[field], before[field], field)
        self.assertGreaterEqual(
            self.a.metric("hivemesh_gossip_claims_refused_total", reason="bad_signature"), 4)
        self.assertGreaterEqual(
            self.a.metric("hivemesh_gossip_claims_refused_total", reason="name_taken"), 1)

    def test_a_forged_death_does_not_evict_a_member(self):
        before = self.view("a", "b")
        # At the top of the incarnation range: before, b's refutation wrapped to 0 and lost.
        gw.send_udp(self.a.gossip, gw.packet(gw.dead(gw.U64_MAX, "b", "attacker")))
        gw.send_udp(self.a.gossip, gw.packet(gw.dead(gw.U32_MAX, "b", "attacker")))
        # b hears of it through gossip, refutes one step up, and is alive everywhere again.
        wait_for(lambda: (lambda v: v["state"] == "alive" and
                          v["incarnation"] > before["incarnation"])(self.view("a", "b")), 20,
                 "b to be alive again at a")
        after = self.view("a", "b")
        self.assertLessEqual(after["incarnation"], before["incarnation"] + 3)
        wait_for(self.served_by_b, 20, "a to forward identity to b again")

    def test_accusations_cannot_wrap_an_incarnation(self):
        before = self.view("b", "b")["incarnation"]
        for inc in (gw.U32_MAX, gw.U64_MAX, gw.U64_MAX - 1, 2**63):
            gw.send_udp(self.b.gossip, gw.packet(gw.suspect(inc, "b", "attacker"),
                                                 gw.dead(inc, "b", "attacker")))
        wait_for(lambda: self.b.metric("hivemesh_gossip_claims_refused_total",
                                       reason="accusation_ignored") >= 8, 10,
                 "b to count the accusations it ignored")
        self.assertEqual(self.view("b", "b")["incarnation"], before)
        # And a, told the same, never holds an incarnation of b that b did not sign.
        for inc in (gw.U32_MAX, gw.U64_MAX):
            gw.send_udp(self.a.gossip, gw.packet(gw.suspect(inc, "b", "attacker")))
        time.sleep(0.5)  # the packets are in flight; nothing is expected to change
        self.assertLessEqual(self.view("a", "b")["incarnation"], before + 2)

    def forged_members(self, count, prefix):
        # A key per hundred names (a name is bound to whichever key claims it first; making
        # 40,000 keys would only slow the test).
        meta = gw.node_meta("127.0.0.3:1")
        keys = [gw.Key() for _ in range(count // 100 + 1)]
        return [(f"{prefix}-{i:05d}", f"127.0.0.3:{10000 + i % 50000}", 0, meta, keys[i // 100])
                for i in range(count)]

    def test_a_flood_of_forged_members_is_bounded(self):
        rss_before = self.a.rss_mib()
        self.a.reset_peak_rss()
        with Canary(self.a) as canary:
            # 20,000 members over UDP, each correctly signed, 8 to a packet
            # (the kernel drops what the node does not read in time; that is the network's
            # bound, not the node's) ...
            udp = [gw.alive(inc, name, addr, meta, signer=k)
                   for name, addr, inc, meta, k in self.forged_members(20000, "udp")]
            for i in range(0, len(udp), 8):
                gw.send_udp(self.a.gossip, gw.packet(*udp[i:i + 8]), source=("127.0.0.2", 0))
            # ... and 20,000 more in one push-pull over TCP, all of which the node reads.
            gw.push_pull_over_tcp(
                self.a.gossip, gw.packet(gw.push_pull(self.forged_members(20000, "tcp"))),
                timeout=60)
            wait_for(lambda: self.a.metric("hivemesh_gossip_claims_refused_total",
                                           reason="table_full") > 0, 30,
                     "a to refuse members once its table is full")
        canary.check()
        members = self.a.members()
        peak_growth = self.a.peak_rss_mib() - rss_before
        print(f"flood: a holds {len(members)} members; peak RSS growth {peak_growth:.1f} MiB, "
              f"now {self.a.rss_mib() - rss_before:.1f} MiB over the start")
        self.assertEqual(len(members), 4096 + 1, "the table is full, and bounded")
        self.assertGreater(
            self.a.metric("hivemesh_gossip_claims_refused_total", reason="table_full"), 15000)
        self.assertLess(peak_growth, slack_mib(self.BINARY), "memory grew by more than 64 MiB "
                        "(scaled for ASan)")
        self.assertEqual(self.view("a", "b")["state"], "alive")
        self.assertTrue(self.served_by_b())


if __name__ == "__main__":
    run(GossipClaimsTest)
