#!/usr/bin/python3
"""How much memory a node holds under each memory attack, against its bound, on a release build.

Every attack runs against a fresh `hivemesh agent` (identity model, plus the face detector for
the image attack) with `--memory-budget-mb 256`, so its bound is the budget plus 64 MiB:
320 MiB of growth over the node's RSS before the attack. While each attack runs, normal identity
inferences (tests/security/hostile.py's Canary) keep going, and their successes and failures are
counted. The attacks:

  chunk_ext    one connection streaming one endless chunk extension (1 GiB if never cut off)
  trailers     one connection streaming endless trailers (1 GiB if never cut off)
  uploads      40 concurrent 60 MB request bodies, half chunked, half sent slowly
  shape        a 60 MB JSON body claiming FP64 shape [30000000] with one value
  json_answer  a 64 MiB binary FP32 input to identity, answered as JSON
  png          a ~200 KB PNG declaring 8192x8192, to the face detector
  gossip_plain 100 gossip TCP connections with framing version 1's bare 16 MiB length, then
  gossip_keyed 100 from 100 source addresses with version 2's plaintext head claiming 16 MiB,
               each sending that frame's bytes as fast as the node reads them; a node without
               gossip keys, then one with --gossip-keys
  labels       300 requests naming distinct 60 KB models, then 300 naming distinct 128-byte
               models (the longest name a model may have), each followed by GET /metrics

For each: the peak RSS growth (VmHWM after clear_refs, minus the RSS before), the RSS after
(polled for up to 10 s, the node idle, for memory to come back), the bound, peak/bound, the
normal inferences answered/failed, and what the node answered. The attack is repeated until
three normal inferences have been answered alongside it (at most 30 s). The streaming and upload
attacks also run against nginx in the same run (one worker, client_max_body_size 64m, proxying
to a location that answers 200; request bodies spill to disk): the same numbers for a real
server, and the uploads' peak RSS ratio. Sending stops early once the attacked process has grown
past four times the bound, to spare the machine.

The last line is `RESULT key=value ...`: per attack `<attack>_peak_mib` and
`<attack>_within_bound` (1 if the peak growth stayed under the bound), nginx's peaks,
`uploads_peak_rss_vs_nginx` (the node's peak RSS over nginx's under the same uploads), the
largest /metrics seen and the normal inferences that failed.

    bench/hostile/bench_hostile.py [--build build/release]
"""
import argparse
import collections
import http.client
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "security"))
sys.path.insert(0, os.path.join(ROOT, "bench", "serving"))
from bench_serving import free_port, wait_http  # noqa: E402
from gossip_attack import OLD_FRAMING_16MIB, PREAMBLE_PLAINTEXT, KEY, connect  # noqa: E402
from gossip_attack import close_all, is_closed  # noqa: E402
from hostile import Canary, Node, readable, sanitized  # noqa: E402

BUDGET_MIB = 256
BOUND_MIB = BUDGET_MIB + 64
STOP_MIB = 4 * BOUND_MIB  # an attack stops once its target has grown this much
SETTLE_S = 10  # how long the RSS after an attack is polled for memory to come back
SETTLED_MIB = 16  # back within this much of the RSS before: memory came back
PIECE = 1 << 20
STREAM_BYTES = 1 << 30
INFER = b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: node\r\n"
CHUNKED_HEAD = (INFER % b"identity" + b"Content-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")


# --- Memory of a process (or of nginx's master and workers) ----------------------------------

def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Watch:
    """Peak RSS growth of a set of processes since the watch started: the sum of their VmHWM
    (restarted from the current RSS by clear_refs) minus the sum of their RSS at the start."""

    def __init__(self, pids):
        self.pids = list(pids)
        for pid in self.pids:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        self.base = self.rss()

    def rss(self):
        return sum(status_kib(p, "VmRSS") for p in self.pids) / 1024

    def growth(self):
        return sum(status_kib(p, "VmHWM") for p in self.pids) / 1024 - self.base

    def over(self):
        return self.growth() > STOP_MIB

    def settle(self):
        """The RSS once it is back within SETTLED_MIB of the start, or after SETTLE_S."""
        deadline = time.monotonic() + SETTLE_S
        while self.rss() - self.base > SETTLED_MIB and time.monotonic() < deadline:
            time.sleep(0.25)
        return self.rss()


