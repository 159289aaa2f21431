"""The gossip wire format (src/membership/wire.h, version 2) and node metadata
(src/membership/node_meta.h), written from their specifications so that tests can forge packets
the way an attacker on the network would. Plaintext gossip only: a keyed node drops anything not
sealed with its key before decoding.

Ed25519 signatures come from Debian's python3-cryptography.
"""
import socket
import struct

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

WIRE_VERSION = 2
PING, INDIRECT_PING, ACK, NACK, SUSPECT, ALIVE, DEAD, PUSH_PULL, COMPOUND, LOAD = range(1, 11)
WATCH, DIGEST, DIGEST_REPLY = 11, 12, 13
STATE_ALIVE, STATE_SUSPECT, STATE_DEAD, STATE_LEFT = range(4)
U64_MAX = 2**64 - 1
U32_MAX = 2**32 - 1


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def lbytes(b):
    if isinstance(b, str):
        b = b.encode()
    return varint(len(b)) + b


class Key:
    """An Ed25519 key pair, as a node's (or an attacker's) node key."""

    def __init__(self):
        self.private = Ed25519PrivateKey.generate()
        self.public = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, data):
        return self.private.sign(data)


def alive_body(inc, node, addr, meta, key=b"", sig=b"", pmin=1, pmax=1):
    return (varint(inc) + lbytes(node) + lbytes(addr) + lbytes(meta) + bytes([pmin, pmax]) +
            lbytes(key) + lbytes(sig))


def alive(inc, node, addr, meta, signer=None, key=None, sig=b""):
    """An alive message; signed by `signer` (a Key) unless `sig` is given. `key` overrides the
    public key it carries (to forge a claim in someone else's name)."""
    pub = key if key is not None else (signer.public if signer else b"")
    if signer is not None and not sig:
        claim = b"hivemesh alive claim v2\0" + alive_body(inc, node, addr, meta, pub)
        sig = signer.sign(claim)
    return bytes([ALIVE]) + alive_body(inc, node, addr, meta, pub, sig)


def suspect(inc, node, frm):
    return bytes([SUSPECT]) + varint(inc) + lbytes(node) + lbytes(frm)


def dead(inc, node, frm, sig=b""):
    return bytes([DEAD]) + varint(inc) + lbytes(node) + lbytes(frm) + lbytes(sig)


def packet(*messages):
    """A packet of one message, or a compound packet of several."""
    if len(messages) == 1:
        return bytes([WIRE_VERSION]) + messages[0]
    out = bytes([WIRE_VERSION, COMPOUND]) + varint(len(messages))
    for m in messages:
        out += lbytes(m)
    return out


def node_meta(api_address, models=(), labels=None, cores=2, memory_mb=1024):
    """NodeMeta, version 2: `models` is a list of (name, [versions])."""
    out = bytes([2]) + lbytes(api_address)
    labels = labels or {}
    out += varint(len(labels))
    for k in sorted(labels):
        out += lbytes(k) + lbytes(labels[k])
    out += varint(cores) + varint(memory_mb) + varint(0)
    out += varint(len(models))
    for name, versions in models:
        out += lbytes(name) + bytes([1, 0]) + varint(1) + varint(len(versions))
        for v in versions:
            out += lbytes(v)
    out += bytes([0])
    return out


PLAINTEXT_PREAMBLE = b"HM\x02P"  # a plaintext frame of stream framing version 2


def send_udp(address, data, source=("127.0.0.1", 0)):
    """Sends one datagram to "host:port"."""
    host, port = address.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(source)
        s.sendto(data, (host, int(port)))


def _recv_exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(min(65536, n - len(data)))
        if not chunk:
            break
        data += chunk
    return data


def push_pull_over_tcp(address, data, timeout=5):
    """One gossip TCP exchange in plaintext (stream framing version 2, membership/stream_frame.h:
    the preamble "HM" 2 "P", a u32 big-endian length, the packet): a framed packet, then the
    framed reply's packet (or b"" if the node closed without one)."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(PLAINTEXT_PREAMBLE + struct.pack(">I", len(data)) + data)
        head = _recv_exactly(s, 8)
        if len(head) < 8 or head[:4] != PLAINTEXT_PREAMBLE:
            return b""
        (n,) = struct.unpack(">I", head[4:])
        return _recv_exactly(s, n)


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def u8(self):
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self):
        v, shift = 0, 0
        while True:
            b = self.u8()
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v

    def bytes(self):
        n = self.varint()
        self.pos += n
        return self.data[self.pos - n:self.pos]


def state_of(address):
    """What a node holds about every member, read with an empty plaintext push-pull (anyone may
    ask): a list of dicts with node, addr, incarnation, state, meta, key, sig."""
    request = packet(bytes([PUSH_PULL, 0]) + varint(0))
    reply = push_pull_over_tcp(address, request)
    r = _Reader(reply)
    assert r.u8() == WIRE_VERSION and r.u8() == PUSH_PULL, reply[:8]
    r.u8()  # join
    return _members(r)


def digest(entries):
    """A digest (protocol 3): (name, incarnation, state) tuples."""
    out = bytes([DIGEST]) + varint(len(entries))
    for name, inc, state in entries:
        out += lbytes(name) + varint(inc) + bytes([state])
    return out


def _members(r):
    members = []
    for _ in range(r.varint()):
        m = {"node": r.bytes().decode(), "addr": r.bytes().decode(), "incarnation": r.varint(),
             "state": r.u8(), "meta": r.bytes()}
        m["protocol_min"], m["protocol_max"] = r.u8(), r.u8()
        m["key"], m["sig"] = r.bytes(), r.bytes()
        members.append(m)
    return members


def parse_digest_reply(reply):
    """(members, wanted names) of a digest reply packet; members as state_of gives them."""
    r = _Reader(reply)
    assert r.u8() == WIRE_VERSION and r.u8() == DIGEST_REPLY, reply[:8]
    members = _members(r)
    want = [r.bytes().decode() for _ in range(r.varint())]
    assert r.pos == len(reply), "trailing bytes"
    return members, want


def push_pull(members, join=False):
    """A push-pull message of `members`: (name, addr, incarnation, meta, signer) tuples, each
    entry alive and signed by its own signer (a Key), as a real node's state carries them."""
    out = bytes([PUSH_PULL, 1 if join else 0]) + varint(len(members))
    for name, addr, inc, meta, signer in members:
        claim = b"hivemesh alive claim v2\0" + alive_body(inc, name, addr, meta, signer.public)
        out += (lbytes(name) + lbytes(addr) + varint(inc) + bytes([STATE_ALIVE]) + lbytes(meta) +
                bytes([1, 1]) + lbytes(signer.public) + lbytes(signer.sign(claim)))
    return out
