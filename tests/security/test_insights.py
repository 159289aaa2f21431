#!/usr/bin/python3
"""Insights at one node (docs/insights.md): POST /v1/insights/<topic> and the Server-Sent Events
stream GET /v1/insights/stream?topic=<filter>, on a real node.

- Published insights reach the subscribers whose filters match, in order, with ids and per-topic
  sequence numbers; a subscriber of other topics gets nothing.
- Bad input gets a 400 naming the rule: wildcards in a topic, empty levels, a 4 KiB topic, a '%'
  without hex digits, values that are not a JSON object or are too large; a 64 KiB topic is
  refused with the request head (431). Nothing of it is published.
- Bounds: a subscriber that reads nothing while 6,000 insights of 8 KiB are published costs the
  node at most its queue (peak RSS within a bound), and is closed once a write waits longer than
  the body timeout; subscribers beyond the node's maximum (128) get 503; one that leaves is
  forgotten, also when it resets its connection before its answer's head is written.

Between nodes (MeshInsightsTest, a secure mesh of three):

- A subscriber on one node gets what is published on another, in order, exactly what its
  filters match, with the publishing node's ids.
- POST /v1/mesh/insights (the node-to-node delivery) is for members only: a client without a
  member's certificate gets 403; with one, a forged insight (another node's), a malformed line
  and a batch over the limits are refused by name (400, 413) and nothing of the batch reaches
  a subscriber.

    test_insights.py path/to/hivemesh
"""
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile import Node, binary_from_argv, wait_for  # noqa: E402
import agent_node  # noqa: E402 (on the path hostile sets)
from secure_mesh import SecureMeshTest  # noqa: E402

BODY_TIMEOUT_MS = 2000


