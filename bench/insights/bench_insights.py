#!/usr/bin/python3
"""How fast a published insight reaches a subscriber on another node, against an MQTT broker
doing the same job, in the same run (docs/insights.md, "The bus: node to node").

Goal: an alert published at one node reaches a subscriber on another node in < 10 ms p99 on
loopback, at 1,000 insights/s per node.

- mesh: a secure mesh of two nodes, A and B. A subscriber on B reads
  `GET /v1/insights/stream?topic=bench/%23` (Server-Sent Events); a publisher sends
  `POST /v1/insights/bench/alerts/<k>` to A (k = n mod 10) over one keep-alive connection, so
  each insight goes publisher -> A -> (peer link, mutual TLS) -> B -> subscriber.
- broker: a mosquitto on loopback; publisher -> broker -> subscriber, paho-mqtt clients, MQTT
  3.1.1, QoS 1 both ways, subscribed to `bench/#`, the same topics.

The publisher and the subscriber are separate processes. The publisher sends the body
{"t_ns": <time.time_ns() at send>, "n": <i>} at a fixed rate (open loop: each send is due at
start + i/rate) for --seconds; before that it publishes warm-up insights until the subscriber
has seen one (on the mesh, B's subscription reaches A by gossip). Latency = time.time_ns() when
the subscriber reads the insight - t_ns. Every insight must arrive, once and in order of n:
anything else is reported and the script exits with status 1. The clients run without Python's
garbage collector, whose pauses would otherwise be counted as the path's.

    bench/insights/bench_insights.py [--build build/release] [--rate 1000] [--seconds 10] [--rounds 1]
"""
import argparse
import gc
import http.client
import json
import multiprocessing as mp
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import time

try:
    import paho.mqtt.client as mqtt
except ImportError:
    mqtt = None

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "serving"))
sys.path.insert(0, os.path.join(ROOT, "bench", "hop_overhead"))
from bench_hop_tls import start_agent, token_from  # noqa: E402
from bench_serving import free_port  # noqa: E402

MOSQUITTO = "/usr/sbin/mosquitto"
TOPICS = 10


def body(n):
    return json.dumps({"t_ns": time.time_ns(), "n": n}).encode()


