"""What the resilience tests share: a steady stream of identity inferences through one node,
each answer checked against what was sent, kept with when it was sent and who served it.

Traffic(node, threads) sends from `threads` keep-alive connections back to back until stopped;
a connection the node closes (`Connection: close`) is opened again, and one the node refuses (it
has stopped listening) is opened to `fallback` instead: such a request never entered a node and
is counted apart (`refused`).
Every request carries its own random values and a deadline (Inference-Timeout-Ms); an answer
counts as right only if it is a 200 whose output equals the input. Results are (sent_at,
seconds, status, served_by, right, error) tuples, sent_at on time.monotonic().
"""
import http.client
import json
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "security"))
import hostile  # noqa: E402,F401
from hostile import Node, wait_for  # noqa: E402,F401


class Traffic:
    def __init__(self, node, threads=4, timeout_ms=1000, pause=0.0, fallback=None):
        self.node = node
        self.fallback = fallback
        self.timeout_ms = timeout_ms
        self.pause = pause
        self.results = []
        self.refused = 0  # connections refused (no request sent)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def _one(self, conn, rng):
        values = [round(rng.uniform(-1000, 1000), 3) for _ in range(4)]
        body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [4], "datatype": "FP32",
                                       "data": values}]})
        sent = time.monotonic()
        conn.request("POST", "/v2/models/identity/infer", body=body,
                     headers={"Content-Type": "application/json",
                              "Inference-Timeout-Ms": str(self.timeout_ms)})
        r = conn.getresponse()
        text = r.read().decode(errors="replace")
        took = time.monotonic() - sent
        served_by = r.getheader("Hivemesh-Served-By", "")
        right = False
        if r.status == 200:
            out = json.loads(text)["outputs"][0]["data"]
            right = [float(x) for x in out] == [float(x) for x in
                                                 json.loads(body)["inputs"][0]["data"]]
        return (sent, took, r.status, served_by, right, "" if r.status == 200 else text[:300])

    def _run(self, seed):
        rng = random.Random(seed)
        conn = None
        node = self.node
        while not self._stop.is_set():
            # http.client drops a connection its server closed (Connection: close) and would
            # open the next one inside request(): open it here, to tell a refusal apart.
            if conn is None or conn.sock is None:
                conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
                try:
                    conn.connect()
                except ConnectionRefusedError:
                    # Nothing listens: the request never entered a node. Go to the fallback,
                    # as a client or a balancer in front of the nodes would.
                    conn = None
                    if self.fallback is not None:
                        node = self.fallback
                    with self._lock:
                        self.refused += 1
                    time.sleep(0.01)
                    continue
            try:
                result = self._one(conn, rng)
            except (OSError, http.client.HTTPException) as e:
                result = (time.monotonic(), 0.0, 0, "", False, f"{type(e).__name__}: {e}")
                conn.close()
                conn = None
            with self._lock:
                self.results.append(result)
            if self.pause:
                time.sleep(self.pause)

    def snapshot(self):
        with self._lock:
            return list(self.results)


def summary(results):
    """A line saying how many requests, failed and wrong, and the slowest."""
    failed = [r for r in results if r[2] != 200]
    wrong = [r for r in results if r[2] == 200 and not r[4]]
    slowest = max((r[1] for r in results), default=0.0)
    return (f"{len(results)} requests, {len(failed)} failed, {len(wrong)} wrong, slowest "
            f"{slowest * 1000:.0f} ms; first failures: {[r[2:] for r in failed[:3]]}")
