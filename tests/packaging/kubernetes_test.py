#!/usr/bin/python3
"""The Kubernetes manifests (packaging/kubernetes: a kustomize base and a zone's overlay):

- `kubectl kustomize` renders both, offline;
- every object they make is valid for the Kubernetes API: checked against the API's own schemas
  (kubernetes-models from the npm registry, tests/packaging/validate_k8s.mjs), which catch a
  wrong field, type or enum as an API server would;
- they fit the node they run: the image is this build's release, its user the image's, the
  probes ask the KServe health endpoints on the port the ConfigMap's node.yaml listens on, the
  grace period is longer than the node's drain, the node's memory budget is under the
  container's limit, every flag exists in `hivemesh agent --help`, and the pod's command line
  (the image's entry point, then the DaemonSet's args) starts the node with the ConfigMap's
  node.yaml (the mesh's seeds and token, and the addresses, put aside) and it answers its probes;
- a zone's overlay runs its DaemonSet only on nodes of that zone, gives the hivemesh node the
  same zone label, and selects only its own pods.

(`kubectl apply --dry-run=client` needs an API server to ask for the kinds it does not know;
there is none here.)

    kubernetes_test.py path/to/build/hivemesh
"""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
from agent_node import free_port, http_get, wait_for  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(ROOT, "packaging", "kubernetes")
NODE_MODULES = os.path.join(ROOT, ".cache", "npm", "node_modules")
VALIDATOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "validate_k8s.mjs")


def render(folder):
    out = subprocess.run(["kubectl", "kustomize", os.path.join(K8S, folder)],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"kubectl kustomize {folder}: {out.stderr}")
    return [o for o in yaml.safe_load_all(out.stdout) if o]


def one(objects, kind):
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, (kind, [o["kind"] for o in objects])
    return found[0]


