"""Segment traces (Config.trace, trace_endpoint) over real sockets, their pcap export, and
what tshark makes of it (skipped, with the reason, where tshark is not installed)."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from aio_helpers import Recorder, accepted, ipv6_available, recorders, serving

import udptcp
from udptcp.aio.endpoint import open_endpoints
from udptcp.aio.tracing import trace_endpoint
from udptcp.core.segment import checksum, decode
from udptcp.tools.pcap import ladder, read_trace, write_pcap
from udptcp.tools.relay import Impairment, Relay

SEED = 1405
TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(
    TSHARK is None, reason="tshark not installed (apt-get install tshark; .ci/run does)"
)


async def _transfer(
    path: Path, size: int, *, via_relay: Impairment | None = None, server_trace: bool = False
) -> tuple[udptcp.Transport, bytes]:
    """Send ``size`` seeded bytes from a traced client to a server and close both ends;
    returns the client's transport (closed) and what the server received."""
    data = random.Random(SEED).randbytes(size)
    made, factory = recorders()
    server_config = udptcp.Config(trace=str(path)) if server_trace else None
    async with serving(factory, config=server_config) as (server, port):
        relay = None
        target = port
        if via_relay is not None:
            relay = Relay(("127.0.0.1", port), forward=via_relay, backward=via_relay, seed=SEED)
            target = (await relay.start("127.0.0.1", 0))[1]
        config = None if server_trace else udptcp.Config(trace=str(path))
        transport, client = await udptcp.create_connection(
            Recorder, "127.0.0.1", target, config=config
        )
        peer = await accepted(made)
        transport.write(data)
        transport.write_eof()
        await asyncio.wait_for(peer.eof, 60)
        assert peer.transport is not None
        peer.transport.close()
        await asyncio.wait_for(client.lost, 60)
        await asyncio.wait_for(peer.lost, 60)
        got = bytes(peer.data)
        if relay is not None:
            await relay.close()
    return transport, got


def _events(path: Path) -> list[dict]:
    with path.open() as f:
        return read_trace(f)


async def test_a_client_trace_has_every_segment_and_state(tmp_path: Path) -> None:
    path = tmp_path / "client.jsonl"
    transport, got = await _transfer(path, 50_000)
    assert len(got) == 50_000
    events = _events(path)
    assert events[0]["event"] == "trace_start" and events[0]["version"] == 1
    states = [(e["from"], e["to"]) for e in events if e["event"] == "state"]
    assert states[:2] == [("CLOSED", "SYN-SENT"), ("SYN-SENT", "ESTABLISHED")]
    assert states[-1][1] == "TIME-WAIT" and ("FIN-WAIT-1", "FIN-WAIT-2") in states
    segments = [e for e in events if e["event"].startswith("segment_")]
    first = segments[0]
    assert (first["event"], first["flags"]) == ("segment_sent", "SYN")
    assert first["options"]["mss"] > 0 and first["options"]["sack_permitted"] is True
    local, remote = transport.get_extra_info("vports")
    assert (first["sport"], first["dport"]) == (local, remote)
    assert first["remote"] == list(transport.get_extra_info("peername"))
    assert first["local"] == list(transport.get_extra_info("sockname"))
    syn_ack = segments[1]
    assert (syn_ack["event"], syn_ack["flags"], syn_ack["ack"]) == (
        "segment_received",
        "SYN,ACK",
        (first["seq"] + 1) & 0xFFFFFFFF,
    )
    # What the trace says matches the counters: every segment, each way, once.
    st = transport.get_extra_info("stats")
    assert sum(e["event"] == "segment_sent" for e in segments) == st.segments_sent
    assert sum(e["len"] for e in segments if e["event"] == "segment_sent") == st.bytes_sent
    # The header is the segment as encoded (checksum over the header alone).
    for e in segments:
        seg = decode(bytes.fromhex(e["header"]))
        assert (seg.seq, seg.ack, seg.flag_names(), seg.window) == (
            e["seq"],
            e["ack"],
            e["flags"],
            e["window"],
        )
        assert (seg.src_port, seg.dst_port) == (e["sport"], e["dport"])
    assert all(json.dumps(e) for e in events)


