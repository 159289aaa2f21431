#!/usr/bin/python3
"""A transient view is not a permanent answer (the other half is test_stale_verdicts.py).

Bound: a node that hosts nothing is restarted (kill -9, then started again) three times beside a
host of `identity`; from the moment it serves HTTP, requests through it get no 404: they are
held until the host appears in its view (200), or answered 503 with Retry-After. And a model no
member ever announced is still 404 once the view has settled, without a hold.
"""
import http.client
import json
import time
import unittest

from traffic import Node, hostile, wait_for

BODY = json.dumps({"inputs": [{"name": "INPUT0", "shape": [2], "datatype": "FP32",
                               "data": [1.5, -2.0]}]})


def infer(port, model="identity"):
    """(status, Retry-After header, body) of one inference on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", f"/v2/models/{model}/infer", body=BODY,
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.getheader("Retry-After"), r.read().decode(errors="replace")
    finally:
        conn.close()


class TransientViewTest(unittest.TestCase):
    def setUp(self):
        self.b = Node(self.BINARY, "b")
        self.a = None

    def tearDown(self):
        for n in (self.a, self.b):
            if n is not None:
                n.stop()

    def test_a_restarted_node_holds_requests_until_it_sees_the_host(self):
        answers = []
        for round_ in range(3):
            if self.a is not None:
                self.a.proc.kill()
                self.a.proc.wait()
                self.a.stop()
            self.a = Node(self.BINARY, "a", models=(), args=["--join", self.b.gossip])
            # From the first moment it serves: no pause, each request on a new connection.
            end = time.monotonic() + 1.5
            mine = []
            while time.monotonic() < end:
                mine.append(infer(self.a.port))
            print(f"round {round_}: {len(mine)} requests, statuses "
                  f"{sorted(set(s for s, _, _ in mine))}, first {mine[0][0]}")
            answers += mine
        not_found = [a for a in answers if a[0] == 404]
        self.assertEqual(not_found, [], "404 for a model the mesh serves")
        for status, retry_after, body in answers:
            self.assertIn(status, (200, 503), body)
            if status == 503:
                self.assertEqual(retry_after, "1", body)
        self.assertEqual(answers[-1][0], 200)
        self.assertGreater(sum(1 for a in answers if a[0] == 200), len(answers) // 2)

    def test_a_model_no_member_announced_is_404_once_the_view_settles(self):
        self.a = Node(self.BINARY, "a", models=(), args=["--join", self.b.gossip])
        wait_for(lambda: infer(self.a.port)[0] == 200, 30, "a to reach b's identity")
        # While settling, 503 (with Retry-After); then, and for good, 404.
        wait_for(lambda: infer(self.a.port, "nowhere")[0] == 404, 30, "404 for an unknown model")
        held = self.routes()["held"]
        status, _, body = infer(self.a.port, "nowhere")
        self.assertEqual(status, 404, body)
        self.assertIn("not served by this node or any node of the mesh", body)
        self.assertEqual(self.routes()["held"], held, "answered without a hold")

    def routes(self):
        status, text = self.a.request("GET", "/v1/mesh/routes")
        self.assertEqual(status, 200, text)
        return json.loads(text)


if __name__ == "__main__":
    hostile.run(TransientViewTest)
