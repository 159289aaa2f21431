#!/usr/bin/python3
"""A restarted peer gets traffic as soon as it is alive and ready.

Before: after kill -9 and a restart on the same addresses, other nodes sent the restarted node
forwarded work only 15-23 s later (in some runs not within 25 s), though every view showed it
alive within 0.5 s: the refused connections while it was down had ejected it for 30 s and more.
Bound: traffic through a node that hosts nothing, to two hosts; one is killed (kill -9) and
started again on the same ports 3 s later. No request fails, every answer is right, and the
restarted host serves forwarded requests again within 10 s of serving (today: about a second:
a refused connection ejects for 1 s, and the new incarnation clears what was learnt of it).
"""
import time
import unittest

from traffic import Node, Traffic, hostile, summary, wait_for


class RestartedPeerTest(unittest.TestCase):
    def setUp(self):
        self.b = Node(self.BINARY, "b")
        self.c = Node(self.BINARY, "c", args=["--join", self.b.gossip])
        self.a = Node(self.BINARY, "a", models=(), args=["--join", self.b.gossip])
        self.nodes = [self.a, self.b, self.c]

    def tearDown(self):
        for n in self.nodes:
            n.stop()

    def test_a_restarted_host_is_used_again_within_seconds(self):
        wait_for(lambda: self.a.infer_identity()[0] == 200 and
                 self.a.metric("hivemesh_forward_attempts_total", peer="b") > 0 and
                 self.a.metric("hivemesh_forward_attempts_total", peer="c") > 0, 60,
                 "a to forward to both hosts")
        c_port, c_gossip = self.c.port, self.c.gossip
        with Traffic(self.a, threads=3, timeout_ms=2000, pause=0.01) as traffic:
            time.sleep(1.0)
            self.c.proc.kill()
            self.c.proc.wait()
            killed_at = time.monotonic()
            time.sleep(3.0)
            self.c.stop()
            self.c = Node(self.BINARY, "c",
                          args=["--http-address", f"127.0.0.1:{c_port}",
                                "--gossip-address", c_gossip, "--join", self.b.gossip])
            self.nodes[2] = self.c
            self.assertEqual(self.c.port, c_port)
            serving_at = time.monotonic()

            def c_served_again():
                return any(r[0] > serving_at and r[2] == 200 and r[3] == "c"
                           for r in traffic.snapshot())
            wait_for(c_served_again, 60, "the restarted c to serve forwarded work")
            back_after = time.monotonic() - serving_at
            time.sleep(0.5)
        results = traffic.snapshot()
        print(f"all: {summary(results)}")
        print(f"c served forwarded work again {back_after:.2f} s after it served HTTP "
              f"(killed {serving_at - killed_at:.1f} s before that)")
        print("a's routes:", self.a.request("GET", "/v1/mesh/routes")[1])
        self.assertEqual([r for r in results if r[2] != 200], [], summary(results))
        self.assertEqual([r for r in results if not r[4]], [], "every answer is the input")
        self.assertLess(back_after, 10.0, "the restarted host came back too slowly")


if __name__ == "__main__":
    hostile.run(RestartedPeerTest)
