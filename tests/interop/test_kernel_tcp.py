"""Interop with a real, conforming TCP: the Linux kernel's, bridged onto UDP.

A :class:`~udptcp.tools.tunbridge.TunBridge` turns kernel TCP packets on a TUN device into
udptcp datagrams and back, converting only the checksum. Kernel sockets on one side, udptcp on
the other, and the core of the protocol between them: handshake with option negotiation, a
1 MB echo both ways, half-close, TIME-WAIT, RST for closed ports, abortive release,
simultaneous close and open -- each checked end to end and on the segment trace the bridge
records. Loss, flow control, probes and lost handshake segments are in
``test_kernel_tcp_recovery.py``.

The ``lab`` fixture (conftest) gives each test its own network namespace holding the kernel
side (the TUN device on 10.200.0.0/30 and the kernel's sockets), deleted afterwards; the host
namespace sees only UDP on 127.0.0.1. Needs root, /dev/net/tun, iproute2 and network
namespaces; skipped otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from typing import TYPE_CHECKING

import pytest

import udptcp
from udptcp.core.connection import State
from udptcp.core.segment import ACK, CWR, ECE, FIN, RST, SYN, Options
from udptcp.tools.tunbridge import KERNEL_TO_UDPTCP, UDPTCP_TO_KERNEL, call_in_netns

if TYPE_CHECKING:  # the fixture's type, for annotations only
    from conftest import Lab

pytestmark = pytest.mark.timeout(30)

MB = 1 << 20
#: udptcp's MSS on IPv4: the 1472-byte payload budget minus the 20-byte header
#: (docs/architecture.md#wire-format).
UDPTCP_MSS = 1452
#: The kernel's MSS on the 1500-byte TUN device: 1500 - 20 (IPv4) - 20 (TCP).
KERNEL_MSS = 1460
#: Short TIME-WAIT so a test can watch it end.
SHORT_MSL = udptcp.Config(msl=0.1)
# udptcp with the RFC 7323 / RFC 2018 options turned off: it answers MSS alone.
PLAIN = udptcp.Config(window_scaling=False, timestamps=False, sack=False)
# NOP, NOP, timestamps: taken out of every segment's data once timestamps are agreed.
TIMESTAMPS_LEN = 12
#: Short timers for the failure paths.
FAST = udptcp.Config(rto_initial=0.2, rto_min=0.05, syn_retries=2, msl=0.1)
#: tcp_info.tcpi_options bits (<linux/tcp.h>).
TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE, TCPI_OPT_ECN = 1, 2, 4, 8
#: The kernel's TIME-WAIT state number (<net/tcp_states.h>).
TCP_TIME_WAIT = 6


# ---------------------------------------------------------------------- helpers


def datagram_sizes(lab: Lab, direction: str) -> list[int]:
    assert lab.bridge.record is not None
    return [len(data) for d, data in lab.bridge.record if d == direction]


def kernel_tcp_info(writer: asyncio.StreamWriter) -> tuple[int, int]:
    """``(tcpi_options, tcpi_snd_mss)`` of a kernel stream's socket."""
    sock = writer.get_extra_info("socket")
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return info[5], struct.unpack_from("I", info, 16)[0]


