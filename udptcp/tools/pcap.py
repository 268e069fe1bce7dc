"""Read segment traces (:mod:`udptcp.aio.tracing`); write them as pcap or draw a ladder.

:func:`write_pcap` gives every traced segment a synthetic IPv4 or IPv6 header (the UDP
addresses' IPs; the TCP header keeps the virtual ports) and recomputes the TCP checksum over
the IP pseudo-header (RFC 9293 §3.1), so Wireshark and tshark decode the file as plain TCP,
with their sequence, retransmission, SACK and window analysis. The pcap link type is
LINKTYPE_RAW (101): each packet starts with its IP header. Data that the trace did not keep
is written as zero bytes of the traced length (the checksum covers those zeros).

Trace one end of a connection per file for a capture as a host would see it: a file with
both ends holds each segment twice (sent and received).

:func:`ladder` draws a trace the way the handshake is drawn on paper::

    A 127.0.0.1:40000 vport 49152              B 127.0.0.1:9000 vport 9000
      0.000 ms  SYN-SENT
      0.012 ms  SYN seq=x <mss 1452,wscale 5,sackOK,TS>  ------>
      0.498 ms  <------  SYN,ACK seq=y ack=x+1 <mss 1452,...>

with sequence numbers relative to each side's initial sequence number (x for A, the side
that sent the first SYN, and y for B).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from udptcp.core.segment import checksum

__all__ = ["TraceError", "ladder", "read_trace", "write_pcap"]

_PCAP_HEADER = struct.Struct("<IHHiIII")
_PCAP_RECORD = struct.Struct("<IIII")
_PCAP_MAGIC = 0xA1B2C3D4
_LINKTYPE_RAW = 101
_SNAPLEN = 262144
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_IPPROTO_TCP = 6
_TTL = 64
_SEGMENT_EVENTS = ("segment_sent", "segment_received")


class TraceError(ValueError):
    """The file is not a udptcp trace (the message names the line)."""


def read_trace(lines: Iterable[str]) -> list[dict[str, Any]]:
    """Parse a trace's JSON lines (blank lines skipped); raises :class:`TraceError`."""
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"line {number}: not JSON ({exc.msg})") from None
        if not isinstance(event, dict) or "event" not in event:
            raise TraceError(f"line {number}: not a trace event (no 'event' key)")
        kind = event["event"]
        needed = ("time", "local", "remote", "header", "len") if kind in _SEGMENT_EVENTS else ()
        missing = [k for k in needed if k not in event]
        if missing:
            raise TraceError(f"line {number}: {kind} without {', '.join(missing)}")
        events.append(event)
    return events


# ---------------------------------------------------------------------------- pcap


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    addr = ipaddress.ip_address(str(host).split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _tcp_bytes(event: dict[str, Any]) -> bytes:
    header = bytes.fromhex(event["header"])
    data = event.get("data")
    payload = base64.b64decode(data) if data else bytes(int(event["len"]))
    return header + payload


def _packet(event: dict[str, Any], ident: int) -> bytes:
    """One IP packet carrying the traced segment, TCP checksum over the pseudo-header."""
    local, remote = _ip(event["local"][0]), _ip(event["remote"][0])
    src, dst = (local, remote) if event["event"] == "segment_sent" else (remote, local)
    if src.version != dst.version:  # an IPv4 peer on a dual-stack socket: write IPv6
        src, dst = (
            a if a.version == 6 else ipaddress.IPv6Address(f"::ffff:{a}") for a in (src, dst)
        )
    tcp = bytearray(_tcp_bytes(event))
    tcp[16:18] = b"\0\0"
    if src.version == 4:
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, _IPPROTO_TCP, len(tcp))
    else:
        pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(tcp), _IPPROTO_TCP)
    tcp[16:18] = struct.pack("!H", checksum(pseudo + tcp))
    if src.version == 4:
        ip = bytearray(
            _IPV4.pack(
                0x45, 0, 20 + len(tcp), ident & 0xFFFF, 0x4000, _TTL, _IPPROTO_TCP, 0,
                src.packed, dst.packed,
            )
        )  # fmt: skip
        ip[10:12] = struct.pack("!H", checksum(ip))
        return bytes(ip) + bytes(tcp)
    ip6 = _IPV6.pack(6 << 28, len(tcp), _IPPROTO_TCP, _TTL, src.packed, dst.packed)
    return ip6 + bytes(tcp)


def write_pcap(events: Iterable[dict[str, Any]], out: IO[bytes]) -> int:
    """Write the segments among ``events`` to ``out`` as a pcap file; returns how many."""
    out.write(_PCAP_HEADER.pack(_PCAP_MAGIC, 2, 4, 0, 0, _SNAPLEN, _LINKTYPE_RAW))
    count = 0
    for event in events:
        if event.get("event") not in _SEGMENT_EVENTS:
            continue
        packet = _packet(event, count)
        when = float(event["time"])
        seconds = int(when)
        micros = min(int(round((when - seconds) * 1e6)), 999_999)
        out.write(_PCAP_RECORD.pack(seconds, micros, len(packet), len(packet)))
        out.write(packet)
        count += 1
    return count


# ---------------------------------------------------------------------------- ladder


