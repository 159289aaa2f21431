#!/usr/bin/python3
"""KServe v2 workloads (docs/services.md, "KServe v2 workloads"), on three real nodes: `east-a`
and `east-b` labelled zone=east, `west` labelled zone=west, each with REST and gRPC and no model
of its own. A Deployment runs tests/services/kserve_server.py (a KServe v2 server written from
the protocol, not hivemesh) on one east node; it is not annotated, so the node finds out from the
protocol that it is one.

- its two models join the mesh's model table: inferable from every node over REST and gRPC,
  answered by the server (its values), with the node that ran it named;
- a request the server refuses comes back as 400 with the server's message, from every node,
  and one that breaks the model's metadata is refused by the node;
- the server killed: started again, and its models serve again;
- deleted: its models leave every node (no node serves them), its process is reaped;
- a Deployment annotated hivemesh.io/kserve that does not speak the protocol is logged, and the
  nodes serve on;
- a hostile KServe v2 server (metadata that is not JSON or names another model, answers that are
  not JSON, a 2 MiB index) costs only its own models, each refused with why.

    test_kserve_workloads.py path/to/hivemesh
"""
import json
import os
import re
import subprocess
import unittest

from grpc_stubs import pb, stub_for
from hostile import Node, binary_from_argv, wait_for
from test_workloads import deployment, free_port, pid_alive

SERVER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "services",
                      "kserve_server.py")


def kserve_deployment(name, command, port, annotations=()):
    return deployment(name, command, ports=[port], annotations=annotations)


def rest_infer(node, model, tensor):
    status, text = node.request("POST", f"/v2/models/{model}/infer",
                                json.dumps({"inputs": [tensor]}))
    try:
        return status, json.loads(text)
    except ValueError:
        return status, {"text": text}


def doubled(node):
    status, body = rest_infer(node, "doubler",
                              {"name": "INPUT0", "datatype": "FP32", "shape": [3],
                               "data": [1.5, -2, 1e-3]})
    if status != 200:
        return status, body, None
    return status, body["outputs"][0]["data"], body.get("parameters", {}).get("served_by")