async def test_a_server_trace_starts_with_the_syn_that_made_it(tmp_path: Path) -> None:
    path = tmp_path / "server.jsonl"
    _, got = await _transfer(path, 10_000, server_trace=True)
    assert len(got) == 10_000
    events = [e for e in _events(path) if e["event"] != "trace_start"]
    assert (events[0]["event"], events[0]["flags"]) == ("segment_received", "SYN")
    assert (events[1]["from"], events[1]["to"]) == ("LISTEN", "SYN-RECEIVED")
    assert (events[2]["event"], events[2]["flags"]) == ("segment_sent", "SYN,ACK")
    tos = [e["to"] for e in events if e["event"] == "state"]
    assert tos == ["SYN-RECEIVED", "ESTABLISHED", "CLOSE-WAIT", "LAST-ACK", "CLOSED"]


async def test_trace_endpoint_traces_every_connection_until_closed(tmp_path: Path) -> None:
    path = tmp_path / "endpoint.jsonl"
    made, factory = recorders()
    async with serving(factory) as (server, port):
        tracer = trace_endpoint(server.endpoints[0], str(path), payload=True)
        for n in range(2):
            transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
            transport.write(b"%d" % n * 100)
            peer = await accepted(made, n + 1)
            await made[n].received(100)
            transport.abort()
            await peer.lost
        tracer.close()
        assert server.endpoints[0].trace is None
    events = _events(path)
    data = [e for e in events if e["event"] == "segment_received" and e["len"]]
    assert sorted(e["data"] for e in data) == sorted(
        __import__("base64").b64encode(b"%d" % n * 100).decode() for n in range(2)
    )
    assert len({e["sport"] for e in data}) == 2  # two connections, one file


def _pcap_packets(path: Path) -> tuple[int, list[bytes]]:
    raw = path.read_bytes()
    magic, major, minor, _, _, _, linktype = struct.unpack_from("<IHHiIII", raw)
    assert (magic, major, minor) == (0xA1B2C3D4, 2, 4)
    packets, at = [], 24
    while at < len(raw):
        _, _, incl, orig = struct.unpack_from("<IIII", raw, at)
        assert incl == orig
        packets.append(raw[at + 16 : at + 16 + incl])
        at += 16 + incl
    return linktype, packets