def _endpoint(event: dict[str, Any], local: bool) -> tuple[str, int, int]:
    """(host, UDP port, virtual port) of one side of the event's connection."""
    mine = event["sport"] if event["event"] != "segment_received" else event["dport"]
    theirs = event["dport"] if event["event"] != "segment_received" else event["sport"]
    if local:
        return (str(event["local"][0]), int(event["local"][1]), int(mine))
    return (str(event["remote"][0]), int(event["remote"][1]), int(theirs))


@dataclass
class _Conversation:
    a: tuple[str, int, int]  # the side that sent the first SYN (else the first observer)
    b: tuple[str, int, int]
    isn: dict[tuple[str, int, int], int] = field(default_factory=dict)
    observers: set[tuple[str, int, int]] = field(default_factory=set)
    events: list[dict[str, Any]] = field(default_factory=list)


def _conversations(events: list[dict[str, Any]]) -> list[_Conversation]:
    found: dict[frozenset[tuple[str, int, int]], _Conversation] = {}
    for event in events:
        if event.get("event") not in (*_SEGMENT_EVENTS, "state"):
            continue
        me, peer = _endpoint(event, True), _endpoint(event, False)
        key = frozenset((me, peer))
        conv = found.get(key)
        if conv is None:
            a, b = me, peer
            if event["event"] == "segment_received" and "SYN" in event["flags"].split(","):
                a, b = peer, me  # the peer opened it
            conv = found[key] = _Conversation(a, b)
        conv.observers.add(me)
        conv.events.append(event)
        if event["event"] in _SEGMENT_EVENTS and "SYN" in event["flags"].split(","):
            sender = me if event["event"] == "segment_sent" else peer
            conv.isn.setdefault(sender, int(event["seq"]))
    return list(found.values())


def _seq_lt(a: int, b: int) -> bool:
    """a < b in 32-bit sequence space (RFC 9293 §3.4)."""
    return 0 < ((b - a) & 0xFFFFFFFF) < 1 << 31


def _relative(value: int, base: int | None, name: str) -> str:
    if base is None:
        return str(value)
    offset = (value - base) & 0xFFFFFFFF
    return name if offset == 0 else f"{name}+{offset}"


def _options(event: dict[str, Any]) -> str:
    opts = event.get("options") or {}
    parts = []
    if "mss" in opts:
        parts.append(f"mss {opts['mss']}")
    if "wscale" in opts:
        parts.append(f"wscale {opts['wscale']}")
    if opts.get("sack_permitted"):
        parts.append("sackOK")
    if "timestamps" in opts and "SYN" in event["flags"].split(","):
        parts.append("TS")
    if "sack" in opts:
        parts.append("sack " + " ".join(f"{l}-{r}" for l, r in opts["sack"]))  # noqa: E741
    return f" <{','.join(parts)}>" if parts else ""


def _describe(event: dict[str, Any], conv: _Conversation, sender: tuple[str, int, int]) -> str:
    receiver = conv.b if sender == conv.a else conv.a
    names = {conv.a: "x", conv.b: "y"}
    flags = event["flags"] or "-"
    text = f"{flags} seq={_relative(int(event['seq']), conv.isn.get(sender), names[sender])}"
    if "ACK" in flags.split(","):
        ack_base = conv.isn.get(receiver)
        text += f" ack={_relative(int(event['ack']), ack_base, names[receiver])}"
    if event["len"]:
        text += f" len={event['len']}"
    if "SYN" not in flags.split(","):
        text += f" win={event['window']}"
    return text + _options(event)


def _side(host_port_vport: tuple[str, int, int]) -> str:
    host, port, vport = host_port_vport
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port} vport {vport}"


def ladder(events: list[dict[str, Any]], *, width: int = 44) -> Iterator[str]:
    """Lines of a ladder diagram per connection in ``events`` (see the module docstring).

    When both ends of a connection are in the trace, each segment is drawn once (as sent)
    and both ends' state changes are shown; with one end, what it sent and received.
    """
    for conv in _conversations(events):
        both = len(conv.observers) > 1
        start = float(conv.events[0]["time"])
        sent_up_to: dict[tuple[str, int, int], int] = {}  # sender -> seq after its highest
        yield f"A {_side(conv.a)}".ljust(width + 12) + f"B {_side(conv.b)}"
        for event in conv.events:
            me = _endpoint(event, True)
            at = f"{(float(event['time']) - start) * 1000:10.3f} ms  "
            if event["event"] == "state":
                text = f"{event['from']} -> {event['to']}"
                if me == conv.a:
                    yield at + text
                else:
                    yield at + " " * width + text.rjust(12)
                continue
            if both and event["event"] == "segment_received":
                continue
            sender = me if event["event"] == "segment_sent" else _endpoint(event, False)
            text = _describe(event, conv, sender)
            flags = event["flags"].split(",")
            length = int(event["len"]) + ("SYN" in flags) + ("FIN" in flags)
            if length:
                seq, end = int(event["seq"]), (int(event["seq"]) + length) & 0xFFFFFFFF
                highest = sent_up_to.get(sender)
                if highest is not None and _seq_lt(seq, highest):
                    text += "  [retransmission]"
                if highest is None or _seq_lt(highest, end):
                    sent_up_to[sender] = end
            if sender == conv.a:
                yield at + f"{text}  ------>"
            else:
                yield at + f"<------  {text}"
        yield ""
