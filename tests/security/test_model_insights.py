#!/usr/bin/python3
"""Insights from models (docs/insights.md, "Insights from models"): a model's config.yaml
declares insight rules, and the node publishes what they find in the results it computes.

A real node serves `gauge` (the identity backend: its answer is its input, so the test decides
the results) with four rules: every result, a threshold (`OUTPUT0[1] > 0.5`), on change, and a
window of 1 s (mean, max, count). A subscriber on the node's event stream checks:

- each rule's insights: topics with {node}, {zone}, {model} filled in, the model's name and
  version, the values the rule names, and the trace id of the request they came from (the
  client's traceparent);
- the threshold publishes exactly the results over it; the change rule only changes; the window
  aggregates what it saw and publishes a count of 0 for windows without results;
- the inputs are never published (a rule can only name outputs: a rule naming an input fails
  the model's load, by name, like a rule with a bad field);
- a result a rule cannot read (OUTPUT0[5] of two values) is answered all the same, and counted in
  hivemesh_insights_rule_errors_total{model}; the node logs it once, not per request.

    test_model_insights.py path/to/hivemesh
"""
import http.client
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile import Node, binary_from_argv, wait_for  # noqa: E402
from test_insights import Subscriber  # noqa: E402

# The identity backend: the answer is the input, so the test decides the results.
IDENTITY = """\
backend: identity
inputs:
  - {name: INPUT0, datatype: FP32, shape: [-1]}
outputs:
  - {name: OUTPUT0, datatype: FP32, shape: [-1]}
insights:
"""

GAUGE = IDENTITY + """\
  - {topic: "site/{zone}/{node}/{model}", output: OUTPUT0}
  - {topic: "site/{zone}/alerts/{model}", output: OUTPUT0, when: "OUTPUT0[1] > 0.5"}
  - {topic: "site/{zone}/{node}/first", output: "OUTPUT0[0]", when: change}
  - topic: site/{zone}/{node}/window
    output: OUTPUT0[0]
    every: 1s
    aggregate: [mean, max, count]
"""

# A rule naming the model's input: the model does not load.
LEAKY = IDENTITY + """\
  - {topic: raw, output: INPUT0}
"""

# A rule that cannot read a result of two values.
PICKY = IDENTITY + """\
  - {topic: "picky/{node}", output: "OUTPUT0[5]"}
"""


