#!/usr/bin/python3
"""Insights forwarded to a real MQTT broker (mosquitto, started here on loopback) through the
node's outbox (docs/insights.md, "Store-and-forward to the cloud over MQTT").

- 10,000 insights on three topics are published while the broker is down, and the node is
  killed (SIGKILL) and started again half-way. Once the broker is back, every one reaches a
  consumer that subscribed before the outage (a persistent MQTT session): after dropping
  duplicates by id there are exactly 10,000, and each topic's arrive in the order published.
- A full outbox drops its oldest insights (drop-oldest) and says so in the metrics and the log;
  with refuse-new, publishers get 503 and nothing already accepted is dropped.
- Bad settings are refused at start: a URL that is not mqtt:// or mqtts://, a bad filter.
- Two nodes keep exchanging alerts over the bus while the broker is unreachable; the alerts wait
  in the publishing node's outbox for the broker.

    test_mqtt.py path/to/hivemesh
"""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile import Node, binary_from_argv, wait_for  # noqa: E402
from test_insights import Subscriber  # noqa: E402

try:
    import paho.mqtt.client as mqtt
except ImportError:  # fails loudly in setUpClass: install-deps installs it
    mqtt = None

TOPICS = ["plant/line1/vibration", "plant/line2/people", "plant/line3/temperature"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_mosquitto():
    """Fails loudly when the broker or the Python client is missing (install-deps installs
    them)."""
    if shutil.which("mosquitto") is None or mqtt is None:
        raise AssertionError("mosquitto or python3-paho-mqtt is missing: "
                             "scripts/install-deps.sh installs them")


def start_mosquitto(conf, log_path, port):
    """mosquitto with `conf`, its output appended to `log_path`, once it listens on `port`:
    (process, log file)."""
    log = open(log_path, "a")
    proc = subprocess.Popen(["mosquitto", "-c", conf], stdout=log, stderr=subprocess.STDOUT)

    def listening():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    wait_for(listening, 10, "mosquitto to listen")
    return proc, log


class Broker:
    """A mosquitto on loopback whose state (sessions, queued messages) survives its restarts."""

    def __init__(self, work):
        self.port = free_port()
        self.work = work
        # Started as root, mosquitto runs as its own user: it must be able to write its state.
        os.chmod(work, 0o777)
        self.conf = os.path.join(work, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                    f"persistence true\npersistence_location {work}/\n"
                    "max_queued_messages 0\nmax_queued_bytes 0\n")
        self.proc = None

    def start(self):
        self.proc, self.log = start_mosquitto(self.conf, os.path.join(self.work, "mosquitto.log"),
                                              self.port)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.log.close()
        self.proc = None


class Consumer:
    """A persistent MQTT session (clean_session off) subscribed to plant/# at QoS 1: the broker
    keeps what comes while it is away."""

    def __init__(self, port):
        self.port = port
        self.messages = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()

    def session(self):
        client = mqtt.Client(client_id="hivemesh-test-consumer", clean_session=False,
                             protocol=mqtt.MQTTv311)
        client.on_connect = lambda c, u, f, rc: c.subscribe("plant/#", qos=1)
        client.on_subscribe = lambda c, u, mid, q: self.subscribed.set()

        def on_message(c, u, msg):
            with self.lock:
                self.messages.append(json.loads(msg.payload))
        client.on_message = on_message
        client.connect("127.0.0.1", self.port, keepalive=30)
        client.loop_start()
        return client

    def count(self):
        with self.lock:
            return len(self.messages)


def publish_all(node, first, last):
    """Publishes insights first..last-1 (values {"n": i}) round-robin on TOPICS over one
    connection; each must be accepted (202)."""
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
    try:
        for i in range(first, last):
            conn.request("POST", "/v1/insights/" + TOPICS[i % len(TOPICS)],
                         body=json.dumps({"n": i}), headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            body = r.read()
            assert r.status == 202, (i, r.status, body[:200])
    finally:
        conn.close()


class MqttTest(unittest.TestCase):
    BINARY = None

    @classmethod
    def setUpClass(cls):
        require_mosquitto()
        cls.work = tempfile.mkdtemp(prefix="hivemesh-mqtt-")
        cls.broker = Broker(cls.work)
        cls.nodes = []

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes:
            n.stop()
        cls.broker.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    def node(self, name, *args):
        n = Node(self.BINARY, name, models=(),
                 args=["--mqtt-url", f"mqtt://127.0.0.1:{self.broker.port}", *args])
        self.nodes.append(n)
        return n

    def test_1_an_outage_with_a_restart_loses_nothing_and_keeps_each_topics_order(self):
        # The consumer's session is made while the broker is up, then the broker goes down.
        self.broker.start()
        consumer = Consumer(self.broker.port)
        client = consumer.session()
        self.assertTrue(consumer.subscribed.wait(10), "the consumer never subscribed")
        client.loop_stop()
        client.disconnect()
        node = self.node("mqtt-a")
        wait_for(lambda: node.metric("hivemesh_insights_mqtt_connected") == 1, 30,
                 "the node to connect to the broker")
        self.broker.stop()
        wait_for(lambda: node.metric("hivemesh_insights_mqtt_connected") == 0, 30,
                 "the node to see the broker gone")
        publish_all(node, 0, 5000)
        self.assertEqual(node.metric("hivemesh_insights_mqtt_waiting"), 5000)
        self.assertEqual(node.metric("hivemesh_insights_mqtt_connected"), 0)
        node.proc.kill()  # no goodbye: what was accepted is on disk
        node.proc.wait()
        node.stop()
        node = self.node("mqtt-a")  # the broker is still down: its first connection fails
        self.assertEqual(node.metric("hivemesh_insights_mqtt_waiting"), 5000, "kept across the kill")
        publish_all(node, 5000, 10000)
        self.assertEqual(node.metric("hivemesh_insights_mqtt_waiting"), 10000)
        # The broker is back: the node reconnects (within its 10 s backoff) and drains.
        self.broker.start()
        started = time.monotonic()
        wait_for(lambda: node.metric("hivemesh_insights_mqtt_waiting") == 0, 90,
                 "the outbox to drain into the broker")
        print(f"10,000 insights drained into the broker {time.monotonic() - started:.1f} s after "
              "it came back", flush=True)
        self.assertGreaterEqual(node.metric("hivemesh_insights_mqtt_published_total"), 10000)
        self.assertIn("MQTT broker", node.text())
        # The consumer comes back to its session and gets what the broker kept for it.
        client = consumer.session()
        last, deadline = -1, time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(1)
            n = consumer.count()
            if n >= 10000 and n == last:
                break
            last = n
        client.loop_stop()
        client.disconnect()
        unique, order = {}, {t: [] for t in TOPICS}
        for m in consumer.messages:
            if m["id"] in unique:
                continue
            unique[m["id"]] = m
            order[m["topic"]].append(m["values"]["n"])
        print(f"the consumer got {len(consumer.messages)} messages, {len(unique)} distinct",
              flush=True)
        self.assertEqual(len(unique), 10000)
        for i, t in enumerate(TOPICS):
            self.assertEqual(order[t], list(range(i, 10000, len(TOPICS))), t)
        self.assertEqual(node.metric("hivemesh_insights_dropped_total", reason="outbox"), 0)
        # A broker restart while connected: the client's thread connects again and what was
        # published meanwhile goes.
        self.broker.stop()
        wait_for(lambda: node.metric("hivemesh_insights_mqtt_connected") == 0, 30,
                 "the node to see the broker gone")
        publish_all(node, 10000, 10030)
        self.broker.start()
        wait_for(lambda: node.metric("hivemesh_insights_mqtt_waiting") == 0, 60,
                 "the node to reconnect and send what waited")
        node.stop()

    def test_2_a_full_outbox_drops_by_its_policy_and_says_so(self):
        self.broker.stop()  # down for this test
        node = self.node("mqtt-b", "--mqtt-queue-mb", "1")
        big = {"blob": "x" * 8000}
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
        for i in range(300):  # 2.4 MB into 1 MiB
            conn.request("POST", "/v1/insights/plant/big", body=json.dumps(big))
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 202)
        conn.close()
        self.assertLessEqual(node.metric("hivemesh_insights_mqtt_waiting_bytes"), 1 << 20)
        dropped = node.metric("hivemesh_insights_dropped_total", reason="outbox")
        self.assertGreater(dropped, 150)
        self.assertEqual(dropped + node.metric("hivemesh_insights_mqtt_waiting"), 300)
        self.assertIn("insight outbox full: the oldest insights are dropped", node.text())
        self.assertEqual(node.text().count("insight outbox full"), 1, "logged once a minute")
        node.stop()
        # refuse-new: a full outbox refuses the new (503), and what it holds stays.
        node = self.node("mqtt-c", "--mqtt-queue-mb", "1", "--mqtt-queue-full", "refuse-new")
        statuses = []
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
        for i in range(300):
            conn.request("POST", "/v1/insights/plant/big", body=json.dumps(big))
            r = conn.getresponse()
            statuses.append((r.status, r.read().decode()))
        conn.close()
        accepted = sum(1 for s, _ in statuses if s == 202)
        refused = [b for s, b in statuses if s == 503]
        self.assertEqual(accepted + len(refused), 300, {s for s, _ in statuses})
        self.assertGreater(len(refused), 100)
        self.assertIn("outbox is full", refused[0])
        self.assertEqual(node.metric("hivemesh_insights_mqtt_waiting"), accepted)
        self.assertEqual(node.metric("hivemesh_insights_dropped_total", reason="outbox"), 0)
        node.stop()

    def test_4_two_nodes_exchange_alerts_while_the_broker_is_unreachable(self):
        self.broker.stop()
        d = self.node("mqtt-d")
        e = Node(self.BINARY, "mqtt-e", models=(), args=["--join", d.gossip])
        self.nodes.append(e)
        sub = Subscriber(e.port, "plant/+/alerts/#")
        # Published at d until e's subscription has reached it by gossip, then 20 alerts.
        deadline = time.monotonic() + 30
        while not sub.events(1, seconds=0.3):
            self.assertLess(time.monotonic(), deadline, "e's subscription never reached d")
            self.assertEqual(d.request("POST", "/v1/insights/plant/warm/alerts/x", "{}")[0], 202)
        for i in range(20):
            self.assertEqual(
                d.request("POST", "/v1/insights/plant/line1/alerts/vibration",
                          json.dumps({"n": i}))[0], 202)
        got = sub.events(20, topic="plant/line1/alerts/vibration")
        self.assertEqual([g["values"]["n"] for g in got], list(range(20)))
        sub.close()
        # ...and the broker gets them later: they wait in d's outbox meanwhile.
        self.assertEqual(d.metric("hivemesh_insights_mqtt_connected"), 0)
        self.assertGreaterEqual(d.metric("hivemesh_insights_mqtt_waiting"), 20)
        e.stop()
        d.stop()

    def test_3_bad_settings_are_refused_at_start(self):
        for args, words in ((["--mqtt-url", "http://127.0.0.1:1883"], "is not mqtt://"),
                            (["--mqtt-url", "mqtt://127.0.0.1:99999"], "bad port"),
                            (["--mqtt-url", "mqtt://127.0.0.1:1883", "--mqtt-topics", "a/#/b"],
                             "mqtt_topics"),
                            (["--mqtt-url", "mqtt://127.0.0.1:1883", "--mqtt-queue-full", "x"],
                             "mqtt_queue_full"),
                            (["--mqtt-url", "mqtt://127.0.0.1:1883", "--mqtt-backlog-rate", "-1"],
                             "mqtt_backlog_rate")):
            repo = os.path.join(self.work, "empty")
            os.makedirs(repo, exist_ok=True)
            out = subprocess.run([self.BINARY, "agent", "--node-name", "bad", "--insecure",
                                  "--http-address", "127.0.0.1:0", "--gossip-address",
                                  "127.0.0.1:0", "--grpc-address", "off", "--state-dir",
                                  os.path.join(self.work, "bad"), "--model-repository", repo,
                                  *args],
                                 capture_output=True, text=True, timeout=30)
            self.assertNotEqual(out.returncode, 0, args)
            self.assertIn(words, out.stderr + out.stdout, args)


if __name__ == "__main__":
    MqttTest.BINARY = binary_from_argv()
    unittest.main(argv=sys.argv[:1], verbosity=2)
