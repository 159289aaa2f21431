#!/usr/bin/python3
"""A draining node and its own keep-alive clients.

Before: when a node drained (SIGTERM), requests its clients had already written on open
keep-alive connections got 503 "shutting down" or a broken connection. Bound: a client sending
back to back on keep-alive connections to a node that drains loses nothing: every request it
wrote is answered 200 with its own values; once the node stops listening, the client's new
connections go to another node.
"""
import signal
import time
import unittest

from traffic import Node, Traffic, hostile, summary, wait_for


class DrainKeepAliveTest(unittest.TestCase):
    def setUp(self):
        self.b = Node(self.BINARY, "b")
        self.c = Node(self.BINARY, "c", args=["--join", self.b.gossip])
        self.nodes = [self.b, self.c]
        wait_for(lambda: len([m for m in self.c.members() if m["state"] == "alive"]) == 2, 60,
                 "c to see b")

    def tearDown(self):
        for n in self.nodes:
            n.stop()

    def test_keep_alive_clients_of_a_draining_node_lose_nothing(self):
        with Traffic(self.b, threads=4, timeout_ms=5000, pause=0.005,
                     fallback=self.c) as traffic:
            time.sleep(1.0)
            self.b.proc.send_signal(signal.SIGTERM)
            self.b.proc.wait(timeout=60)
            time.sleep(1.0)
        results = traffic.snapshot()
        print(f"{summary(results)}; {traffic.refused} connections refused after b stopped")
        self.assertGreater(len(results), 50)
        self.assertEqual(self.b.proc.returncode, 0, "b drained cleanly")
        self.assertEqual([r for r in results if r[2] != 200], [], summary(results))
        self.assertEqual([r for r in results if not r[4]], [], "every answer is the input")
        # The clients moved to c once b stopped listening.
        self.assertGreater(sum(1 for r in results if r[3] == "c"), 0)


if __name__ == "__main__":
    hostile.run(DrainKeepAliveTest)
