#!/usr/bin/python3
"""Connection-level pass-through at a Service's own port (docs/services.md, "Routing to
services"), on three secure nodes (mutual TLS between them), each labelled host=<its name>.

Services are applied first; on one machine the first node to listen on a Service's port takes
it (the others report it taken), and the Deployment behind it is then placed on another node, so
every connection goes client -> listening node -> tunnel (mutual TLS) -> workload node ->
workload:
- a server-first protocol on a port declared connection-level (appProtocol: tcp): the banner
  arrives, bytes go both ways, the client's half-close reaches the workload and its answer
  comes back before the end;
- bytes that are not HTTP/1.x on a port without appProtocol are relayed; an HTTP/1.1 request on
  the same port is served as HTTP;
- gRPC (HTTP/2, Debian's grpcio client and server): unary, server streaming, and a 16 MiB
  client stream;
- 64 MiB through the tunnel both ways: the nodes' memory grows by far less than what passed;
- a workload on the listening node itself is reached without a tunnel.
Hostile: a tunnel upgrade from a client without a member certificate is refused (403) and never
reaches the workload; a client that sends nothing is closed after the header timeout; a relay
with nothing passing is closed after the relay idle timeout; a Service with no endpoint closes
the connection at once.

    test_pass_through.py path/to/hivemesh
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc

from hostile import Node, binary_from_argv, wait_for
from test_workloads import deployment as workload_deployment, free_port
from test_workloads import service as workload_service

HERE = os.path.dirname(os.path.abspath(__file__))
SERVICES = os.path.join(HERE, "..", "services")
HEADER_TIMEOUT_MS = 3000
RELAY_IDLE_MS = 3000


def service(name, port, app_protocol=None):
    """A Service at `port` selecting app=`name`, whose workload listens on `port` + 1."""
    return workload_service(name, name, port + 1, port=port, app_protocol=app_protocol)


def deployment(name, host, command):
    """One replica of `command` on the node labelled host=`host`."""
    return workload_deployment(name, command, selector=f"host={host}")


def two_ports():
    """A port P with P+1 free too (the Service's port and its workload's)."""
    for _ in range(100):
        p = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
    raise RuntimeError("no two free ports in a row")


def read_until(s, marker, limit=1 << 20):
    out = b""
    while marker not in out and len(out) < limit:
        data = s.recv(65536)
        if not data:
            break
        out += data
    return out


def read_all(s):
    out = b""
    while True:
        data = s.recv(65536)
        if not data:
            return out
        out += data


class PassThroughTest(unittest.TestCase):
    BINARY = None

    @classmethod
    def setUpClass(cls):
        cls.nodes = {}
        common = ["--header-timeout-ms", str(HEADER_TIMEOUT_MS),
                  "--relay-idle-timeout-ms", str(RELAY_IDLE_MS)]
        cls.nodes["a"] = Node(cls.BINARY, "a", models=(), secure=True,
                              args=["--labels", "host=a", *common])
        seed = cls.nodes["a"].gossip
        for name in ("b", "c"):
            token = subprocess.run([cls.BINARY, "token", "create", "--node",
                                    f"127.0.0.1:{cls.nodes['a'].port}"], capture_output=True,
                                   text=True, timeout=30)
            assert token.returncode == 0, token.stderr
            cls.nodes[name] = Node(cls.BINARY, name, models=(),
                                   args=["--labels", f"host={name}", "--join", seed,
                                         "--token", token.stdout.strip(), *common])
        wait_for(lambda: all(len([m for m in n.members() if m["state"] == "alive"]) == 3
                             for n in cls.nodes.values()), 60, "three members")
        cls.ports = {}
        cls.hosts = {}
        # Each Service first: whichever node listens on its port, its workload goes elsewhere.
        for name, proto in (("banner", "tcp"), ("sniffed", None), ("grpc-echo", None)):
            port = two_ports()
            cls.ports[name] = port
            cls.apply(service(name, port, proto))
            listener = cls.listener(name, port)
            cls.hosts[name] = next(n for n in ("a", "b", "c") if n != listener)
        commands = {
            "banner": ["/usr/bin/python3", f"{SERVICES}/tcp_server.py",
                       str(cls.ports["banner"] + 1), "--banner", "workload"],
            "sniffed": ["/usr/bin/python3", f"{SERVICES}/tcp_server.py",
                        str(cls.ports["sniffed"] + 1)],
            "grpc-echo": ["/usr/bin/python3", f"{SERVICES}/grpc_server.py",
                          str(cls.ports["grpc-echo"] + 1)],
        }
        for name, command in commands.items():
            cls.apply(deployment(name, cls.hosts[name], command))
        for name in commands:
            wait_for(lambda: cls.ready_everywhere(name), 60, f"{name} ready on every node")

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes.values():
            n.stop()

    @classmethod
    def apply(cls, text, at="a"):
        out = subprocess.run([cls.BINARY, "apply", "-f", "-", "--node",
                              f"127.0.0.1:{cls.nodes[at].port}"], input=text,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr

    @classmethod
    def listener(cls, name, port):
        """The node that listens on the Service `name`'s port."""
        line = f"service {name} listens on 127.0.0.1:{port}"
        return wait_for(lambda: next((n for n, node in cls.nodes.items() if line in node.text()),
                                     None), 30, f"a node to listen for {name}")

    @classmethod
    def ready_everywhere(cls, name):
        for node in cls.nodes.values():
            status, body = node.request("GET", "/v1/endpoints")
            if status != 200:
                return False
            if not any(e["service"] == name and e["ready"]
                       for e in json.loads(body)["endpoints"]):
                return False
        return True

    def connect(self, name, timeout=30):
        return socket.create_connection(("127.0.0.1", self.ports[name]), timeout=timeout)

    def workload_connections(self, name):
        return len(self.nodes[self.hosts[name]].log_lines(rf"\[{name}\] connection \d+"))

    def test_1_server_first_protocol_and_half_close(self):
        with self.connect("banner") as s:
            self.assertEqual(read_until(s, b"\n"), b"HELLO workload\n",
                             "the workload speaks first, through the tunnel")
            s.sendall(b"edge devices\n")
            self.assertEqual(read_until(s, b"\n"), b"EDGE DEVICES\n")
            s.shutdown(socket.SHUT_WR)  # the client is done sending: the workload learns it
            self.assertEqual(read_all(s), b"BYE 13\n", "the answer after the half-close came back")

    def test_2_sniffed_port(self):
        before = self.workload_connections("sniffed")
        with self.connect("sniffed") as s:
            s.sendall(b"hello mesh\n")  # not an HTTP/1.x request line
            self.assertEqual(read_until(s, b"\n"), b"HELLO MESH\n")
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(read_all(s), b"BYE 11\n")
        # TLS a client starts itself is relayed too (the workload sees the ClientHello's bytes).
        with self.connect("sniffed") as s:
            hello = b"\x16\x03\x01\x00\x05hello"
            s.sendall(hello)
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(read_all(s), hello.upper() + b"BYE 10\n")
        # An HTTP/1.1 request on the same port is served as HTTP: this workload is no HTTP
        # server, so the node answers 502 (not the workload's echo of the request).
        with self.connect("sniffed") as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = read_until(s, b"\r\n\r\n")
            self.assertTrue(answer.startswith(b"HTTP/1.1 502"), answer[:200])
        wait_for(lambda: self.workload_connections("sniffed") >= before + 3, 10,
                 "three connections at the workload")

    def test_3_grpc(self):
        with grpc.insecure_channel(f"127.0.0.1:{self.ports['grpc-echo']}",
                                   options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
            upper = ch.unary_unary("/hivemesh.test.Echo/Upper")
            self.assertEqual(upper(b"edge ai", timeout=30), b"EDGE AI")
            count = ch.unary_stream("/hivemesh.test.Echo/Count")
            got = [int(m) for m in count(b"1000", timeout=60)]
            self.assertEqual(got, list(range(1000)))
            total = ch.stream_unary("/hivemesh.test.Echo/Sum")
            chunks = (b"x" * (1 << 20) for _ in range(16))
            self.assertEqual(total(chunks, timeout=120), str(16 << 20).encode())
            # A name the server has not: its own gRPC status comes back.
            with self.assertRaises(grpc.RpcError) as e:
                ch.unary_unary("/hivemesh.test.Echo/Nothing")(b"", timeout=30)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_4_large_stream_bounded_memory(self):
        size = 64 << 20
        host = self.nodes[self.hosts["banner"]]
        listener = next(n for n in self.nodes.values()
                        if f"service banner listens on 127.0.0.1:{self.ports['banner']}"
                        in n.text())
        for n in (host, listener):
            n.reset_peak_rss()
        before = {n.name: n.rss_mib() for n in (host, listener)}
        received = bytearray()

        def reader(s):
            while True:
                data = s.recv(1 << 20)
                if not data:
                    return
                received.extend(data)

        with self.connect("banner", timeout=120) as s:
            t = threading.Thread(target=reader, args=(s,))
            t.start()
            block = b"abcdefgh" * (1 << 17)  # 1 MiB
            for _ in range(size // len(block)):
                s.sendall(block)
            s.shutdown(socket.SHUT_WR)
            t.join(300)
            self.assertFalse(t.is_alive())
        expected = b"HELLO workload\n" + b"ABCDEFGH" * (size // 8) + f"BYE {size}\n".encode()
        self.assertEqual(len(received), len(expected))
        self.assertTrue(received == expected, "the bytes came back whole and in order")
        for n in (host, listener):
            grew = n.peak_rss_mib() - before[n.name]
            print(f"{n.name}: {size >> 20} MiB each way, peak RSS grew {grew:.1f} MiB",
                  file=sys.stderr)
            self.assertLess(grew, 32, f"{n.name} held what passed through it")

    def test_5_local_endpoint(self):
        port = two_ports()
        self.apply(service("local-tcp", port, "tcp"))
        listener = self.listener("local-tcp", port)
        self.ports["local-tcp"] = port
        self.hosts["local-tcp"] = listener
        self.apply(deployment("local-tcp", listener,
                              ["/usr/bin/python3", f"{SERVICES}/tcp_server.py", str(port + 1),
                               "--banner", "local"]))
        wait_for(lambda: self.ready_everywhere("local-tcp"), 60, "local-tcp ready")
        with self.connect("local-tcp") as s:
            self.assertEqual(read_until(s, b"\n"), b"HELLO local\n")
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(read_all(s), b"BYE 0\n")

    def test_6_forged_tunnel_refused(self):
        host = self.nodes[self.hosts["banner"]]
        before = self.workload_connections("banner")
        refused = host.rejected("tunnel_refused")
        for credential in (b"", b"Hivemesh-Credential: forged\r\n"):
            with socket.create_connection(("127.0.0.1", host.port), timeout=10) as s:
                s.sendall(b"GET /v1/services/banner/tunnel HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: Upgrade\r\nUpgrade: hivemesh-tunnel/1\r\n" + credential +
                          b"\r\n")
                answer = read_all(s)
                self.assertTrue(answer.startswith(b"HTTP/1.1 403"), answer[:200])
                self.assertNotIn(b"HELLO", answer)
        self.assertGreaterEqual(host.rejected("tunnel_refused"), refused + 2)
        time.sleep(1)
        self.assertEqual(self.workload_connections("banner"), before,
                         "a refused tunnel never reaches the workload")

    def test_7_slow_and_idle_clients_closed(self):
        # Nothing sent at a sniffed port: closed after the header timeout.
        with self.connect("sniffed", timeout=60) as s:
            start = time.monotonic()
            self.assertEqual(s.recv(1), b"")
            took = time.monotonic() - start
            self.assertLess(took, HEADER_TIMEOUT_MS / 1000 + 10)
            self.assertGreater(took, HEADER_TIMEOUT_MS / 1000 - 1)
        # A relay with nothing passing: closed after the relay idle timeout.
        with self.connect("banner", timeout=60) as s:
            self.assertEqual(read_until(s, b"\n"), b"HELLO workload\n")
            start = time.monotonic()
            self.assertEqual(read_all(s), b"", "closed without a byte more")
            took = time.monotonic() - start
            self.assertLess(took, RELAY_IDLE_MS / 1000 + 10)
            self.assertGreater(took, RELAY_IDLE_MS / 1000 - 1)

    def test_8_no_endpoint_closes_at_once(self):
        port = two_ports()
        self.apply(service("nobody", port, "tcp"))
        listener = self.nodes[self.listener("nobody", port)]
        refused = listener.rejected("pass_through_refused")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            self.assertEqual(read_all(s), b"")
        self.assertGreater(listener.rejected("pass_through_refused"), refused)
        for n in self.nodes.values():
            self.assertTrue(n.alive())

    def test_11_every_port_of_a_service(self):
        """A Service of two ports, each to its own port of one workload (two banner servers in
        one process group), placed away from the node that listens: each port reaches its own
        server, through the tunnel that names the port."""
        first, second = two_ports(), two_ports()
        text = workload_service("two-ports", "two-ports", first + 1, port=first,
                                app_protocol="tcp")
        text += f"""\
  - protocol: TCP
    port: {second}
    targetPort: {second + 1}
    appProtocol: tcp
"""
        self.apply(text)
        listeners = {self.listener("two-ports", first), self.listener("two-ports", second)}
        host = next(n for n in ("a", "b", "c") if n not in listeners)
        server = f"{SERVICES}/tcp_server.py"
        self.apply(deployment("two-ports", host, [
            "/bin/sh", "-c", f"/usr/bin/python3 {server} {first + 1} --banner one & "
                             f"exec /usr/bin/python3 {server} {second + 1} --banner two"]))
        wait_for(lambda: self.ready_everywhere("two-ports"), 60, "two-ports ready")
        for port, banner in ((first, b"HELLO one\n"), (second, b"HELLO two\n")):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                self.assertEqual(read_until(s, b"\n"), banner, port)
        status = subprocess.run([self.BINARY, "get", "services", "-o", "json", "--node",
                                 f"127.0.0.1:{self.nodes[next(iter(listeners))].port}"],
                                capture_output=True, text=True, timeout=30).stdout
        self.assertIn(f"listening on 127.0.0.1:{first}", status)

    def streamer(self):
        """A Deployment of tests/services/stream_server.py on a node other than `a`; requests
        by Host at `a` go through a mutual-TLS tunnel to it. (host, port)"""
        if "streamer" not in self.hosts:
            port = two_ports()
            self.ports["streamer"] = port
            self.hosts["streamer"] = "b"
            self.apply(deployment("streamer", "b", ["/usr/bin/python3",
                                                    f"{SERVICES}/stream_server.py",
                                                    str(port + 1)]))
            self.apply(service("streamer", port))
            wait_for(lambda: self.ready_everywhere("streamer"), 60, "streamer ready")
        return self.hosts["streamer"], self.ports["streamer"]

    def request(self, method, path, body=None, headers=None, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.nodes["a"].port, timeout=timeout)
        conn.request(method, path, body=body, headers={"Host": "streamer", **(headers or {})},
                     encode_chunked="Transfer-Encoding" in (headers or {}))
        return conn, conn.getresponse()

    def test_9_answers_stream_as_they_come(self):
        """Server-sent events by name: the first event reaches the client while the workload
        still holds back the second (it waits for a file the client creates once it has the
        first), so nothing on the way buffered the answer whole."""
        host, _ = self.streamer()
        trigger = os.path.join(tempfile.mkdtemp(prefix="hivemesh-events-"), "go")
        conn, r = self.request("GET", f"/events?until={trigger}")
        try:
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("Hivemesh-Served-By"), host)
            self.assertEqual(r.getheader("Content-Type"), "text/event-stream")
            first = b""
            while b"event 1" not in first:
                data = r.read1(64)
                self.assertTrue(data, "the first event came before the end")
                first += data
            open(trigger, "w").close()
            rest = r.read()
            self.assertEqual(first + rest, b"event 1\nevent 2\n")
        finally:
            conn.close()
        # An answer ended by closing the connection comes whole.
        conn, r = self.request("GET", "/close")
        self.assertEqual((r.status, r.read()), (200, b"until the end"))
        conn.close()

    def test_10_large_bodies_stream_in_bounded_memory(self):
        """Uploads of 72 MiB, chunked and with Content-Length (over the nodes' 64 MiB
        max_body_bytes, which bounds only bodies a node reads whole), and a 256 MiB download, by
        name through a tunnel: whole and right, while neither the entry node nor the workload's
        node holds them."""
        host, _ = self.streamer()
        nodes = [self.nodes["a"], self.nodes[host]]
        for n in nodes:
            n.reset_peak_rss()
        before = {n.name: n.rss_mib() for n in nodes}
        size = 72 << 20
        block = bytes(range(256)) * 4096  # 1 MiB

        def chunks():
            for _ in range(size // len(block)):
                yield block

        for framing in ({"Transfer-Encoding": "chunked"}, {"Content-Length": str(size)}):
            conn, r = self.request("POST", "/count", body=chunks(), headers=framing, timeout=300)
            got = r.read()
            self.assertEqual(r.status, 200, f"{framing}: {got[:300]!r}")
            self.assertEqual(got,
                             f"{size} {(sum(block) * (size // len(block))) % (1 << 32)}".encode())
            conn.close()
        n = 256 << 20
        conn, r = self.request("GET", f"/bytes?n={n}", timeout=300)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Content-Length"), str(n))
        got = 0
        while True:
            data = r.read(1 << 20)
            if not data:
                break
            got += len(data)
        conn.close()
        self.assertEqual(got, n)
        for node in nodes:
            grew = node.peak_rss_mib() - before[node.name]
            print(f"{node.name}: 2 x 72 MiB up, 256 MiB down by name, peak RSS grew {grew:.1f} MiB",
                  file=sys.stderr)
            self.assertLess(grew, 32, f"{node.name} held a body")


if __name__ == "__main__":
    PassThroughTest.BINARY = binary_from_argv()
    unittest.main(argv=sys.argv[:1], verbosity=2)
