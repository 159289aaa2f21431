#!/usr/bin/python3
"""Hostile model names against the repository API, the model paths and the repository scan.

A node in explicit mode (the repository API loads and unloads) is sent names that are not model
names: ".", "..", percent-encoded dots, slashes, a NUL, 60 KB names, over REST (load, unload,
infer, metadata, ready) and gRPC (RepositoryModelLoad/Unload, one of them an absolute path to a
model folder outside the repository). Asserted, while a canary keeps inferring:
  - every answer is 400 or 404 (INVALID_ARGUMENT or NOT_FOUND over gRPC), a one-segment name
    that breaks the rule is 400 naming the rule, and no answer is longer than 2 KB;
  - no answer contains a file system path (the repository's, the checkout's, the temp folder's);
  - the index and the models the node gossips (/v1/mesh/members) list only real models;
  - the refusals are counted (hivemesh_rejected_total{reason="bad_model_name"}).
A node in poll mode over a folder holding model folders with invalid names never indexes them
and warns about each once, however many scans see it.

    test_repository_names.py path/to/hivemesh
"""
import json
import os
import re
import shutil
import tempfile
import unittest

import hostile
from hostile import Canary, Node, attack_rounds, raw_http, wait_for

IDENTITY = os.path.join(hostile.MODELS, "identity")
NAME_RULE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def copy_model(repo, name):
    shutil.copytree(IDENTITY, os.path.join(repo, name))


