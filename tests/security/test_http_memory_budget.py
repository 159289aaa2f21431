"""Request bodies in flight stay within the node's memory budget.

Each body may be up to max_body_bytes (64 MiB), but nothing bounded them together: 40 clients
sending 60 MB bodies at once held 2.55 GB. Every body is now reserved from the node's memory
budget before it is buffered (a Content-Length body when its head arrives, a chunked one as its
chunks do); what does not fit is answered 503 with Retry-After and a message naming the budget.

The attack: a node with a 256 MiB budget gets 40 concurrent 60 MB bodies, half with
Content-Length and half chunked, some sent slowly, to the identity model. Asserted: the node's
peak RSS grows by less than the budget plus 64 MiB, some bodies are refused with 503 naming the
budget, a canary's small inferences succeed throughout, and once it is over the budget is whole
again (no reservation leaked).

    /usr/bin/python3 tests/security/test_http_memory_budget.py path/to/hivemesh
"""
import socket
import sys
import threading
import time
import unittest

from hostile import Canary, Node, read_response, readable, run, wait_for

BUDGET_MIB = 256
BOUND_MIB = BUDGET_MIB + 64
CLIENTS = 40
BODY = 60 * 1000 * 1000
PIECE = 1 << 20


class Attacker:
    """One client sending a 60 MB body (JSON it is not, so that one accepted whole is answered
    400 at once): `chunked` or with Content-Length, `slow` with a pause between pieces."""

    def __init__(self, port, chunked, slow, start, stop):
        self.port, self.chunked, self.slow = port, chunked, slow
        self.start, self.stop = start, stop
        self.status, self.response, self.error = None, b"", None

    def run(self):
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        except OSError as e:
            self.error = repr(e)
            return
        try:
            framing = (b"Transfer-Encoding: chunked" if self.chunked
                       else b"Content-Length: %d" % BODY)
            s.sendall(b"POST /v2/models/identity/infer HTTP/1.1\r\nHost: node\r\n"
                      b"Content-Type: application/json\r\n" + framing + b"\r\n\r\n")
            self.start.wait()  # every head is in before any body goes
            piece = b"x" * PIECE
            sent = 0
            while sent < BODY and not self.stop.is_set() and not readable(s):
                n = min(PIECE, BODY - sent)
                data = b"%x\r\n%s\r\n" % (n, piece[:n]) if self.chunked else piece[:n]
                try:
                    s.sendall(data)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += n
                if self.slow:
                    time.sleep(0.02)  # a slow client, not a wait for the node
            if sent >= BODY and self.chunked:
                s.sendall(b"0\r\n\r\n")
            self.status, self.response = read_response(s)
        except OSError as e:
            self.error = repr(e)
        finally:
            s.close()


class MemoryBudgetTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node(cls.BINARY, "budget", args=["--memory-budget-mb", str(BUDGET_MIB)])

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()

    def test_concurrent_large_bodies_stay_within_the_budget(self):
        node = self.node
        before = node.rejected("memory_budget")
        start, stop = threading.Barrier(CLIENTS + 1), threading.Event()
        attackers = [Attacker(node.port, chunked=i % 2 == 1, slow=i % 4 < 2, start=start,
                              stop=stop) for i in range(CLIENTS)]
        threads = [threading.Thread(target=a.run, daemon=True) for a in attackers]
        node.reset_peak_rss()
        base = node.rss_mib()
        growth = 0.0
        with Canary(node) as canary:
            for t in threads:
                t.start()
            start.wait()
            while any(t.is_alive() for t in threads):
                growth = max(growth, node.peak_rss_mib() - base)
                if growth > 2 * BOUND_MIB:
                    stop.set()  # the bound is broken already: spare the machine
                time.sleep(0.05)  # sampling RSS while the attack runs
            for t in threads:
                t.join()
        growth = max(growth, node.peak_rss_mib() - base)
        statuses = sorted(str(a.status or a.error) for a in attackers)
        print(f"peak RSS growth {growth:.0f} MiB; answers: "
              f"{ {x: statuses.count(x) for x in set(statuses)} }", file=sys.stderr)
        self.assertLess(growth, BOUND_MIB,
                        f"the node grew by {growth:.0f} MiB; answers: {statuses}")
        refused = [a for a in attackers if a.status == 503]
        self.assertGreater(len(refused), CLIENTS // 2, statuses)
        for a in refused:
            self.assertIn(b"memory budget", a.response)
            self.assertIn(b"Retry-After:", a.response)
        canary.check()
        self.assertGreaterEqual(node.rejected("memory_budget") - before, len(refused))
        wait_for(lambda: node.metric("hivemesh_memory_budget_used_bytes") == 0, 30,
                 "every reservation to be given back")


if __name__ == "__main__":
    run(MemoryBudgetTest)
