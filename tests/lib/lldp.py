#!/usr/bin/env python3
"""A switch port's LLDP for the tests: builds IEEE 802.1AB frames and sends
them, raw, out of a network interface (AF_PACKET, as a switch would) or as
UDP datagrams to a qemu `-netdev socket,udp=...` backend (qemu hands each
datagram to the guest's NIC as one Ethernet frame).

Used by tests/lldp.rs (veth pairs in a network namespace),
tests/vm/ironic_vm.py (the VM's NIC, through qemu) and benches/lldp.sh.

  lldp.py send (--iface IF | --udp HOST:PORT) [--interval S] [--count N]
               [--garbage K [--only-garbage]] [--chassis MAC] [--port-id NAME]
               [--system-name NAME] [--port-desc TEXT] [--vlan ID:NAME]...
               [--pvid ID] [--src MAC] [--delay S]
  lldp.py hex  [the same frame options]   # the frame, hex, on stdout

--garbage K sends K frames that are not LLDPDUs (truncated TLVs, lengths
past the end, the mandatory TLVs missing) before each good one; with
--only-garbage no good one. --count 0 sends until killed. --delay S waits
before the first frame (a switch whose transmit timer fires later).
"""

import argparse
import socket
import struct
import sys
import time

LLDP_MULTICAST = bytes.fromhex("0180c200000e")
ETH_P_LLDP = 0x88CC


def tlv(t, value):
    assert 0 <= t < 128 and len(value) < 512
    return struct.pack("!H", (t << 9) | len(value)) + value


def mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.split(":"))


def lldpdu(chassis_mac, port_id, system_name=None, port_desc=None,
           vlans=(), pvid=None, ttl=120):
    """The LLDPDU: Chassis ID (MAC), Port ID (interface name), TTL, then the
    optional TLVs Ironic's parse-lldp hook names, then End."""
    out = tlv(1, b"\x04" + mac_bytes(chassis_mac))
    out += tlv(2, b"\x05" + port_id.encode())
    out += tlv(3, struct.pack("!H", ttl))
    if port_desc:
        out += tlv(4, port_desc.encode())
    if system_name:
        out += tlv(5, system_name.encode())
    out += tlv(6, b"Test switch, tests/lib/lldp.py")
    # capabilities: bridge + router supported, bridge enabled
    out += tlv(7, struct.pack("!HH", 0x0014, 0x0004))
    # management address: IPv4 192.0.2.1, ifIndex 1
    out += tlv(8, b"\x05\x01" + bytes([192, 0, 2, 1]) + b"\x02" +
               struct.pack("!I", 1) + b"\x00")
    if pvid is not None:
        out += tlv(127, bytes.fromhex("0080c2") + b"\x01" + struct.pack("!H", pvid))
    for vid, name in vlans:
        n = name.encode()
        out += tlv(127, bytes.fromhex("0080c2") + b"\x03" +
                   struct.pack("!HB", vid, len(n)) + n)
    # 802.3 maximum frame size
    out += tlv(127, bytes.fromhex("00120f") + b"\x04" + struct.pack("!H", 1514))
    return out + tlv(0, b"")


def frame(src_mac, pdu):
    """Ethernet: the LLDP group address, the sender, 0x88cc; padded to 60."""
    f = LLDP_MULTICAST + mac_bytes(src_mac) + struct.pack("!H", ETH_P_LLDP) + pdu
    return f + bytes(max(0, 60 - len(f)))


def garbage(src_mac, i):
    """Frames of the LLDP ethertype that are not LLDPDUs."""
    head = LLDP_MULTICAST + mac_bytes(src_mac) + struct.pack("!H", ETH_P_LLDP)
    kinds = [
        # a TLV whose length runs past the end of the frame
        head + tlv(1, b"\x04" + bytes(6)) + struct.pack("!H", (2 << 9) | 0x1FF) + b"x",
        # truncated in the middle of the chassis ID
        head + struct.pack("!H", (1 << 9) | 7) + b"\x04\x01",
        # no chassis ID: Port ID first
        head + tlv(2, b"\x05eth9") + tlv(1, b"\x04" + bytes(6)) + tlv(3, b"\x00\x78"),
        # nothing at all
        head,
    ]
    return kinds[i % len(kinds)]


class Sender:
    def __init__(self, iface=None, udp=None):
        if iface:
            self.s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            self.s.bind((iface, 0))
            self.send = self.s.send
        else:
            host, port = udp.rsplit(":", 1)
            self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            addr = (host, int(port))
            self.send = lambda data: self.s.sendto(data, addr)


def frame_from(a):
    pdu = lldpdu(a.chassis, a.port_id, a.system_name, a.port_desc,
                 [(int(v.split(":", 1)[0]), v.split(":", 1)[1]) for v in a.vlan],
                 a.pvid)
    return frame(a.src, pdu)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=["send", "hex"])
    p.add_argument("--iface")
    p.add_argument("--udp")
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--garbage", type=int, default=0)
    p.add_argument("--only-garbage", action="store_true")
    p.add_argument("--chassis", default="52:54:00:ab:cd:ef")
    p.add_argument("--src", default="52:54:00:ab:cd:01")
    p.add_argument("--port-id", default="Ethernet1/1")
    p.add_argument("--system-name", default="test-switch")
    p.add_argument("--port-desc", default="to the node")
    p.add_argument("--vlan", action="append", default=[])
    p.add_argument("--pvid", type=int)
    p.add_argument("--delay", type=float, default=0.0)
    a = p.parse_args()
    f = frame_from(a)
    if a.action == "hex":
        print(f.hex())
        return
    if not (a.iface or a.udp):
        p.error("send needs --iface or --udp")
    s = Sender(a.iface, a.udp)
    time.sleep(a.delay)
    n = 0
    while a.count == 0 or n < a.count:
        for i in range(a.garbage):
            s.send(garbage(a.src, i))
        if not a.only_garbage:
            s.send(f)
        n += 1
        sys.stdout.flush()
        if a.count == 0 or n < a.count:
            time.sleep(a.interval)


if __name__ == "__main__":
    main()