def mesh_subscriber(port, last, ready, warm, stop, out):
    """Reads B's event stream (chunked) until insight `last` or `stop`; puts [(n, latency_ns)]
    on `out`."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /v1/insights/stream?topic=bench/%23 HTTP/1.1\r\nHost: b\r\n\r\n")
    s.settimeout(0.2)
    raw, text, got, head = b"", b"", [], True
    while not stop.is_set() and not (got and got[-1][0] == last):
        try:
            data = s.recv(1 << 16)
        except socket.timeout:
            continue
        now = time.time_ns()
        if not data:
            break
        raw += data
        if head:
            if b"\r\n\r\n" not in raw:
                continue
            status, raw = raw.split(b"\r\n\r\n", 1)
            if b" 200 " not in status.split(b"\r\n")[0]:
                sys.exit(f"stream: {status!r}")
            head = False
        while (eol := raw.find(b"\r\n")) >= 0:  # chunked framing: <hex size>\r\n<data>\r\n
            size = int(raw[:eol], 16)
            if len(raw) < eol + 2 + size + 2:
                break
            text += raw[eol + 2:eol + 2 + size]
            raw = raw[eol + 4 + size:]
        *lines, text = text.split(b"\n")
        for line in lines:
            if line.startswith(b": subscribed"):
                ready.set()
            elif line.startswith(b"data: "):
                v = json.loads(line[6:])["values"]
                if v["n"] < 0:
                    warm.set()
                else:
                    got.append((v["n"], now - v["t_ns"]))
    s.close()
    out.put(got)


def mesh_publisher(port, rate, seconds, warm, out):
    conn = http.client.HTTPConnection("127.0.0.1", port)

    def post(topic, n):
        conn.request("POST", f"/v1/insights/{topic}", body(n),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status != 202:
            sys.exit(f"publish: status {r.status}")

    paced(rate, seconds, warm, out, post)
    conn.close()


def paced(rate, seconds, warm, out, send):
    """Warm-up sends (n = -1) every 20 ms until `warm`, then rate*seconds sends on schedule;
    puts (sent, achieved rate) on `out`."""
    deadline = time.monotonic() + 30
    while not warm.wait(0.02):
        if time.monotonic() > deadline:
            out.put((0, 0.0))
            return
        send("bench/warmup", -1)
    time.sleep(0.2)  # the last warm-ups are out of the way
    total, start = rate * seconds, time.monotonic()
    for i in range(total):
        wait = start + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        send(f"bench/alerts/{i % TOPICS}", i)
    out.put((total, (total - 1) / max(1e-9, time.monotonic() - start)))  # sends per second


def mqtt_subscriber(port, last, ready, warm, stop, out):
    got, c = [], mqtt.Client(client_id="bench-sub", protocol=mqtt.MQTTv311)

    def on_message(_c, _u, msg):
        now = time.time_ns()
        v = json.loads(msg.payload)
        if v["n"] < 0:
            warm.set()
        else:
            got.append((v["n"], now - v["t_ns"]))

    c.on_connect = lambda c, u, f, rc: c.subscribe("bench/#", qos=1)
    c.on_subscribe = lambda *a: ready.set()
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    while not stop.wait(0.01) and not (got and got[-1][0] == last):
        pass
    c.disconnect()
    c.loop_stop()
    out.put(got)


def mqtt_publisher(port, rate, seconds, warm, out):
    c, last = mqtt.Client(client_id="bench-pub", protocol=mqtt.MQTTv311), []
    c.connect("127.0.0.1", port)
    c.loop_start()

    def publish(topic, n):
        last[:] = [c.publish(topic, body(n), qos=1)]

    paced(rate, seconds, warm, out, publish)
    if last:
        last[0].wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


def child(fn, *args):
    """A client without the garbage collector: its first full collection after the fork walks
    (and copies) every object inherited from the parent, a pause of tens of ms in the client."""
    gc.disable()
    fn(*args)


def run_path(sub, sub_port, pub, pub_port, rate, seconds):
    """One measured run: (latencies [(n, ns)] in arrival order, sent, achieved rate)."""
    ready, warm, stop, sub_out, pub_out = mp.Event(), mp.Event(), mp.Event(), mp.Queue(), mp.Queue()
    s = mp.Process(target=child, args=(sub, sub_port, rate * seconds - 1, ready, warm, stop,
                                       sub_out))
    p = mp.Process(target=child, args=(pub, pub_port, rate, seconds, warm, pub_out))
    s.start()
    try:
        if not ready.wait(10):
            sys.exit(f"{sub.__name__}: not subscribed after 10 s")
        p.start()
        sent, achieved = pub_out.get(timeout=seconds * 3 + 60)
        if not sent:
            sys.exit(f"{sub.__name__}: no warm-up insight arrived in 30 s")
        try:  # the subscriber ends at the last insight; what has not arrived 5 s later is missing
            got = sub_out.get(timeout=5)
        except queue.Empty:
            stop.set()
            got = sub_out.get(timeout=30)
        p.join(timeout=30)
        return got, sent, achieved
    finally:
        for proc in (p, s):
            if proc.is_alive():
                proc.terminate()
            if proc.pid is not None:
                proc.join(timeout=10)


def problems(got, sent):
    ns = [n for n, _ in got]
    out = [f"received {len(ns)} ({len(set(ns))} distinct) of {sent}"] if (
        len(ns) != sent or len(set(ns)) != sent) else []
    disorder = sum(1 for a, b in zip(ns, ns[1:]) if b <= a)
    return out + ([f"{disorder} out of order"] if disorder else [])


def pct(sorted_ms, q):
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))] if sorted_ms else float("nan")


def stats(got):
    ms = sorted(lat / 1e6 for _, lat in got)
    return {"p50": pct(ms, 0.50), "p99": pct(ms, 0.99), "p999": pct(ms, 0.999), "max": pct(ms, 1)}


def by_second(got, rate):
    """p99 per second of the run (by n), to see whether latency grows."""
    secs = {}
    for n, lat in got:
        secs.setdefault(n // rate, []).append(lat / 1e6)
    return " ".join(f"{pct(sorted(v), 0.99):.2f}" for _, v in sorted(secs.items()))


def start_mosquitto(work):
    port = free_port()
    conf = os.path.join(work, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "log_dest stderr\n")
    log = open(os.path.join(work, "mosquitto.log"), "w")
    proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    sys.exit(f"mosquitto did not listen on {port}: {open(work + '/mosquitto.log').read()}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--rate", type=int, default=1000, help="insights per second")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    if not shutil.which(MOSQUITTO) or mqtt is None:
        sys.exit("mosquitto or python3-paho-mqtt is missing: scripts/install-deps.sh installs them")
    binary = os.path.join(args.build, "hivemesh")
    procs, runs = [], {"mesh": [], "broker": []}
    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o755)
        empty = os.path.join(work, "empty")
        os.makedirs(empty)
        try:
            b, b_http, b_gossip = start_agent(binary, work, "node-b", empty, 2)
            procs.append(b)
            a, a_http, _ = start_agent(binary, work, "node-a", empty, 2,
                                        ["--join", b_gossip, "--token", token_from(binary, b_http)])
            procs.append(a)
            broker, m_port = start_mosquitto(work)
            procs.append(broker)
            paths = [("mesh", mesh_subscriber, b_http, mesh_publisher, a_http),
                     ("broker", mqtt_subscriber, m_port, mqtt_publisher, m_port)]
            for r in range(args.rounds):
                for name, sub, sp, pub, pp in paths[r % 2:] + paths[:r % 2]:
                    runs[name].append(run_path(sub, sp, pub, pp, args.rate, args.seconds))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)

    labels = {"mesh": "mesh A -> B (bus)", "broker": "mosquitto broker"}
    print(f"{args.rate} insights/s for {args.seconds} s, {args.rounds} round(s); latency = "
          "subscriber's read - publisher's send, ms")
    print(f"{'path':<20}{'round':>6}{'sent':>8}{'recv':>8}{'rate/s':>9}"
          f"{'p50':>8}{'p99':>8}{'p99.9':>8}{'max':>8}")
    failures, total = [], {}
    for name in ("mesh", "broker"):
        pooled, sent_all, rates = [], 0, []
        for i, (got, sent, achieved) in enumerate(runs[name]):
            st = stats(got)
            print(f"{labels[name]:<20}{i + 1:>6}{sent:>8}{len(got):>8}{achieved:>9.0f}"
                  f"{st['p50']:>8.2f}{st['p99']:>8.2f}{st['p999']:>8.2f}{st['max']:>8.2f}")
            print(f"{'':<20}  p99 by second: {by_second(got, args.rate)}")
            failures += [f"{labels[name]} round {i + 1}: {p}" for p in problems(got, sent)]
            pooled, sent_all, rates = pooled + got, sent_all + sent, rates + [achieved]
        total[name] = dict(stats(pooled), sent=sent_all, recv=len(pooled), rate=min(rates))
    m, k = total["mesh"], total["broker"]
    print(f"mesh / broker: p50 {m['p50']:.2f} / {k['p50']:.2f} ms = {m['p50'] / k['p50']:.2f}x, "
          f"p99 {m['p99']:.2f} / {k['p99']:.2f} ms = {m['p99'] / k['p99']:.2f}x, "
          f"p99.9 {m['p999'] / k['p999']:.2f}x; goal: mesh p99 < 10 ms: "
          f"{'met' if m['p99'] < 10 else 'MISSED'}")
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    sys.stderr.flush()
    print(f"RESULT mesh_p50_ms={m['p50']:.2f} mesh_p99_ms={m['p99']:.2f} "
          f"mesh_p999_ms={m['p999']:.2f} mesh_max_ms={m['max']:.2f} "
          f"broker_p50_ms={k['p50']:.2f} broker_p99_ms={k['p99']:.2f} "
          f"p50_vs_broker={m['p50'] / k['p50']:.2f} p99_vs_broker={m['p99'] / k['p99']:.2f} "
          f"rate={args.rate} mesh_rate={m['rate']:.0f} broker_rate={k['rate']:.0f} "
          f"sent={m['sent']} received={m['recv']} broker_received={k['recv']} goal_p99_ms=10")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
