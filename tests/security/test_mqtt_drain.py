#!/usr/bin/python3
"""How the outbox drains into the MQTT broker (docs/insights.md, "Live before backlog"), against a
real mosquitto on loopback:

- Live before backlog: 4,000 insights wait in the outbox while the broker is down. Once it is
  back they drain at the node's backlog rate (--mqtt-backlog-rate 500), and alerts published
  meanwhile on a topic with no backlog reach a consumer within 1 s each, before the backlog has
  drained; an insight published meanwhile on a topic that has a backlog comes after that
  topic's backlog. Every topic arrives complete and in order.
- A full disk: the node's state folder is a small tmpfs. Publishers get 503 saying the disk is
  full, the node keeps serving, every insight accepted before reaches the broker, and once the
  outbox has drained there is room again.
- A broker that closes the connection mid-publish: the node reaches the broker through a proxy
  that cuts the connection after a random few KiB, four times, in the middle of MQTT packets.
  Every insight still arrives (3,000 distinct ids), each topic in order, and the node says in its
  log that the broker went away.

    test_mqtt_drain.py path/to/hivemesh
"""
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile import Node, binary_from_argv, wait_for  # noqa: E402
import agent_node  # noqa: E402 (on the path hostile sets)
from test_mqtt import Broker, mqtt, require_mosquitto  # noqa: E402

BACKLOG_TOPICS = ["plant/backlog/a", "plant/backlog/b"]
HELD = "plant/held"  # has a backlog too; a live insight on it waits behind it
LIVE = "plant/live/alerts"  # no backlog: its insights go at once


class Consumer:
    """A consumer of plant/# that stays connected (reconnecting at once after a broker restart,
    to its persistent session) and notes when each message arrived."""

    def __init__(self, port, client_id):
        self.messages = []  # (arrival time, document)
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = mqtt.Client(client_id=client_id, clean_session=False,
                                  protocol=mqtt.MQTTv311)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)

        def on_connect(c, u, f, rc):
            c.subscribe("plant/#", qos=1)

        def on_message(c, u, msg):
            with self.lock:
                self.messages.append((time.time(), json.loads(msg.payload)))
        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda c, u, mid, q: self.connected.set()
        self.client.on_disconnect = lambda c, u, rc: self.connected.clear()
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def distinct(self):
        """{id: (arrival, document)} of the first arrival of each id, and the per-topic lists of
        values["n"] in arrival order (first arrivals only)."""
        with self.lock:
            got = list(self.messages)
        first, order = {}, {}
        for at, doc in got:
            if doc["id"] in first:
                continue
            first[doc["id"]] = (at, doc)
            order.setdefault(doc["topic"], []).append(doc["values"]["n"])
        return first, order

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


def publish(conn, topic, n, **extra):
    conn.request("POST", "/v1/insights/" + topic, body=json.dumps({"n": n, **extra}),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    body = r.read()
    assert r.status == 202, (topic, n, r.status, body[:200])


class CuttingProxy:
    """TCP between the node and the broker that cuts the connection (both ways at once) after a
    random 8-40 KiB from the node, `cuts` times; then it only relays."""

    def __init__(self, broker_port, cuts):
        self.broker_port = broker_port
        self.left = cuts
        self.cut = 0
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        self.closing = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.closing:
            try:
                node, _ = self.server.accept()
            except OSError:
                return
            broker = socket.create_connection(("127.0.0.1", self.broker_port))
            limit = None
            if self.left > 0:
                self.left -= 1
                limit = random.randint(8 << 10, 40 << 10)
            threading.Thread(target=self.pump, args=(node, broker, limit), daemon=True).start()
            threading.Thread(target=self.pump, args=(broker, node, None), daemon=True).start()

    def pump(self, src, dst, limit):
        sent = 0
        try:
            while True:
                data = src.recv(4096)
                if not data:
                    break
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[:limit - sent])  # a part of a packet, then nothing
                    self.cut += 1
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.closing = True
        self.server.close()


