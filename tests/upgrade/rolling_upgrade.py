#!/usr/bin/python3
"""A rolling upgrade under load (docs/deploy.md, "Upgrades"): a mesh of three nodes started on the
previous release's binary is upgraded node by node to this one, while clients keep sending
inferences; no request may fail.

- `a` and `b` serve the identity model, `c` serves nothing and forwards every request it gets:
  requests cross between nodes of the two releases in both directions;
- the mesh is secure (the first node creates it, the others join with a token, every link is
  mutual TLS);
- each node in turn (a, c, b: so the old forwarder sends to a new server, then the new forwarder
  to an old one) is taken out of the clients' rotation half a second before it is stopped, as a
  load balancer does (the clients send to the device's node, not to one that is going away),
  stopped with SIGTERM (it drains: tells the mesh, answers what it accepted, including what
  other nodes forwarded to it, exits 0), started again on the new binary with its state folder,
  and put back once it is ready; the clients never stop;
- `hivemesh members` shows both releases while the upgrade is under way (when they differ);
- every request is answered 200 with its own data, and each node ends on the new release.

    rolling_upgrade.py OLD_BINARY NEW_BINARY [--clients N] [--settle SECONDS]

`make test-upgrade` builds the previous release (the last tag) and runs this against the
Release build. Prints `RESULT requests=... failed=... ...` last; exits 1 on any failure.
"""
import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
from agent_node import AgentNode, wait_for  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "models")


class Fleet:
    """The nodes, the one each name runs now, and which of them the clients may use."""

    def __init__(self):
        self.lock = threading.Lock()
        self.nodes = {}
        self.in_rotation = set()

    def pick(self, rng):
        with self.lock:
            names = sorted(self.in_rotation)
            if not names:
                return None
            return self.nodes[rng.choice(names)].port


class Clients:
    def __init__(self, fleet, count):
        self.fleet = fleet
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(count)]

    def start(self):
        for t in self.threads:
            t.start()

    def run(self, index):
        rng = random.Random(index)
        while not self.stop.is_set():
            port = self.fleet.pick(rng)
            if port is None:
                time.sleep(0.01)
                continue
            values = [rng.randint(0, 1000) / 10 for _ in range(4)]
            body = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [4],
                                           "data": values}]})
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request("POST", "/v2/models/identity/infer", body=body,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                text = r.read().decode(errors="replace")
                if r.status != 200:
                    raise RuntimeError(f"{r.status} from :{port}: {text[:200]}")
                got = json.loads(text)["outputs"][0]["data"]
                if [round(x, 1) for x in got] != values:
                    raise RuntimeError(f"wrong data from :{port}: {got} for {values}")
                with self.lock:
                    self.ok += 1
            except Exception as e:  # noqa: BLE001 (every failure is counted and printed)
                with self.lock:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {e}")
            finally:
                conn.close()


def members_table(binary, node):
    out = subprocess.run([binary, "members", "--node", f"127.0.0.1:{node.port}"],
                         capture_output=True, text=True, timeout=30)
    return out.stdout


def versions_seen(node):
    status, text = node.request("GET", "/v1/mesh/members")
    if status != 200:
        return {}
    return {m["name"]: m.get("version", "-") for m in json.loads(text)["members"]
            if m["state"] == "alive"}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds of load between steps")
    args = p.parse_args()
    old_version = subprocess.run([args.old, "--version"], capture_output=True,
                                 text=True).stdout.strip()
    new_version = subprocess.run([args.new, "--version"], capture_output=True,
                                 text=True).stdout.strip()
    print(f"rolling upgrade {old_version} ({args.old}) -> {new_version} ({args.new})", flush=True)

    fleet = Fleet()
    models = {"a": ["--model-repository", MODELS, "--models", "identity"],
              "b": ["--model-repository", MODELS, "--models", "identity"],
              "c": ["--model-repository", tempfile.mkdtemp(prefix="hivemesh-no-models-")]}

    def start(name, binary, join=None, token=None):
        extra = list(models[name])
        if join:
            extra += ["--join", join]
        if token:
            extra += ["--token", token]
        node = AgentNode(binary, name, extra, secure=True)
        return node

    failed = False
    a = start("a", args.old)
    tokens = []
    for _ in range(2):
        out = subprocess.run([args.old, "token", "create", "--node", f"127.0.0.1:{a.port}"],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            sys.exit(f"token create failed: {out.stderr}")
        tokens.append(out.stdout.strip())
    fleet.nodes["a"] = a
    fleet.nodes["b"] = start("b", args.old, join=a.gossip, token=tokens[0])
    fleet.nodes["c"] = start("c", args.old, join=a.gossip, token=tokens[1])
    for node in fleet.nodes.values():
        wait_for(lambda: len(versions_seen(node)) == 3, 60, f"{node.name} to see 3 members")
    infer = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1],
                                    "data": [1]}]})
    wait_for(lambda: fleet.nodes["c"].request("POST", "/v2/models/identity/infer",
                                              infer)[0] == 200, 60, "c to forward identity")
    fleet.in_rotation = {"a", "b", "c"}
    clients = Clients(fleet, args.clients)
    clients.start()
    time.sleep(args.settle)

    mixed_table = ""
    try:
        for name in ("a", "c", "b"):
            node = fleet.nodes[name]
            with fleet.lock:
                fleet.in_rotation.discard(name)
            time.sleep(0.5)  # what the clients sent it is on its way
            node.proc.send_signal(15)
            code = node.proc.wait(timeout=90)
            node.stop()
            if code != 0:
                print(f"FAIL: {name} exited {code} on SIGTERM", flush=True)
                failed = True
            seed = next(n for k, n in fleet.nodes.items() if k != name)
            started = time.monotonic()
            upgraded = start(name, args.new, join=seed.gossip)
            wait_for(lambda: len(versions_seen(upgraded)) == 3, 60, f"{name} to rejoin")
            if name != "b":
                # Mixed releases, seen from a node of each.
                mixed_table = members_table(args.new, upgraded)
            with fleet.lock:
                fleet.nodes[name] = upgraded
                fleet.in_rotation.add(name)
            print(f"{name}: upgraded to {new_version}, back in {time.monotonic() - started:.1f} s;"
                  f" releases seen: {versions_seen(upgraded)}", flush=True)
            time.sleep(args.settle)
    finally:
        clients.stop.set()
        for t in clients.threads:
            t.join(timeout=60)
        final = {n: versions_seen(node) for n, node in fleet.nodes.items()}
        for node in fleet.nodes.values():
            node.stop()

    print("members during the upgrade:\n" + mixed_table, flush=True)
    if old_version != new_version and not (f"  {old_version}\n" in mixed_table and
                                           f"  {new_version}\n" in mixed_table):
        print("FAIL: `hivemesh members` did not show both releases mid-upgrade", flush=True)
        failed = True
    for name, seen in final.items():
        if set(seen.values()) != {new_version}:
            print(f"FAIL: {name} sees releases {seen}", flush=True)
            failed = True
    for f in clients.failures[:20]:
        print(f"failed request: {f}", flush=True)
    failed = failed or bool(clients.failures) or clients.ok == 0
    print(f"RESULT requests={clients.ok + len(clients.failures)} failed={len(clients.failures)} "
          f"from={old_version} to={new_version} ok={0 if failed else 1}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