# --- HTTP on raw sockets -----------------------------------------------------------------------

def send_until_answered(s, pieces, watch):
    """Sends `pieces` (an iterable of bytes) until they run out, the peer answers or closes, or
    `watch` says the target grew past STOP_MIB. Returns (bytes sent, why it stopped)."""
    sent = 0
    for piece in pieces:
        if readable(s):
            return sent, "answered"
        if watch.over():
            return sent, "stopped: over 4x the bound"
        try:
            s.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            return sent, "closed"
        sent += len(piece)
    return sent, "sent whole"


def read_answer(s, timeout):
    """(status, body bytes) of one HTTP answer on `s`, counting the body without keeping it:
    status is an int, or "closed" / "no answer" if none came within `timeout` seconds."""
    s.settimeout(timeout)
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            data = s.recv(65536)
            if not data:
                return "closed", 0
            buf += data
    except (socket.timeout, ConnectionResetError):
        return ("closed" if buf else "no answer"), 0
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    chunked = re.search(rb"(?i)\r\ntransfer-encoding:\s*chunked", head)
    size, tail = len(rest), rest[-5:]
    try:
        while (size < int(length[1])) if length else not (chunked and tail == b"0\r\n\r\n"):
            data = s.recv(1 << 20)
            if not data:
                break
            size += len(data)
            tail = (tail + data)[-5:]
    except (socket.timeout, ConnectionResetError):
        pass
    return status, size


def one_request(port, head, body, watch, timeout=60):
    """Sends one request (head, then body in 1 MiB pieces) on a new connection; returns
    (status, answer body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(head)
        view = memoryview(body)
        send_until_answered(s, (view[i:i + PIECE] for i in range(0, len(body), PIECE)), watch)
        return read_answer(s, timeout)
    finally:
        s.close()


def request_head(path, length, extra=b""):
    return (b"POST %s HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n%s\r\n" % (path, length, extra))


# --- The attacks: each takes (port, watch) and returns a list of answers -----------------------

def stream_forever(start, piece):
    """An attack that sends `start`, then `piece` again and again (STREAM_BYTES in all) until the
    target answers. `most_sent` keeps the most bytes any round sent before an answer."""
    def attack(port, watch):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            s.sendall(start)
            sent, why = send_until_answered(
                s, (piece for _ in range(STREAM_BYTES // len(piece))), watch)
            status, _ = read_answer(s, 2)
            if isinstance(status, int):
                attack.most_sent = max(attack.most_sent, sent)
                return [str(status)]
            return [f"{why} after {sent >> 20} MiB, {status}"]
        finally:
            s.close()
    attack.most_sent = 0
    return attack


chunk_extension = stream_forever(CHUNKED_HEAD + b"5;ext=", b"e" * PIECE)
TRAILER = b"X-Trailer: " + b"t" * 1000 + b"\r\n"
endless_trailers = stream_forever(CHUNKED_HEAD + b"2\r\n{}\r\n0\r\n",
                                  TRAILER * (PIECE // len(TRAILER)))


UPLOADS = 40
UPLOAD_BYTES = 60 * 1000 * 1000


def uploads(port, watch):
    """40 clients send a 60 MB body at once (not JSON: one accepted whole is answered 400 by a
    node), every head before any body; odd ones chunked, a quarter of them slowly."""
    start = threading.Barrier(UPLOADS + 1)
    answers = [None] * UPLOADS

    def client(i):
        chunked, slow = i % 2 == 1, i % 4 < 2
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
        except OSError as e:
            answers[i] = type(e).__name__
            start.wait()
            return
        try:
            framing = (b"Transfer-Encoding: chunked" if chunked
                       else b"Content-Length: %d" % UPLOAD_BYTES)
            s.sendall(INFER % b"identity" + b"Content-Type: application/json\r\n" + framing +
                      b"\r\n\r\n")
            start.wait()
            data = b"u" * PIECE

            def pieces():
                for sent in range(0, UPLOAD_BYTES, PIECE):
                    n = min(PIECE, UPLOAD_BYTES - sent)
                    yield b"%x\r\n%s\r\n" % (n, data[:n]) if chunked else data[:n]
                    if slow:
                        time.sleep(0.02)  # a slow client
                if chunked:
                    yield b"0\r\n\r\n"
            send_until_answered(s, pieces(), watch)
            answers[i] = read_answer(s, 60)[0]
        except OSError as e:
            answers[i] = type(e).__name__
        finally:
            s.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(UPLOADS)]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join()
    return answers


def claimed_shape(port, watch):
    """60 MB of JSON whose one input claims FP64 [30000000] and holds one value (the rest of the
    body is whitespace inside the data array)."""
    start = b'{"inputs":[{"name":"INPUT0","shape":[30000000],"datatype":"FP64","data":[1.0'
    end = b"]}]}"
    body = start + b" " * (60 * 1000 * 1000 - len(start) - len(end)) + end
    return [one_request(port, request_head(b"/v2/models/identity/infer", len(body)), body,
                        watch)[0]]


JSON_ANSWER_VALUES = 4096 * 4095  # 4 bytes each: the body, header included, within 64 MiB


def json_answer(port, watch):
    """A binary FP32 input of just under 64 MiB to identity, whose answer is asked for as JSON
    (no binary_data on the output): the answer is what grows."""
    header = (b'{"inputs":[{"name":"INPUT0","shape":[%d],"datatype":"FP32","parameters":'
              b'{"binary_data_size":%d}}],"outputs":[{"name":"OUTPUT0"}]}'
              % (JSON_ANSWER_VALUES, JSON_ANSWER_VALUES * 4))
    # Values with many digits each, as a camera or sensor would send (no NaN or Inf).
    block = struct.pack("<4096f", *(1.0 / 3.0 + i * 1.000123 for i in range(4096)))
    data = block * (JSON_ANSWER_VALUES // 4096)
    body = header + data
    head = request_head(b"/v2/models/identity/infer", len(body),
                        b"Inference-Header-Content-Length: %d\r\n" % len(header))
    status, size = one_request(port, head, body, watch)
    return [f"{status} ({size / 1e6:.0f} MB)"]


def png_declaring(width, height):
    """A valid black RGB PNG of width x height, deflated: ~1/1000 of its pixels' bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    z = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # filter byte 0, then black pixels
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) +
            chunk(b"IEND", b""))


