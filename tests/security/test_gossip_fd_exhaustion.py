"""The gossip accept loop at the file-descriptor limit.

A node's open-file limit is lowered (prlimit) to a few dozen above what it uses, and gossip TCP
connections from many source addresses (so that the per-source limit does not turn them away
first) hold it at the limit for about 5 s: accept() then fails with "too many open files" for
every connection still waiting in the listen backlog.

Bounds asserted: over those ~5 s the node uses less than 0.5 s of CPU (an accept loop that
retries at once spins, taking all the CPU it is given for as long as it is at the limit), writes fewer than 15 log lines about it (one a second at most), and
counts the failures (hivemesh_gossip_packets_dropped_total{reason="accept_failed"}). Inferences on
an open keep-alive connection keep succeeding throughout (new connections cannot be accepted at
the limit, by definition), and the node gossips normally once the attack ends.
"""
import resource
import time
import unittest

from hostile import Canary, Node, run, wait_for
from gossip_attack import close_all, connect, wait_closed

HEADROOM = 40  # descriptors left to the node above those it uses when the attack starts
ATTACK_S = 5


class GossipFdExhaustionTest(unittest.TestCase):
    BINARY = None

    def test_accept_backs_off_at_the_fd_limit(self):
        node = Node(self.BINARY, "target", args=["--gossip-profile", "lan"])
        peer = None
        socks = []
        try:
            # Refusals are logged before the descriptors run out, in two successive seconds (a
            # line of its own, then one that says how many more it stands for): the sanitizers
            # of the test build check a virtual call's type the first time they meet it, which
            # takes a pipe, and there is no descriptor left for one at the limit.
            for _ in range(2):
                for _ in range(3):
                    bad = connect(node.gossip, "127.0.0.9")
                    bad.sendall(b"GET / HTTP/1.1\r\n\r\n")
                    wait_closed(bad, 5)
                    bad.close()
                time.sleep(1.1)
            # The same for the HTTP server's paths that end a connection (the canary's own
            # connection closes at the limit).
            for _ in range(2):
                self.assertEqual(node.infer_identity()[0], 200)
            with Canary(node, pause=0.2, keepalive=True) as canary:
                wait_for(lambda: canary.ok >= 3, 10, "the canary's first answers")
                used = node.open_fds()
                limit = used + HEADROOM
                before = resource.prlimit(node.pid, resource.RLIMIT_NOFILE)
                resource.prlimit(node.pid, resource.RLIMIT_NOFILE, (limit, before[1]))
                log_before = len(node.log_lines(r"(?i)accept"))
                cpu_before = node.cpu_seconds()
                start = time.monotonic()
                # Many sources, a few connections each: the descriptors run out before any
                # source's limit is reached. Keep the backlog full for ATTACK_S seconds.
                sources = [f"127.0.1.{i}" for i in range(1, 60)]
                n = 0
                while time.monotonic() - start < ATTACK_S:
                    if len(socks) < 3 * HEADROOM + 200:
                        try:
                            socks.append(connect(node.gossip, sources[n % len(sources)], timeout=2))
                            n += 1
                        except OSError:
                            time.sleep(0.01)
                    else:
                        time.sleep(0.05)
                elapsed = time.monotonic() - start
                cpu = node.cpu_seconds() - cpu_before
                at_limit = node.open_fds()
                canary_ok = canary.ok
            close_all(socks)
            socks = []
            accept_logs = len(node.log_lines(r"(?i)accept")) - log_before
            print(f"{n} connections in {elapsed:.1f} s; node fds {at_limit} (limit {limit}); "
                  f"node CPU {cpu:.2f} s; {accept_logs} log lines about accept; "
                  f"{canary_ok} canary answers", flush=True)
            self.assertGreaterEqual(at_limit, limit - 2, "the attack did not reach the fd limit")
            self.assertLess(cpu, 0.5, f"the node spent {cpu:.2f} s of CPU at the fd limit")
            self.assertLess(accept_logs, 3 * ATTACK_S, "accept failures flooded the log")
            canary.check()
            # It recovers: new connections are accepted again, and the failures were counted.
            resource.prlimit(node.pid, resource.RLIMIT_NOFILE, before)
            self.assertGreater(
                wait_for(lambda: node.metric("hivemesh_gossip_packets_dropped_total",
                                             reason="accept_failed"), 10,
                         "accept failures in the metrics"), 0)
            peer = Node(self.BINARY, "peer", args=["--gossip-profile", "lan", "--join",
                                                    node.gossip])
            wait_for(lambda: any(m["name"] == "peer" and m["state"] == "alive"
                                 for m in node.members()), 20, "a new member after the attack")
        finally:
            close_all(socks)
            if peer:
                peer.stop()
            node.stop()


if __name__ == "__main__":
    run(GossipFdExhaustionTest)
