#!/usr/bin/python3
"""Gossip keys handed out and rotated over mutual TLS (docs/identity.md, "Gossip keys"), on real
nodes.

n0 created the mesh (it issues) and serves `identity`; n1 joined and serves it too; n2 joined
and serves nothing, so its inferences are forwarded. Shown here:

- `hivemesh gossip-keys rotate` takes the mesh through three versions of its keys (a new key
  accepted, then sealing, then the old key gone) on every live node, while inferences keep
  going: not one fails, no node drops a gossip packet it cannot open, and no member is ever
  held suspect or dead;
- a member stopped through the whole rotation comes back with the old key only: it finds no
  member, asks an issuer over mutual TLS, gets the keys in force and is a member again within a
  minute;
- revoking a member rotates the keys by itself: the revoked process cannot fetch the new ones,
  its gossip is dropped by every other node, and it loses the mesh;
- keys are handed only to members (on their mesh links or by their certificates), never to a
  plain caller; an admin sees the version and how many keys, never a key. The nodes run with
  `admin_access: token`, so that no member's fetch passes for an admin's call from loopback;
- only an issuer rotates them.

    test_gossip_key_rotation.py path/to/hivemesh
"""
import os
import tempfile
import time
import unittest

from hostile import binary_from_argv, wait_for
import agent_node  # noqa: E402 (on the path hostile sets)
from secure_mesh import InferenceLoad, SecureMeshTest


def keys_file(name):
    """(version, [keys]) of a node's <state>/mesh/gossip.keys."""
    version, keys = 0, []
    with open(os.path.join(agent_node.STATE_ROOT, name, "mesh", "gossip.keys")) as f:
        for line in f.read().splitlines():
            if line.startswith("version "):
                version = int(line.split()[1])
            elif line and " " not in line:
                keys.append(line)
    return version, keys


def unauthenticated(node):
    return node.metric("hivemesh_gossip_packets_dropped_total", reason="unauthenticated")


