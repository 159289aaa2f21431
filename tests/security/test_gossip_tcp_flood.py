"""Gossip TCP under a flood of connections that claim large frames and then send little or
nothing, against a node with gossip keys and one without.

Bounds asserted, for each node:
 - peak RSS grows by less than 64 MiB while 100 connections each claim a 16 MiB frame (framing
   version 1's bare length; version 2's plaintext head claiming 16 MiB, or sealed head of 300
   bytes, which a keyed node reads before anything else) and then trickle bytes or send nothing,
   with every connection the node closes opened again at once; and
   while 16 connections of a plaintext node fill frames of 15 MiB (the node-wide budget for
   gossip frames, 32 MiB, holds them);
 - at most gossip_max_connections_per_source (16) connections of one source stay open; the rest
   are closed at once and counted (source_connection_limit);
 - a connection that says nothing is cut by the head deadline (2 s), not held for the profile's
   tcp_timeout (10 s on lan); a trickled body is cut by tcp_timeout;
 - a bad frame's socket is closed at once (well under a second); a keyed node answers a frame it
   cannot authenticate with the fixed "requires encryption" notice and closes;
 - membership keeps working during the attack: a second agent joins the attacked one and each
   sees the other alive; a canary's inferences keep succeeding.
"""
import struct
import threading
import time
import unittest

from hostile import Canary, Node, run, wait_for
from gossip_attack import (KEY, NOTICE, OLD_FRAMING_16MIB, PREAMBLE_PLAINTEXT, PREAMBLE_SEALED,
                           close_all, connect, is_closed, wait_closed)

RSS_BOUND_MIB = 64
PER_SOURCE = 16  # gossip_max_connections_per_source's default
HEAD_DEADLINE_S = 2  # gossip_head_timeout_ms's default
LAN_TCP_TIMEOUT_S = 10


class RssWatch:
    """Peak RSS growth of `node` over a baseline; `over()` says whether it passed the bound."""

    def __init__(self, node):
        self.node = node
        node.reset_peak_rss()
        self.base = node.rss_mib()

    def growth(self):
        return self.node.peak_rss_mib() - self.base

    def over(self):
        return self.growth() >= RSS_BOUND_MIB


class Flood:
    """`n` connections from `source` that each send `head` and then a byte every 200 ms; one the
    node closes is opened again at once (until stop_replacing()). Runs in a thread."""

    def __init__(self, address, source, head, n):
        self.address, self.source, self.head, self.n = address, source, head, n
        self.opened = 0
        self.closed = 0
        self.lifetimes = []  # seconds each closed connection lived
        self._socks = {}     # socket -> when it was opened
        self._lock = threading.Lock()
        self._replace = True
        self._stop = threading.Event()
        for _ in range(n):
            self._open()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _open(self):
        try:
            s = connect(self.address, self.source)
            s.sendall(self.head)
        except OSError:
            return
        with self._lock:
            self._socks[s] = time.monotonic()
            self.opened += 1

    def _run(self):
        last_trickle = 0.0
        while not self._stop.wait(0.02):
            with self._lock:
                socks = list(self._socks.items())
            now = time.monotonic()
            for s, since in socks:
                if is_closed(s):
                    s.close()
                    with self._lock:
                        del self._socks[s]
                        self.closed += 1
                        self.lifetimes.append(now - since)
                    if self._replace:
                        self._open()
                elif now - last_trickle >= 0.2:
                    try:
                        s.send(b"\x00")
                    except OSError:
                        pass
            if now - last_trickle >= 0.2:
                last_trickle = now

    def closed_within(self, seconds):
        with self._lock:
            return sum(1 for t in self.lifetimes if t <= seconds)

    def all_closed(self):
        with self._lock:
            return not self._socks

    def stop_replacing(self):
        self._replace = False

    def stop(self):
        self._stop.set()
        self._thread.join()
        with self._lock:
            close_all(self._socks)
            self._socks.clear()


