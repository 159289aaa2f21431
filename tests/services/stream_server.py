#!/usr/bin/python3
"""An HTTP/1.1 server whose answers and bodies stream (for the mesh's streamed forwarding):

- GET /events?until=FILE: a chunked answer; `event 1` at once, then `event 2` and the end only
  once FILE exists (so a client that has read `event 1` before creating FILE proves the answer
  was not held back whole on the way);
- GET /bytes?n=N: N bytes (`0123456789` repeated), with Content-Length, written 1 MiB at a time;
- POST /count: reads the body (Content-Length or chunked) and answers how many bytes came, and
  their sum modulo 2**32;
- GET /close: an answer without Content-Length, ended by closing the connection.

    stream_server.py PORT
"""
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urlparse(self.path)
        q = parse_qs(url.query)
        if url.path == "/events":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.chunk(b"event 1\n")
            until = q["until"][0]
            deadline = time.monotonic() + 60
            while not os.path.exists(until) and time.monotonic() < deadline:
                time.sleep(0.02)
            self.chunk(b"event 2\n")
            self.wfile.write(b"0\r\n\r\n")
        elif url.path == "/bytes":
            n = int(q["n"][0])
            block = b"0123456789" * (1 << 20 // 10 + 1)
            block = block[: 1 << 20]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            left = n
            while left > 0:
                piece = block[: min(left, len(block))]
                self.wfile.write(piece)
                left -= len(piece)
        elif url.path == "/close":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until the end")
            self.close_connection = True
        else:
            self.send_error(404)

    def do_POST(self):
        count = total = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    break
                left = size
                while left:
                    data = self.rfile.read(min(left, 1 << 20))
                    count += len(data)
                    total = (total + sum(data)) % (1 << 32)
                    left -= len(data)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                data = self.rfile.read(min(left, 1 << 20))
                if not data:
                    break
                count += len(data)
                total = (total + sum(data)) % (1 << 32)
                left -= len(data)
        out = f"{count} {total}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()
