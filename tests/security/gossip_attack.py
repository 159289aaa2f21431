"""What the gossip attack tests share: raw TCP connections to a node's gossip port from a chosen
source address, telling whether the node has closed one, and the gossip wire formats written out
in Python (membership/stream_frame.h, membership/envelope.h, membership/keyring.h), so a test can
seal a packet with a mesh's key the way a member would.

Sources: every address of 127.0.0.0/8 is local on Linux, so a test connects from 127.0.0.2,
127.0.0.3, ... to stand for other hosts; agents gossip from 127.0.0.1 (limits per source address
then tell the attacker and a real member apart, as they would on a LAN).
"""
import base64
import os
import select
import socket
import struct
import time

# TCP stream framing, version 2 (membership/stream_frame.h).
PREAMBLE_PLAINTEXT = b"HM\x02P"
PREAMBLE_SEALED = b"HM\x02S"
PREAMBLE_NOTICE = b"HM\x02E"
NOTICE = PREAMBLE_NOTICE + b"this mesh requires gossip encryption\n"
# The bare length prefix of framing version 1: a 16 MiB frame.
OLD_FRAMING_16MIB = struct.pack(">I", 16 << 20)

# A fixed key for the tests' meshes (32 bytes, base64).
KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(range(100, 132))).decode()


def host_port(address):
    host, _, port = address.rpartition(":")
    return host, int(port)


def connect(address, source="127.0.0.2", timeout=5):
    """A TCP connection to `address` (host:port) from `source` (any port)."""
    return socket.create_connection(host_port(address), timeout=timeout, source_address=(source, 0))


def is_closed(sock):
    """True if the peer has closed `sock` (EOF or reset), reading and discarding what it sent."""
    while True:
        r, _, _ = select.select([sock], [], [], 0)
        if not r:
            return False
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        if not data:
            return True


def wait_closed(sock, seconds):
    """Seconds until the peer closed `sock`, or None if it is still open after `seconds`; also
    returns what the peer sent first (bytes)."""
    start = time.monotonic()
    received = b""
    sock.settimeout(0.05)
    while time.monotonic() - start < seconds:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start, received
        if not data:
            return time.monotonic() - start, received
        received += data
    return None, received


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


# --- Sealing (membership/keyring.h and membership/envelope.h) -------------------------------

KEYRING_VERSION = 1
ENVELOPE_FORMAT = 2
RECIPIENT_ADDRESS = 1
RECIPIENT_REPLY = 2


def seal(key_b64, plaintext, label=b""):
    """A Keyring packet: [version 1][nonce 12][ciphertext][tag 16], the label as additional data."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    nonce = os.urandom(12)
    return bytes([KEYRING_VERSION]) + nonce + AESGCM(base64.b64decode(key_b64)).encrypt(
        nonce, plaintext, label)


def envelope_inner(payload, recipient, boot_id, counter, unix_ms=None):
    """The envelope's plaintext: format, boot id, counter, time, recipient (host:port), payload."""
    if unix_ms is None:
        unix_ms = int(time.time() * 1000)
    to = recipient.encode()
    return (bytes([ENVELOPE_FORMAT]) + struct.pack("<QQQ", boot_id, counter, unix_ms) +
            bytes([RECIPIENT_ADDRESS, len(to)]) + to + payload)


def sealed_frame(key_b64, payload, recipient, boot_id, counter):
    """A sealed TCP frame (membership/stream_frame.h, kind 'S') of `payload` for `recipient`: the
    head (an envelope packet holding the body's length, u32 big-endian), then the body in 64 KiB
    chunks, each sealed with [boot id u64][head counter u64][index u32] before its bytes."""
    chunk = 64 * 1024
    head = seal(key_b64, envelope_inner(struct.pack(">I", len(payload)), recipient, boot_id,
                                        counter))
    out = PREAMBLE_SEALED + struct.pack(">H", len(head)) + head
    for i in range(0, len(payload), chunk):
        out += seal(key_b64, struct.pack("<QQI", boot_id, counter, i // chunk) +
                    payload[i:i + chunk])
    return out


def sealed_packet(key_b64, payload, recipient, boot_id, counter):
    """A sealed UDP datagram addressed to `recipient` (host:port), as a member would send it."""
    return seal(key_b64, envelope_inner(payload, recipient, boot_id, counter))
