#!/usr/bin/python3
"""Timeouts at the edges of the integers.

A REST timeout of INT64_MAX ms was answered 504 "deadline passed": the deadline (now + the
timeout, in nanoseconds) overflowed and lay in the past; gRPC the same.

Bound: every number a client gives as a time (REST parameters.timeout and the
Inference-Timeout-Ms header, gRPC's "timeout" parameter and its call deadline) goes through one
rule: not a positive integer -> 400 (gRPC: INVALID_ARGUMENT) naming the field; more than the
longest timeout (24 h) -> 24 h. So each request below is a clear 400 or a success, never a 504,
never a 500, on the node that serves and on a node that forwards.
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
import payloads  # noqa: E402
from grpc_stubs import grpc, pb, stub_for  # noqa: E402
from hostile import Canary, Node, wait_for  # noqa: E402

import unittest  # noqa: E402

INT64_MAX = 2**63 - 1

# (text of the JSON value, expected status)
BODY_TIMEOUTS = [
    (str(INT64_MAX), 200),
    (str(INT64_MAX - 1), 200),
    (str(2**53), 200),
    (str(2**53 + 1), 200),
    (str(2**62), 200),
    (str(86_400_000), 200),
    (str(86_400_001), 200),
    ("5000", 200),
    (str(2**63), 200),   # beyond int64, within uint64
    (str(2**64 - 1), 200),
    (str(2**64), 400),   # beyond uint64: refused by the JSON parser ("...parsing a number")
    ("-1", 400),
    ("0", 400),
    (str(-2**63), 400),
    ("1e30", 400),
    ("9.223372036854776e18", 400),
    ("1.5", 400),
    ('"5000"', 400),
    ('"9223372036854775807"', 400),
    ("null", 400),
    ("true", 400),
]

HEADER_TIMEOUTS = [
    (str(INT64_MAX), 200),
    (str(INT64_MAX - 1), 200),
    (str(2**53), 200),
    (str(2**64 - 1), 200),
    ("86400001", 200),
    ("5000", 200),
    ("99999999999999999999999999", 400),
    ("-1", 400),
    ("0", 400),
    ("1e9", 400),
    ("1.5", 400),
    ("", 400),
]


def identity_body(timeout_text=None):
    params = f',"parameters":{{"timeout":{timeout_text}}}' if timeout_text is not None else ""
    return ('{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[2],"data":[1,2]}]' + params +
            "}").encode()


class DeadlineTest(unittest.TestCase):
    BINARY = None

    @classmethod
    def setUpClass(cls):
        cls.node = Node(cls.BINARY, "deadlines", grpc=True)
        cls.channel, cls.stub = stub_for(cls.node.grpc_port)
        # A node without the model: it forwards to the one above, carrying the deadline on.
        cls.front = Node(cls.BINARY, "front", models=("vibration-anomaly",),
                         args=["--join", cls.node.gossip], grpc=True)
        cls.front_channel, cls.front_stub = stub_for(cls.front.grpc_port)
        wait_for(lambda: any(m["name"] == "deadlines" and m["state"] == "alive"
                             for m in cls.front.members()), 30, "front to see the node")

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.front_channel.close()
        cls.front.stop()
        cls.node.stop()

    def check_rest(self, node, served_by):
        failures = []
        with Canary(self.node) as canary:
            for text, want in BODY_TIMEOUTS:
                a = payloads.infer(node, "identity", identity_body(text))
                says = "number" if text == str(2**64) else "timeout"
                if a.status != want or (want == 400 and says not in a.error()):
                    failures.append(f"parameters.timeout {text}: {a}")
                elif want == 200 and a.json()["parameters"]["served_by"] != served_by:
                    failures.append(f"parameters.timeout {text}: served by {a.json()}")
            for text, want in HEADER_TIMEOUTS:
                a = payloads.infer(node, "identity", identity_body(),
                                   {"Content-Type": "application/json",
                                    "Inference-Timeout-Ms": text})
                if a.status != want or (want == 400 and "Inference-Timeout-Ms" not in a.error()):
                    failures.append(f"Inference-Timeout-Ms {text!r}: {a}")
            payloads.keep_canary_until(canary, 3)
        self.assertEqual(failures, [], "\n".join(failures))
        canary.check()

    def test_rest_on_the_serving_node(self):
        self.check_rest(self.node, "deadlines")

    def test_rest_through_a_forwarding_node(self):
        wait_for(lambda: payloads.infer(self.front, "identity", identity_body()).status == 200,
                 30, "front to route identity")
        self.check_rest(self.front, "deadlines")

    def grpc_request(self, parameter=None):
        request = pb.ModelInferRequest(model_name="identity", inputs=[
            pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32", shape=[2])])
        request.raw_input_contents.append(struct.pack("<2f", 1, 2))
        if parameter is not None:
            kind, value = parameter
            setattr(request.parameters["timeout"], kind, value)
        return request

    def check_grpc(self, stub, served_by):
        failures = []
        cases = [(("int64_param", v), "OK") for v in (INT64_MAX, INT64_MAX - 1, 2**53, 2**40,
                                                      86_400_001, 5000)]
        cases += [(("int64_param", v), "INVALID_ARGUMENT") for v in (-1, 0, -2**63)]
        cases += [(("uint64_param", v), "OK") for v in (2**64 - 1, 2**63, 5000)]
        cases += [(("uint64_param", 0), "INVALID_ARGUMENT"),
                  (("double_param", 1e30), "INVALID_ARGUMENT"),
                  (("double_param", 5000.0), "INVALID_ARGUMENT"),
                  (("string_param", str(INT64_MAX)), "INVALID_ARGUMENT"),
                  (("bool_param", True), "INVALID_ARGUMENT")]
        # Call deadlines far in the future (the client encodes them as grpc-timeout).
        call_timeouts = [1e9, 1e7, 86_400.0 * 365 * 100]
        with Canary(self.node) as canary:
            for parameter, want in cases:
                try:
                    r = stub.ModelInfer(self.grpc_request(parameter), timeout=30)
                    got = "OK" if r.parameters["served_by"].string_param == served_by else \
                        f"OK served by {r.parameters['served_by']}"
                except grpc.RpcError as e:
                    got = f"{e.code().name}: {e.details()}"
                if not got.startswith(want) or (want != "OK" and "timeout" not in got):
                    failures.append(f"parameters.timeout {parameter}: {got}")
            for seconds in call_timeouts:
                try:
                    stub.ModelInfer(self.grpc_request(), timeout=seconds)
                except grpc.RpcError as e:
                    failures.append(f"call timeout {seconds} s: {e.code().name}: {e.details()}")
            payloads.keep_canary_until(canary, 3)
        self.assertEqual(failures, [], "\n".join(failures))
        canary.check()

    def test_grpc_on_the_serving_node(self):
        self.check_grpc(self.stub, "deadlines")

    def test_grpc_through_a_forwarding_node(self):
        self.check_grpc(self.front_stub, "deadlines")


if __name__ == "__main__":
    hostile.run(DeadlineTest)