class GossipKeyRotationTest(SecureMeshTest):
    WORK = tempfile.TemporaryDirectory(prefix="hivemesh-keys-")
    ADMIN_TOKEN = os.path.join(WORK.name, "admin.token")
    NODE_ARGS = ("--admin-access", "token", "--admin-token-file", ADMIN_TOKEN)
    CLI_ARGS = ("--admin-token-file", ADMIN_TOKEN)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        with open(cls.ADMIN_TOKEN, "w") as f:
            f.write("s3cret-admin-token\n")
        os.chmod(cls.ADMIN_TOKEN, 0o600)
        cls.start_forwarding_mesh()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.WORK.cleanup()

    def all_alive(self, observers, names):
        for o in observers:
            states = {m["name"]: m["state"] for m in o.members()}
            if any(states.get(n) != "alive" for n in names):
                return False
        return True

    def test_1_rotation_under_load(self):
        version0, keys0 = keys_file("n0")
        self.assertEqual(len(keys0), 1)
        self.assertTrue(all(keys_file(n.name) == (version0, keys0) for n in self.live))

        self.away.stop()
        names = [n.name for n in self.live]
        wait_for(lambda: self.all_alive(self.live, names), 20, "every live node alive")
        drops_before = {n.name: unauthenticated(n) for n in self.live}
        not_alive = []

        def watch_members(_):
            for o in self.live:
                for m in o.members():
                    if m["name"] in names and m["state"] != "alive":
                        not_alive.append((o.name, m["name"], m["state"]))

        with InferenceLoad(self.n2, self.n1, also=watch_members) as load:
            time.sleep(2)
            out = self.cli("gossip-keys", "rotate", "--node", f"127.0.0.1:{self.n0.port}")
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn(f"version {version0 + 1}", out.stdout)
            started = time.monotonic()
            # A second rotation cannot start during the first.
            out = self.cli("gossip-keys", "rotate", "--node", f"127.0.0.1:{self.n0.port}")
            self.assertNotEqual(out.returncode, 0)
            self.assertIn("under way", out.stderr)

            def done(n):
                version, keys = keys_file(n.name)
                return version == version0 + 3 and len(keys) == 1 and keys != keys0

            wait_for(lambda: all(done(n) for n in self.live), 30,
                     "every node to hold the new key only")
            print(f"every live node sealed with the new key only "
                  f"{time.monotonic() - started:.2f} s after `gossip-keys rotate`", flush=True)
            self.assertEqual(len({tuple(keys_file(n.name)[1]) for n in self.live}), 1)
            time.sleep(3)  # gossip under the new key alone
        for kind, statuses in load.results.items():
            failed = [s for s in statuses if s != 200]
            print(f"{kind}: {len(statuses)} requests, {len(failed)} failed", flush=True)
            self.assertGreater(len(statuses), 10, kind)
            self.assertEqual(failed, [], kind)
        self.assertEqual(not_alive, [])
        for n in self.live:
            self.assertEqual(unauthenticated(n), drops_before[n.name],
                             f"{n.name} dropped gossip it could not open during the rotation")
        out = self.cli("gossip-keys", "show", "--node", f"127.0.0.1:{self.n2.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(f"version {version0 + 3}, 1 key", out.stdout)
        # An admin sees how many keys, never one; a plain caller gets nothing.
        out = self.cli("gossip-keys", "show", "-o", "json", "--node", f"127.0.0.1:{self.n2.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn('"keys":1', out.stdout)
        self.assertNotIn(keys_file("n2")[1][0], out.stdout)
        status, text = self.n2.request("GET", "/v1/mesh/gossip-keys")
        self.assertEqual(status, 403, text)
        self.assertNotIn(keys_file("n2")[1][0], text)

        # The member that was away still holds the old key: it finds no one, asks an issuer over
        # mutual TLS, and is a member again.
        self.assertEqual(keys_file("away"), (version0, keys0))
        started = time.monotonic()
        back = self.start("away", (), ["--join", self.n0.gossip], secure=True)
        self.__class__.away = back
        wait_for(lambda: self.all_alive([self.n0, back], names + ["away"]), 60,
                 "the member that was away to be a member again")
        print(f"the member that was away through the rotation was a member again "
              f"{time.monotonic() - started:.2f} s after it started", flush=True)
        wait_for(lambda: back.infer_identity()[0] == 200, 20, "the member that was away to serve")
        self.assertEqual(keys_file("away"), keys_file("n0"))

        # Only an issuer rotates them.
        out = self.cli("gossip-keys", "rotate", "--node", f"127.0.0.1:{self.n1.port}")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("issuer rights", out.stderr)

    def test_2_revocation_rotates_the_keys(self):
        rogue = self.start("rogue", (), self.join_args())
        wait_for(lambda: rogue.infer_identity()[0] == 200, 30, "the member to be revoked to serve")
        version0, keys0 = keys_file("n0")
        self.assertEqual(keys_file("rogue"), (version0, keys0))

        out = self.cli("node", "revoke", "rogue", "--node", f"127.0.0.1:{self.n0.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        started = time.monotonic()
        wait_for(lambda: all(keys_file(n.name)[0] == version0 + 3 for n in self.live), 30,
                 "the keys to be rotated after the revocation")
        print(f"the keys were rotated on every live node {time.monotonic() - started:.2f} s after "
              "the revocation", flush=True)
        # The revoked process kept running: it holds the old key only, and its gossip is dropped.
        self.assertTrue(rogue.alive())
        self.assertEqual(keys_file("rogue"), (version0, keys0))
        drops = unauthenticated(self.n1)
        wait_for(lambda: unauthenticated(self.n1) > drops, 30,
                 "n1 to drop the revoked member's gossip")
        wait_for(lambda: all(m["state"] != "alive" for m in rogue.members()
                             if m["name"] != "rogue"), 60,
                 "the revoked member to lose the mesh")
        # Alone, it asks an issuer for the keys in force, and is refused: its key is revoked.
        wait_for(lambda: rogue.log_lines(r"cannot renew"), 30,
                 "the revoked member to be refused the keys in force")
        print(rogue.log_lines(r"cannot renew")[0], flush=True)
        self.assertEqual(keys_file("rogue"), (version0, keys0))


if __name__ == "__main__":
    GossipKeyRotationTest.BINARY = binary_from_argv()
    unittest.main(verbosity=2)