class KserveWorkloadsTest(unittest.TestCase):
    BINARY = None

    @classmethod
    def setUpClass(cls):
        cls.nodes = {}
        cls.nodes["east-a"] = Node(cls.BINARY, "east-a", models=(), grpc=True,
                                   args=["--labels", "zone=east"])
        seed = cls.nodes["east-a"].gossip
        for name, zone in (("east-b", "east"), ("west", "west")):
            cls.nodes[name] = Node(cls.BINARY, name, models=(), grpc=True,
                                   args=["--labels", f"zone={zone}", "--join", seed])
        wait_for(lambda: all(len([m for m in n.members() if m["state"] == "alive"]) == 3
                             for n in cls.nodes.values()), 30, "three members")

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes.values():
            n.stop()

    def cli(self, *args, at="west", stdin=None):
        out = subprocess.run([self.BINARY, *args, "--node", f"127.0.0.1:{self.nodes[at].port}"],
                             input=stdin, capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout

    def host_of(self, workload):
        hosts = [name for name, n in self.nodes.items()
                 if n.log_lines(rf"workload {workload} is placed on this node")]
        self.assertEqual(len(hosts), 1, hosts)
        return hosts[0]

    def pids(self, node, workload):
        return [int(p) for p in re.findall(rf"workload {workload} started \(pid (\d+)\)",
                                           self.nodes[node].text())]

    def test_1_models_inferable_everywhere_restarted_and_deleted(self):
        port = free_port()
        self.cli("apply", "-f", "-",
                 stdin=kserve_deployment("kserve-demo", ["/usr/bin/python3", SERVER, str(port),
                                                  "kserve-demo"], port))
        for n in self.nodes.values():
            wait_for(lambda: doubled(n)[0] == 200, 60, f"doubler inferable at {n.name}")
        host = self.host_of("kserve-demo")
        self.assertTrue(self.nodes[host].log_lines(
            rf"workload kserve-demo serves model doubler \(KServe v2 at 127.0.0.1:{port}\)"))
        for n in self.nodes.values():
            status, data, served_by = doubled(n)
            self.assertEqual(data, [3.0, -4.0, 0.002], n.name)
            self.assertEqual(served_by, host, n.name)
            status, body = rest_infer(n, "counter", {"name": "TEXT", "datatype": "BYTES",
                                                     "shape": [2], "data": ["héllo", ""]})
            self.assertEqual(status, 200, body)
            self.assertEqual(body["outputs"][0]["data"], [6, 0])
            self.assertEqual(body["outputs"][0]["datatype"], "INT64")
            # gRPC: the same model, through the node's gRPC front end.
            channel, stub = stub_for(n.grpc_port)
            try:
                request = pb.ModelInferRequest(model_name="doubler", inputs=[
                    pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32",
                                                          shape=[2])])
                request.inputs[0].contents.fp32_contents.extend([4.0, 0.25])
                answer = stub.ModelInfer(request, timeout=30)
                self.assertEqual(list(answer.outputs[0].contents.fp32_contents), [8.0, 0.5])
                self.assertEqual(answer.parameters["served_by"].string_param, host)
                if n.name == host:  # metadata is answered where the model is
                    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="counter"), timeout=30)
                    self.assertEqual([(t.name, t.datatype) for t in meta.inputs],
                                     [("TEXT", "BYTES")])
                    self.assertEqual(meta.platform, "python")
            finally:
                channel.close()
        # A request the server refuses (an empty input): 400 with its message, wherever it came
        # in; one that breaks the model's metadata is refused by the node before it is sent.
        for n in self.nodes.values():
            status, body = rest_infer(n, "doubler", {"name": "INPUT0", "datatype": "FP32",
                                                     "shape": [0], "data": []})
            self.assertEqual(status, 400, body)
            self.assertIn("input 'INPUT0' is empty", body.get("error", ""), n.name)
            status, body = rest_infer(n, "doubler", {"name": "INPUT0", "datatype": "FP32",
                                                     "shape": [2, 1], "data": [1, 2]})
            self.assertEqual(status, 400, body)
            self.assertIn("does not match the model's [-1]", body.get("error", ""), n.name)
        # Killed: started again, and the models serve again.
        [first] = self.pids(host, "kserve-demo")
        os.kill(first, 9)
        wait_for(lambda: len(self.pids(host, "kserve-demo")) == 2, 30, "the server to restart")
        for n in self.nodes.values():
            wait_for(lambda: doubled(n)[0] == 200, 60, f"doubler inferable again at {n.name}")
        # Deleted: its models leave every node; its process is reaped.
        second = self.pids(host, "kserve-demo")[-1]
        self.cli("delete", "workload", "kserve-demo")
        wait_for(lambda: not pid_alive(second), 30, "the server to be stopped and reaped")
        for n in self.nodes.values():
            # 503 "no ready host ... retry" while the mesh still expects it back (a minute after
            # it was last announced), then 404.
            wait_for(lambda: doubled(n)[0] in (404, 503), 30, f"doubler gone at {n.name}")
        self.assertTrue(self.nodes[host].log_lines(r"model doubler of workload kserve-demo "
                                                   r"leaves the node"))

    def test_2_an_annotated_workload_that_is_no_kserve_server_is_logged(self):
        port = free_port()
        self.cli("apply", "-f", "-", stdin=kserve_deployment(
            "not-kserve", ["/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1",
                           str(port)], port, annotations=[("hivemesh.io/kserve", "true")]))
        wait_for(lambda: any(n.log_lines(r"workload not-kserve is annotated hivemesh.io/kserve "
                                         r"but does not answer the protocol")
                             for n in self.nodes.values()), 60, "the error to be logged")
        for n in self.nodes.values():
            self.assertEqual(n.request("GET", "/v2/health/live")[0], 200, "the nodes serve on")
        self.cli("delete", "workload", "not-kserve")

    def test_3_a_hostile_kserve_server_costs_only_its_own_models(self):
        """Metadata that is not JSON or names another model, answers that are not JSON, and a
        2 MiB repository index: each is refused with why, the rest serves, the nodes serve on."""
        port, huge_port = free_port(), free_port()
        self.cli("apply", "-f", "-", stdin=kserve_deployment(
            "hostile", ["/usr/bin/python3", SERVER, str(port), "hostile", "--hostile"], port) +
            "---\n" + kserve_deployment(
            "huge-index", ["/usr/bin/python3", SERVER, str(huge_port), "huge", "--huge-index"],
            huge_port, annotations=[("hivemesh.io/kserve", "true")]))
        for n in self.nodes.values():
            wait_for(lambda: doubled(n)[0] == 200, 60, f"the hostile server's doubler at {n.name}")
        host = self.host_of("hostile")
        node = self.nodes[host]
        wait_for(lambda: node.log_lines(r"workload hostile: model garbled is not served: model "
                                        r"metadata: not JSON"), 30, "garbled metadata refused")
        self.assertTrue(node.log_lines(r"workload hostile: model liar is not served: model "
                                       r"metadata: name is not 'liar'"))
        huge_host = self.host_of("huge-index")
        wait_for(lambda: self.nodes[huge_host].log_lines(
            r"workload huge-index is annotated hivemesh.io/kserve but its models cannot be "
            r"listed"), 30, "the 2 MiB index refused")
        for n in self.nodes.values():
            status, body = rest_infer(n, "babbler", {"name": "INPUT0", "datatype": "FP32",
                                                     "shape": [1], "data": [1]})
            self.assertEqual(status, 503, body)
            self.assertIn("the KServe v2 server's answer", body.get("error", ""), n.name)
            for model in ("garbled", "liar", "m0"):
                status, _ = rest_infer(n, model, {"name": "INPUT0", "datatype": "FP32",
                                                  "shape": [1], "data": [1]})
                self.assertEqual(status, 404, f"{model} at {n.name}")
            self.assertEqual(n.request("GET", "/v2/health/live")[0], 200, "the nodes serve on")
        self.cli("delete", "workload", "hostile")
        self.cli("delete", "workload", "huge-index")


if __name__ == "__main__":
    KserveWorkloadsTest.BINARY = binary_from_argv()
    unittest.main(argv=["test_kserve_workloads"], verbosity=2)
