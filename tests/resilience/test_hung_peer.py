#!/usr/bin/python3
"""A hung peer: it accepted the connection and never answers (SIGSTOP), while the mesh still
holds it alive until gossip suspects it.

Before: requests forwarded to it in that time waited for their whole deadline and got 504; it was
never ejected. Bound: with a 1 s deadline on every request, traffic through a node that hosts
nothing, to two hosts of which one is stopped for 6 s, gets every answer right and in time (no
failure at all), the late tries are hedged to the other host, and the stopped host serves again
once it is continued.
"""
import os
import signal
import time
import unittest

from traffic import Node, Traffic, hostile, summary, wait_for


class HungPeerTest(unittest.TestCase):
    def setUp(self):
        self.b = Node(self.BINARY, "b")
        self.c = Node(self.BINARY, "c", args=["--join", self.b.gossip])
        self.a = Node(self.BINARY, "a", models=(), args=["--join", self.b.gossip])
        self.nodes = [self.a, self.b, self.c]

    def tearDown(self):
        os.kill(self.b.pid, signal.SIGCONT)
        for n in self.nodes:
            n.stop()

    def served_by(self, results, node):
        return sum(1 for r in results if r[2] == 200 and r[3] == node)

    def test_a_stopped_host_holds_no_request(self):
        # a routes to both hosts first: it has a link to each.
        wait_for(lambda: all(self.a.infer_identity()[0] == 200 for _ in range(5)) and
                 self.a.metric("hivemesh_forward_attempts_total", peer="b") > 0 and
                 self.a.metric("hivemesh_forward_attempts_total", peer="c") > 0, 60,
                 "a to forward to both hosts")
        with Traffic(self.a, threads=4, timeout_ms=1000, pause=0.01) as traffic:
            time.sleep(1.0)
            stopped_at = time.monotonic()
            os.kill(self.b.pid, signal.SIGSTOP)
            time.sleep(6.0)
            os.kill(self.b.pid, signal.SIGCONT)
            continued_at = time.monotonic()
            # b serves again: its answers come back through a.
            wait_for(lambda: self.served_by(
                [r for r in traffic.snapshot() if r[0] > continued_at], "b") > 0, 60,
                "b to serve again after SIGCONT")
        results = traffic.snapshot()
        during = [r for r in results if stopped_at <= r[0] < continued_at]
        print(f"all: {summary(results)}")
        print(f"while b was stopped: {summary(during)}")
        before = [r for r in results if r[0] < stopped_at]
        print("served before the stop: b", self.served_by(before, "b"), "c",
              self.served_by(before, "c"), "; while stopped: b", self.served_by(during, "b"),
              "c", self.served_by(during, "c"))
        print("a's routes:", self.a.request("GET", "/v1/mesh/routes")[1])
        self.assertGreater(len(during), 20, "traffic kept flowing while b was stopped")
        self.assertEqual([r for r in results if r[2] != 200], [], summary(results))
        self.assertEqual([r for r in results if not r[4]], [], "every answer is the input")
        # The requests a had sent to b were answered by c instead.
        self.assertGreater(self.a.metric("hivemesh_forward_hedges_total"), 0)
        self.assertGreater(self.a.metric("hivemesh_forward_late_total", peer="b"), 0)


if __name__ == "__main__":
    hostile.run(HungPeerTest)
