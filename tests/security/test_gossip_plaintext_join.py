"""Plaintext gossip is no longer silent.

 - A node without gossip keys warns at start that anyone who can reach its gossip address can
   read the membership and forge messages, and says how to turn encryption on.
 - A plaintext node told to join a mesh whose seed encrypts its gossip gets the seed's fixed
   "this mesh requires gossip encryption" answer and exits non-zero within a few seconds with
   "the mesh at <seed> encrypts its gossip and this node has no --gossip-keys: refusing to join";
   it does not keep retrying. The seed's member table is unchanged, and it counts the frame it
   could not authenticate.
 - A node with a key the mesh does not use is answered the same way, takes it for nothing but a
   failed join (it keeps running and retrying, and logs that the seed could not authenticate
   its gossip), and never gets in.
"""
import json
import os
import subprocess
import tempfile
import time
import unittest

from hostile import MODELS, Node, run, wait_for
from gossip_attack import KEY, OTHER_KEY

WARNING = "anyone who can reach"
REFUSAL = ("encrypts its gossip and this node has no --gossip-keys: refusing to join")


class GossipPlaintextJoinTest(unittest.TestCase):
    BINARY = None

    def test_a_plaintext_node_refuses_to_join_an_encrypted_mesh(self):
        seed = Node(self.BINARY, "seed", args=["--gossip-keys", KEY, "--gossip-profile", "lan"])
        wrong = None
        try:
            self.assertFalse(seed.log_lines(WARNING), "a keyed node warned about plaintext")
            status, meta = seed.request("GET", "/v2")
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(meta)["gossip"], {"encrypted": True})
            unauthenticated = seed.metric("hivemesh_gossip_packets_dropped_total",
                                          reason="unauthenticated")
            with tempfile.TemporaryDirectory() as tmp:
                log_path = os.path.join(tmp, "joiner.log")
                with open(log_path, "w") as log:
                    start = time.monotonic()
                    proc = subprocess.Popen(
                        [self.BINARY, "agent", "--node-name", "joiner", "--http-address",
                         "127.0.0.1:0", "--gossip-address", "127.0.0.1:0", "--grpc-address", "off",
                         "--gossip-profile", "lan", "--model-repository", MODELS, "--models",
                         "identity", "--join", seed.gossip, "--insecure", "--state-dir",
                         os.path.join(tmp, "state")],
                        stdout=log, stderr=subprocess.STDOUT)
                    try:
                        code = proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                        code = None
                    took = time.monotonic() - start
                with open(log_path) as f:
                    text = f.read()
            print(f"plaintext joiner exited {code} after {took:.1f} s; last lines:\n" +
                  "\n".join(text.splitlines()[-3:]), flush=True)
            self.assertIsNotNone(code, "the plaintext joiner kept running:\n" + text[-2000:])
            self.assertNotEqual(code, 0)
            self.assertIn(f"the mesh at {seed.gossip} {REFUSAL}", text)
            self.assertIn(WARNING, text, "no warning about plaintext gossip at start")
            self.assertIn("hivemesh keygen", text)
            self.assertIn("--gossip-keys", text)
            self.assertEqual({m["name"] for m in seed.members()}, {"seed"})
            self.assertGreater(seed.metric("hivemesh_gossip_packets_dropped_total",
                                           reason="unauthenticated"), unauthenticated)

            # A keyed node with another key: refused the same way, but not fatal to it.
            wrong = Node(self.BINARY, "wrong", args=["--gossip-keys", OTHER_KEY, "--gossip-profile",
                                                     "lan", "--join", seed.gossip])
            wait_for(lambda: wrong.log_lines(r"could not authenticate"), 15,
                     "the wrong-key node to log that the seed could not authenticate it")
            wait_for(lambda: len(wrong.log_lines(r"could not authenticate|retrying")) >= 2, 15,
                     "the wrong-key node to retry")
            self.assertTrue(wrong.alive(), "a keyed node exited on the notice")
            self.assertEqual({m["name"] for m in seed.members()}, {"seed"})
            self.assertEqual({m["name"] for m in wrong.members()}, {"wrong"})
        finally:
            if wrong:
                wrong.stop()
            seed.stop()


if __name__ == "__main__":
    run(GossipPlaintextJoinTest)
