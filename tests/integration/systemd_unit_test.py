#!/usr/bin/python3
"""The shipped systemd unit (packaging/systemd/hivemesh.service, docs/deploy.md):

- `systemd-analyze verify` passes (its ExecStart pointed at the binary under test);
- `systemd-analyze security --offline=yes` rates it at 2.0 or below (the score is printed);
- it keeps what the node needs from its service manager: Type=notify with a watchdog, ExecReload
  by SIGHUP, its own user, the hardening lines docs/deploy.md explains;
- the agent flags its ExecStart uses exist in the binary.

    systemd_unit_test.py path/to/hivemesh
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "packaging", "systemd", "hivemesh.service")


class SystemdUnitTest(unittest.TestCase):
    BINARY = None

    @classmethod
    def setUpClass(cls):
        if shutil.which("systemd-analyze") is None:
            raise AssertionError("systemd-analyze is missing: scripts/install-deps.sh installs "
                                 "systemd")
        with open(UNIT) as f:
            cls.text = f.read()
        cls.folder = tempfile.mkdtemp(prefix="hivemesh-unit-")
        cls.unit = os.path.join(cls.folder, "hivemesh.service")
        with open(cls.unit, "w") as f:
            f.write(cls.text.replace("/usr/bin/hivemesh", os.path.abspath(cls.BINARY)))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.folder, ignore_errors=True)

    def settings(self):
        out = {}
        for line in self.text.splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "[")) and "=" in line:
                key, value = line.split("=", 1)
                out.setdefault(key, []).append(value)
        return out

    def test_1_systemd_verifies_it(self):
        out = subprocess.run(["systemd-analyze", "verify", self.unit], capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stderr.strip(), "", "warnings from systemd-analyze verify")

    def test_2_its_exposure_is_at_most_2(self):
        out = subprocess.run(["systemd-analyze", "security", "--offline=yes", self.unit],
                             capture_output=True, text=True, timeout=60)
        score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
        self.assertIsNotNone(score, out.stdout + out.stderr)
        print(f"systemd-analyze security: {score[1]}", flush=True)
        self.assertLessEqual(float(score[1]), 2.0)

    def test_3_it_keeps_what_the_node_needs(self):
        s = self.settings()
        self.assertEqual(s["Type"], ["notify"])
        self.assertEqual(s["NotifyAccess"], ["main"])
        self.assertTrue(s.get("WatchdogSec"))
        self.assertEqual(s["ExecReload"], ["/bin/kill -HUP $MAINPID"])
        self.assertEqual(s["User"], ["hivemesh"])
        for key, value in (("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                           ("NoNewPrivileges", "yes"), ("PrivateTmp", "yes"),
                           ("CapabilityBoundingSet", ""), ("StateDirectory", "hivemesh"),
                           ("CacheDirectory", "hivemesh")):
            self.assertEqual(s.get(key), [value], key)
        self.assertIn("AF_INET", s["RestrictAddressFamilies"][0].split())

    def test_4_its_exec_start_flags_exist(self):
        command = self.settings()["ExecStart"][0].split()
        self.assertEqual(command[:2], ["/usr/bin/hivemesh", "agent"])
        helptext = subprocess.run([self.BINARY, "agent", "--help"], capture_output=True,
                                  text=True, timeout=30).stdout
        for flag in command[2:]:
            if flag.startswith("--"):
                self.assertIn(flag + " ", helptext, flag)


if __name__ == "__main__":
    SystemdUnitTest.BINARY = sys.argv[1]
    unittest.main(argv=sys.argv[:1], verbosity=2)
