"""Chunk extensions and trailers are bounded.

A chunked request body is framed by chunk-size lines, which may carry extensions
(`5;name=value`), and ends with a trailer section. Neither is body, so neither counts against
the body limit: a node that buffers them until they end can be grown without bound by one
connection that never ends them. The attack streams up to 1 GiB of one chunk extension, and
then of trailers, and asserts that the node answers (400 for the chunk-size line, 431 for the
trailers) naming the limit, closes the connection, counts the refusal, and grows by less than
64 MiB while a canary's inferences keep succeeding.

    /usr/bin/python3 tests/security/test_http_chunk_limits.py path/to/hivemesh
"""
import json
import socket
import sys
import unittest

from hostile import Canary, Node, closed_by_peer, read_response, readable, run

ATTACK_BYTES = 1 << 30  # what the attacker is ready to stream
PIECE = 1 << 20
GROWTH_BOUND_MIB = 64

HEAD = (b"POST /v2/models/identity/infer HTTP/1.1\r\nHost: node\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")


class ChunkLimitsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node(cls.BINARY, "chunks")

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()

    def stream(self, start, piece):
        """Sends `start`, then `piece` again and again until ATTACK_BYTES went, the node
        answered or closed, or it grew past twice the bound (the test has failed by then;
        going on would only take the machine's memory). Returns (status, response bytes,
        closed, bytes sent, peak RSS growth in MiB)."""
        node = self.node
        node.reset_peak_rss()
        base = node.rss_mib()
        s = socket.create_connection(("127.0.0.1", node.port), timeout=30)
        sent = 0
        try:
            s.sendall(start)
            while sent < ATTACK_BYTES and not readable(s):
                try:
                    s.sendall(piece)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(piece)
                if node.peak_rss_mib() - base > 2 * GROWTH_BOUND_MIB:
                    break
            growth = node.peak_rss_mib() - base
            status, data = read_response(s)
            closed = closed_by_peer(s, timeout=10)
            return status, data, closed, sent, growth
        finally:
            s.close()

    def check_refused(self, status, data, closed, sent, growth, want_status, limit_text):
        mib = sent / (1 << 20)
        print(f"answered {status} after {sent >> 10} KiB; peak RSS growth {growth:.1f} MiB",
              file=sys.stderr)
        self.assertLess(growth, GROWTH_BOUND_MIB,
                        f"the node grew by {growth:.0f} MiB while {mib:.0f} MiB streamed")
        self.assertEqual(status, want_status,
                         f"after {mib:.0f} MiB: {data[:300]!r}")
        self.assertIn(limit_text, data.decode(errors="replace"))
        self.assertTrue(closed, "the connection stayed open after the refusal")
        self.assertTrue(self.node.alive())

    def attack(self, start, piece, want_status, limit_text):
        """The attack, repeated while a canary runs; each round must be refused within the
        bounds. Returns the rounds."""
        with Canary(self.node) as canary:
            rounds = canary.repeat(
                lambda: self.check_refused(*self.stream(start, piece), want_status, limit_text))
        canary.check()
        return rounds

    def test_endless_chunk_extension(self):
        before = self.node.rejected("chunk_header_too_large")
        rounds = self.attack(HEAD + b"5;ext=", b"a" * PIECE, 400, "4096 bytes")
        self.assertEqual(self.node.rejected("chunk_header_too_large"), before + rounds)

    def test_endless_trailers(self):
        before = self.node.rejected("chunk_header_too_large")
        line = b"X-Trailer: " + b"t" * 1000 + b"\r\n"
        rounds = self.attack(HEAD + b"2\r\n{}\r\n0\r\n", line * (PIECE // len(line)), 431,
                             "64 KiB")
        self.assertEqual(self.node.rejected("chunk_header_too_large"), before + rounds)

    def test_extensions_and_trailers_within_the_limits_are_served(self):
        # Every chunk may carry extensions, and a body may end with trailers: within the limits
        # the request is served, and a trailer does not become a header of the request (a
        # Hivemesh-Hops of 999 as a header would be refused).
        body = b'{"inputs":[{"name":"INPUT0","shape":[2],"datatype":"FP32","data":[1,2]}]}'
        chunks = b"".join(b"%x;ext=%s\r\n%s\r\n" % (len(body[i:i + 9]), b"v" * 200,
                                                   body[i:i + 9])
                          for i in range(0, len(body), 9))
        request = (HEAD + chunks + b"0;last\r\nX-Trailer: " + b"t" * 2000 +
                   b"\r\nHivemesh-Hops: 999\r\n\r\n")
        s = socket.create_connection(("127.0.0.1", self.node.port), timeout=10)
        try:
            s.sendall(request)
            status, data = read_response(s)
        finally:
            s.close()
        self.assertEqual(status, 200, data[:300])
        answer = json.loads(data.partition(b"\r\n\r\n")[2])
        self.assertEqual(answer["outputs"][0]["data"], [1, 2])


if __name__ == "__main__":
    run(ChunkLimitsTest)
