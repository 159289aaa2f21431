#!/usr/bin/python3
"""Writes the seed corpus of gossip_packet_fuzz (tests/fuzz/corpus/gossip_packet/): one packet of
each shape in the current wire version, from tests/security/gossip_wire.py. Run it again when
the wire format changes:

    /usr/bin/python3 tests/fuzz/make_gossip_packet_corpus.py
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "security"))
import gossip_wire as gw  # noqa: E402

key = gw.Key()
meta = gw.node_meta("10.0.0.9:8000", models=[("identity", ["1"])], labels={"zone": "a"})
seeds = {
    "ping": gw.packet(bytes([gw.PING]) + gw.varint(7) + gw.lbytes("self") + gw.lbytes("peer") +
                      gw.lbytes("10.0.0.2:7946")),
    "indirect": gw.packet(bytes([gw.INDIRECT_PING]) + gw.varint(8) + gw.lbytes("self") +
                          gw.lbytes("10.0.0.1:7946") + bytes([1]) + gw.lbytes("peer") +
                          gw.lbytes("10.0.0.2:7946")),
    "compound": gw.packet(gw.suspect(5, "peer", "other"),
                          gw.alive(2, "x", "10.0.0.9:1", meta, signer=key),
                          gw.dead(3, "x", "y"), bytes([gw.ACK]) + gw.varint(4)),
    "pushpull": gw.packet(gw.push_pull([("a", "1.1.1.1:1", 1, meta, key),
                                        ("self", "10.0.0.1:7946", 4, b"", key)], join=True)),
    "leave": gw.packet(gw.dead(9, "peer", "peer", sig=key.sign(b"x"))),
    "digest": gw.packet(gw.digest([("a", 1, gw.STATE_ALIVE), ("self", 4, gw.STATE_SUSPECT)])),
    "digest_reply": gw.packet(bytes([gw.DIGEST_REPLY]) +
                              gw.push_pull([("a", "1.1.1.1:1", 1, meta, key)])[2:] +
                              gw.varint(1) + gw.lbytes("self")),
}
out = os.path.join(HERE, "corpus", "gossip_packet")
for name in os.listdir(out):
    os.remove(os.path.join(out, name))
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print(f"wrote {len(seeds)} seeds to {out}")
