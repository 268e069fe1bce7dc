"""Interop with the Linux kernel's TCP when things go wrong or stall.

The same lab as ``test_kernel_tcp.py`` (a TUN bridge between kernel sockets in a namespace of
their own and udptcp on 127.0.0.1, see conftest), here for what TCP's timers and feedback are
for: segments lost on purpose and repaired both ways, both receive windows shut and reopened,
zero-window and keep-alive probes, and lost handshake segments -- each checked end to end and
on the segment trace the bridge records.

Needs root, /dev/net/tun, iproute2 and network namespaces; skipped otherwise.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from typing import TYPE_CHECKING

import pytest

import udptcp
from udptcp.core.connection import State
from udptcp.core.segment import ACK, RST, SYN, decode
from udptcp.tools.tunbridge import KERNEL_TO_UDPTCP, UDPTCP_TO_KERNEL

if TYPE_CHECKING:  # the fixture's type, for annotations only
    from conftest import Lab

pytestmark = pytest.mark.timeout(30)

MB = 1 << 20


# ---------------------------------------------------------------------- 1. loss recovery


class LoseOnce:
    """Drop filter: lose the first transmission of chosen data segments in each direction.

    ``which`` lists, per direction, the ordinal numbers (from 0) of the distinct data
    segments to lose; retransmissions (a sequence number seen before) always pass.
    """

    def __init__(self, which: dict[str, set[int]]) -> None:
        self.which = which
        self.seen: dict[str, set[int]] = {d: set() for d in which}
        self.lost: dict[str, list[int]] = {d: [] for d in which}

    def __call__(self, direction: str, data: bytes) -> bool:
        seg = decode(data)
        if not seg.payload or direction not in self.which:
            return False
        seen = self.seen[direction]
        if seg.seq in seen:
            return False
        seen.add(seg.seq)
        if len(seen) - 1 in self.which[direction]:
            self.lost[direction].append(seg.seq)
            return True
        return False


async def test_loss_is_repaired_both_ways(lab: Lab) -> None:
    # Kernel data lost: udptcp's duplicate ACKs must trigger the kernel's fast retransmit
    # (no SACK was agreed, so NewReno); udptcp data lost: the kernel's duplicate ACKs
    # must trigger udptcp's. A burst of two tests partial-ACK handling.
    loss = LoseOnce({KERNEL_TO_UDPTCP: {30, 31, 200}, UDPTCP_TO_KERNEL: {40, 41, 300}})
    lab.bridge.drop = loss
    server, made = await lab.udptcp_server()
    try:
        start = time.perf_counter()
        reader, writer = await lab.kernel_connect(80)
        await lab.kernel_echo(reader, writer, os.urandom(MB))
        elapsed = time.perf_counter() - start
        info = writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        kernel_retrans = struct.unpack_from("I", info, 100)[0]
        writer.close()
        await writer.wait_closed()
        assert await asyncio.wait_for(made[0].lost, 5) is None
    finally:
        await lab.close_server(server)
    print(f"1 MB echo with 6 segments lost: {elapsed * 1000:.0f} ms")

    assert all(len(lost) == 3 for lost in loss.lost.values())
    assert kernel_retrans >= 3
    stats = made[0].transport.get_extra_info("udptcp_stats")
    assert stats["retransmits"] >= 3
    assert stats["fast_retransmits"] >= 1  # driven by the kernel's duplicate ACKs
    # Every lost sequence number went through again.
    for direction, lost in loss.lost.items():
        sent = {seg.seq for seg in lab.segments(direction) if seg.payload}
        assert set(lost) <= sent


# ---------------------------------------------------------------------- 2. flow control


async def test_udptcp_pause_reading_stalls_kernel_sender(lab: Lab) -> None:
    # A 64 KiB receive buffer, so a megabyte really fills the window.
    server, made = await lab.udptcp_server(paused=True, config=udptcp.Config(receive_buffer=65535))
    payload = os.urandom(MB)
    try:
        reader, writer = await lab.kernel_connect(80)
        writer.write(payload)
        draining = asyncio.create_task(writer.drain())
        await asyncio.sleep(0.5)
        # The kernel filled udptcp's window and stopped: nothing was delivered, the
        # writer is still blocked, and udptcp's advertised window reached zero.
        protocol = made[0]
        assert protocol.received == 0
        assert not draining.done()
        windows = [seg.window for seg in lab.segments(UDPTCP_TO_KERNEL)]
        assert windows[-1] == 0
        held_bytes = sum(len(seg.payload) for seg in lab.segments(KERNEL_TO_UDPTCP))
        assert 60000 <= held_bytes <= 70000  # about one 64 KiB receive buffer, not more
        protocol.transport.resume_reading()
        await asyncio.wait_for(draining, 10)
        writer.write_eof()
        await asyncio.wait_for(reader.read(), 5)  # udptcp closes on EOF
        assert protocol.received == MB
        writer.close()
        await writer.wait_closed()
    finally:
        await lab.close_server(server)
    # The window reopened with an update the kernel acted on (no RST, no reset).
    assert not any(seg.flags & RST for seg in lab.segments())


async def test_kernel_zero_window_is_probed_by_udptcp(lab: Lab) -> None:
    go = asyncio.Event()
    done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await go.wait()  # not reading: the small receive buffer fills, the window shuts
        done.set_result(await reader.read())
        writer.close()

    kernel_server, port = await lab.kernel_server(handle, rcvbuf=4096)
    payload = os.urandom(256 * 1024)
    try:
        transport, _ = await asyncio.wait_for(
            udptcp.create_connection(
                asyncio.Protocol, "127.0.0.1", lab.bridge.udp_address[1], vport=port
            ),
            5,
        )
        transport.write(payload)
        await asyncio.sleep(1.0)
        conn = transport.get_extra_info("udptcp_connection")
        assert conn.snd_wnd == 0  # the kernel shut its window ...
        assert conn.stats_counters["window_probes"] >= 1  # ... and udptcp probes it
        go.set()
        transport.write_eof()
        lab.assert_same_bytes(await asyncio.wait_for(done, 10), payload)
        transport.close()
    finally:
        await lab.close_server(kernel_server)

    from_kernel = lab.segments(KERNEL_TO_UDPTCP)
    assert any(seg.window == 0 for seg in from_kernel)
    assert not any(seg.flags & RST for seg in lab.segments())


# ---------------------------------------------------------------------- 3. keep-alive


async def test_kernel_keepalive_probes_are_answered(lab: Lab) -> None:
    server, made = await lab.udptcp_server()
    try:
        reader, writer = await lab.kernel_connect(80)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 1)  # one unanswered probe kills
        writer.write(b"a")
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"a"
        await asyncio.sleep(2.6)  # two idle periods: at least two probes
        writer.write(b"b")
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"b"
        writer.close()
        await writer.wait_closed()
        assert await asyncio.wait_for(made[0].lost, 5) is None
    finally:
        await lab.close_server(server)

    conn = made[0].transport.get_extra_info("udptcp_connection")
    # RFC 9293 §3.8.4 / RFC 1122 §4.2.3.6: a keep-alive is an ACK with SEG.SEQ = SND.NXT - 1
    # and no data, here one before the udptcp side's RCV.NXT (irs + 2 after the byte "a");
    # udptcp must answer each with an ACK of RCV.NXT.
    trace = lab.trace()
    first_data = next(
        i for i, (d, seg) in enumerate(trace) if d == KERNEL_TO_UDPTCP and seg.payload
    )
    probe_seq = (conn.irs + 1) & 0xFFFFFFFF
    probes = [
        i
        for i, (d, seg) in enumerate(trace)
        if i > first_data
        and d == KERNEL_TO_UDPTCP
        and seg.flags == ACK
        and not seg.payload
        and seg.seq == probe_seq
    ]
    assert len(probes) >= 2
    for i in probes:
        direction, answer = trace[i + 1]
        assert direction == UDPTCP_TO_KERNEL
        assert answer.flags == ACK and answer.ack == (probe_seq + 1) & 0xFFFFFFFF


# ---------------------------------------------------------------------- 4. lost handshake


class LoseHandshake:
    """Drop filter: lose the first SYN,ACK and the first pure ACK in ``direction``."""

    def __init__(self, synack_from: str, ack_from: str | None = None) -> None:
        self.synack_from = synack_from
        self.ack_from = ack_from
        self.lost: list[str] = []

    def __call__(self, direction: str, data: bytes) -> bool:
        seg = decode(data)
        if direction == self.synack_from and seg.flags == SYN | ACK and "synack" not in self.lost:
            self.lost.append("synack")
            return True
        if (
            direction == self.ack_from
            and seg.flags == ACK
            and not seg.payload
            and "synack" in self.lost
            and "ack" not in self.lost
        ):
            self.lost.append("ack")
            return True
        return False


async def test_lost_synack_and_third_ack_from_kernel_client(lab: Lab) -> None:
    # udptcp's SYN,ACK is lost: the kernel's SYN retransmission (after its 1 s initial RTO)
    # must be answered again from SYN-RECEIVED. Then the kernel's ACK is lost: its first data
    # segment (which carries the same ACK) must complete the handshake.
    loss = LoseHandshake(synack_from=UDPTCP_TO_KERNEL, ack_from=KERNEL_TO_UDPTCP)
    lab.bridge.drop = loss
    # udptcp's own SYN,ACK retransmission comes later than the kernel's SYN retransmission.
    server, made = await lab.udptcp_server(config=udptcp.Config(rto_initial=3.0))
    try:
        reader, writer = await lab.kernel_connect(80)
        writer.write(b"first data")
        assert await asyncio.wait_for(reader.readexactly(10), 5) == b"first data"
        writer.close()
        await writer.wait_closed()
        assert await asyncio.wait_for(made[0].lost, 5) is None
    finally:
        await lab.close_server(server)
    assert loss.lost == ["synack", "ack"]
    kernel_syns = [seg for seg in lab.segments(KERNEL_TO_UDPTCP) if seg.flags == SYN]
    assert len(kernel_syns) == 2 and kernel_syns[0].seq == kernel_syns[1].seq
    conn = made[0].transport.get_extra_info("udptcp_connection")
    assert conn.state_history[:3] == [State.LISTEN, State.SYN_RECEIVED, State.ESTABLISHED]


async def test_lost_kernel_synack_to_udptcp_client(lab: Lab) -> None:
    # The kernel's SYN,ACK is lost: udptcp retransmits its SYN (soon: a short initial RTO)
    # and the kernel, in SYN-RECV, answers with its SYN,ACK again.
    loss = LoseHandshake(synack_from=KERNEL_TO_UDPTCP)
    lab.bridge.drop = loss
    accepted: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(await reader.read())
        writer.close()

    kernel_server, port = await lab.kernel_server(handle)
    config = udptcp.Config(rto_initial=0.2, rto_min=0.05, syn_retries=2)
    try:
        transport, _ = await asyncio.wait_for(
            udptcp.create_connection(
                asyncio.Protocol, "127.0.0.1", lab.bridge.udp_address[1], vport=port, config=config
            ),
            5,
        )
        transport.write(b"hello kernel")
        transport.write_eof()
        assert await asyncio.wait_for(accepted, 5) == b"hello kernel"
        transport.close()
    finally:
        await lab.close_server(kernel_server)
    assert loss.lost == ["synack"]
    our_syns = [seg for seg in lab.segments(UDPTCP_TO_KERNEL) if seg.flags == SYN]
    assert len(our_syns) == 2 and our_syns[0].seq == our_syns[1].seq
