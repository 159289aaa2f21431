#!/usr/bin/python3
"""`hivemesh demo` end to end: the shipped scenario (examples/edge-site) on real frames of the
sample video, short runs. Checks the exit code, what the report says (failover and recovery,
offloading, insights, no frame outside its zone) and that no node process is left behind.

    demo_test.py BINARY BUILD_DIR

Frames come from scripts/fetch-frames.sh (Debian's opencv-doc sample video, fetched once into
.cache/); a failed fetch fails the test.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = BUILD = FRAMES = None


def api_addresses(output):
    """The nodes' API addresses, from the plan table the demo prints first."""
    return re.findall(r"^\S+\s+\S+\s+\S+\s+(127\.0\.0\.1:\d+)\s*$", output, re.M)


def processes_with(needles):
    """PIDs whose command line contains any of `needles`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in cmdline for n in needles):
            found.append((int(pid), cmdline))
    return found


def refused(address):
    host, port = address.split(":")
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) != 0


class DemoTest(unittest.TestCase):
    def run_demo(self, *args, timeout=240):
        with tempfile.TemporaryDirectory() as work:
            p = subprocess.run([BINARY, "demo", "--frames", FRAMES, "--work-dir", work, *args],
                               cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        return p

    def assert_nothing_left(self, output):
        addresses = api_addresses(output)
        self.assertGreaterEqual(len(addresses), 4, output)
        left = processes_with([f"--http-address {a}" for a in addresses])
        self.assertEqual(left, [], "node processes left behind")
        for a in addresses:
            self.assertTrue(refused(a), f"{a} still accepts connections")

    def test_a_short_run_is_clean_with_failover_and_recovery(self):
        p = self.run_demo("--duration", "24")
        out = p.stdout
        self.assertEqual(p.returncode, 0, out + p.stderr)
        self.assertIn("Result: clean run", out)
        # Secure by default: every node joined the first one's mesh with a token.
        self.assertRegex(out, r"Security: (\d+) of \1 nodes hold a certificate of mesh "
                              r"[0-9a-f]{32} \(joined with a token\); links and forwarded "
                              r"requests between them are mutual TLS")
        self.assertRegex(out, r"killed cam-2 with SIGKILL")
        self.assertRegex(out, r"cam-2 is back")
        # While cam-2 was down nothing failed, and after it came back it served requests again.
        down = re.search(r"While it was down: ([\d,]+) requests, ([\d,]+) failed", out)
        self.assertIsNotNone(down, out)
        self.assertGreater(int(down.group(1).replace(",", "")), 0)
        self.assertEqual(down.group(2), "0")
        back = re.search(r"After it came back it served ([\d,]+) requests", out)
        self.assertIsNotNone(back, out)
        self.assertGreater(int(back.group(1).replace(",", "")), 0, out)
        # Every node appears in the table, and the gateway forwarded every vibration window (it
        # does not host the model).
        for node in ("cam-1", "cam-2", "gateway-1", "machine-1"):
            self.assertRegex(out, rf"(?m)^{node}\s+\S+\s+\d", node)
        row = re.search(r"(?m)^gateway-1\s+vibration-anomaly\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)", out)
        self.assertIsNotNone(row, out)
        self.assertGreater(int(row.group(1).replace(",", "")), 0)
        self.assertEqual(row.group(2), "0")
        self.assertEqual(row.group(1), row.group(3))
        # Insights, from what arrived: the subscriber on machine-1 (over the bus) and the MQTT
        # broker's consumer got insights published at every node; the broker missed none of an
        # answered request (the outbox keeps them across cam-2's SIGKILL).
        self.assertIn("`hivemesh sub 'site/#'` on machine-1 follows the bus; every node forwards "
                      "them to the MQTT broker mqtt://127.0.0.1:", out)
        sinks = re.findall(r"(?m)^\s+(hivemesh sub on machine-1 \(bus\)|mosquitto_sub \(MQTT "
                           r"broker\))\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)"
                           r"\s+([\d,]+)\s+([\d,]+)\s+(\S+)\s+([\d,]+)", out)
        self.assertEqual(len(sinks), 2, out)
        for who, _, _, people, faces, alerts, windows, _, nodes, missing in sinks:
            self.assertEqual(nodes, "cam-1,cam-2,gateway-1,machine-1", who)
            for n in (people, alerts, windows):
                self.assertGreater(int(n.replace(",", "")), 0, who)
            if who.startswith("mosquitto"):
                self.assertEqual(missing, "0", out)
        # People were counted, anomalies were caught: the tables come from the subscriber.
        self.assertIn("Insights from the subscriber on machine-1", out)
        self.assertRegex(out, r"(?m)^\s+entrance\s+\d+\.\d \(\d+\)")
        caught = re.findall(r"(?m)^\s+(?:press-1|pump-3)\s+[\d,]+\s+[\d,]+\s+[\d,]+\s+[\d,]+ \((\d+)%\)",
                            out)
        self.assertEqual(len(caught), 2, out)
        for pct in caught:
            self.assertGreaterEqual(int(pct), 80)
        # Data policy, from both sides.
        self.assertIn("Frames answered by a node outside their camera's zone: 0", out)
        self.assertIn("Frames computed by the nodes outside the cameras' zones (machine-1), from "
                      "their own statistics: 0", out)
        self.assert_nothing_left(out)

    def test_more_nodes_copy_the_scenario(self):
        # What is checked here is the copying onto a fifth node, not capacity or failover (the
        # four-node run above checks those): the shipped scenario at a quarter of its rates,
        # without the entrance camera's burst and without the kill. At full rate, the copied
        # cameras ask more of the sanitizer build than two shared cores can serve while another
        # build runs beside the tests (queues fill: 503).
        site = os.path.join(ROOT, "examples", "edge-site")
        with open(os.path.join(site, "scenario.yaml")) as f:
            text = f.read()
        light = re.sub(r"(?m)^\s+burst_\w+:.*\n", "", text)
        light = re.sub(r"(?m)^chaos:\n(?:\s+.*\n)+", "", light)
        light = light.replace("fps: 4", "fps: 1")
        light = light.replace("rate_hz: 25,", "rate_hz: 6,").replace("rate_hz: 100,", "rate_hz: 25,")
        self.assertNotIn("burst_", light)
        self.assertNotIn("kill:", light)
        light = light.replace("repository: models", f"repository: {site}/models")
        light = light.replace("config: nodes/", f"config: {site}/nodes/")
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as scenario:
            scenario.write(light)
            scenario.flush()
            p = self.run_demo("--scenario", scenario.name, "--duration", "8", "--nodes", "5")
        out = p.stdout
        self.assertEqual(p.returncode, 0, out + p.stderr)
        self.assertIn("hivemesh demo: 5 nodes, 3 cameras", out)
        self.assertRegex(out, r"(?m)^cam-3\s+line-1\s")
        self.assertRegex(out, r"(?m)^entrance@cam-3\s+camera\s+cam-3")
        self.assert_nothing_left(out)

    def test_ctrl_c_stops_every_node_and_reports(self):
        with tempfile.TemporaryDirectory() as work:
            p = subprocess.Popen([BINARY, "demo", "--frames", FRAMES, "--work-dir", work,
                                  "--duration", "60"], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            out = ""
            deadline = time.time() + 60
            while "Nodes started" not in out and time.time() < deadline:
                line = p.stdout.readline()
                if not line:
                    break
                out += line
            self.assertIn("Nodes started", out, p.stderr.read() if p.poll() is not None else "")
            time.sleep(2)  # let some traffic flow
            p.send_signal(signal.SIGINT)
            rest, err = p.communicate(timeout=60)
            out += rest
        self.assertEqual(p.returncode, 130, out + err)
        self.assertIn("Result: interrupted", out)
        self.assertIn("Requests by node and model", out)
        self.assert_nothing_left(out)

    def test_usage_errors_exit_2(self):
        p = subprocess.run([BINARY, "demo", "--frames", "/nonexistent/frames"], cwd=ROOT,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("fetch-frames.sh", p.stderr)
        p = subprocess.run([BINARY, "demo", "--scenario", "/nonexistent/scenario.yaml"], cwd=ROOT,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("/nonexistent/scenario.yaml", p.stderr)
        p = subprocess.run([BINARY, "demo", "--nodes", "0"], cwd=ROOT, capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)


def main():
    global BINARY, BUILD, FRAMES
    BINARY, BUILD = sys.argv[1], sys.argv[2]
    fetched = subprocess.run([os.path.join(ROOT, "scripts", "fetch-frames.sh"), BUILD],
                             capture_output=True, text=True)
    if fetched.returncode != 0:
        sys.exit(f"scripts/fetch-frames.sh failed:\n{fetched.stderr}")
    FRAMES = fetched.stdout.strip().splitlines()[-1]
    unittest.main(argv=[sys.argv[0], "-v"])


if __name__ == "__main__":
    main()
