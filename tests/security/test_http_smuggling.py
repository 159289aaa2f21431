"""Request smuggling through Transfer-Encoding.

A request whose Transfer-Encoding the node does not take as chunked was read as having no body,
and its body was then run as a second request: a front end that reads the same bytes as one
request (as RFC 9112 section 6.3 says) lets the second one through unseen. The node understands
exactly one transfer coding, chunked: any other value, list, repetition or folding of
Transfer-Encoding, and Transfer-Encoding together with Content-Length, get 400 and the
connection closes, so a body is never read as a request.

Each attack sends `GET /v2/health/live` with the bad framing, and as its "body" a request for
the model `smuggled`: the node must answer 400 once, close, and never run the smuggled request
(no inference of `smuggled` appears in its metrics). Plain HTTP/1.0 and well-formed chunked
uploads keep working.

    /usr/bin/python3 tests/security/test_http_smuggling.py path/to/hivemesh
"""
import json
import socket
import unittest

from hostile import Canary, Node, closed_by_peer, read_response, run

SMUGGLED = (b"POST /v2/models/smuggled/infer HTTP/1.1\r\nHost: node\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")

# Header lines (between the request line's Host and the blank line) that must be refused.
BAD_FRAMING = {
    "identity": b"Transfer-Encoding: identity\r\n",
    "gzip": b"Transfer-Encoding: gzip\r\n",
    "xchunked": b"Transfer-Encoding: xchunked\r\n",
    "chunked, identity": b"Transfer-Encoding: chunked, identity\r\n",
    "gzip, chunked": b"Transfer-Encoding: gzip, chunked\r\n",
    "chunked, chunked": b"Transfer-Encoding: chunked, chunked\r\n",
    "chunked;q=1": b"Transfer-Encoding: chunked;q=1\r\n",
    "empty": b"Transfer-Encoding: \r\n",
    "obs-fold after": b"Transfer-Encoding: chunked\r\n , identity\r\n",
    "obs-fold before": b"Transfer-Encoding:\r\n chunked\r\n",
    "two fields": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    "gzip then chunked fields": b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
    "chunked and Content-Length": b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
    "Content-Length and chunked": b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
    "gzip and Content-Length": b"Transfer-Encoding: gzip\r\nContent-Length: 0\r\n",
}


class SmugglingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node(cls.BINARY, "smuggling")

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()

    def smuggled_runs(self):
        return self.node.metric("hivemesh_inference_requests_total", model="smuggled")

    def exchange(self, data):
        """Sends `data` on a new connection; (status, response bytes, closed after it)."""
        s = socket.create_connection(("127.0.0.1", self.node.port), timeout=10)
        try:
            s.sendall(data)
            status, response = read_response(s)
            return status, response, closed_by_peer(s, timeout=10)
        finally:
            s.close()

    def test_bad_transfer_encodings_are_refused_and_the_body_never_runs(self):
        before = self.node.rejected("bad_transfer_encoding")

        def attack():
            for name, fields in BAD_FRAMING.items():
                with self.subTest(name):
                    status, response, closed = self.exchange(
                        b"GET /v2/health/live HTTP/1.1\r\nHost: node\r\n" + fields + b"\r\n" +
                        SMUGGLED)
                    self.assertEqual(status, 400, response[:300])
                    self.assertIn(b"Transfer-Encoding", response)
                    self.assertTrue(closed, "the connection stayed open after the 400")

        with Canary(self.node) as canary:
            rounds = canary.repeat(attack)
        canary.check()
        self.assertEqual(self.smuggled_runs(), 0, "a smuggled request was run")
        self.assertEqual(self.node.rejected("bad_transfer_encoding") - before,
                         rounds * len(BAD_FRAMING))

    def test_transfer_encoding_on_http_1_0_is_refused(self):
        # HTTP/1.0 has no chunked coding: its framing would be read two ways.
        status, response, closed = self.exchange(
            b"GET /v2/health/live HTTP/1.0\r\nHost: node\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\n" + SMUGGLED)
        self.assertEqual(status, 400, response[:300])
        self.assertTrue(closed)
        self.assertEqual(self.smuggled_runs(), 0)

    def test_http_1_0_and_chunked_uploads_still_work(self):
        body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [2], "datatype": "FP32",
                                       "data": [4.0, 5.0]}]}).encode()
        # HTTP/1.0 with Content-Length: answered, then closed.
        status, response, closed = self.exchange(
            b"POST /v2/models/identity/infer HTTP/1.0\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.assertEqual(status, 200, response[:300])
        self.assertTrue(closed)
        # Chunked, the coding's name in any case and with spaces around it, on a keep-alive
        # connection that then serves a second request.
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 10]), body[i:i + 10])
                           for i in range(0, len(body), 10)) + b"0\r\n\r\n"
        s = socket.create_connection(("127.0.0.1", self.node.port), timeout=10)
        try:
            s.sendall(b"POST /v2/models/identity/infer HTTP/1.1\r\nHost: node\r\n"
                      b"Content-Type: application/json\r\nTransfer-Encoding:  ChunKed \r\n\r\n" +
                      chunked)
            status, response = read_response(s)
            self.assertEqual(status, 200, response[:300])
            answer = json.loads(response.partition(b"\r\n\r\n")[2])
            self.assertEqual(answer["outputs"][0]["data"], [4.0, 5.0])
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: node\r\n\r\n")
            status, _ = read_response(s)
            self.assertEqual(status, 200)
        finally:
            s.close()


if __name__ == "__main__":
    run(SmugglingTest)