async def test_pcap_packets_carry_valid_ip_and_tcp_checksums_one_per_segment(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bulk.jsonl"
    transport, _ = await _transfer(path, 400_000)
    events = _events(path)
    out = tmp_path / "bulk.pcap"
    with out.open("wb") as f:
        written = write_pcap(events, f)
    linktype, packets = _pcap_packets(out)
    assert linktype == 101 and written == len(packets)
    assert written == sum(e["event"].startswith("segment_") for e in events)
    st = transport.get_extra_info("stats")
    endpoint = transport.endpoint
    if endpoint.gso:  # the runs really went out as GSO sends, and came apart in the pcap
        assert endpoint.stats["gso_sends"] > 0
    for packet, event in zip(packets, [e for e in events if e["event"].startswith("segment_")]):
        assert packet[0] >> 4 == 4 and checksum(packet[:20]) == 0  # IPv4 header checksum
        src, dst = ipaddress.ip_address(packet[12:16]), ipaddress.ip_address(packet[16:20])
        assert str(src if event["event"] == "segment_sent" else dst) == event["local"][0]
        tcp = packet[20:]
        assert len(tcp) == len(bytes.fromhex(event["header"])) + event["len"]
        assert len(tcp) - (tcp[12] >> 4) * 4 <= st.mss  # one segment per packet, GSO or not
        pseudo = packet[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
        assert checksum(pseudo + tcp) == 0  # TCP checksum over the pseudo-header
        assert struct.unpack("!HH", tcp[:4]) == (event["sport"], event["dport"])


async def test_the_ladder_reads_like_the_handshake_on_paper(tmp_path: Path) -> None:
    path = tmp_path / "ladder.jsonl"
    await _transfer(path, 3000)
    lines = list(ladder(_events(path)))
    body = "\n".join(lines)
    assert lines[0].startswith("A 127.0.0.1:") and " B 127.0.0.1:" in lines[0]
    assert "SYN seq=x <mss" in body and "------>" in body
    assert "<------  SYN,ACK seq=y ack=x+1 <mss" in body
    assert "ACK seq=x+1 ack=y+1 win=" in body
    assert "SYN-SENT -> ESTABLISHED" in body and "-> TIME-WAIT" in body
    assert "len=3000" in body or "len=1440" in body


def _tshark(*args: str) -> str:
    assert TSHARK is not None
    result = subprocess.run(
        [TSHARK, "-n", "-o", "tcp.check_checksum:TRUE", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def _pcap_of(tmp_path: Path, name: str, size: int, impairment: Impairment | None):
    path = tmp_path / f"{name}.jsonl"
    transport, got = await _transfer(path, size, via_relay=impairment)
    assert (
        hashlib.sha256(got).digest() == hashlib.sha256(random.Random(SEED).randbytes(size)).digest()
    )
    events = _events(path)
    out = tmp_path / f"{name}.pcap"
    with out.open("wb") as f:
        write_pcap(events, f)
    return transport, events, out


@needs_tshark
async def test_tshark_finds_no_expert_errors_in_a_clean_transfer(tmp_path: Path) -> None:
    transport, events, out = await _pcap_of(tmp_path, "clean", 1_000_000, None)
    st = transport.get_extra_info("stats")
    frames = _tshark("-r", str(out), "-T", "fields", "-e", "frame.number", "-e", "tcp.len")
    assert len(frames.splitlines()) == sum(e["event"].startswith("segment_") for e in events)
    errors = _tshark("-r", str(out), "-Y", "_ws.expert.severity >= error")
    assert errors == "", f"expert errors:\n{errors}"
    # tshark decodes the handshake's options and the scaled window as TCP.
    syn = _tshark("-r", str(out), "-c", "1", "-T", "fields", "-e", "tcp.options.mss_val")
    assert int(syn) == next(e for e in events if e.get("flags") == "SYN")["options"]["mss"]
    scales = _tshark(
        "-r", str(out), "-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.window_size_scalefactor"
    ).split()
    assert set(scales) == {str(1 << st.snd_wscale)}  # the scale the SYNs agreed, applied


@needs_tshark
async def test_tshark_marks_the_retransmissions_of_a_lossy_transfer(tmp_path: Path) -> None:
    impairment = Impairment(loss=0.05)
    transport, events, out = await _pcap_of(tmp_path, "lossy", 300_000, impairment)
    st = transport.get_extra_info("stats")
    assert st.retransmits > 0

    def frames(display_filter: str) -> set[str]:
        return set(
            _tshark(
                "-r", str(out), "-Y", display_filter, "-T", "fields", "-e", "frame.number"
            ).split()
        )

    marked = frames(
        "tcp.analysis.retransmission || tcp.analysis.fast_retransmission"
        " || tcp.analysis.spurious_retransmission"
    )
    # A resend within one handshake RTT of the newest data (and after fewer than two
    # duplicate ACKs: SACK and RACK act sooner) is what Wireshark calls out-of-order: from
    # one capture point it cannot tell it from a reordered original.
    out_of_order = frames("tcp.analysis.out_of_order")
    # Our own count of data we sent again, from the trace: what tshark should mark.
    resent, highest = set(), None
    for number, e in enumerate([e for e in events if e["event"].startswith("segment_")], 1):
        if e["event"] != "segment_sent":
            continue
        length = e["len"] + ("SYN" in e["flags"]) + ("FIN" in e["flags"])
        if not length:
            continue
        end = (e["seq"] + length) & 0xFFFFFFFF
        if highest is not None and 0 < (highest - e["seq"]) & 0xFFFFFFFF < 1 << 31:
            resent.add(str(number))
        if highest is None or 0 < (end - highest) & 0xFFFFFFFF < 1 << 31:
            highest = end
    assert len(resent) == st.retransmits
    assert marked and not marked & out_of_order
    assert marked | out_of_order == resent
    errors = _tshark("-r", str(out), "-Y", "_ws.expert.severity >= error")
    assert errors == "", f"expert errors:\n{errors}"


async def test_both_ends_in_one_file_draw_each_segment_once(tmp_path: Path) -> None:
    path = tmp_path / "both.jsonl"
    config = udptcp.Config(trace=str(path))
    made, factory = recorders()
    async with serving(factory, config=config) as (server, port):
        transport, client = await udptcp.create_connection(
            Recorder, "127.0.0.1", port, config=config
        )
        peer = await accepted(made)
        transport.write(b"ping")
        await peer.received(4)
        transport.close()
        await client.lost
        assert peer.transport is not None
        peer.transport.close()
        await peer.lost
    events = _events(path)
    lines = list(ladder(events))
    body = "\n".join(lines)
    # The client (A) sent the first SYN; both ends' states are drawn, each on its side.
    assert lines[0].startswith("A 127.0.0.1:") and f"B 127.0.0.1:{port} vport {port}" in lines[0]
    assert sum("  SYN seq=x <" in line for line in lines) == 1  # sent and received: drawn once
    assert "LISTEN -> SYN-RECEIVED" in body and "SYN-SENT -> ESTABLISHED" in body
    right = next(line for line in lines if "LISTEN -> SYN-RECEIVED" in line)
    left = next(line for line in lines if "CLOSED -> SYN-SENT" in line)
    assert right.index("LISTEN") > left.index("CLOSED") + 30
    assert "ACK seq=x+1 ack=y+1 len=4" in body


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
async def test_an_ipv6_trace_becomes_ipv6_packets_with_valid_checksums(tmp_path: Path) -> None:
    path = tmp_path / "v6.jsonl"
    made, factory = recorders()
    async with serving(factory, host="::1") as (server, port):
        transport, client = await udptcp.create_connection(
            Recorder, "::1", port, config=udptcp.Config(trace=str(path))
        )
        peer = await accepted(made)
        transport.write(b"six" * 1000)
        await peer.received(3000)
        transport.abort()
        await peer.lost
    out = tmp_path / "v6.pcap"
    with out.open("wb") as f:
        written = write_pcap(_events(path), f)
    _, packets = _pcap_packets(out)
    assert written == len(packets) > 3
    for packet in packets:
        assert packet[0] >> 4 == 6 and packet[6] == 6  # IPv6, next header TCP
        assert struct.unpack("!H", packet[4:6])[0] == len(packet) - 40
        tcp = packet[40:]
        pseudo = packet[8:40] + struct.pack("!I3xB", len(tcp), 6)
        assert checksum(pseudo + tcp) == 0
    if TSHARK is not None:
        assert _tshark("-r", str(out), "-Y", "_ws.expert.severity >= error") == ""
        assert _tshark("-r", str(out), "-c", "1", "-T", "fields", "-e", "ipv6.src") == "::1\n"


async def test_a_trace_file_that_cannot_be_opened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = str(tmp_path / "missing-dir" / "t.jsonl")
    # An active open fails with the file's error ...
    made, factory = recorders()
    async with serving(factory) as (server, port):
        with pytest.raises(FileNotFoundError):
            await udptcp.create_connection(
                Recorder, "127.0.0.1", port, config=udptcp.Config(trace=bad)
            )
        # (and leaves nothing behind on the shared client endpoint)
        assert all(not e.connections() for e in open_endpoints() if not e._listeners)
    # ... a server goes on untraced and says so once.
    made, factory = recorders()
    async with serving(factory, config=udptcp.Config(trace=bad)) as (server, port):
        for _ in range(2):
            transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
            transport.write(b"still served")
            await accepted(made, len(made) or 1)
            await made[-1].received(12)
            transport.close()
            await client.lost
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"cannot write the trace file {bad}: No such file or directory"]
