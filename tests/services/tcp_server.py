#!/usr/bin/python3
"""A TCP server that speaks no HTTP: it sends back every byte it receives in upper case, as it
comes, and once the client has ended its sending (a half-close) it writes `BYE <n>\\n` (n: the
bytes it received) and closes. With --banner it speaks first: `HELLO <name>\\n` as soon as a
client connects (as SMTP, MySQL or a device's own protocol do). Each connection is logged as
`connection <k>` on stdout.

    tcp_server.py PORT [--banner NAME]
"""
import socket
import sys
import threading


def serve(conn, banner, k):
    print(f"connection {k}", flush=True)
    with conn:
        if banner:
            conn.sendall(f"HELLO {banner}\n".encode())
        received = 0
        while True:
            data = conn.recv(65536)
            if not data:
                break
            received += len(data)
            conn.sendall(data.upper())
        conn.sendall(f"BYE {received}\n".encode())


def main():
    port = int(sys.argv[1])
    banner = sys.argv[sys.argv.index("--banner") + 1] if "--banner" in sys.argv else None
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(64)
    k = 0
    while True:
        conn, _ = server.accept()
        k += 1
        threading.Thread(target=serve, args=(conn, banner, k), daemon=True).start()


if __name__ == "__main__":
    main()