class ModelInsightsTest(unittest.TestCase):
    BINARY = None

    @classmethod
    def setUpClass(cls):
        cls.repo = tempfile.mkdtemp(prefix="hivemesh-rules-repo-")
        for name, text in (("gauge", GAUGE), ("leaky", LEAKY), ("picky", PICKY)):
            os.makedirs(os.path.join(cls.repo, name, "1"))
            with open(os.path.join(cls.repo, name, "config.yaml"), "w") as f:
                f.write(text)
        cls.node = Node(cls.BINARY, "rules", models=None, repository=cls.repo,
                        args=["--labels", "zone=line1"])

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        shutil.rmtree(cls.repo, ignore_errors=True)

    def infer(self, model, values, trace=None):
        body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [len(values)],
                                       "datatype": "FP32", "data": values}]})
        headers = {"Content-Type": "application/json"}
        if trace:
            headers["traceparent"] = f"00-{trace}-{secrets.token_hex(8)}-01"
        conn = http.client.HTTPConnection("127.0.0.1", self.node.port, timeout=10)
        try:
            conn.request("POST", f"/v2/models/{model}/infer", body=body, headers=headers)
            r = conn.getresponse()
            return r.status, r.read().decode()
        finally:
            conn.close()

    def test_1_each_rule_publishes_what_it_declares_with_the_requests_trace(self):
        sub = Subscriber(self.node.port, "site/#")
        results = [[0, 0.1], [0, 0.9], [1, 0.2], [1, 0.7], [1, 0.6], [2, 0.0]]
        traces = []
        for values in results:
            trace = secrets.token_hex(16)
            traces.append(trace)
            status, body = self.infer("gauge", values, trace)
            self.assertEqual(status, 200, body)
        every = sub.events(len(results), topic="site/line1/rules/gauge")
        self.assertEqual([e["values"]["OUTPUT0"] for e in every], results)
        self.assertEqual([e["trace"] for e in every], traces)
        for e in every:
            self.assertEqual((e["node"], e["zone"], e["model"], e["version"]),
                             ("rules", "line1", "gauge", "1"))
        # The events of the other topics were read and left out above: subscribe again per topic.
        sub.close()

    def test_2_threshold_change_and_window(self):
        alerts = Subscriber(self.node.port, "site/line1/alerts/gauge")
        first = Subscriber(self.node.port, "site/line1/rules/first")
        window = Subscriber(self.node.port, "site/line1/rules/window")
        # Windows start on the clock's seconds: wait for one to close empty first.
        empty = window.events(1, seconds=5)
        self.assertEqual(len(empty), 1, "no window closed within 5 s")
        results = [[0, 0.1], [0, 0.9], [1, 0.2], [1, 0.7], [1, 0.6], [2, 0.0]]
        traces = []
        for values in results:
            traces.append(secrets.token_hex(16))
            self.assertEqual(self.infer("gauge", values, traces[-1])[0], 200)
        got = alerts.events(3, seconds=5)
        self.assertEqual([e["values"]["OUTPUT0"] for e in got],
                         [[0, 0.9], [1, 0.7], [1, 0.6]])
        self.assertEqual([e["trace"] for e in got], [traces[1], traces[3], traces[4]])
        self.assertEqual(alerts.events(1, seconds=0.5), [], "an alert for a result under 0.5")
        changes = first.events(3, seconds=5)
        self.assertEqual([e["values"]["OUTPUT0[0]"] for e in changes], [0, 1, 2])
        self.assertEqual(changes[0]["trace"], traces[0])
        self.assertEqual(first.events(1, seconds=0.5), [])
        # The six results fell in one or two windows (a second may turn between them): their
        # counts add up to six, the max is 2, and each carries the end of its window.
        seen, windows = 0, []
        deadline = time.monotonic() + 10
        while seen < len(results) and time.monotonic() < deadline:
            for e in window.events(1, seconds=2):
                self.assertEqual(e["values"]["output"], "OUTPUT0[0]")
                self.assertEqual(e["values"]["window_s"], 1)
                self.assertEqual(e["time_ms"] % 1000, 0, e)
                self.assertEqual(e["trace"], "")
                seen += e["values"]["count"]
                if e["values"]["count"]:
                    windows.append(e["values"])
        self.assertEqual(seen, len(results), windows)
        self.assertEqual(max(w["max"] for w in windows), 2)
        self.assertAlmostEqual(sum(w["mean"] * w["count"] for w in windows), 5.0)
        # Then windows without results: a count of 0, no mean.
        quiet = window.events(1, seconds=3)
        self.assertEqual(quiet[0]["values"], {"output": "OUTPUT0[0]", "window_s": 1, "count": 0})
        for s in (alerts, first, window):
            s.close()

    def test_3_a_rule_naming_an_input_fails_the_models_load_by_name(self):
        status, text = self.node.request("POST", "/v2/repository/index")
        self.assertEqual(status, 200, text)
        leaky = [m for m in json.loads(text) if m["name"] == "leaky"]
        self.assertEqual(len(leaky), 1, text)
        self.assertNotEqual(leaky[0].get("state"), "READY")
        self.assertIn("insights[0].output: 'INPUT0' is not an output of this model (OUTPUT0)",
                      leaky[0].get("reason", ""))
        status, _ = self.infer("leaky", [1.0])
        self.assertNotEqual(status, 200)

    def test_4_a_rule_that_cannot_read_a_result_is_counted_and_the_request_answered(self):
        sub = Subscriber(self.node.port, "picky/#")
        before = self.node.metric("hivemesh_insights_rule_errors_total", model="picky")
        for _ in range(50):
            status, body = self.infer("picky", [1.0, 2.0])
            self.assertEqual(status, 200, body)
        wait_for(lambda: self.node.metric("hivemesh_insights_rule_errors_total",
                                          model="picky") == before + 50,
                 10, "50 rule errors counted")
        self.assertEqual(sub.events(1, seconds=0.5), [])
        # Six values: the rule reads OUTPUT0[5].
        self.assertEqual(self.infer("picky", [0, 1, 2, 3, 4, 5.5])[0], 200)
        got = sub.events(1, seconds=5)
        self.assertEqual(got[0]["values"], {"OUTPUT0[5]": 5.5})
        self.assertEqual(got[0]["topic"], "picky/rules")
        told = self.node.log_lines(r"model picky: insight rules failed")
        self.assertEqual(len(told), 1, told)
        self.assertIn("OUTPUT0[5]: output OUTPUT0 has 2 values in this result", told[0])
        sub.close()


if __name__ == "__main__":
    ModelInsightsTest.BINARY = binary_from_argv()
    unittest.main(argv=sys.argv[:1], verbosity=2)