class KubernetesTest(unittest.TestCase):
    BINARY = None

    @classmethod
    def setUpClass(cls):
        for tool in ("kubectl", "node"):
            if shutil.which(tool) is None:
                raise AssertionError(f"{tool} is missing: scripts/install-deps.sh installs it")
        if not os.path.isdir(os.path.join(NODE_MODULES, "kubernetes-models")):
            raise AssertionError(f"kubernetes-models is missing in {NODE_MODULES}: "
                                 "scripts/install-deps.sh installs it")
        cls.base = render("base")
        cls.zone = render("zones/line-1")
        build = os.path.dirname(os.path.abspath(cls.BINARY))
        with open(os.path.join(build, "version.txt")) as f:
            cls.version = f.read().strip()
        cls.help = subprocess.run([cls.BINARY, "agent", "--help"], capture_output=True,
                                  text=True).stdout

    def test_1_every_object_is_valid_for_the_kubernetes_api(self):
        for name, objects in (("base", self.base), ("zones/line-1", self.zone)):
            out = subprocess.run(["node", VALIDATOR, NODE_MODULES], input=json.dumps(objects),
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, f"{name}:\n{out.stdout}{out.stderr}")
            self.assertEqual(out.stdout.count("ok "), len(objects), out.stdout)
            self.assertEqual({o["kind"] for o in objects}, {"ConfigMap", "DaemonSet"})
        # The validator is no rubber stamp: a wrong type is refused.
        broken = json.loads(json.dumps(one(self.base, "DaemonSet")))
        broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"
        out = subprocess.run(["node", VALIDATOR, NODE_MODULES], input=json.dumps([broken]),
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 1)
        self.assertIn("containerPort must be integer", out.stdout)

    def test_2_the_daemonset_fits_the_node_it_runs(self):
        ds = one(self.base, "DaemonSet")
        pod = ds["spec"]["template"]["spec"]
        node = pod["containers"][0]
        self.assertTrue(pod["hostNetwork"])
        self.assertEqual(node["image"], f"localhost/hivemesh:{self.version}",
                         "the manifests name this release's image")
        with open(os.path.join(ROOT, "scripts", "build-image.py")) as f:
            uid = int(re.search(r"^UID = (\d+)$", f.read(), re.M).group(1))
        self.assertEqual(pod["securityContext"]["runAsUser"], uid)
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertTrue(node["securityContext"]["readOnlyRootFilesystem"])
        self.assertEqual(node["securityContext"]["capabilities"]["drop"], ["ALL"])
        config = yaml.safe_load(one(self.base, "ConfigMap")["data"]["node.yaml"])
        http_port = int(config["http_address"].rsplit(":", 1)[1])
        self.assertEqual(node["readinessProbe"]["httpGet"],
                         {"path": "/v2/health/ready", "port": http_port})
        self.assertEqual(node["livenessProbe"]["httpGet"],
                         {"path": "/v2/health/live", "port": http_port})
        drain_ms = int(re.search(r"--drain-timeout-ms INT .*\[default: (\d+)\]", self.help)[1])
        self.assertGreater(pod["terminationGracePeriodSeconds"] * 1000, drain_ms)
        for arg in node["args"]:
            flag = arg.split("=", 1)[0]
            self.assertRegex(self.help, rf"(?m)^\s+{re.escape(flag)}\b", f"{flag} is no flag")
        mounts = {m["name"]: m["mountPath"] for m in node["volumeMounts"]}
        self.assertEqual(mounts["config"], "/etc/hivemesh")
        self.assertEqual(mounts["state"], "/var/lib/hivemesh")
        # The container's command line is the image's entry point, then these args.
        spec = importlib.util.spec_from_file_location(
            "build_image", os.path.join(ROOT, "scripts", "build-image.py"))
        image = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(image)
        entry = image.ENTRYPOINT
        self.assertEqual(entry[:2], ["/usr/bin/hivemesh", "agent"])
        self.assertEqual(entry[entry.index("--config") + 1], "/etc/hivemesh/node.yaml")
        self.assertEqual(entry[entry.index("--state-dir") + 1], mounts["state"])
        limit = node["resources"]["limits"]["memory"]
        self.assertTrue(limit.endswith("Gi") or limit.endswith("Mi"), limit)
        limit_mib = int(limit[:-2]) * (1024 if limit.endswith("Gi") else 1)
        self.assertLess(config["memory_budget_mb"], limit_mib, "the node's budget under the limit")

        # That command line on this build, with the node.yaml it mounts: the folders are this
        # test's, the pod's name is filled in, the mesh's seeds and token give way to --insecure
        # (there is no mesh here), and the addresses move to loopback (later flags win).
        work = tempfile.mkdtemp(prefix="hivemesh-k8s-")
        self.addCleanup(shutil.rmtree, work, True)
        with open(os.path.join(work, "node.yaml"), "w") as f:
            f.write(one(self.base, "ConfigMap")["data"]["node.yaml"])
        argv = [self.BINARY] + entry[1:]
        argv[argv.index("--config") + 1] = os.path.join(work, "node.yaml")
        argv[argv.index("--state-dir") + 1] = os.path.join(work, "state")
        for arg in node["args"]:
            if not arg.startswith(("--join=", "--token=")):
                argv.append(arg.replace("$(NODE_NAME)", "k8s"))
        port = free_port()
        argv += ["--http-address", f"127.0.0.1:{port}", "--grpc-address", "off",
                 "--gossip-address", "127.0.0.1:0", "--model-repository",
                 os.path.join(ROOT, "models"), "--models", "identity", "--insecure"]
        log = os.path.join(work, "node.log")
        proc = subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        try:
            if proc.poll() is not None or proc.wait(timeout=1) is not None:
                with open(log) as f:
                    self.fail(f"the pod's command line does not start the node: {f.read()}")
        except subprocess.TimeoutExpired:
            pass  # still running: it started
        try:
            wait_for(lambda: http_get(port, node["readinessProbe"]["httpGet"]["path"])[0] == 200,
                     60, "the node to answer its readiness probe")
            self.assertEqual(http_get(port, node["livenessProbe"]["httpGet"]["path"])[0], 200)
        finally:
            proc.terminate()
            self.assertEqual(proc.wait(timeout=60), 0)

    def test_3_a_zone_runs_on_its_nodes_with_their_zone_label(self):
        ds = one(self.zone, "DaemonSet")
        pod = ds["spec"]["template"]["spec"]
        zone = pod["nodeSelector"]["topology.kubernetes.io/zone"]
        self.assertEqual(zone, "line-1")
        self.assertIn(f"--labels=zone={zone}", pod["containers"][0]["args"])
        self.assertEqual(ds["metadata"]["name"], "hivemesh-line-1")
        self.assertEqual(ds["spec"]["selector"]["matchLabels"]["hivemesh.io/zone"], zone)
        self.assertEqual(ds["spec"]["template"]["metadata"]["labels"]["hivemesh.io/zone"], zone)
        # Its ConfigMap is renamed with it (and a hash of its content, so that an edit rolls the
        # pods), and mounted by its new name.
        config = one(self.zone, "ConfigMap")["metadata"]["name"]
        self.assertRegex(config, r"^hivemesh-node-line-1-[a-z0-9]{10}$")
        volumes = {v["name"]: v for v in pod["volumes"]}
        self.assertEqual(volumes["config"]["configMap"]["name"], config)
        # The join secret is the operator's, shared by every zone: not renamed.
        refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in pod["containers"][0]["env"]
                if "secretKeyRef" in e.get("valueFrom", {})}
        self.assertEqual(refs, {"hivemesh-join"})


if __name__ == "__main__":
    KubernetesTest.BINARY = sys.argv.pop(1)
    unittest.main(verbosity=2)
