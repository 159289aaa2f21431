#!/usr/bin/python3
"""The node under a service manager (agent/service_notify.h): the test plays systemd's side of the
notify protocol with a datagram socket of its own (NOTIFY_SOCKET) and a watchdog period
(WATCHDOG_USEC), as systemd does for a unit with Type=notify and WatchdogSec=.

- A node given a seed that is not up yet says nothing until the seed answers and it has joined,
  then READY=1 with a STATUS= line; the node answers /v2/health/ready by then.
- WATCHDOG=1 comes at half the watchdog period while the node runs (its I/O loops answer), and
  stops coming when the node is frozen (SIGSTOP).
- SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1.
- SIGTERM: STOPPING=1, then the node drains and exits 0.
- Without NOTIFY_SOCKET nothing is sent and nothing fails (every other test runs that way).

    sd_notify_test.py path/to/hivemesh
"""
import os
import signal
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agent_node import AgentNode, wait_for  # noqa: E402

WATCHDOG_USEC = 600_000
MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "models")


class Manager:
    """The service manager's end: a datagram socket collecting the node's messages."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="hivemesh-notify-")
        self.path = os.path.join(self.folder, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []  # (time, {key: value})
        self.cursor = 0  # until() looks from here

    def read(self, seconds):
        """Messages that come within `seconds`, appended to self.messages."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                break
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def until(self, key, seconds):
        """The next message with `key` after the last one `until` returned (reading up to
        `seconds` for it), or None."""
        deadline = time.monotonic() + seconds
        while True:
            for i in range(self.cursor, len(self.messages)):
                if key in self.messages[i][1]:
                    self.cursor = i + 1
                    return self.messages[i][1]
            if time.monotonic() >= deadline:
                return None
            self.read(min(0.2, deadline - time.monotonic()))

    def count(self, key, since):
        return sum(1 for at, m in self.messages if at >= since and key in m)

    def close(self):
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.folder)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SdNotifyTest(unittest.TestCase):
    BINARY = None

    def test_ready_watchdog_reload_and_stop(self):
        manager = Manager()
        seed_gossip = free_port()
        env_before = dict(os.environ)
        os.environ["NOTIFY_SOCKET"] = manager.path
        os.environ["WATCHDOG_USEC"] = str(WATCHDOG_USEC)
        try:
            node = AgentNode(self.BINARY, "notified",
                             ["--model-repository", MODELS, "--models", "identity",
                              "--join", f"127.0.0.1:{seed_gossip}"])
        finally:
            os.environ.clear()
            os.environ.update(env_before)
        seed = None
        try:
            # Serving, but its seed is not up: no READY yet (watchdog pings may come).
            manager.read(2.0)
            self.assertFalse([m for _, m in manager.messages if "READY" in m],
                             "READY before the node joined")
            self.assertGreaterEqual(manager.count("WATCHDOG", 0), 2)
            seed = AgentNode(self.BINARY, "notify-seed",
                             ["--model-repository", MODELS, "--models", "identity",
                              "--gossip-address", f"127.0.0.1:{seed_gossip}"])
            ready = manager.until("READY", 30)
            self.assertIsNotNone(ready, "no READY=1 after the seed came")
            self.assertEqual(ready["READY"], "1")
            self.assertRegex(ready.get("STATUS", ""), r"^serving \d+ model version\(s\) on \d+; "
                                                       r"\d+ member\(s\) of the mesh alive$")
            status, _ = node.request("GET", "/v2/health/ready")
            self.assertEqual(status, 200)
            # The watchdog at half its period: about 5 in 1.5 s (at least 3 on a busy machine).
            start = time.monotonic()
            manager.read(1.5)
            self.assertGreaterEqual(manager.count("WATCHDOG", start), 3)
            # Frozen: no pings.
            os.kill(node.proc.pid, signal.SIGSTOP)
            manager.read(0.3)  # what was already on its way
            start = time.monotonic()
            manager.read(1.5)
            frozen = manager.count("WATCHDOG", start)
            manager.cursor = len(manager.messages)
            os.kill(node.proc.pid, signal.SIGCONT)
            self.assertEqual(frozen, 0, "pings from a frozen node")
            self.assertIsNotNone(manager.until("WATCHDOG", 5), "no pings after SIGCONT")
            # Reload.
            manager.cursor = len(manager.messages)
            node.proc.send_signal(signal.SIGHUP)
            reloading = manager.until("RELOADING", 10)
            self.assertIsNotNone(reloading, "no RELOADING=1 on SIGHUP")
            self.assertGreater(int(reloading["MONOTONIC_USEC"]), 0)
            self.assertIsNotNone(manager.until("READY", 10), "no READY=1 after the reload")
            # Stop.
            node.proc.send_signal(signal.SIGTERM)
            stopping = manager.until("STOPPING", 10)
            self.assertIsNotNone(stopping, "no STOPPING=1 on SIGTERM")
            self.assertEqual(node.proc.wait(timeout=30), 0)
        finally:
            node.stop()
            if seed is not None:
                seed.stop()
            manager.close()


if __name__ == "__main__":
    SdNotifyTest.BINARY = sys.argv[1]
    unittest.main(argv=sys.argv[:1], verbosity=2)
