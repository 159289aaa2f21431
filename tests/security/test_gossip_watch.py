"""Watch connections (docs/membership.md, "Knowing of a crash at once"): each node holds an idle
gossip TCP connection to its K = 3 successors on a ring of name hashes; a watch that closes
without a goodbye makes the watcher probe the member at once.

Asserted with four real agents (plaintext gossip, so that an attacker can speak the wire):
- every node watches 3 members and is watched by 3;
- kill -9 of a member: its watchers see the close (watch_closed counts it) and it is dead on
  every node; a graceful stop (SIGTERM) is a leave, not a crash: it is left, and no watcher
  counts a silent close;
- hostile: a stranger's watch frame gets no answer and is closed; 60 watch frames forged in a
  member's name or strangers' hold at most the cap of served watches (4 x 3 + 4 = 16) on the
  target and no member is suspected for it; once the attacker goes, the real watches are back;
- a watcher that vanishes without closing its connection (power loss, a partition) does not
  keep its place: once it is dead, the node closes the watch it served it.
"""
import struct
import time
import unittest

from gossip_attack import close_all, connect, wait_closed
from gossip_wire import PLAINTEXT_PREAMBLE, Key, alive, dead, lbytes, packet, send_udp
from hostile import Node, run, wait_for

WATCH = 11
CAP = 4 * 3 + 4


def watch_frame(source):
    data = packet(bytes([WATCH]) + lbytes(source))
    return PLAINTEXT_PREAMBLE + struct.pack(">I", len(data)) + data


class GossipWatchTest(unittest.TestCase):
    BINARY = None

    def setUp(self):
        self.a = Node(self.BINARY, "a")
        self.nodes = [self.a] + [Node(self.BINARY, n, args=["--join", self.a.gossip])
                                 for n in ("b", "c", "d")]

    def tearDown(self):
        for n in self.nodes:
            n.stop()

    def stats(self, node):
        import json
        status, text = node.request("GET", "/v1/mesh/stats")
        self.assertEqual(status, 200, text)
        return json.loads(text)

    def state(self, observer, name):
        for m in observer.members():
            if m["name"] == name:
                return m["state"]
        return None

    def wait_watches(self, nodes):
        wait_for(lambda: all(self.stats(n)["watching"] == 3 and self.stats(n)["watched_by"] == 3
                             for n in nodes), 30, "every node to watch 3 and be watched by 3")

    def test_a_crash_is_seen_by_its_watchers_and_a_leave_is_not(self):
        self.wait_watches(self.nodes)
        d = self.nodes[3]
        d.proc.kill()
        d.proc.wait()
        others = self.nodes[:3]
        wait_for(lambda: all(self.state(n, "d") == "dead" for n in others), 30,
                 "d to be dead on every node")
        self.assertGreaterEqual(sum(self.stats(n)["watch_closed"] for n in others), 1)
        before = {n.name: self.stats(n)["watch_closed"] for n in others}
        c = self.nodes[2]
        c.stop()  # SIGTERM: drain, leave, goodbye
        wait_for(lambda: all(self.state(n, "c") == "left" for n in self.nodes[:2]), 60,
                 "c to be left on a and b")
        time.sleep(1.0)
        for n in self.nodes[:2]:
            self.assertEqual(self.stats(n)["watch_closed"], before[n.name],
                             f"{n.name} took c's leave for a crash")
            self.assertEqual(self.state(n, "c"), "left")

    def test_forged_watches_are_bounded_and_harmless(self):
        self.wait_watches(self.nodes)
        # A stranger: no answer, closed.
        s = connect(self.a.gossip)
        s.sendall(watch_frame("mallory"))
        closed, received = wait_closed(s, 10)
        s.close()
        self.assertIsNotNone(closed, "a stranger's watch was held open")
        self.assertEqual(received, b"", "a stranger's watch was answered")
        # Many, in members' names and strangers', from several source addresses.
        socks = []
        try:
            for i in range(60):
                sock = connect(self.a.gossip, f"127.0.0.{10 + i % 6}")
                sock.sendall(watch_frame(["b", "c", "d", f"x{i}"][i % 4]))
                socks.append(sock)
            time.sleep(1.0)
            stats = self.stats(self.a)
            self.assertLessEqual(stats["watched_by"], CAP)
            self.assertLessEqual(stats["watched_by"], 3, "only one watch per member name")
            for n in self.nodes:
                for m in n.members():
                    self.assertEqual(m["state"], "alive", f"{n.name} sees {m['name']}")
        finally:
            close_all(socks)
        # The real watchers come back once the forgeries are gone.
        self.wait_watches(self.nodes)
        for n in self.nodes:
            for m in n.members():
                self.assertEqual(m["state"], "alive", f"{n.name} sees {m['name']}")


    def test_a_vanished_watcher_frees_its_place(self):
        self.wait_watches(self.nodes)
        # A member that will vanish without a word: it joins, watches a, then is gone (its
        # connection stays open, as after a power loss nothing closes it).
        ghost = Key()
        send_udp(self.a.gossip, packet(alive(1, "ghost", "127.0.0.9:9", b"", signer=ghost)))
        wait_for(lambda: self.state(self.a, "ghost") == "alive", 10, "the ghost to be a member")
        s = connect(self.a.gossip, "127.0.0.9")
        try:
            s.sendall(watch_frame("ghost"))
            wait_for(lambda: self.stats(self.a)["watched_by"] == 4, 10, "a to serve its watch")
            # It is found dead (it answers no probe; the accusation only hastens it).
            send_udp(self.a.gossip, packet(dead(1, "ghost", "b")))
            wait_for(lambda: self.state(self.a, "ghost") == "dead", 30, "the ghost to be dead")
            wait_for(lambda: self.stats(self.a)["watched_by"] == 3, 10,
                     "a to close the dead member's watch")
            closed, _ = wait_closed(s, 10)
            self.assertIsNotNone(closed, "the dead member's watch was held open")
        finally:
            s.close()


if __name__ == "__main__":
    run(GossipWatchTest)
