"""Running a node out of file descriptors.

Every connection costs the node a descriptor. Without a limit of its own, a stranger who opens
connections until the node's RLIMIT_NOFILE is reached made accept() fail with EMFILE; the accept
loop retried at once, forever, at 90% CPU, writing a log line per failure (30 MB/s), and normal
requests timed out.

Two nodes with a limit of 128 descriptors:
- one whose connection limits are lifted, so that the attacker does reach the descriptor limit:
  while the attacker holds its connections the node must not spin (few accept attempts, little
  CPU), must log the failures a few times only, and must serve normal requests again as soon as
  the attacker lets go;
- one with its default limits, which are derived from the descriptor limit: the attacker (from
  127.0.0.2) gets only its share of connections, the node never runs out of descriptors, and a
  canary's inferences from 127.0.0.1 succeed throughout.

    /usr/bin/python3 tests/security/test_connection_exhaustion.py path/to/hivemesh
"""
import sys
import time
import unittest

from hostile import Canary, Node, closed_by_peer, connect, raw_http, run, wait_for

NOFILE = 128
HOLD_S = 5.0
MAX_ATTACK_CONNECTIONS = 400  # more than the node has descriptors


def open_until_refused(port, source, count):
    """Opens up to `count` connections from `source`, each sending half a request head (so the
    node must keep it open); returns them."""
    conns = []
    for _ in range(count):
        try:
            s = connect(port, source=source, timeout=5)
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
        except OSError:
            break
        conns.append(s)
    return conns


def close_all(conns):
    for s in conns:
        s.close()


class ExhaustionTest(unittest.TestCase):
    def test_out_of_descriptors_the_accept_loop_backs_off(self):
        # Connections must outlive the attack: a head has a minute to arrive.
        node = Node(self.BINARY, "no-fds", nofile=NOFILE,
                    args=["--max-connections", "100000", "--max-connections-per-source",
                          "100000", "--header-timeout-ms", "60000"])
        conns = []
        try:
            # One refusal first, while the node has descriptors: the sanitizers' check of a
            # virtual call (UBSan's vptr check) needs a descriptor the first time it meets a
            # type, and would otherwise take the node's first refusal out of descriptors for
            # undefined behaviour. (A build without sanitizers has no such check.)
            self.assertEqual(raw_http(node.port, b"NOT HTTP\r\n\r\n")[0], 400)
            before = node.rejected("accept_failed")
            log_before = len(node.log_lines("accept"))
            # The kernel completes handshakes into the listen backlog whether or not the node
            # accepts them, so every connect succeeds: wait until the node has used its
            # descriptors and says accept fails.
            conns = open_until_refused(node.port, "127.0.0.2", MAX_ATTACK_CONNECTIONS)
            wait_for(lambda: len(node.log_lines("accept")) > log_before, 30,
                     "accept to fail for want of descriptors")
            self.assertGreaterEqual(node.open_fds(), NOFILE - 8)
            cpu_before = node.cpu_seconds()
            log_at_hold = len(node.log_lines("accept"))
            time.sleep(HOLD_S)  # the attack: descriptors held for a while
            cpu = node.cpu_seconds() - cpu_before
            log_lines = len(node.log_lines("accept")) - log_before
            print(f"{len(conns)} connections opened, node at {node.open_fds()} descriptors; "
                  f"{cpu:.2f} s CPU in {HOLD_S} s, {log_lines} log lines about accept",
                  file=sys.stderr)
            self.assertLess(cpu, 1.5, f"{cpu:.2f} s of CPU in {HOLD_S} s out of descriptors")
            self.assertLess(log_lines, 20, f"{log_lines} log lines about accept")
            self.assertLess(len(node.log_lines("accept")) - log_at_hold, 10)
            self.assertTrue(node.alive())
            close_all(conns)
            conns = []
            # Served again as soon as the descriptors are back (the first try must succeed;
            # it may wait for the accept loop's back-off, at most a second).
            status, body = node.infer_identity(timeout=10)
            self.assertEqual(status, 200, body)
            # Every failed accept() is counted: a loop that backs off (10 ms doubling to 1 s)
            # makes a dozen or so attempts in the whole attack, one that spins thousands. (CPU
            # time alone cannot tell on a loaded machine, where a spinning node gets little.)
            attempts = node.rejected("accept_failed") - before
            print(f"{attempts} failed accepts in all", file=sys.stderr)
            self.assertGreater(attempts, 0)
            self.assertLess(attempts, 60, f"{attempts} failed accepts: the loop did not back off")
        finally:
            close_all(conns)
            node.stop()

    def test_default_limits_keep_descriptors_for_everyone_else(self):
        node = Node(self.BINARY, "fd-share", nofile=NOFILE)
        conns = []
        try:
            base_fds = node.open_fds()
            before = node.rejected("source_connection_limit")
            with Canary(node) as canary:
                conns = open_until_refused(node.port, "127.0.0.2", MAX_ATTACK_CONNECTIONS)
                # Connections over the source's share are closed at once.
                wait_for(lambda: node.rejected("source_connection_limit") - before
                         >= len(conns) // 2, 30,
                         "connections over the per-source limit to be refused")
                refused = sum(1 for s in conns if closed_by_peer(s, timeout=0.2))
                print(f"{len(conns)} connections tried, {refused} refused; descriptors "
                      f"{base_fds} before, {node.open_fds()} during", file=sys.stderr)
                self.assertGreater(refused, len(conns) // 2)
                self.assertLess(node.open_fds(), NOFILE - 16)
                wait_for(lambda: canary.ok >= 5, 30, "normal inferences during the attack")
            canary.check()
            self.assertEqual(node.rejected("accept_failed"), 0)
            close_all(conns)
            conns = []
            wait_for(lambda: node.open_fds() <= base_fds + 4, 30,
                     "the node's descriptors to return to their number before the attack")
        finally:
            close_all(conns)
            node.stop()


if __name__ == "__main__":
    run(ExhaustionTest)
