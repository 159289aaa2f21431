"""Connections and mesh links a stranger can hold.

A mesh link (an HTTP connection upgraded with `Upgrade: hivemesh-link/1`) had no idle timeout,
and nothing limited how many connections one address, or everyone together, could open: 3,000
idle links from a stranger stayed open, each holding a descriptor and buffers.

- A node with a short idle_link_timeout: a stranger (127.0.0.2) opens 300 links and sends
  nothing; they are closed once idle for that long, and the node's descriptors return to where
  they were.
- A node with a small per-source limit: of 300 links from the stranger only that many are taken,
  the others are closed at once; a canary on 127.0.0.1 is served throughout.
- A node with a small total limit: connections over it are closed at once.
- Two nodes, the serving one closing idle links quickly: requests forwarded to it keep
  succeeding, however the next request falls against the close (the forwarding node opens a new
  link, and retries a request that met a link just closed).

    /usr/bin/python3 tests/security/test_connection_limits.py path/to/hivemesh
"""
import os
import random
import shutil
import sys
import tempfile
import time
import unittest

from hostile import MODELS, Canary, Node, closed_by_peer, connect, read_response, run, wait_for

UPGRADE = (b"GET /v2/health/live HTTP/1.1\r\nHost: node\r\nConnection: Upgrade\r\n"
           b"Upgrade: hivemesh-link/1\r\nContent-Length: 0\r\n\r\n")
STRANGER = "127.0.0.2"


def open_links(port, count, sources=(STRANGER,)):
    """Tries to open `count` mesh links, round robin over `sources`; returns (the links the node
    switched, the answers to the others: response bytes, empty if it closed without one)."""
    links, refused = [], []
    for i in range(count):
        s = None
        try:
            s = connect(port, source=sources[i % len(sources)], timeout=10)
            s.sendall(UPGRADE)
            status, data = read_response(s)
        except OSError:
            status, data = None, b""
        if status == 101:
            links.append(s)
            continue
        refused.append(data)
        if s is not None:
            s.close()
    return links, refused


def close_all(socks):
    for s in socks:
        s.close()


class ConnectionLimitsTest(unittest.TestCase):
    def test_idle_links_of_a_stranger_expire(self):
        node = Node(self.BINARY, "idle-links",
                    args=["--idle-link-timeout-ms", "1000", "--max-connections-per-source", "1000"])
        links = []
        try:
            base_fds = node.open_fds()
            before = node.rejected("idle_link_closed")
            with Canary(node) as canary:
                links, refused = open_links(node.port, 300)
                self.assertEqual(len(refused), 0)
                print(f"descriptors: {base_fds} before, {node.open_fds()} with 300 idle links",
                      file=sys.stderr)
                # The links are closed once idle for a second: the node's descriptors come back.
                wait_for(lambda: node.open_fds() <= base_fds + 5, 60,
                         f"the node's descriptors to return to {base_fds} "
                         f"(at {node.open_fds()} with 300 idle links)")
                self.assertTrue(all(closed_by_peer(s, timeout=5) for s in links))
            canary.check()
            self.assertGreaterEqual(node.rejected("idle_link_closed") - before, 300)
        finally:
            close_all(links)
            node.stop()

    def test_one_source_gets_its_share_of_connections(self):
        node = Node(self.BINARY, "per-source", args=["--max-connections-per-source", "50"])
        links = []
        try:
            base_fds = node.open_fds()
            before = node.rejected("source_connection_limit")
            with Canary(node) as canary:
                links, refused = open_links(node.port, 300)
                print(f"{len(links)} links taken, {len(refused)} refused; descriptors "
                      f"{base_fds} before, {node.open_fds()} during", file=sys.stderr)
                self.assertLessEqual(len(links), 50)
                self.assertGreaterEqual(len(refused), 250)
                self.assertLessEqual(node.open_fds(), base_fds + 60)
                # A refusal says why (503 naming the limit), to a client there to read it.
                self.assertTrue(any(b" 503 " in r and b"max_connections_per_source" in r
                                    for r in refused), refused[:3])
                # Normal requests are served while the stranger holds its share.
                wait_for(lambda: canary.ok >= 5 or canary.failures, 30,
                         "normal inferences while the stranger holds its links")
            canary.check()
            self.assertGreaterEqual(node.rejected("source_connection_limit") - before, 250)
        finally:
            close_all(links)
            node.stop()

    def test_the_node_holds_at_most_its_total_of_connections(self):
        node = Node(self.BINARY, "total",
                    args=["--max-connections", "40", "--max-connections-per-source", "40"])
        links = []
        try:
            base_fds = node.open_fds()
            before = node.rejected("connection_limit")
            sources = [f"127.0.0.{i}" for i in range(2, 10)]
            links, refused = open_links(node.port, 100, sources)
            print(f"{len(links)} connections taken, {len(refused)} refused; descriptors "
                  f"{base_fds} before, {node.open_fds()} during", file=sys.stderr)
            self.assertLessEqual(len(links), 40)
            self.assertGreaterEqual(len(refused), 60)
            self.assertLessEqual(node.open_fds(), base_fds + 45)
            close_all(links)
            links = []
            # Served again once the stranger lets go (/metrics too, which was refused).
            wait_for(lambda: node.infer_identity()[0] == 200, 30,
                     "inferences once the stranger let go", retry_on=(OSError,))
            self.assertGreaterEqual(node.rejected("connection_limit") - before, 60)
        finally:
            close_all(links)
            node.stop()

    def test_forwarded_requests_survive_links_closed_as_idle(self):
        # b serves identity and closes links idle for 200 ms; a hosts only a copy of it under
        # another name, so a's requests for identity go to b.
        repo = tempfile.mkdtemp(prefix="hivemesh-echo-")
        shutil.copytree(os.path.join(MODELS, "identity"), os.path.join(repo, "echo"))
        b = Node(self.BINARY, "b", args=["--idle-link-timeout-ms", "200"])
        a = None
        try:
            a = Node(self.BINARY, "a", models=("echo",),
                     args=["--model-repository", repo, "--join", b.gossip])
            wait_for(lambda: a.infer_identity()[0] == 200, 30, "a to forward to b")
            # Each time after b closed a's links as idle: a opens a new one.
            for _ in range(5):
                closed = b.rejected("idle_link_closed")
                wait_for(lambda: b.rejected("idle_link_closed") > closed, 30,
                         "b to close an idle link")
                status, body = a.infer_identity()
                self.assertEqual(status, 200, body)
            # Requests paced around the idle timeout, so that some meet the close.
            rng = random.Random(17)
            for i in range(60):
                status, body = a.infer_identity()
                self.assertEqual(status, 200, f"request {i}: {body}")
                time.sleep(rng.uniform(0.15, 0.25))  # pacing the client, not waiting for a
            self.assertGreater(b.rejected("idle_link_closed"), 5)
        finally:
            if a is not None:
                a.stop()
            b.stop()
            shutil.rmtree(repo, ignore_errors=True)


if __name__ == "__main__":
    run(ConnectionLimitsTest)
