"""Hostile (and normal) request bodies for the memory attacks of tests/security/, built with the
standard library only: images whose headers declare far more pixels than their bytes carry,
KServe v2 bodies in JSON and with the binary tensor extension, plain HTTP requests that report
their status, headers and body, and memory measurements of a node during an attack.
"""
import http.client
import json
import struct
import time
import zlib

from hostile import Canary, wait_for


# --- images ------------------------------------------------------------------------------------

def _png_chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data +
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_of_zeros(width, height, color_type=2):
    """A valid PNG of `width` x `height` black pixels (RGB unless `color_type` says otherwise),
    compressed as well as zlib can: 8192 x 8192 RGB takes about 200 KB, 192 MiB once decoded."""
    channels = {0: 1, 2: 3, 6: 4}[color_type]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    z = zlib.compressobj(9)
    row = b"\x00" * (1 + width * channels)  # filter byte + pixels
    parts = []
    for _ in range(height):
        parts.append(z.compress(row))
    parts.append(z.flush())
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) +
            _png_chunk(b"IDAT", b"".join(parts)) + _png_chunk(b"IEND", b""))


def jpeg_declaring(width, height, data_bytes=64):
    """A baseline greyscale JPEG whose frame header declares `width` x `height` pixels but whose
    scan carries only `data_bytes` bytes: one-bit Huffman codes make every zero bit a flat
    block, and a decoder that runs out of data goes on with zeros (a warning, not an error), so
    it fills the whole frame."""
    def segment(marker, payload):
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload

    dqt = segment(0xDB, b"\x00" + b"\x01" * 64)
    sof = segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    # One code ("0") per table: DC category 0 (no change), AC end-of-block.
    counts = b"\x01" + b"\x00" * 15
    dht = segment(0xC4, b"\x00" + counts + b"\x00" + b"\x10" + counts + b"\x00")
    sos = segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    return b"\xff\xd8" + dqt + sof + dht + sos + b"\x00" * data_bytes + b"\xff\xd9"


# --- KServe v2 bodies --------------------------------------------------------------------------

def bytes_element(data):
    """One BYTES element in the raw layout: a 4-byte little-endian length, then the bytes."""
    return struct.pack("<I", len(data)) + data


def binary_body(inputs, outputs=None, parameters=None):
    """(body, headers) of a request with the binary tensor extension. `inputs`: list of
    (name, datatype, shape, raw bytes)."""
    head = {"inputs": [{"name": n, "datatype": d, "shape": s,
                        "parameters": {"binary_data_size": len(raw)}} for n, d, s, raw in inputs]}
    if outputs is not None:
        head["outputs"] = outputs
    if parameters is not None:
        head["parameters"] = parameters
    text = json.dumps(head).encode()
    body = text + b"".join(raw for _, _, _, raw in inputs)
    return body, {"Content-Type": "application/octet-stream",
                  "Inference-Header-Content-Length": str(len(text))}


def image_body(image, name="image"):
    """(body, headers) sending one encoded image as a BYTES [1] input."""
    return binary_body([(name, "BYTES", [1], bytes_element(image))])


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def error(self):
        """The {"error": ...} message, or the body's start if it is not one."""
        try:
            return self.json()["error"]
        except (ValueError, KeyError, TypeError):
            return self.body[:300].decode(errors="replace")

    def __repr__(self):
        return f"HTTP {self.status}: {self.body[:300]!r}"


def post(port, path, body, headers=None, timeout=120):
    """POSTs `body` on a new connection; the Answer (status, header dict, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body,
                     headers=headers or {"Content-Type": "application/json"})
        r = conn.getresponse()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def infer(node, model, body, headers=None, timeout=120):
    return post(node.port, f"/v2/models/{model}/infer", body, headers, timeout)


def keep_canary_until(canary, answered, seconds=60):
    """Lets `canary` run until it has had `answered` normal inferences answered (an attack that
    is refused at once leaves it little time), or fails."""
    wait_for(lambda: canary.ok >= answered or canary.failures, seconds,
             f"{answered} normal inferences during the attack")


# --- memory ------------------------------------------------------------------------------------

class MemoryWatch:
    """A node's resident memory around an attack: the baseline when the watch starts (after the
    node has warmed up), the peak since then, and whether it comes back."""

    def __init__(self, node):
        self.node = node
        self.baseline = node.rss_mib()
        node.reset_peak_rss()

    def growth_mib(self):
        """How far the peak went above the baseline."""
        return self.node.peak_rss_mib() - self.baseline

    def settles(self, slack_mib, seconds=60):
        """Waits until RSS is within `slack_mib` of the baseline plus what the node's memory
        budget still counts (memory kept on purpose, such as a model's search buffers, is
        counted there); allocators give memory back after a delay. Returns the RSS it saw last.
        Raises AssertionError if it never comes back."""
        seen = []

        def near():
            seen.append((self.node.rss_mib(), budget_used_mib(self.node)))
            rss, counted = seen[-1]
            return rss <= self.baseline + counted + slack_mib
        try:
            wait_for(near, seconds, f"RSS back within {slack_mib} MiB of {self.baseline:.0f} MiB "
                                    "and what the budget counts")
        except AssertionError as e:
            raise AssertionError(f"{e}: last {seen[-1][0]:.0f} MiB, {seen[-1][1]:.0f} MiB "
                                 "counted") from None
        return seen[-1][0]


def budget_used_mib(node):
    """What the node's memory budget counts as held now (hivemesh_memory_budget_used_bytes)."""
    return node.metric("hivemesh_memory_budget_used_bytes") / (1 << 20)


def settle_then_watch(node, seconds=3):
    """A MemoryWatch started once RSS has stopped moving for a moment (a warm-up's memory may
    still be on its way back)."""
    last = node.rss_mib()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.5)
        now = node.rss_mib()
        if abs(now - last) < 1:
            break
        last = now
    return MemoryWatch(node)


def attack_within_budget(test, node, name, call, budget_mib, canary_timeout=10):
    """Runs `call` (the attack) against `node` with a canary of normal inferences alongside, kept
    until it has had 3 answers, and asserts what every memory attack must keep: the node lives,
    the canary is served, and the peak RSS grows by at most the node's budget + 64 MiB. Returns
    what `call` returned and the MemoryWatch (to check that memory comes back)."""
    watch = settle_then_watch(node)
    with Canary(node, timeout=canary_timeout) as canary:
        result = call()
        keep_canary_until(canary, 3)
    growth = watch.growth_mib()
    print(f"{name}: {result!r:.300}; peak RSS +{growth:.0f} MiB "
          f"(baseline {watch.baseline:.0f} MiB)", flush=True)
    canary.check()
    test.assertTrue(node.alive(), "the node died")
    test.assertLessEqual(growth, budget_mib + 64,
                         f"{name}: the node grew {growth:.0f} MiB, more than its budget "
                         f"({budget_mib} MiB) + 64 MiB")
    return result, watch