class GossipTcpFloodTest(unittest.TestCase):
    BINARY = None

    def run_attack(self, keyed):
        keys = ["--gossip-keys", KEY] if keyed else []
        target = Node(self.BINARY, "target", args=["--gossip-profile", "lan", *keys])
        joiner = None
        socks = []
        try:
            wait_for(lambda: target.metric("hivemesh_members", state="alive") >= 1, 10,
                     "the target's metrics")
            watch = RssWatch(target)
            with Canary(target) as canary:
                # 1. Framing version 1's attack: a bare 16 MiB length, then one byte now and
                # then. Sent one connection at a time, stopping as soon as memory passes the
                # bound (the old transport allocated each claimed frame at once).
                for _ in range(100):
                    s = connect(target.gossip, "127.0.0.2")
                    s.sendall(OLD_FRAMING_16MIB)
                    socks.append(s)
                    time.sleep(0.005)
                    self.assertLess(watch.growth(), RSS_BOUND_MIB,
                                    f"claimed frames grew the node by {watch.growth():.0f} MiB")
                # Framing version 1 is refused as a bad frame, every connection at once.
                wait_for(lambda: all(map(is_closed, socks)), 1.5,
                         "old-framing connections to be closed")
                close_all(socks)
                socks = []
                print(f"old framing: peak growth {watch.growth():.1f} MiB", flush=True)

                # 2. Version 2 heads claiming the largest frame, then a byte every 200 ms. The
                # flood keeps 100 connections going from one source: each one the node closes is
                # opened again at once.
                head = (PREAMBLE_SEALED + struct.pack(">H", 300) if keyed else
                        PREAMBLE_PLAINTEXT + struct.pack(">I", 16 << 20))
                flood = Flood(target.gossip, "127.0.0.2", head, 100)
                try:
                    # Over the per-source limit: closed at once.
                    wait_for(lambda: flood.closed_within(1.0) >= 100 - PER_SOURCE, 5,
                             "connections over the per-source limit to be closed at once")
                    self.assertGreaterEqual(
                        target.metric("hivemesh_gossip_packets_dropped_total",
                                      reason="source_connection_limit"), 100 - PER_SOURCE)

                    # 3. Membership keeps working: a member from another address joins now,
                    # while the flood goes on.
                    served_max = 0
                    joiner = Node(self.BINARY, "joiner", args=[
                        "--gossip-profile", "lan", "--join", target.gossip, *keys])

                    def joined():
                        nonlocal served_max
                        served_max = max(served_max,
                                         target.metric("hivemesh_gossip_tcp_connections"))
                        return _sees_alive(target, "joiner") and _sees_alive(joiner, "target")

                    wait_for(joined, 30, "the joiner and the target to see each other alive")
                    print(f"flood: {flood.opened} connections opened, {flood.closed} closed by "
                          f"the node; at most {served_max:.0f} served at once", flush=True)
                    self.assertLessEqual(served_max, PER_SOURCE + 2)
                    self.assertLess(watch.growth(), RSS_BOUND_MIB)
                    # The flood stops opening; what it holds goes at the deadlines: keyed heads
                    # at the head deadline, trickled plaintext bodies at tcp_timeout.
                    flood.stop_replacing()
                    held_since = time.monotonic()
                    limit = HEAD_DEADLINE_S if keyed else LAN_TCP_TIMEOUT_S
                    wait_for(flood.all_closed, limit + 4,
                             "held connections to be cut by their deadline")
                    print(f"held connections all cut {time.monotonic() - held_since:.1f} s after "
                          "the flood stopped opening more", flush=True)
                    self.assertGreater(
                        target.metric("hivemesh_gossip_packets_dropped_total", reason="timeout"), 0)
                finally:
                    flood.stop()

                # 4. Connections that say nothing are cut by the head deadline.
                for _ in range(PER_SOURCE):
                    socks.append(connect(target.gossip, "127.0.0.4"))
                silent = [wait_closed(s, LAN_TCP_TIMEOUT_S)[0] for s in socks]
                print(f"silent connections cut after {max(x or 99 for x in silent):.1f} s",
                      flush=True)
                for took in silent:
                    self.assertIsNotNone(took, "a silent connection was never cut")
                    self.assertLess(took, HEAD_DEADLINE_S + 1.5)
                close_all(socks)
                socks = []

                # 5. A bad frame closes the socket at once.
                bad_frames = [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                              struct.pack(">I", 10) + b"0123456789"]
                if keyed:
                    # A version-2 sealed head no key authenticates, and a plaintext frame.
                    bad_frames.append(PREAMBLE_SEALED + struct.pack(">H", 100) + bytes(100))
                    bad_frames.append(PREAMBLE_PLAINTEXT + struct.pack(">I", 5) + b"hello")
                else:
                    bad_frames.append(PREAMBLE_SEALED + struct.pack(">H", 100) + bytes(100))
                for frame in bad_frames:
                    s = connect(target.gossip, "127.0.0.5")
                    s.sendall(frame)
                    took, answer = wait_closed(s, LAN_TCP_TIMEOUT_S + 2)
                    s.close()
                    print(f"bad frame {frame[:12]!r}: closed after {took} s, answer {answer[:48]!r}",
                          flush=True)
                    self.assertIsNotNone(took, f"bad frame {frame[:12]!r}: socket never closed")
                    self.assertLess(took, 1.0, f"bad frame {frame[:12]!r} held the socket")
                    if keyed and frame.startswith(b"HM\x02"):
                        self.assertEqual(answer, NOTICE)
                    else:
                        self.assertEqual(answer, b"")
                self.assertGreaterEqual(
                    target.metric("hivemesh_gossip_packets_dropped_total", reason="bad_frame"), 2)

                # 6. Plaintext: 16 connections fill 15 MiB of a 16 MiB frame at full speed. The
                # bytes really arrive, so only the node-wide budget bounds them.
                if not keyed:
                    self.fill_frames(target, watch)
                canary.check()
            self.assertLess(watch.growth(), RSS_BOUND_MIB)
            print(f"peak RSS growth over the whole attack: {watch.growth():.1f} MiB", flush=True)
            self.assertTrue(_sees_alive(target, "joiner"))
        finally:
            close_all(socks)
            if joiner:
                joiner.stop()
            target.stop()

    def fill_frames(self, target, watch):
        socks = []
        chunk = bytes(1 << 20)
        try:
            for _ in range(PER_SOURCE):
                s = connect(target.gossip, "127.0.0.3")
                s.sendall(PREAMBLE_PLAINTEXT + struct.pack(">I", 16 << 20))
                s.setblocking(False)
                socks.append([s, 0])
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                progress = False
                for entry in socks:
                    s, sent = entry
                    if sent >= 15 << 20:
                        continue
                    try:
                        entry[1] += s.send(chunk[:min(len(chunk), (15 << 20) - sent)])
                        progress = True
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        entry[1] = 15 << 20  # closed by the node
                self.assertLess(watch.growth(), RSS_BOUND_MIB,
                                f"filled frames grew the node by {watch.growth():.0f} MiB")
                if not progress:
                    time.sleep(0.01)
            refused = target.metric("hivemesh_gossip_packets_dropped_total", reason="budget")
            print(f"filled frames: peak growth {watch.growth():.1f} MiB, {refused:.0f} refused "
                  "by the budget", flush=True)
            self.assertGreater(refused, 0, "the gossip buffer budget never refused a frame")
        finally:
            close_all(s for s, _ in socks)

    def test_keyed_node(self):
        self.run_attack(keyed=True)

    def test_plaintext_node(self):
        self.run_attack(keyed=False)


def _sees_alive(node, name):
    return any(m["name"] == name and m["state"] == "alive" for m in node.members())


if __name__ == "__main__":
    run(GossipTcpFloodTest)
