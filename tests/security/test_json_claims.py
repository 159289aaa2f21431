#!/usr/bin/python3
"""Tensors whose claimed shape is far larger than the data sent.

A 60 MB JSON body claiming FP64 [30000000] with a single value made the node allocate the whole
claimed tensor (240 MB) before counting the values: it peaked at 357 MB to answer a 400. The
same holds for every datatype and for nested arrays. And a body whose values do match a large
claim is a lot of memory too: the JSON parser's own structures for a dense array of small
numbers are several times the body.

Bound: a claim the data does not hold is refused with a 400 that says how many elements the shape
needs and how many the data has, without allocating for the claim; memory for what is decoded
(and for parsing it) comes from the node's budget. The node's peak resident memory stays within
its budget plus 64 MiB of its idle size, comes back afterwards, and normal inferences keep being
answered throughout.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
import payloads  # noqa: E402
from hostile import Node  # noqa: E402

import unittest  # noqa: E402

BUDGET_MIB = 192
BODY = 60 << 20  # bytes: within max_body_bytes (64 MiB), as the attack sent


def padded(doc, size=BODY):
    """`doc` as JSON followed by whitespace making the body `size` bytes long (a body large
    enough for its claim to pass the check against the body's size)."""
    text = json.dumps(doc).encode()
    return text + b" " * (size - len(text))


def padded_with_string(doc, size=BODY):
    """`doc` as JSON with a member the node ignores ("pad") making the body `size` bytes long."""
    doc = dict(doc, pad="")
    text = json.dumps(doc)
    doc["pad"] = "x" * (size - len(text))
    return json.dumps(doc).encode()


def claim(datatype, shape, data):
    return {"inputs": [{"name": "INPUT0", "datatype": datatype, "shape": shape, "data": data}]}


class JsonClaimTest(unittest.TestCase):
    BINARY = None

    def setUp(self):
        # A node of its own for each attack, so that one does not hide what the next takes.
        self.node = Node(self.BINARY, "claims", args=["--memory-budget-mb", str(BUDGET_MIB)])

    def tearDown(self):
        self.node.stop()

    def attack(self, name, body, expect_status, expect_text, headers=None):
        node = self.node
        # Decoding a body of 60 MB is work on the I/O thread that read it: on a loaded machine
        # the canary's requests behind it wait, so they get a minute.
        answer, watch = payloads.attack_within_budget(
            self, node, f"{name} ({len(body)} bytes)",
            lambda: payloads.infer(node, "identity", body, headers), BUDGET_MIB,
            canary_timeout=60)
        self.assertIn(answer.status, expect_status, f"{name}: {answer}")
        self.assertIn(expect_text, answer.error(), f"{name}: {answer}")
        watch.settles(slack_mib=48)
        return answer

    def test_fp64_claim_with_one_value(self):
        body = padded(claim("FP64", [30_000_000], [1.5]))
        self.attack("FP64 [30000000] with one value", body, {400},
                    "needs 30000000 elements but data has 1")

    def test_fp64_claim_with_one_value_and_a_long_string(self):
        # The same claim, the body made long by a 60 MB string: parsing it takes memory of its
        # own (a copy of the text, the string), more than this node lets one request hold
        # besides its body; refused either way, before anything is made for the claim.
        body = padded_with_string(claim("FP64", [30_000_000], [1.5]))
        self.attack("FP64 [30000000] with one value and a 60 MB string", body, {400},
                    "memory_budget_mb")

    def test_every_fixed_datatype(self):
        # 16 MiB bodies: a claim of 6 M elements is within what their size allows.
        for datatype in ("BOOL", "UINT8", "INT16", "UINT32", "INT64", "FP16", "FP32", "FP64"):
            value = True if datatype == "BOOL" else 1
            body = padded(claim(datatype, [6_000_000], [value]), size=16 << 20)
            self.attack(f"{datatype} [6000000] with one value", body, {400},
                        "needs 6000000 elements but data has 1")

    def test_nested_claim(self):
        body = padded(claim("FP64", [3, 10_000_000], [[1.0], [2.0], [3.0]]))
        self.attack("FP64 [3,10000000] nested, three values", body, {400},
                    "needs 30000000 elements but data has 3")

    def test_bytes_claim(self):
        body = padded(claim("BYTES", [30_000_000], ["a"]))
        self.attack("BYTES [30000000] with one string", body, {400},
                    "needs 30000000 elements but data has 1")

    def test_more_values_than_claimed(self):
        # 3 M values for a claim of 2: refused when the data runs past the shape.
        values = "[" + ",".join(["0"] * 3_000_000) + "]"
        body = ('{"inputs":[{"name":"INPUT0","datatype":"FP64","shape":[2],"data":' + values +
                '}]}').encode()
        self.attack("FP64 [2] with 3000000 values", body, {400}, "data has more")

    def test_dense_values_that_match(self):
        # A valid request: 30 M one-digit FP32 values (60 MB of JSON). Its tensor is 114 MiB and
        # the parser's structures for so many numbers several times that: more than this node's
        # budget holds, so it is refused (and says to send binary data), never attempted.
        values = "[" + ",".join(["0"] * 30_000_000) + "]"
        body = ('{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[30000000],"data":' +
                values + '}]}').encode()
        self.attack("FP64 [30000000] dense, matching", body, {400, 503}, "binary")

    def test_binary_extension_claim(self):
        # The binary extension: the shape claims 30 M elements, binary_data_size gives 8 bytes.
        head = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP64",
                                       "shape": [30_000_000],
                                       "parameters": {"binary_data_size": 8}}]}).encode()
        body = head + b"\x00" * 8
        headers = {"Content-Type": "application/octet-stream",
                   "Inference-Header-Content-Length": str(len(head))}
        self.attack("binary FP64 [30000000] with 8 bytes", body, {400}, "30000000", headers)


if __name__ == "__main__":
    hostile.run(JsonClaimTest)