def set_linger_zero(writer: asyncio.StreamWriter) -> None:
    """Make the kernel reset the connection on close (SO_LINGER on, timeout 0)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _protect_time_wait() -> None:
    """RFC 1337's protection in the calling thread's network namespace: a RST no longer ends
    TIME-WAIT (``net.ipv4.tcp_rfc1337``, a per-namespace sysctl)."""
    with open("/proc/sys/net/ipv4/tcp_rfc1337", "w") as f:
        f.write("1")


# ---------------------------------------------------------------------- 1. kernel -> udptcp


@pytest.mark.parametrize("modern", [True, False], ids=["all-options", "mss-only"])
async def test_kernel_client_echoes_1mb_through_udptcp_server(lab: Lab, modern: bool) -> None:
    bridge = lab.bridge
    # With its defaults udptcp agrees to everything Linux offers; with the options turned
    # off it answers MSS alone, and the connection must work just the same.
    config = udptcp.Config() if modern else PLAIN
    # The kernel must stay in the TIME-WAIT checked below even if a RST reaches it there,
    # which Linux otherwise honours (RFC 1337's "TIME-WAIT assassination"): on a loaded
    # machine the kernel's ACKs can come after udptcp's tail-loss probe has sent its FIN
    # again; the kernel acknowledges the copy, and udptcp, CLOSED by then, answers that ACK
    # with a RST (RFC 9293 §3.10.7.1), as a kernel would. A lab namespace's own setting.
    call_in_netns(lab.netns, _protect_time_wait)
    server, made = await lab.udptcp_server(config=config)  # wildcard virtual port
    try:
        start = time.perf_counter()
        reader, writer = await lab.kernel_connect(80)
        options, snd_mss = kernel_tcp_info(writer)
        await lab.kernel_echo(reader, writer, os.urandom(MB))
        elapsed = time.perf_counter() - start
        kernel_addr = writer.get_extra_info("sockname")
        writer.close()
        await writer.wait_closed()
        # The udptcp side closed cleanly: EOF, FIN of its own, ACKed by the kernel ...
        assert await asyncio.wait_for(made[0].lost, 5) is None
    finally:
        await lab.close_server(server)
    print(f"kernel client -> udptcp server: 1 MB echoed in {elapsed * 1000:.0f} ms")
    # ... and the kernel, the active closer, got udptcp's FIN and sits in TIME-WAIT.
    assert lab.kernel_tcp_state(kernel_addr, (bridge.peer_ip, 80)) == TCP_TIME_WAIT

    # The kernel agreed to exactly what udptcp's SYN-ACK answered (RFC 7323 §2.2, §3.2;
    # RFC 2018 §2) and sizes its segments by udptcp's MSS, less the timestamp option.
    agreed = TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE
    assert options & agreed == (agreed if modern else 0)
    data_per_segment = UDPTCP_MSS - (TIMESTAMPS_LEN if modern else 0)
    assert snd_mss == data_per_segment

    conn = made[0].transport.get_extra_info("udptcp_connection")
    assert conn.state_history == [
        State.LISTEN,
        State.SYN_RECEIVED,
        State.ESTABLISHED,
        State.CLOSE_WAIT,
        State.LAST_ACK,
        State.CLOSED,
    ]

    from_kernel = lab.segments(KERNEL_TO_UDPTCP)
    from_udptcp = lab.segments(UDPTCP_TO_KERNEL)
    syn, syn_ack = from_kernel[0], from_udptcp[0]
    # The kernel's SYN offers everything a modern stack does.
    assert syn.flags == SYN and syn.dst_port == 80
    assert syn.options is not None
    assert syn.options.mss == KERNEL_MSS
    assert syn.options.sack_permitted
    assert syn.options.timestamps is not None
    assert syn.options.wscale is not None
    # udptcp answers what it agrees to, and the handshake is exact.
    assert syn_ack.flags == SYN | ACK
    if modern:
        assert syn_ack.options.mss == UDPTCP_MSS and syn_ack.options.sack_permitted
        assert syn_ack.options.wscale is not None
        assert syn_ack.options.timestamps[1] == syn.options.timestamps[0]  # TSecr echoes
        # From then on every kernel segment carries a timestamp (RFC 7323 §3.2).
        assert all(seg.options and seg.options.timestamps for seg in from_kernel[1:])
    else:
        assert syn_ack.options == Options(mss=UDPTCP_MSS)
        # After the handshake the kernel never sends timestamps or SACK blocks.
        assert all(seg.options is None for seg in from_kernel[1:])
    assert syn_ack.ack == syn.seq + 1
    assert (syn_ack.src_port, syn_ack.dst_port) == (80, syn.src_port)
    # Full-sized segments both ways, each datagram within the 1472-byte payload budget.
    assert max(len(seg.payload) for seg in from_kernel) == data_per_segment
    assert max(len(seg.payload) for seg in from_udptcp) == data_per_segment
    assert max(datagram_sizes(lab, UDPTCP_TO_KERNEL)) <= 1472
    # Each side sent the whole payload and a FIN; nobody reset anything.
    assert sum(len(seg.payload) for seg in from_kernel) >= MB
    assert sum(1 for seg in from_kernel if seg.flags & FIN) >= 1
    assert sum(1 for seg in from_udptcp if seg.flags & FIN) >= 1
    assert not any(seg.flags & RST for seg in from_kernel + from_udptcp)
    assert bridge.stats["drop_kernel_checksum"] == bridge.stats["drop_udptcp_checksum"] == 0


@pytest.mark.parametrize("lab", [1280], indirect=True, ids=["mtu1280"])
async def test_udptcp_honours_smaller_kernel_mss(lab: Lab) -> None:
    # On a 1280-byte device the kernel offers MSS 1240; udptcp must send no more than that
    # (RFC 9293 §3.7.1), though its own budget would allow 1452; with timestamps agreed
    # both sides carry 1240 - 12 data bytes per segment.
    server, made = await lab.udptcp_server()
    try:
        reader, writer = await lab.kernel_connect(80)
        await lab.kernel_echo(reader, writer, os.urandom(64 * 1024), timeout=5)
        writer.close()
        await writer.wait_closed()
        assert await asyncio.wait_for(made[0].lost, 5) is None
    finally:
        await lab.close_server(server)
    syn = lab.segments(KERNEL_TO_UDPTCP)[0]
    assert syn.options is not None and syn.options.mss == 1240
    assert max(len(seg.payload) for seg in lab.segments(UDPTCP_TO_KERNEL)) == 1240 - 12
    assert max(len(seg.payload) for seg in lab.segments(KERNEL_TO_UDPTCP)) == 1240 - 12


async def test_kernel_ecn_setup_syn_gets_a_plain_answer(lab: Lab) -> None:
    # With ECN enabled on the route the kernel's SYN carries ECE and CWR (RFC 3168 §6.1.1).
    # udptcp does not do ECN: its SYN,ACK must not set ECE, and the kernel then uses none.
    bridge = lab.bridge
    bridge.ip(
        *("route", "replace", f"{bridge.peer_ip}/32", "dev", str(bridge.ifname)),
        *("src", bridge.local_ip, "features", "ecn"),
    )
    server, made = await lab.udptcp_server()
    try:
        reader, writer = await lab.kernel_connect(80)
        writer.write(b"ecn?" * 1000)
        assert await asyncio.wait_for(reader.readexactly(4000), 5) == b"ecn?" * 1000
        options, _ = kernel_tcp_info(writer)
        writer.close()
        await writer.wait_closed()
        assert await asyncio.wait_for(made[0].lost, 5) is None
    finally:
        await lab.close_server(server)
    syn, syn_ack = lab.segments(KERNEL_TO_UDPTCP)[0], lab.segments(UDPTCP_TO_KERNEL)[0]
    assert syn.flags == SYN | ECE | CWR
    assert syn_ack.flags == SYN | ACK
    assert options & TCPI_OPT_ECN == 0
    assert not any(seg.flags & (ECE | CWR) for seg in lab.segments()[1:])


# ---------------------------------------------------------------------- 2. udptcp -> kernel


async def test_udptcp_client_half_closes_against_kernel_server(lab: Lab) -> None:
    bridge = lab.bridge
    payload = os.urandom(MB)
    trailer = os.urandom(64 * 1024)
    kernel_done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        total = 0
        try:
            while chunk := await reader.read(65536):
                total += len(chunk)
                writer.write(chunk)
                await writer.drain()
            # udptcp has half-closed; the kernel still sends, then closes.
            await asyncio.sleep(0.05)
            writer.write(trailer)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            kernel_done.set_result(total)
        except BaseException as exc:
            kernel_done.set_exception(exc)
            raise

    kernel_server, port = await lab.kernel_server(handle)
    try:
        start = time.perf_counter()
        reader, writer = await asyncio.wait_for(
            udptcp.open_connection(
                "127.0.0.1", bridge.udp_address[1], vport=port, config=SHORT_MSL
            ),
            5,
        )
        conn = writer.transport.get_extra_info("udptcp_connection")
        udptcp_addr = (bridge.peer_ip, writer.transport.get_extra_info("vports")[0])
        receiving = asyncio.create_task(reader.read())
        writer.write(payload)
        writer.write_eof()
        received = await asyncio.wait_for(receiving, 10)
        elapsed = time.perf_counter() - start
        assert await asyncio.wait_for(kernel_done, 5) == MB
        lab.assert_same_bytes(received, payload + trailer)
        # The kernel's FIN took udptcp through TIME-WAIT (reported as closed on entry),
        # which ends after 2 MSL.
        await asyncio.wait_for(writer.wait_closed(), 5)
        assert conn.state is State.TIME_WAIT or conn.state is State.CLOSED
        # TIME-WAIT goes on as the endpoint's small record of the 4-tuple.
        endpoint = writer.transport.endpoint  # type: ignore[attr-defined]
        key = writer.transport.key  # type: ignore[attr-defined]
        assert conn.state is State.CLOSED or key in endpoint.time_waits()
        await asyncio.sleep(2 * SHORT_MSL.msl + 0.1)
        assert key not in endpoint.time_waits()
        # udptcp's last ACK took the kernel from LAST-ACK to CLOSED: the 4-tuple is gone.
        assert lab.kernel_tcp_state((bridge.local_ip, port), udptcp_addr) is None
    finally:
        await lab.close_server(kernel_server)
    print(
        f"udptcp client -> kernel server: 1 MB echoed (+64 KiB after FIN) in {elapsed * 1000:.0f} ms"
    )

    assert conn.state_history == [
        State.CLOSED,
        State.SYN_SENT,
        State.ESTABLISHED,
        State.FIN_WAIT_1,
        State.FIN_WAIT_2,
        State.TIME_WAIT,
    ]  # (then CLOSED: the TIME-WAIT record's expiry, checked above)

    from_kernel = lab.segments(KERNEL_TO_UDPTCP)
    from_udptcp = lab.segments(UDPTCP_TO_KERNEL)
    syn, syn_ack = from_udptcp[0], from_kernel[0]
    # udptcp offers every option a modern stack does; the kernel accepts them all.
    assert syn.flags == SYN and syn.options.mss == UDPTCP_MSS
    assert syn.options.sack_permitted and syn.options.wscale is not None
    assert syn.options.timestamps is not None
    assert syn.dst_port == port
    assert syn_ack.flags == SYN | ACK and syn_ack.ack == syn.seq + 1
    assert syn_ack.options.mss == KERNEL_MSS and syn_ack.options.sack_permitted
    assert syn_ack.options.wscale is not None
    assert syn_ack.options.timestamps[1] == syn.options.timestamps[0]
    assert max(len(seg.payload) for seg in from_udptcp) == UDPTCP_MSS - TIMESTAMPS_LEN

    # udptcp's FIN follows its last byte and the kernel acknowledges it ...
    (our_fin,) = [seg for seg in from_udptcp if seg.flags & FIN]
    assert our_fin.seq + len(our_fin.payload) == (syn.seq + 1 + MB) & 0xFFFFFFFF
    fin_end = (our_fin.seq + len(our_fin.payload) + 1) & 0xFFFFFFFF
    acked_at = next(i for i, seg in enumerate(from_kernel) if seg.ack == fin_end)
    # ... and then keeps sending data (udptcp in FIN-WAIT-2) before its own FIN,
    after = from_kernel[acked_at:]
    assert sum(len(seg.payload) for seg in after) >= len(trailer)
    kernel_fins = [seg for seg in from_kernel if seg.flags & FIN]
    assert kernel_fins
    # which udptcp acknowledges from TIME-WAIT.
    kernel_fin_end = (kernel_fins[0].seq + len(kernel_fins[0].payload) + 1) & 0xFFFFFFFF
    assert from_udptcp[-1].flags == ACK and from_udptcp[-1].ack == kernel_fin_end
    assert not any(seg.flags & RST for seg in from_kernel + from_udptcp)


# ---------------------------------------------------------------------- 3. RST for closed ports


async def test_udptcp_refuses_kernel_syn_to_unlistened_vport(lab: Lab) -> None:
    server, made = await lab.udptcp_server(vport=8080)
    try:
        with pytest.raises(ConnectionRefusedError):
            await lab.kernel_connect(81)
        # The listening virtual port itself accepts the kernel.
        reader, writer = await lab.kernel_connect(8080)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(made[0].lost, 5)
    finally:
        await lab.close_server(server)

    syn = lab.segments(KERNEL_TO_UDPTCP)[0]
    rst = lab.segments(UDPTCP_TO_KERNEL)[0]
    assert syn.flags == SYN and syn.dst_port == 81
    # RFC 9293 §3.10.7.1: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, ports swapped.
    assert rst.flags == RST | ACK
    assert (rst.seq, rst.ack) == (0, syn.seq + 1)
    assert (rst.src_port, rst.dst_port) == (81, syn.src_port)
    assert len(made) == 1


async def test_kernel_refuses_udptcp_syn_to_closed_port(lab: Lab) -> None:
    # Bound but not listening: the port stays ours and closed for the whole test.
    with lab.bridge.kernel_socket() as closed:
        closed.bind((lab.bridge.local_ip, 0))
        port = closed.getsockname()[1]
        start = time.perf_counter()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(
                udptcp.create_connection(
                    asyncio.Protocol,
                    "127.0.0.1",
                    lab.bridge.udp_address[1],
                    vport=port,
                    config=FAST,
                ),
                5,
            )
        assert time.perf_counter() - start < 1.0  # the RST, not a timeout

    syn = lab.segments(UDPTCP_TO_KERNEL)[0]
    rst = lab.segments(KERNEL_TO_UDPTCP)[0]
    assert syn.flags == SYN and syn.dst_port == port
    assert rst.flags == RST | ACK and rst.ack == syn.seq + 1
    assert (rst.src_port, rst.dst_port) == (port, syn.src_port)


# ---------------------------------------------------------------------- 4. release


async def test_kernel_abort_resets_udptcp(lab: Lab) -> None:
    server, made = await lab.udptcp_server()
    try:
        reader, writer = await lab.kernel_connect(80)
        writer.write(b"x" * 10000)
        assert await asyncio.wait_for(reader.readexactly(10000), 5) == b"x" * 10000
        set_linger_zero(writer)
        writer.transport.abort()  # close(2) with linger 0: the kernel sends RST
        error = await asyncio.wait_for(made[0].lost, 5)
        assert isinstance(error, ConnectionResetError)
        conn = made[0].transport.get_extra_info("udptcp_connection")
        assert conn.state_history[-2:] == [State.ESTABLISHED, State.CLOSED]
    finally:
        await lab.close_server(server)

    rsts = [seg for seg in lab.segments(KERNEL_TO_UDPTCP) if seg.flags & RST]
    assert len(rsts) == 1
    # RFC 5961 §3.2: only an RST exactly at RCV.NXT resets; the kernel's is.
    assert rsts[0].seq == (conn.irs + 1 + 10000) & 0xFFFFFFFF


async def test_udptcp_abort_resets_kernel(lab: Lab) -> None:
    server, made = await lab.udptcp_server()
    try:
        reader, writer = await lab.kernel_connect(80)
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"
        made[0].transport.abort()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert await asyncio.wait_for(made[0].lost, 5) is None
    finally:
        await lab.close_server(server)

    (rst,) = [seg for seg in lab.segments(UDPTCP_TO_KERNEL) if seg.flags & RST]
    assert rst.seq == made[0].transport.get_extra_info("udptcp_connection").snd_nxt


async def test_kernel_reopens_a_4_tuple_udptcp_holds_in_time_wait(lab: Lab) -> None:
    # udptcp closes first and keeps the 4-tuple in TIME-WAIT; the kernel reconnects from the
    # same port. Its new ISN is higher, so the SYN reopens the connection (RFC 9293
    # §3.10.7.4, RFC 6191) instead of being stalled for 2 MSL.
    server, made = await lab.udptcp_server(close_after_reply=True)
    loop = asyncio.get_running_loop()
    port = 0
    try:
        for round_ in range(2):
            kernel = lab.bridge.kernel_socket()
            kernel.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                kernel.bind((lab.bridge.local_ip, port))
                port = kernel.getsockname()[1]
                await asyncio.wait_for(loop.sock_connect(kernel, (lab.bridge.peer_ip, 80)), 5)
                await loop.sock_sendall(kernel, b"round %d" % round_)
                assert (
                    await asyncio.wait_for(loop.sock_recv(kernel, 100), 5) == b"round %d" % round_
                )
                assert await asyncio.wait_for(loop.sock_recv(kernel, 100), 5) == b""
            finally:
                kernel.close()
            # connection_lost comes once the reply went out; the closed connection then
            # finishes FIN-WAIT on its own and holds the 4-tuple in TIME-WAIT.
            assert await asyncio.wait_for(made[round_].lost, 5) is None
            conn = made[round_].transport.get_extra_info("udptcp_connection")
            for _ in range(500):
                if conn.state is State.TIME_WAIT:
                    break
                await asyncio.sleep(0.01)
            history = conn.state_history
            assert history[-3:] == [State.FIN_WAIT_1, State.FIN_WAIT_2, State.TIME_WAIT]
    finally:
        await lab.close_server(server)
    kernel_syns = [seg for seg in lab.segments(KERNEL_TO_UDPTCP) if seg.flags == SYN]
    assert len(kernel_syns) == 2  # no SYN had to be retransmitted
    assert kernel_syns[0].src_port == kernel_syns[1].src_port == port
    assert not any(seg.flags & RST for seg in lab.segments())


# ---------------------------------------------------------------------- 5. simultaneous


async def test_simultaneous_close_with_kernel(lab: Lab) -> None:
    # Both FINs are in flight before the bridge forwards either (RFC 9293 Figure 13):
    # both sides go FIN-WAIT-1 -> CLOSING -> TIME-WAIT.
    server, made = await lab.udptcp_server()
    loop = asyncio.get_running_loop()
    kernel = lab.bridge.kernel_socket()
    try:
        await asyncio.wait_for(loop.sock_connect(kernel, (lab.bridge.peer_ip, 80)), 5)
        await loop.sock_sendall(kernel, b"x")
        assert await asyncio.wait_for(loop.sock_recv(kernel, 1), 5) == b"x"
        await asyncio.sleep(0.1)  # let the delayed ACKs go, so only the FINs cross
        udptcp_side = made[0].transport
        # No await in between: the kernel's FIN is on the TUN queue and udptcp's in the
        # bridge's UDP socket before the bridge runs again.
        kernel.shutdown(socket.SHUT_WR)
        udptcp_side.write_eof()
        assert await asyncio.wait_for(loop.sock_recv(kernel, 1), 5) == b""
        assert await asyncio.wait_for(made[0].lost, 5) is None
        kernel_addr = kernel.getsockname()
    finally:
        kernel.close()
        await lab.close_server(server)
    conn = udptcp_side.get_extra_info("udptcp_connection")
    assert conn.state_history[-3:] == [State.FIN_WAIT_1, State.CLOSING, State.TIME_WAIT]
    # The kernel too.
    assert lab.kernel_tcp_state(kernel_addr, (lab.bridge.peer_ip, 80)) == TCP_TIME_WAIT
    trace = lab.trace()
    fins = [i for i, (d, seg) in enumerate(trace) if seg.flags & FIN]
    assert {trace[i][0] for i in fins} == {KERNEL_TO_UDPTCP, UDPTCP_TO_KERNEL}
    assert len(fins) == 2
    # Each FIN was sent before the other side's arrived: neither acknowledges the other.
    for i in fins:
        other = next(seg for j, (d, seg) in enumerate(trace) if j in fins and j != i)
        assert trace[i][1].ack != (other.seq + 1) & 0xFFFFFFFF
    assert not any(seg.flags & RST for _, seg in trace)


async def test_simultaneous_open_with_kernel(lab: Lab) -> None:
    # RFC 9293 Figure 8: the kernel and udptcp send SYNs to each other at once, each
    # answers with SYN,ACK from SYN-RECEIVED, and both reach ESTABLISHED.
    bridge = lab.bridge
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # udptcp's: the host's namespace
    udp.bind(("127.0.0.1", 0))
    udp.connect(bridge.udp_address)
    bridge.target = udp.getsockname()  # where the kernel's SYN goes before udptcp speaks
    kernel = bridge.kernel_socket()
    kernel.bind((bridge.local_ip, 0))
    kernel_port = kernel.getsockname()[1]
    udptcp_port = 40000 + kernel_port % 20000
    loop = asyncio.get_running_loop()
    try:
        # The kernel's SYN first: it waits in the UDP socket's buffer until udptcp, whose
        # SYN goes out as the connection is created, reads it in SYN-SENT.
        with contextlib.suppress(BlockingIOError):
            kernel.connect((bridge.peer_ip, udptcp_port))
        connecting = asyncio.ensure_future(
            udptcp.open_connection(sock=udp, vport=kernel_port, local_vport=udptcp_port)
        )
        await asyncio.wait_for(loop.sock_connect(kernel, (bridge.peer_ip, udptcp_port)), 5)
        reader, writer = await asyncio.wait_for(connecting, 5)
        await loop.sock_sendall(kernel, b"both opened")
        writer.write(b"ok")
        assert await asyncio.wait_for(loop.sock_recv(kernel, 100), 5) == b"ok"
        assert await asyncio.wait_for(reader.readexactly(11), 5) == b"both opened"
        conn = writer.transport.get_extra_info("udptcp_connection")
        writer.transport.abort()
    finally:
        kernel.close()
    assert conn.state_history[:4] == [
        State.CLOSED,
        State.SYN_SENT,
        State.SYN_RECEIVED,
        State.ESTABLISHED,
    ]
    trace = lab.trace()
    # Two bare SYNs crossed, then each side answered the other's with SYN,ACK.
    assert {d for d, seg in trace if seg.flags == SYN} == {KERNEL_TO_UDPTCP, UDPTCP_TO_KERNEL}
    assert {d for d, seg in trace if seg.flags == SYN | ACK} == {
        KERNEL_TO_UDPTCP,
        UDPTCP_TO_KERNEL,
    }
