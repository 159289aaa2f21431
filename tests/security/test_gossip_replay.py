"""Sealed gossip replayed to a node it was not meant for.

Three agents share one gossip key: A joins B; C is on its own. The attacker holds no key, only
what it captured:
 - TCP: A is also given the test's own listener R as a join seed, so R receives the sealed join
   frame A addressed to R (a push-pull carrying A's state). R replays it to C. Before the
   recipient was authenticated, C merged it and listed A as a member; now C drops it as
   misdirected, counts it, logs (rate-limited) where it was addressed and where it arrived, and
   its member table stays {C}.
 - UDP: a datagram sealed with the mesh's key and addressed to B (what A sends B) is sent to C:
   C drops it as misdirected. The same datagram addressed to C passes C's envelope (its payload
   is no gossip message, so the decoder counts it malformed), which shows that the address is
   what C refused.
"""
import socket
import threading
import unittest

from hostile import Node, run, wait_for
from gossip_attack import KEY, host_port, sealed_packet

KEYS = ["--gossip-keys", KEY, "--gossip-profile", "lan"]


class Recorder:
    """A TCP listener that records the first bytes of each connection (up to 1 s of silence)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.frames = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(1.0)
            data = b""
            try:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except (socket.timeout, OSError):
                pass
            conn.close()
            if data:
                with self._lock:
                    self.frames.append(data)

    def first(self):
        with self._lock:
            return self.frames[0] if self.frames else None

    def close(self):
        self.sock.close()


def dropped(node, reason):
    return node.metric("hivemesh_gossip_packets_dropped_total", reason=reason)


class GossipReplayTest(unittest.TestCase):
    BINARY = None

    def test_sealed_gossip_replayed_to_another_node_is_dropped(self):
        recorder = Recorder()
        nodes = []
        try:
            b = Node(self.BINARY, "b", args=KEYS)
            nodes.append(b)
            a = Node(self.BINARY, "a", args=[*KEYS, "--join", f"{recorder.address},{b.gossip}"])
            nodes.append(a)
            c = Node(self.BINARY, "c", args=KEYS)
            nodes.append(c)
            wait_for(lambda: any(m["name"] == "a" for m in b.members()), 20, "a to join b")
            frame = wait_for(recorder.first, 20, "A's join frame at the recorder")
            print(f"captured a {len(frame)}-byte sealed join frame A sent to {recorder.address}",
                  flush=True)

            # TCP: the captured frame, replayed to C.
            before = {m["name"] for m in c.members()}
            self.assertEqual(before, {"c"})
            s = socket.create_connection(host_port(c.gossip), timeout=5,
                                         source_address=("127.0.0.2", 0))
            s.sendall(frame)
            s.settimeout(5)
            try:
                answer = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                answer = b""
            s.close()
            wait_for(lambda: dropped(c, "misdirected") >= 1 or
                     any(m["name"] == "a" for m in c.members()), 10,
                     "C to drop the replayed frame (or take it)")
            self.assertEqual({m["name"] for m in c.members()}, {"c"},
                             "C merged a join frame that was addressed to another node")
            self.assertEqual(dropped(c, "misdirected"), 1)
            self.assertEqual(answer, b"", "C answered a replayed frame")
            lines = c.log_lines(rf"addressed to {recorder.address}.*{c.gossip}")
            self.assertTrue(lines, "C did not log where the frame was addressed and arrived")
            print(f"C: {lines[0].strip()}", flush=True)

            # UDP: a datagram sealed for B, sent to C; the same sealed for C passes C's envelope.
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.2", 0))
            malformed = dropped(c, "malformed")
            auth = dropped(c, "unauthenticated") + dropped(c, "stale") + dropped(c, "replayed")
            udp.sendto(sealed_packet(KEY, b"\x01junk", b.gossip, boot_id=7, counter=1),
                       host_port(c.gossip))
            wait_for(lambda: dropped(c, "misdirected") >= 2, 10, "C to drop the UDP replay")
            udp.sendto(sealed_packet(KEY, b"\x01junk", c.gossip, boot_id=7, counter=2),
                       host_port(c.gossip))
            wait_for(lambda: dropped(c, "malformed") > malformed, 10,
                     "the datagram addressed to C to pass its envelope")
            self.assertEqual(dropped(c, "misdirected"), 2)
            self.assertEqual(
                dropped(c, "unauthenticated") + dropped(c, "stale") + dropped(c, "replayed"), auth)
            udp.close()
            # The mesh of A and B is untouched, and C is still alone.
            wait_for(lambda: any(m["name"] == "b" and m["state"] == "alive"
                                 for m in a.members()), 10, "A to see B alive")
            self.assertEqual({m["name"] for m in c.members()}, {"c"})
        finally:
            recorder.close()
            for n in nodes:
                n.stop()


if __name__ == "__main__":
    run(GossipReplayTest)