PNG = None


def large_png(port, watch):
    head = request_head(b"/v2/models/face-detector/infer", len(PNG),
                        b"Inference-Header-Content-Length: 0\r\n")
    return [one_request(port, head.replace(b"application/json", b"image/png"), PNG, watch,
                        timeout=90)[0]]


def gossip_flood(node, watch):
    """Framing version 1's bare 16 MiB length on 100 connections, then 100 connections from 100
    source addresses with version 2's plaintext head claiming 16 MiB, each sending that frame's
    bytes as fast as the node takes them for up to 8 s."""
    old = []
    for _ in range(100):
        try:
            s = connect(node.gossip, "127.0.0.2")
            s.sendall(OLD_FRAMING_16MIB)
            old.append(s)
        except OSError:
            pass
    time.sleep(0.5)
    old_closed = sum(map(is_closed, old))
    close_all(old)
    flood = []  # [socket, bytes sent, state]
    for i in range(100):
        try:
            s = connect(node.gossip, f"127.0.2.{i + 1}")
            s.sendall(PREAMBLE_PLAINTEXT + struct.pack(">I", 16 << 20))
            s.setblocking(False)
            flood.append([s, 0, "open"])
        except OSError:
            pass
    data = bytes(PIECE)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and not watch.over():
        progress = False
        for entry in flood:
            if entry[2] != "open":
                continue
            try:
                entry[1] += entry[0].send(data[:min(PIECE, (16 << 20) - entry[1])])
                progress = True
                if entry[1] >= 16 << 20:
                    entry[2] = "sent whole"
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                entry[2] = "closed"
        if not any(e[2] == "open" for e in flood):
            break
        if not progress:
            time.sleep(0.01)
    for entry in flood:
        entry[0].setblocking(True)
        if entry[2] == "open" and is_closed(entry[0]):
            entry[2] = "closed"
    close_all(e[0] for e in flood)
    states = collections.Counter(e[2] for e in flood)
    sent = sum(e[1] for e in flood) >> 20
    return [f"v1 closed {old_closed}/{len(old)}; v2 " +
            ", ".join(f"{k} {v}" for k, v in sorted(states.items())) + f", {sent} MiB sent"]


