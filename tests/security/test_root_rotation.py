#!/usr/bin/python3
"""`hivemesh ca rotate` under load (docs/identity.md, "Rotation and revocation"), on real nodes.

n0 created the mesh (it holds the root key and issues) and serves `identity`; n1 joined and
serves it too; n2 joined and serves nothing, so every inference sent to it is forwarded over
mutual TLS. Certificates live 15 s, so renewals run all along. While clients keep sending
inferences to n2 and n1, and a TLS client keeps presenting n2's current certificate to n0 and
n1 on new connections, the root is rotated. Shown here:

- the new root reaches every node's trust bundle within seconds (both roots trusted);
- the issuer then signs under the new root, and every node's certificate chains to it within
  one certificate life;
- not one request fails meanwhile: forwarded, local, and new mutual-TLS handshakes;
- a node joins afterwards with a new token (which names the new root);
- a member stopped through the whole rotation comes back trusting only the old root and serves
  again within a minute (the old root certified the new key);
- a node without the root key cannot rotate it.

    test_root_rotation.py path/to/hivemesh
"""
import hashlib
import os
import time
import unittest

from hostile import binary_from_argv, wait_for
import agent_node  # noqa: E402 (on the path hostile sets)
from secure_mesh import InferenceLoad, SecureMeshTest
from test_mutual_tls import exchange, plain_inference

TTL_S = 15


def pem_blocks(path):
    from cryptography import x509
    with open(path, "rb") as f:
        parts = f.read().split(b"-----END CERTIFICATE-----")[:-1]
    return [x509.load_pem_x509_certificate(p + b"-----END CERTIFICATE-----\n") for p in parts]


def digest(cert):
    from cryptography.hazmat.primitives.serialization import Encoding
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def signed_by(cert, issuer):
    try:
        issuer.public_key().verify(cert.signature, cert.tbs_certificate_bytes)
        return True
    except Exception:  # cryptography's InvalidSignature
        return False


def mesh_file(name, file):
    return os.path.join(agent_node.STATE_ROOT, name, "mesh", file)


class RootRotationTest(SecureMeshTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # `away` is stopped through the whole rotation.
        cls.start_forwarding_mesh(["--certificate-ttl", f"{TTL_S}s"])

    def test_rotation_under_load_fails_no_request(self):
        def handshakes(results):
            # New mutual-TLS connections with n2's certificate of the moment (it renews every
            # 10 s, under the new root once the issuer signs under it).
            cert = (mesh_file("n2", "node.pem"),
                    os.path.join(agent_node.STATE_ROOT, "n2", "node.key"))
            for target in (self.n0, self.n1):
                try:
                    results["handshakes"].append(exchange(target.port, plain_inference(),
                                                          cert=cert)[0])
                except OSError as e:  # a failed handshake is a failure too
                    results["handshakes"].append(repr(e))

        self.away.stop()
        load = InferenceLoad(self.n2, self.n1, also=handshakes)
        load.results["handshakes"] = []
        with load:
            time.sleep(2)  # load before the rotation
            out = self.cli("ca", "rotate", "--node", f"127.0.0.1:{self.n0.port}")
            self.assertEqual(out.returncode, 0, out.stderr)
            new_root = out.stdout.split()[2].rstrip(":")
            started = time.monotonic()

            def trusts_new_root(n):
                return new_root in [digest(r) for r in pem_blocks(mesh_file(n.name, "roots.pem"))]

            wait_for(lambda: all(trusts_new_root(n) for n in self.live), 20,
                     "every node to trust the new root")
            print(f"every node trusts both roots {time.monotonic() - started:.2f} s after the "
                  "rotation", flush=True)
            # The new root, the old one, and the old one's certificate of the new key.
            self.assertTrue(all(len(pem_blocks(mesh_file(n.name, "roots.pem"))) == 3
                                for n in self.live))
            wait_for(lambda: self.n0.log_lines(r"root rotation finished"), 20,
                     "the issuer to sign under the new root")

            def under_new_root(n):
                roots = {digest(r): r for r in pem_blocks(mesh_file(n.name, "roots.pem"))}
                chain = pem_blocks(mesh_file(n.name, "node.pem"))
                return len(chain) == 2 and new_root in roots and \
                    signed_by(chain[1], roots[new_root]) and signed_by(chain[0], chain[1])

            wait_for(lambda: all(under_new_root(n) for n in self.live), TTL_S + 15,
                     "every node's certificate to chain to the new root")
            print(f"every node's certificate chains to the new root "
                  f"{time.monotonic() - started:.2f} s after the rotation", flush=True)
            time.sleep(2)  # load after the rotation
        for kind, statuses in load.results.items():
            failed = [s for s in statuses if s != 200]
            print(f"{kind}: {len(statuses)} requests, {len(failed)} failed", flush=True)
            self.assertGreater(len(statuses), 20, kind)
            self.assertEqual(failed, [], kind)

        # The member that was away comes back trusting only the old root, with a certificate under
        # it (expired by now): it checks the issuer through the old root's certificate of the new
        # key, renews, and serves again within a minute.
        self.assertEqual(len(pem_blocks(mesh_file("away", "roots.pem"))), 1)
        started = time.monotonic()
        back = self.start("away", (), ["--join", self.n0.gossip], secure=True)
        wait_for(lambda: back.infer_identity()[0] == 200, 60, "the member that was away to serve")
        print(f"the member that was away through the rotation served again "
              f"{time.monotonic() - started:.2f} s after it started", flush=True)
        self.assertTrue(under_new_root(back))

        # A node joins afterwards with a token made now: it names the new root.
        out = self.cli("token", "create", "--node", f"127.0.0.1:{self.n0.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(new_root, out.stdout)
        late = self.start("late", (), ["--join", self.n0.gossip, "--token", out.stdout.strip()])
        wait_for(lambda: late.infer_identity()[0] == 200, 30, "the late node to forward")

        # Only the node holding the root key rotates it.
        out = self.cli("ca", "rotate", "--node", f"127.0.0.1:{self.n1.port}")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("issuer rights", out.stderr)


if __name__ == "__main__":
    RootRotationTest.BINARY = binary_from_argv()
    unittest.main(verbosity=2)