class MqttDrainTest(unittest.TestCase):
    BINARY = None

    @classmethod
    def setUpClass(cls):
        require_mosquitto()
        cls.work = tempfile.mkdtemp(prefix="hivemesh-mqtt-drain-")
        cls.broker = Broker(cls.work)
        cls.broker.start()
        cls.nodes = []

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes:
            n.stop()
        cls.broker.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    def test_1_live_insights_go_before_the_backlog_and_every_topic_stays_in_order(self):
        consumer = Consumer(self.broker.port, "hivemesh-drain-consumer")
        self.assertTrue(consumer.connected.wait(10), "the consumer never subscribed")
        node = Node(self.BINARY, "drain-a", models=(),
                    args=["--mqtt-url", f"mqtt://127.0.0.1:{self.broker.port}",
                          "--mqtt-backlog-rate", "500"])
        self.nodes.append(node)
        wait_for(lambda: node.metric("hivemesh_insights_mqtt_connected") == 1, 30,
                 "the node to connect to the broker")
        self.broker.stop()
        wait_for(lambda: node.metric("hivemesh_insights_mqtt_connected") == 0, 30,
                 "the node to see the broker gone")
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
        for i in range(4000):
            publish(conn, BACKLOG_TOPICS[i % 2], i)
        for i in range(3):
            publish(conn, HELD, i)
        self.assertEqual(node.metric("hivemesh_insights_mqtt_waiting"), 4003)
        self.broker.start()
        wait_for(consumer.connected.is_set, 30, "the consumer back on its session")
        wait_for(lambda: node.metric("hivemesh_insights_mqtt_connected") == 1, 30,
                 "the node to connect again")
        # Live insights while the backlog drains (8 s at 500/s): one on a free topic and one on
        # the held topic every 100 ms, for 3 s.
        sent = {}
        for i in range(30):
            sent[i] = time.time()
            publish(conn, LIVE, i, sent=sent[i])
            publish(conn, HELD, 3 + i)
            time.sleep(0.1)
        waiting_after_live = node.metric("hivemesh_insights_mqtt_waiting")
        wait_for(lambda: node.metric("hivemesh_insights_mqtt_waiting") == 0, 90,
                 "the backlog to drain")
        wait_for(lambda: len(consumer.distinct()[0]) >= 4003 + 60, 30, "every insight consumed")
        conn.close()
        first, order = consumer.distinct()
        consumer.stop()
        self.assertGreater(waiting_after_live, 0, "the backlog drained before the live ones")
        # Complete and in order, topic by topic.
        self.assertEqual(order[BACKLOG_TOPICS[0]], list(range(0, 4000, 2)))
        self.assertEqual(order[BACKLOG_TOPICS[1]], list(range(1, 4000, 2)))
        self.assertEqual(order[HELD], list(range(33)))
        self.assertEqual(order[LIVE], list(range(30)))
        # Each live alert within 1 s of its publishing, before the backlog's end.
        arrivals = {doc["topic"]: [] for _, doc in first.values()}
        for at, doc in first.values():
            arrivals[doc["topic"]].append((at, doc))
        backlog_end = max(at for t in BACKLOG_TOPICS for at, _ in arrivals[t])
        lags = sorted(at - doc["values"]["sent"] for at, doc in arrivals[LIVE])
        print(f"live alerts: lag p50 {lags[15] * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms; the "
              f"backlog ended {backlog_end - max(sent.values()):.1f} s after the last one",
              flush=True)
        self.assertLess(lags[-1], 1.0, lags)
        self.assertLess(max(at for at, _ in arrivals[LIVE]), backlog_end,
                        "the live alerts did not overtake the backlog")
        # The held topic's live insights came after its backlog (its order says so) and so
        # after the live topic's.
        node.stop()

    def test_2_a_broker_that_closes_the_connection_mid_publish_loses_nothing(self):
        consumer = Consumer(self.broker.port, "hivemesh-cut-consumer")
        self.assertTrue(consumer.connected.wait(10), "the consumer never subscribed")
        proxy = CuttingProxy(self.broker.port, cuts=4)
        node = Node(self.BINARY, "drain-b", models=(),
                    args=["--mqtt-url", f"mqtt://127.0.0.1:{proxy.port}"])
        self.nodes.append(node)
        try:
            topics = ["plant/cut/a", "plant/cut/b", "plant/cut/c"]
            conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
            for i in range(3000):
                publish(conn, topics[i % 3], i, pad="x" * 200)
            conn.close()
            wait_for(lambda: node.metric("hivemesh_insights_mqtt_waiting") == 0, 120,
                     "the outbox to drain through the cuts")
            wait_for(lambda: sum(1 for t in consumer.distinct()[1] if t.startswith("plant/cut"))
                     == 3 and sum(len(v) for t, v in consumer.distinct()[1].items()
                                  if t.startswith("plant/cut")) >= 3000,
                     30, "every insight consumed")
            _, order = consumer.distinct()
            for k, t in enumerate(topics):
                self.assertEqual(order[t], list(range(k, 3000, 3)), t)
            self.assertEqual(proxy.cut, 4, "the proxy cut fewer connections than it should")
            self.assertTrue(node.log_lines(r"MQTT broker .* disconnected"), node.text()[-2000:])
            self.assertEqual(node.metric("hivemesh_insights_dropped_total", reason="broker"), 0)
        finally:
            consumer.stop()
            proxy.close()
            node.stop()

    def test_3_a_full_disk_refuses_new_insights_by_name_and_loses_none_accepted(self):
        """The node's state folder is an 8 MiB tmpfs: the outbox fills the disk (its own bound,
        100 MiB, is far away). Publishers then get 503 naming the full disk, the node keeps
        serving, and every insight accepted before reaches the broker once it is back; then
        there is room again."""
        consumer = Consumer(self.broker.port, "hivemesh-full-consumer")
        self.assertTrue(consumer.connected.wait(10), "the consumer never subscribed")
        folder = os.path.join(agent_node.STATE_ROOT, "full-a")
        os.makedirs(folder, exist_ok=True)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", folder],
                                 capture_output=True, text=True)
        self.assertEqual(mounted.returncode, 0, "mounting a tmpfs needs root: " + mounted.stderr)
        node = None
        try:
            self.broker.stop()
            node = Node(self.BINARY, "full-a", models=(),
                        args=["--mqtt-url", f"mqtt://127.0.0.1:{self.broker.port}",
                              "--mqtt-queue-mb", "100"])
            conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
            accepted, refused = [], None
            for i in range(5000):
                conn.request("POST", "/v1/insights/plant/full", headers={"Content-Type":
                             "application/json"}, body=json.dumps({"n": i, "pad": "x" * 2000}))
                r = conn.getresponse()
                body = r.read().decode()
                if r.status == 202:
                    accepted.append(json.loads(body)["id"])
                    continue
                refused = (r.status, body)
                break
            self.assertIsNotNone(refused, "5,000 insights of 2 KiB fit in 8 MiB")
            self.assertEqual(refused[0], 503, refused)
            self.assertIn("full", refused[1])
            print(f"{len(accepted)} insights accepted before the disk was full; then: "
                  f"{refused[1][:160]}", flush=True)
            self.assertGreater(len(accepted), 100)
            status, _ = node.request("GET", "/v2/health/ready")
            self.assertEqual(status, 200, "the node stopped serving on a full disk")
            self.broker.start()
            wait_for(lambda: node.metric("hivemesh_insights_mqtt_waiting") == 0, 90,
                     "the outbox to drain from a full disk")
            wait_for(lambda: len([d for _, d in consumer.distinct()[0].values()
                                  if d["topic"] == "plant/full"]) >= len(accepted), 30,
                     "every accepted insight consumed")
            got = [d["id"] for _, d in sorted(consumer.distinct()[0].values(),
                                              key=lambda x: x[1]["values"]["n"])
                   if d["topic"] == "plant/full"]
            self.assertEqual(got, accepted)
            self.assertEqual(consumer.distinct()[1]["plant/full"], list(range(len(accepted))))
            # Drained, the outbox has room again.
            publish(conn, "plant/full", len(accepted))
            conn.close()
        finally:
            consumer.stop()
            if node is not None:
                node.stop()
            subprocess.run(["umount", "-l", folder], capture_output=True)


if __name__ == "__main__":
    MqttDrainTest.BINARY = binary_from_argv()
    unittest.main(argv=sys.argv[:1], verbosity=2)
