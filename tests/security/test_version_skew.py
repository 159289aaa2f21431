#!/usr/bin/python3
"""A node among members of other releases (docs/deploy.md, "Upgrades"), with their gossip written
by the test (gossip_wire.py) in plaintext mode, as a node of that release would send it:

- a member whose metadata this release cannot read at all (the format of another major release)
  and whose load reports name an objects fingerprint: the node stays up (it used to abort: it
  read the metadata it had failed to decode to find where to fetch the objects from), lists the
  member with its metadata error, and serves on;
- a member of a later release whose metadata carries fields this release does not know (tagged
  extensions, node_meta.h): it is read, with the version the member says it runs, and
  `hivemesh members` shows it.

    test_version_skew.py path/to/hivemesh
"""
import subprocess
import time
import unittest

import gossip_wire as gw
from hostile import Node, binary_from_argv, wait_for


def load_message(node, seq, payload):
    return bytes([gw.LOAD]) + gw.lbytes(node) + gw.varint(seq) + gw.varint(0) + gw.lbytes(payload)


def load_report(objects):
    """A load report (version 1) with no models and the control versions, ending with `objects`."""
    return bytes([1]) + gw.varint(0) + gw.varint(0) * 5 + gw.varint(objects)


def extension(tag, value):
    return gw.varint(tag) + gw.lbytes(value)


class VersionSkewTest(unittest.TestCase):
    BINARY = None

    def setUp(self):
        self.node = Node(self.BINARY, "n", models=("identity",), args=["--gossip-profile", "local"])
        self.addCleanup(self.node.stop)

    def member(self, name):
        return next((m for m in self.node.members() if m["name"] == name), None)

    def test_1_metadata_it_cannot_read_does_not_bring_it_down(self):
        key = gw.Key()
        meta = bytes([7]) + b"the metadata of another major release"
        alive = gw.alive(1, "other-major", "127.0.0.1:9", meta, signer=key)
        for seq in range(1, 6):
            gw.send_udp(self.node.gossip, gw.packet(alive, load_message(
                "other-major", seq, load_report(objects=0xABCDEF))))
            time.sleep(0.5)
        # The node's periodic work looks at every member's metadata and load (objects, keys,
        # revocations): give it several rounds.
        time.sleep(3)
        if not self.node.alive():
            with open(self.node.log_path) as f:
                self.fail("the node died on a member's unreadable metadata:\n" + f.read()[-2000:])
        wait_for(lambda: self.member("other-major"), 10, "the member to be listed")
        listed = self.member("other-major")
        self.assertIn("unknown metadata version 7", listed.get("metadata_error", ""), listed)
        status, body = self.node.infer_identity()
        self.assertEqual(status, 200, body)

    def test_2_fields_of_a_later_release_are_read(self):
        key = gw.Key()
        meta = (gw.node_meta("127.0.0.1:9", labels={"zone": "east"}) +
                gw.varint(0) * 6 + gw.varint(0) + gw.varint(0) +  # the trailing fields
                extension(42, b"a field of a later release") + extension(1, b"0.2.0") +
                extension(43, b"and another"))
        gw.send_udp(self.node.gossip, gw.packet(gw.alive(1, "later", "127.0.0.1:9", meta,
                                                         signer=key)))
        wait_for(lambda: self.member("later"), 10, "the member to be listed")
        listed = self.member("later")
        self.assertNotIn("metadata_error", listed)
        self.assertEqual(listed["version"], "0.2.0")
        self.assertEqual(listed["labels"], {"zone": "east"})
        table = subprocess.run([self.BINARY, "members", "--node", f"127.0.0.1:{self.node.port}"],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(table.returncode, 0, table.stderr)
        row = next(line for line in table.stdout.splitlines() if line.startswith("later "))
        self.assertTrue(row.endswith("  0.2.0"), row)

    def test_3_a_mesh_tensor_form_it_does_not_read_is_415(self):
        # Version 2 of the form, as a later release would send it: the node says it does not
        # read it (415, which the sender takes as "another peer may"), instead of a 400 that
        # reads as the client's mistake.
        body = b"HMT\x02Q" + bytes(11)
        status, text = self.node.request("POST", "/v2/models/identity/infer", body=body,
                                         headers={"Content-Type":
                                                  "application/x-hivemesh-tensors"})
        self.assertEqual(status, 415, text)
        self.assertIn("version 2 is not known here: this node reads version 1", text)
        status, _ = self.node.infer_identity()
        self.assertEqual(status, 200)


if __name__ == "__main__":
    VersionSkewTest.BINARY = binary_from_argv()
    unittest.main(verbosity=2)