def metrics_text(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def label_flood(node, watch):
    """300 inferences naming distinct 60 KB models, then GET /metrics; then 300 more naming
    distinct models of 128 bytes (the longest name a model may have), and GET /metrics again:
    its size, and whether the identity model's series are still there."""
    small = b'{"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[1]}]}'
    out = []
    for length in (60 * 1000, 128):
        answers = []
        for i in range(300):
            name = b"%03d" % i + b"m" * (length - 3)
            head = request_head(b"/v2/models/%s/infer" % name, len(small))
            answers.append(one_request(node.port, head, small, watch, 10)[0])
        status, text = metrics_text(node.port)
        label_flood.metrics_bytes = max(label_flood.metrics_bytes, len(text))
        identity = b'model="identity"' in text
        out.append(f"{length} B names: " + summarize(answers, None) +
                   f", then /metrics {status} {len(text) / 1e3:.0f} KB, identity series "
                   f"{'present' if identity else 'missing'}")
    return ["; ".join(out)]


label_flood.metrics_bytes = 0


# --- Running an attack against a node and against nginx ----------------------------------------

Row = collections.namedtuple("Row", "key target before peak after ok failed answers")


def summarize(answers, attack):
    """Each distinct answer with its count (and, for a streaming attack, how far it got)."""
    c = collections.Counter(str(a) for a in answers)
    text = ", ".join(a if n == 1 else f"{a} x{n}" for a, n in sorted(c.items()))
    if getattr(attack, "most_sent", 0):
        text += f" (answered within {(attack.most_sent >> 20) + 1} MiB streamed)"
    return text


def against_node(binary, key, attack, models=("identity",), args=(), on_node=False):
    """Runs `attack` against a fresh node while normal inferences go on: once, and again until
    three normal inferences have been answered (or 30 s passed)."""
    node = Node(binary, f"hostile-{key}", models=models,
                args=["--memory-budget-mb", str(BUDGET_MIB), *args])
    try:
        budget = node.metric("hivemesh_memory_budget_bytes") / (1 << 20)
        if budget != BUDGET_MIB:
            raise SystemExit(f"the node's budget is {budget} MiB, not {BUDGET_MIB}")
        watch = Watch([node.pid])
        attack.most_sent = 0
        answers = []
        deadline = time.monotonic() + 30
        with Canary(node) as canary:
            while not answers or (canary.ok < 3 and not canary.failures and
                                  time.monotonic() < deadline and not watch.over()):
                answers += attack(node if on_node else node.port, watch)
        peak = watch.growth()
        if not node.alive():
            answers.append(f"node exited {node.proc.returncode}")
        after = watch.settle() if node.alive() else 0
        return Row(key, "hivemesh", watch.base, peak, after, canary.ok, len(canary.failures),
                   summarize(answers, attack))
    finally:
        node.stop()


class Nginx:
    """nginx with one worker, taking bodies up to 64m on a location that proxies to a second
    server answering 200 (request buffering on, as by default: bodies spill to disk)."""

    def __init__(self, work):
        self.port, upstream = free_port(), free_port()
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_max_body_size 64m;
  server {{ listen 127.0.0.1:{upstream}; location / {{ return 200 "ok\\n"; }} }}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{ proxy_pass http://127.0.0.1:{upstream}; }}
  }}
}}
""")
        self.proc = subprocess.Popen(["/usr/sbin/nginx", "-c", conf, "-p", work],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{self.port}/")

    def pids(self):
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            return [self.proc.pid, *map(int, f.read().split())]

    def run(self, key, attack):
        watch = Watch(self.pids())
        attack.most_sent = 0
        answers = attack(self.port, watch)
        peak = watch.growth()
        return Row(key, "nginx", watch.base, peak, watch.settle(), None, None,
                   summarize(answers, attack))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def print_row(r):
    nginx = r.target == "nginx"
    bound = "-" if nginx else f"{BOUND_MIB}"
    ratio = "-" if nginx else f"{r.peak / BOUND_MIB:.2f}"
    normal = "-" if nginx else f"{r.ok}/{r.failed}"
    print(f"{r.key:<13}{r.target:<9}{r.before:>7.0f}{r.peak:>8.0f}{r.after:>7.0f}{bound:>6}"
          f"{ratio:>7}{normal:>9}  {r.answers}", flush=True)


def main():
    global PNG
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    args = ap.parse_args()
    binary = os.path.join(args.build, "hivemesh")
    if not os.path.exists("/usr/sbin/nginx"):
        sys.exit("/usr/sbin/nginx is missing: run scripts/install-deps.sh")
    if sanitized(binary):
        print("warning: this hivemesh is built with AddressSanitizer; its memory is not the "
              "release build's", flush=True)
    PNG = png_declaring(8192, 8192)
    started = time.monotonic()
    print(f"each attack against a fresh node with --memory-budget-mb {BUDGET_MIB}: bound = "
          f"budget + 64 = {BOUND_MIB} MiB of peak RSS growth; PNG {len(PNG) / 1e3:.0f} KB; "
          "normal = identity inferences answered/failed during the attack", flush=True)
    print(f"{'attack':<13}{'target':<9}{'before':>7}{'peak+':>8}{'after':>7}{'bound':>6}"
          f"{'ratio':>7}{'normal':>9}  answers (MiB; peak+ = peak RSS growth)", flush=True)
    rows = []

    def add(row):
        rows.append(row)
        print_row(row)

    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o755)
        nginx = Nginx(work)
        try:
            for key, attack in (("chunk_ext", chunk_extension), ("trailers", endless_trailers),
                                ("uploads", uploads)):
                add(against_node(binary, key, attack))
                add(nginx.run(key, attack))
        finally:
            nginx.stop()
    add(against_node(binary, "shape", claimed_shape))
    add(against_node(binary, "json_answer", json_answer))
    add(against_node(binary, "png", large_png, models=("identity", "face-detector")))
    add(against_node(binary, "gossip_plain", gossip_flood, on_node=True))
    add(against_node(binary, "gossip_keyed", gossip_flood, args=["--gossip-keys", KEY],
                     on_node=True))
    add(against_node(binary, "labels", label_flood, on_node=True))

    node = {r.key: r for r in rows if r.target == "hivemesh"}
    peer = {r.key: r for r in rows if r.target == "nginx"}
    over = [k for k, r in node.items() if r.peak >= BOUND_MIB]
    failed = sum(r.failed for r in node.values())
    print(f"{len(node) - len(over)}/{len(node)} attacks within the bound"
          + (f"; over it: {', '.join(over)}" if over else "") +
          f"; normal inferences failed: {failed}; {time.monotonic() - started:.0f} s", flush=True)
    fields = [f"bound_mib={BOUND_MIB}"]
    for k, r in node.items():
        fields += [f"{k}_peak_mib={r.peak:.0f}", f"{k}_within_bound={int(r.peak < BOUND_MIB)}"]
    for k, r in peer.items():
        fields.append(f"nginx_{k}_peak_mib={r.peak:.0f}")
    # Peak RSS, not growth, for the ratio: nginx grows by about nothing.
    ours = node["uploads"].before + node["uploads"].peak
    theirs = peer["uploads"].before + peer["uploads"].peak
    print(f"{UPLOADS} concurrent {UPLOAD_BYTES / 1e6:.0f} MB uploads: peak RSS {ours:.0f} MiB "
          f"(hivemesh) against {theirs:.0f} MiB (nginx, bodies on disk): {ours / theirs:.1f}x",
          flush=True)
    fields += [f"uploads_peak_rss_vs_nginx={ours / theirs:.2f}",
               f"metrics_bytes={label_flood.metrics_bytes}", f"normal_failed={failed}"]
    print("RESULT " + " ".join(fields))


if __name__ == "__main__":
    main()
