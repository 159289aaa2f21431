#!/usr/bin/python3
"""Stale verdicts: a node that rejoins after a cut (or any node with an outdated view) spreads
suspicions and deaths of members that are fine. Until the accused refutes them (a gossip round
or two), the node that believed them had no host for the model.

Before: a node that was never faulted answered `404 ... not served by this node or any node of
the mesh` for 0.1-0.2 s for a model a healthy node served the whole time. Bound: traffic through
a node that hosts nothing, to the only host of `identity`, while the host is accused again and
again (suspect, then dead: once per incarnation, as a rejoining node spreads what it believed)
in UDP gossip: every request gets its
right answer. A suspect host stays a candidate (of last resort); while a dead one is refuted,
requests wait (held) for it to come back, within their deadline.
"""
import sys
import time
import unittest

from traffic import HERE, Node, Traffic, hostile, summary, wait_for  # noqa: F401

sys.path.insert(0, HERE.replace("resilience", "security"))
from gossip_wire import dead, packet, send_udp, suspect  # noqa: E402


class StaleVerdictsTest(unittest.TestCase):
    def setUp(self):
        self.b = Node(self.BINARY, "b")
        self.a = Node(self.BINARY, "a", models=(), args=["--join", self.b.gossip])
        self.nodes = [self.a, self.b]

    def tearDown(self):
        for n in self.nodes:
            n.stop()

    def incarnation(self, observer, name):
        for m in observer.members():
            if m["name"] == name:
                return m["incarnation"], m["state"]
        return None, None

    def accuse(self, make, times):
        """Accuses b to a `times` times, as a rejoining node spreads what it believed: once per
        incarnation of b (b refutes each with a higher one, which a learns). Returns how many
        accusations a believed (b not alive in its view right after)."""
        believed = 0
        for _ in range(times):
            inc, _ = self.incarnation(self.a, "b")
            send_udp(self.a.gossip, packet(make(inc)))
            time.sleep(0.01)
            believed += self.incarnation(self.a, "b")[1] != "alive"
            wait_for(lambda: self.incarnation(self.a, "b") == (inc + 1, "alive"), 30,
                     "b to refute the accusation")
            time.sleep(0.2)
        return believed

    def test_accusations_of_a_healthy_host_cost_no_request(self):
        wait_for(lambda: self.a.infer_identity()[0] == 200, 30, "a to reach b")
        with Traffic(self.a, threads=3, timeout_ms=3000, pause=0.005) as traffic:
            time.sleep(0.5)
            suspected = self.accuse(lambda inc: suspect(inc, "b", "c"), 10)
            died = self.accuse(lambda inc: dead(inc, "b", "c"), 10)
            time.sleep(0.5)
        results = traffic.snapshot()
        print(f"all: {summary(results)}")
        print(f"a saw b not alive {suspected} times while suspected, {died} while declared dead")
        print("a's routes:", self.a.request("GET", "/v1/mesh/routes")[1])
        self.assertGreater(suspected, 0, "the forged suspicions never took hold")
        self.assertGreater(died, 0, "the forged deaths never took hold")
        self.assertEqual([r for r in results if r[2] != 200], [], summary(results))
        self.assertEqual([r for r in results if not r[4]], [], "every answer is the input")


if __name__ == "__main__":
    hostile.run(StaleVerdictsTest)
