#!/usr/bin/python3
"""Label values chosen by clients.

hivemesh_inference_requests_total and the duration histogram had the requested model name as a
label: 300 requests for made-up model names of 60 KB each made /metrics 361 MB, and once the
family's 1000 label sets were used up, the node's real model was counted under `_overflow`.

Bound: a request for a model that neither this node nor the mesh serves is counted under
model="_unknown" and makes no series of its own; every label value is bounded in length; the
node's own models keep their own series. After a flood over REST and gRPC, /metrics stays under
1 MiB, the real model's series goes on counting, and normal inferences are answered throughout.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
import payloads  # noqa: E402
from grpc_stubs import grpc, pb, stub_for  # noqa: E402
from hostile import Canary, Node  # noqa: E402

import concurrent.futures  # noqa: E402
import unittest  # noqa: E402

NAMES = 320
NAME_BYTES = 60 * 1024


def made_up(i, tag, size=NAME_BYTES):
    prefix = f"{tag}-{i:04d}-"
    return prefix + "m" * (size - len(prefix))


def identity_success(node):
    return node.metric("hivemesh_inference_requests_total", model="identity", route="local",
                       outcome="success")


class MetricLabelTest(unittest.TestCase):
    BINARY = None

    @classmethod
    def setUpClass(cls):
        cls.node = Node(cls.BINARY, "labels", grpc=True)
        cls.channel, cls.stub = stub_for(cls.node.grpc_port)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.node.stop()

    def rest_flood(self, tag, size=NAME_BYTES):
        body = b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1],"data":[1]}]}'

        def one(i):
            request = (f"POST /v2/models/{made_up(i, tag, size)}/infer HTTP/1.1\r\nHost: x\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                       f"Connection: close\r\n\r\n").encode() + body
            status, _ = hostile.raw_http(self.node.port, request)
            return status
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return sorted(set(pool.map(one, range(NAMES))))

    def grpc_flood(self, tag):
        def one(i):
            request = pb.ModelInferRequest(model_name=made_up(i, tag), inputs=[
                pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32", shape=[1])])
            request.inputs[0].contents.fp32_contents.append(1)
            try:
                self.stub.ModelInfer(request, timeout=30)
                return "OK"
            except grpc.RpcError as e:
                return e.code().name
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return sorted(set(pool.map(one, range(NAMES))))

    def test_made_up_model_names(self):
        node = self.node
        self.assertEqual(node.infer_identity()[0], 200)
        before = identity_success(node)
        self.assertGreaterEqual(before, 1)
        with Canary(node) as canary:
            rest = self.rest_flood("rest")
            # Names of a length a real model may have, each made up: none served anywhere.
            rest_short = self.rest_flood("short", size=120)
            grpc_codes = self.grpc_flood("grpc")
            payloads.keep_canary_until(canary, 3)
        print(f"REST flood statuses {rest} (60 KB names), {rest_short} (120-byte names), "
              f"gRPC flood codes {grpc_codes}", flush=True)
        canary.check()
        self.assertTrue(node.alive())
        self.assertNotIn(200, rest)
        self.assertEqual(rest_short, [404])
        self.assertNotIn("OK", grpc_codes)

        status, text = node.request("GET", "/metrics")
        self.assertEqual(status, 200)
        size = len(text.encode())
        print(f"/metrics after the flood: {size} bytes", flush=True)
        self.assertLess(size, 1 << 20, "/metrics grew with the made-up names")
        self.assertNotIn("m" * 1024, text, "a made-up name became a label value")
        metrics = hostile.parse_metrics(text)
        unknown = sum(v for (n, ls), v in metrics.items()
                      if n == "hivemesh_inference_requests_total" and
                      dict(ls).get("model") == "_unknown")
        print(f"counted under model=\"_unknown\": {unknown:.0f}")
        self.assertGreaterEqual(unknown, NAMES)
        longest = max((len(v) for (n, ls), _ in metrics.items() for _, v in ls), default=0)
        print(f"longest label value: {longest} bytes", flush=True)
        self.assertLessEqual(longest, 128, "a label value longer than label values may be")

        # The real model still has its own series, and it goes on counting.
        after_flood = identity_success(node)
        self.assertGreater(after_flood, before)
        for _ in range(5):
            self.assertEqual(node.infer_identity()[0], 200)
        self.assertEqual(identity_success(node), after_flood + 5)
        self.assertEqual(node.metric("hivemesh_inference_requests_total", model="_overflow"), 0)


if __name__ == "__main__":
    hostile.run(MetricLabelTest)