class Subscriber:
    """A client of the event stream: the events as they arrive."""

    def __init__(self, port, *filters, read=True):
        query = "&".join("topic=" + f.replace("#", "%23") for f in filters)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(f"GET /v1/insights/stream?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        self.buffer = b""
        if read:
            self.head = self.until(b"\r\n\r\n")

    def until(self, marker, seconds=10):
        deadline = time.monotonic() + seconds
        while marker not in self.buffer and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            if not data:
                break
            self.buffer += data
        at = self.buffer.find(marker)
        if at < 0:
            return None
        out, self.buffer = self.buffer[:at + len(marker)], self.buffer[at + len(marker):]
        return out

    def events(self, n, seconds=10, topic=None):
        """The next `n` insights (documents; only those of `topic` if given, the others are
        read and left out), or fewer if they do not come in time."""
        out = []
        while len(out) < n:
            raw = self.until(b"\n\n", seconds)
            if raw is None:
                break
            for line in raw.split(b"\n"):  # the event's lines (chunk framing around them)
                if line.startswith(b"data: "):
                    doc = json.loads(line[6:])
                    if topic is None or doc["topic"] == topic:
                        out.append(doc)
        return out

    def closed_by_node(self, quiet, seconds):
        """Whether the node closes the connection: nothing is read for `quiet` seconds (the
        client stalls), then what the node sent is read, which must end within `seconds`."""
        time.sleep(quiet)
        deadline = time.monotonic() + seconds
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                if self.sock.recv(1 << 20) == b"":
                    return True
            except socket.timeout:
                continue
            except OSError:
                return True
        return False

    def close(self):
        self.sock.close()


class InsightsTest(unittest.TestCase):
    BINARY = None

    @classmethod
    def setUpClass(cls):
        cls.node = Node(cls.BINARY, "insights", models=(),
                        args=["--labels", "zone=line1", "--body-timeout-ms", str(BODY_TIMEOUT_MS)])

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()

    def publish(self, topic, body):
        conn = http.client.HTTPConnection("127.0.0.1", self.node.port, timeout=10)
        try:
            conn.request("POST", "/v1/insights/" + topic, body=body,
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            return r.status, r.read().decode()
        finally:
            conn.close()

    def test_1_insights_reach_matching_subscribers_in_order(self):
        alerts = Subscriber(self.node.port, "site/+/alerts/#")
        other = Subscriber(self.node.port, "site/line2/#")
        self.assertIn(b"200 OK", alerts.head)
        self.assertIn(b"text/event-stream", alerts.head)
        self.assertIsNotNone(alerts.until(b": subscribed to site/+/alerts/#\n\n"))
        sent = []
        for i in range(20):
            status, body = self.publish("site/line1/alerts/vibration", json.dumps({"n": i}))
            self.assertEqual(status, 202, body)
            sent.append(json.loads(body))
        status, _ = self.publish("site/line1/people", json.dumps({"count": 3}))
        self.assertEqual(status, 202)
        got = alerts.events(20)
        self.assertEqual([e["values"]["n"] for e in got], list(range(20)))
        self.assertEqual([e["seq"] for e in got], list(range(1, 21)))
        self.assertEqual([e["id"] for e in got], [s["id"] for s in sent])
        self.assertEqual(len({e["id"] for e in got}), 20)
        self.assertTrue(all(e["node"] == "insights" and e["zone"] == "line1" for e in got))
        self.assertEqual(other.events(1, seconds=0.5), [], "a subscriber of other topics")
        alerts.close()
        other.close()

    def test_2_bad_input_is_refused_by_name(self):
        probe = Subscriber(self.node.port, "#")
        for topic, words in (("site/%2B/alerts", "wildcard"), ("site//alerts", "empty level"),
                             ("t" * 4096, "at most 512 bytes"), ("site/%zz", "two hex digits"),
                             ("%24SYS/x", "starts with '$'")):
            status, body = self.publish(topic, "{}")
            self.assertEqual(status, 400, f"{topic[:40]}: {body}")
            self.assertIn(words, body)
        for values, words in (("[1,2]", "JSON object"), ("3", "JSON object"),
                              ("{\"a\":", "not valid JSON"),
                              (json.dumps({"a": "x" * 20000}), "at most")):
            status, body = self.publish("site/a", values)
            self.assertEqual(status, 400, body)
            self.assertIn(words, body)
        # A 64 KiB topic: refused with the head, perhaps while it is still being sent.
        s = socket.create_connection(("127.0.0.1", self.node.port), timeout=10)
        try:
            s.sendall(b"POST /v1/insights/" + b"t" * (64 * 1024) + b" HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 2\r\n\r\n{}")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = s.recv(4096)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
        s.close()
        # The 431, or a reset if the node closed before the rest of the request was read.
        self.assertTrue(answer.startswith(b"HTTP/1.1 431") or answer == b"", answer[:200])
        for query, words in (("?topic=a/%23/b", "'#' must be"), ("", "names a topic filter"),
                             ("?topic=a%2", "two hex digits")):
            conn = http.client.HTTPConnection("127.0.0.1", self.node.port, timeout=10)
            conn.request("GET", "/v1/insights/stream" + query)
            r = conn.getresponse()
            self.assertEqual(r.status, 400, query)
            self.assertIn(words, r.read().decode())
            conn.close()
        self.assertEqual(probe.events(1, seconds=0.5), [], "nothing bad was published")
        probe.close()

    def test_3_a_stalled_subscriber_costs_a_bounded_queue_and_is_closed(self):
        stalled = Subscriber(self.node.port, "flood/#", read=False)
        time.sleep(0.3)
        self.node.reset_peak_rss()
        before = self.node.rss_mib()
        value = json.dumps({"blob": "v" * 8000})
        conn = http.client.HTTPConnection("127.0.0.1", self.node.port, timeout=10)
        for _ in range(6000):
            conn.request("POST", "/v1/insights/flood/a", body=value)
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 202)
        conn.close()
        grew = self.node.peak_rss_mib() - before
        print(f"6000 x 8 KiB to a subscriber that reads nothing: peak RSS grew {grew:.1f} MiB",
              file=sys.stderr)
        # 48 MiB were published to it; the socket buffers take a few, the rest would wait in the
        # node without the stream's bound. The bound is not scaled for ASan: the blocks are
        # large, and its quarantine holds at most 16 MiB of what was freed.
        self.assertLess(grew, 32, "the node held what the client did not take")
        self.assertTrue(stalled.closed_by_node(BODY_TIMEOUT_MS / 1000 + 3, 10),
                        "the stalled subscriber was not closed")
        stalled.close()
        # The node serves on: a new subscriber gets what is published next.
        fresh = Subscriber(self.node.port, "flood/#")
        self.assertEqual(self.publish("flood/a", "{\"after\":1}")[0], 202)
        self.assertEqual(fresh.events(1)[0]["values"], {"after": 1})
        fresh.close()

    def test_4_subscribers_beyond_the_maximum_get_503_and_leaving_frees_a_place(self):
        def status_of(sub):
            return sub.head.split(b"\r\n")[0] if sub.head else b"<nothing>"

        subs = []
        try:
            refused = None
            for _ in range(200):
                s = Subscriber(self.node.port, "many/#")
                if b" 503 " in status_of(s):
                    refused = s
                    break
                subs.append(s)
            self.assertIsNotNone(refused, "200 subscribers were all taken")
            self.assertEqual(len(subs), 128)
            self.assertIsNotNone(refused.until(b"try another node"), refused.buffer[:300])
            refused.close()
            subs.pop().close()

            def a_place():
                s = Subscriber(self.node.port, "many/#")
                try:
                    return b" 200 " in status_of(s)
                finally:
                    s.close()

            wait_for(a_place, 10, "a place once one subscriber left")
        finally:
            for s in subs:
                s.close()

    def test_5_clients_that_leave_at_once_free_their_places(self):
        """300 clients ask for a stream and reset the connection at once (some before their
        answer's head is written): afterwards the node still takes its 128 subscribers."""
        import struct
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", self.node.port), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.sendall(b"GET /v1/insights/stream?topic=gone/%23 HTTP/1.1\r\nHost: x\r\n\r\n")
            s.close()  # a reset
        subs = []
        try:
            def all_taken():
                while len(subs) < 128:
                    sub = Subscriber(self.node.port, "gone/#")
                    if b" 200 " not in (sub.head or b"").split(b"\r\n")[0]:
                        sub.close()
                        return False
                    subs.append(sub)
                return True

            wait_for(all_taken, 10, "128 places free again")
        finally:
            for sub in subs:
                sub.close()


def publish(port, topic, values):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/v1/insights/" + topic, body=json.dumps(values),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def deliver(port, body, member=None):
    """(status, body) of POST /v1/mesh/insights with `body`, over TLS presenting member
    `member`'s certificate (its state folder's), or none."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if member:
        folder = os.path.join(agent_node.STATE_ROOT, member)
        ctx.load_cert_chain(os.path.join(folder, "mesh", "node.pem"),
                            os.path.join(folder, "node.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
    try:
        conn.request("POST", "/v1/mesh/insights", body=body,
                     headers={"Content-Type": "application/x-ndjson"})
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def until_delivered(publisher_port, subscriber, topic, seconds=30):
    """Publishes to `topic` at one node until `subscriber`, on another, gets one: the
    subscription has reached the publisher by gossip. Returns how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        status, body = publish(publisher_port, topic, {"warm": True})
        assert status == 202, body
        if subscriber.events(1, seconds=0.3):
            subscriber.events(100, seconds=0.3)  # any others of the warm-up
            return time.monotonic() - started
    raise AssertionError(f"nothing published on {topic} reached the subscriber in {seconds} s")


class MeshInsightsTest(SecureMeshTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.a = cls.start("bus-a", (), ["--labels", "zone=line1"], secure=True)
        cls.n0 = cls.a
        cls.b = cls.start("bus-b", (), cls.join_args())
        cls.c = cls.start("bus-c", (), cls.join_args())

    def test_1_subscribers_on_other_nodes_get_what_their_filters_match_in_order(self):
        alerts = Subscriber(self.b.port, "site/+/alerts/#")
        people = Subscriber(self.c.port, "site/line1/people")
        took = [until_delivered(self.a.port, alerts, "site/warm/alerts/x"),
                until_delivered(self.a.port, people, "site/line1/people")]
        print(f"subscriptions reached the publisher in {took[0]:.2f} s and {took[1]:.2f} s",
              flush=True)
        sent = []
        for i in range(200):
            status, body = publish(self.a.port, "site/line1/alerts/vibration", {"n": i})
            self.assertEqual(status, 202, body)
            sent.append(json.loads(body)["id"])
            if i % 4 == 0:
                self.assertEqual(publish(self.a.port, "site/line1/people", {"count": i})[0], 202)
        self.assertEqual(publish(self.a.port, "elsewhere/alerts", {"n": 0})[0], 202)
        # (A warm-up insight still on its way is read and left out.)
        got = alerts.events(200, topic="site/line1/alerts/vibration")
        self.assertEqual([e["values"]["n"] for e in got], list(range(200)))
        self.assertEqual([e["id"] for e in got], sent)
        self.assertTrue(all(e["node"] == "bus-a" and e["zone"] == "line1" for e in got))
        counts = [e for e in people.events(50 + 5, seconds=3) if "count" in e["values"]]
        self.assertEqual([e["values"]["count"] for e in counts], list(range(0, 200, 4)))
        self.assertEqual(alerts.events(1, seconds=0.5), [], "b got what it did not ask for")
        self.assertEqual(people.events(1, seconds=0.5), [], "c got what it did not ask for")
        # The counts: 251 published here and more for the warm-up, each alert sent to b and each
        # count to c; nothing dropped; b handed the 200 to its subscriber.
        self.assertGreaterEqual(self.a.metric("hivemesh_insights_published_total"), 251)
        wait_for(lambda: self.a.metric("hivemesh_insights_queued") == 0, 10, "a's queues empty")
        self.assertGreaterEqual(self.a.metric("hivemesh_insights_sent_total"), 250)
        self.assertEqual(self.a.metric("hivemesh_insights_dropped_total", reason="peer"), 0)
        self.assertGreaterEqual(self.b.metric("hivemesh_insights_delivered_total"), 200)
        self.assertEqual(self.b.metric("hivemesh_insight_subscribers"), 1)
        people.close()
        alerts.close()

    def test_2_delivery_is_for_members_and_hostile_batches_are_refused(self):
        sub = Subscriber(self.b.port, "hostile/#")
        until_delivered(self.a.port, sub, "hostile/warm")
        # A valid insight of a's, as a would send it: taken from a subscriber at a.
        own = Subscriber(self.a.port, "hostile/#")
        self.assertEqual(publish(self.a.port, "hostile/one", {"v": 1})[0], 202)
        doc = own.events(1)[0]
        own.close()
        self.assertEqual(sub.events(1)[0]["id"], doc["id"])
        line = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
        # No member's certificate: refused, whatever the body.
        status, body = deliver(self.b.port, line)
        self.assertEqual(status, 403, body)
        # c's certificate, a's insight: forged; a malformed second line; nothing is taken.
        status, body = deliver(self.b.port, line, member="bus-c")
        self.assertEqual(status, 400, body)
        self.assertIn("not of the member that sent it", body)
        status, body = deliver(self.b.port, line + b'{"id":"x"}\n', member="bus-a")
        self.assertEqual(status, 400, body)
        self.assertIn("line 2", body)
        status, body = deliver(self.b.port, line * 4097, member="bus-a")
        self.assertEqual(status, 413, body)
        status, body = deliver(self.b.port, b"\n" * (4 * 1024 * 1024 + 1), member="bus-a")
        self.assertEqual(status, 413, body)
        self.assertEqual(sub.events(1, seconds=1), [], "a refused batch reached a subscriber")
        # The same batch from its own member is taken (a replay: ids let consumers drop it).
        status, body = deliver(self.b.port, line, member="bus-a")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"insights": 1, "delivered": 1})
        self.assertEqual(sub.events(1)[0]["id"], doc["id"])
        sub.close()

    def test_3_the_command_line_publishes_and_follows(self):
        sub = subprocess.Popen([self.BINARY, "sub", "cli/real", "--count", "3", "-o", "json",
                                "--node", f"127.0.0.1:{self.c.port}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # Published at a until three have reached c's follower (the first ones go nowhere
            # until c's subscription has spread).
            published, n = [], 0
            deadline = time.monotonic() + 30
            while sub.poll() is None and time.monotonic() < deadline:
                out = self.cli("pub", "cli/real", json.dumps({"n": n}),
                               "--node", f"127.0.0.1:{self.a.port}")
                self.assertEqual(out.returncode, 0, out.stderr)
                self.assertRegex(out.stdout, r"^published bus-a\.[0-9a-f]+\.\d{12} \(cli/real #\d+\)")
                published.append(n)
                n += 1
                time.sleep(0.2)
            out, err = sub.communicate(timeout=10)
        finally:
            if sub.poll() is None:
                sub.kill()
                sub.wait()
        self.assertEqual(sub.returncode, 0, err)
        got = [json.loads(line) for line in out.splitlines()]
        self.assertEqual(len(got), 3, out)
        first = got[0]["values"]["n"]
        self.assertEqual([g["values"]["n"] for g in got], [first, first + 1, first + 2])
        self.assertTrue(all(g["node"] == "bus-a" for g in got))
        # Bad input is the node's 400, said by the command.
        out = self.cli("sub", "cli/#/x", "--node", f"127.0.0.1:{self.c.port}")
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn("400", out.stderr)
        out = self.cli("pub", "cli/+", "{}", "--node", f"127.0.0.1:{self.a.port}")
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn("wildcard", out.stderr)
        out = self.cli("sub", "x", "--node", "127.0.0.1:1")
        self.assertEqual(out.returncode, 3, out.stderr)


if __name__ == "__main__":
    InsightsTest.BINARY = binary_from_argv()
    MeshInsightsTest.BINARY = InsightsTest.BINARY
    unittest.main(argv=sys.argv[:1], verbosity=2)