class RepositoryNamesTest(unittest.TestCase):
    BINARY = None

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="repo-names-")
        self.repo = os.path.join(self.work, "repo")
        os.makedirs(self.repo)
        copy_model(self.repo, "identity")
        # A model outside the repository, that a path-shaped name could reach.
        self.outside = os.path.join(self.work, "outside")
        copy_model(self.outside, "evil")
        self.nodes = []

    def tearDown(self):
        for n in self.nodes:
            n.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def node(self, **kw):
        n = Node(self.BINARY, f"names-{len(self.nodes)}", repository=self.repo, **kw)
        self.nodes.append(n)
        return n

    def assert_no_path(self, text, what, sent=""):
        """`text` (less `sent`, what the client itself sent, as echoed) names no path of this
        machine."""
        if sent:
            text = text.replace(sent[:40], "")
        for path in {self.work, os.path.realpath(self.work), hostile.ROOT, hostile.MODELS,
                     tempfile.gettempdir() + "/"}:
            self.assertNotIn(path, text, f"{what}: the answer discloses a path: {text[:300]}")

    def assert_only_real_models(self, node, real):
        index = json.loads(node.request("POST", "/v2/repository/index")[1])
        names = {row["name"] for row in index}
        self.assertLessEqual(names, real, f"index: {index}")
        for m in node.members():
            gossiped = {a["name"] for a in m.get("models", [])}
            self.assertLessEqual(gossiped, real, f"gossiped models of {m['name']}")
            for name in gossiped:
                self.assertRegex(name, NAME_RULE)

    def rest_attack(self, n):
        """One round of hostile names over REST; returns how many were refused with 400."""
        refused_400 = 0
        one_segment = ["..", ".", "%2e%2e", "%2E%2E", "%2e", ".%2e", ".hidden", "..%2f..%2fetc",
                       "%2f", "a%00b", "bad%20name", "-rf", "x" * 129, "a" * 60000]
        for name in one_segment:
            for method, path in (("POST", f"/v2/repository/models/{name}/load"),
                                 ("POST", f"/v2/repository/models/{name}/unload"),
                                 ("POST", f"/v2/models/{name}/infer"),
                                 ("GET", f"/v2/models/{name}"),
                                 ("GET", f"/v2/models/{name}/ready"),
                                 ("GET", f"/v2/models/identity/versions/{name}")):
                status, body = n.request(method, path, "{}" if method == "POST" else None)
                what = f"{method} {path[:80]}"
                self.assert_no_path(body, what)
                self.assertEqual(status, 400, f"{what}: {body[:300]}")
                self.assertIn("is not valid", body, what)
                self.assertLess(len(body), 2048, f"{what}: a {len(body)}-byte answer")
                refused_400 += 1
        # Paths with more segments than a route has are no route at all.
        for method, path in (("POST", "/v2/repository/models/../../load"),
                             ("POST", "/v2/repository/models/a/b/load"),
                             ("POST", "/v2/repository/models/identity/../identity/load"),
                             ("POST", "/v2/repository/models//load"),
                             ("POST", "/v2/models/../identity/infer"),
                             ("POST", "/v2/models/identity/versions/../infer")):
            status, body = n.request(method, path, "{}")
            self.assertIn(status, (400, 404), f"{method} {path}: {body[:300]}")
            self.assert_no_path(body, path)
        # A NUL and other control bytes in the request line itself.
        for raw in (b"a\x00b", b"..\x00", b"a\x01b", b"a\tb"):
            status, answer = raw_http(
                n.port, b"POST /v2/repository/models/" + raw + b"/load HTTP/1.1\r\n"
                b"Host: x\r\nContent-Length: 0\r\n\r\n")
            self.assertIn(status, (400, 404), f"{raw!r}: {answer[:300]!r}")
            self.assert_no_path(answer.decode(errors="replace"), repr(raw))
        # A version that is not a version.
        for v in ("0", "01", "-1", "1.0", "99999999999999999999"):
            status, body = n.request("POST", f"/v2/models/identity/versions/{v}/infer", "{}")
            self.assertEqual(status, 400, f"version {v}: {body}")
            self.assertIn("is not valid", body)
            refused_400 += 1
        self.assert_only_real_models(n, {"identity"})
        return refused_400

    def test_hostile_names_over_rest(self):
        n = self.node(models=("identity",), args=["--model-control-mode", "explicit"])
        before = n.rejected("bad_model_name")
        rss_before, fds_before = n.rss_mib(), n.open_fds()
        with Canary(n) as canary:
            rounds, refused_400 = attack_rounds(canary, lambda: self.rest_attack(n))
        canary.check()
        rss_growth, fds_growth = n.rss_mib() - rss_before, n.open_fds() - fds_before
        print(f"{rounds} rounds: {refused_400} hostile names refused with 400, none disclosing a "
              f"path; RSS {rss_growth:+.1f} MiB, fds {fds_growth:+d}; canary: {canary.ok} "
              f"inferences answered")
        # Refusals hold nothing: no connection or memory stays behind them.
        self.assertLess(rss_growth, 64, "MiB of RSS growth")
        self.assertLessEqual(fds_growth, 8, "descriptors left open")
        counted = n.rejected("bad_model_name") - before
        self.assertGreaterEqual(counted, refused_400, "refusals counted in /metrics")
        self.assertTrue(n.log_lines(r"rejected \(bad_model_name\)"), "the refusals are logged")

    def test_hostile_names_over_grpc(self):
        grpc, pb, pb_grpc = hostile.grpc_modules(os.path.join(self.work, "stubs"))
        n = self.node(models=("identity",), grpc=True,
                      args=["--model-control-mode", "explicit"])
        channel = grpc.insecure_channel(f"127.0.0.1:{n.grpc_port}")
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        evil = os.path.join(self.outside, "evil")
        names = ["..", ".", "../identity", os.path.relpath(evil, self.repo), evil, "a\0b",
                 "a/b", "%2e%2e", "b" * 60000]
        calls = (("RepositoryModelLoad", stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest),
                 ("RepositoryModelUnload", stub.RepositoryModelUnload,
                  pb.RepositoryModelUnloadRequest))

        def attack():
            for name in names:
                for label, call, request in calls:
                    what = f"{label} {name[:60]!r}"
                    with self.assertRaises(grpc.RpcError, msg=what) as caught:
                        call(request(model_name=name), timeout=10)
                    e = caught.exception
                    self.assert_no_path(e.details(), what, sent=name)
                    self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT,
                                     f"{what}: {e.details()[:300]}")
                    self.assertIn("is not valid", e.details())
                    self.assertLess(len(e.details()), 2048)
            index = stub.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10)
            self.assertEqual({m.name for m in index.models}, {"identity"})
            self.assert_only_real_models(n, {"identity"})
            return len(names) * len(calls)

        try:
            with Canary(n) as canary:
                rounds, refused = attack_rounds(canary, attack)
            canary.check()
            print(f"{rounds} rounds: {refused} gRPC repository calls with hostile names refused "
                  f"with INVALID_ARGUMENT; canary: {canary.ok} inferences answered")
        finally:
            channel.close()

    def test_invalid_folders_are_never_indexed_and_warned_once(self):
        for bad in ("bad name", "%2e%2e", "-dash", "caf\u00e9", "x" * 200):
            copy_model(self.repo, bad)
        n = self.node(models=None, args=["--model-control-mode", "poll",
                                          "--repository-poll-ms", "50"])
        with Canary(n) as canary:
            # Two new models, one after the other: each is loaded only after two scans that saw
            # it, so the bad folders have been scanned several times by the end.
            for name in ("late", "later"):
                copy_model(self.repo, name)
                wait_for(lambda: any(r["name"] == name and r["state"] == "READY" for r in
                                     json.loads(n.request(
                                         "POST", "/v2/repository/index")[1])),
                         30, f"model {name} to load")
            self.assert_only_real_models(n, {"identity", "late", "later"})
        canary.check()
        warnings = n.log_lines("is not a valid model name")
        self.assertEqual(len(warnings), 5, "one warning per invalid folder:\n" + "\n".join(warnings))
        for line in warnings:
            self.assertIn("skipped", line)


if __name__ == "__main__":
    hostile.run(RepositoryNamesTest)
