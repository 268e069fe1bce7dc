"""Linux UDP segmentation offload (udptcp.aio.endpoint): GSO runs out, GRO trains in, one
ACK and one ``data_received`` per train, the switches that turn it off, and the fallbacks
when the kernel refuses a GSO send."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import hashlib
import os
import socket
import struct
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aio_helpers import accepted, serving
from support.protocols import Recorder

import udptcp
from udptcp.aio.endpoint import GSO_MAX_BYTES, GSO_MAX_SEGMENTS, Endpoint
from udptcp.aio.transport import Transport
from udptcp.core.segment import ACK, FIN, Segment, decode, encode

SOL_UDP, UDP_SEGMENT, UDP_GRO = 17, 103, 104


def _kernel_offload() -> bool:
    """Whether this kernel has UDP_GRO and UDP_SEGMENT (probed on a throwaway socket)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(SOL_UDP, UDP_GRO, 1)
            s.getsockopt(SOL_UDP, UDP_SEGMENT)
    except OSError:
        return False
    return True


needs_offload = pytest.mark.skipif(
    not _kernel_offload(), reason="the kernel lacks UDP_GRO / UDP_SEGMENT (Linux 5.0+ only)"
)


@pytest.fixture(autouse=True)
def _offload_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the offloads themselves: they run even in CI's second pass
    with UDPTCP_OFFLOAD=0 (the tests that want it off set it again)."""
    monkeypatch.delenv("UDPTCP_OFFLOAD", raising=False)


class ProbeSocket(socket.socket):
    """A UDP socket that logs what it hands the kernel; it can refuse GSO sends, swallow
    sends (``capture``) and return hand-made GRO trains from ``recvmsg`` (``inject``)."""

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_DGRAM)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            self.setsockopt(socket.SOL_SOCKET, option, 2 * 1024 * 1024)
        self.bind(("127.0.0.1", 0))
        self.calls: collections.Counter[str] = collections.Counter()
        self.sent: list[bytes] = []  # datagrams the kernel took, GSO runs split
        self.runs: list[tuple[int, list[int]]] = []  # (GSO size or 0, datagram lengths)
        # GSO send number i fails with errno refuse[i] (None: it does not); after those,
        # with gso_error (None: they do not).
        self.refuse: list[int | None] = []
        self.gso_error: int | None = None
        self.capture: list[bytes] | None = None  # sends land here instead of the kernel
        self.inject: collections.deque[tuple[bytes, int, Any]] = collections.deque()

    def _took(self, data: bytes, gso: int) -> None:
        pieces = [data[i : i + (gso or len(data))] for i in range(0, len(data), gso or len(data))]
        self.runs.append((gso, [len(p) for p in pieces]))
        (self.sent if self.capture is None else self.capture).extend(pieces)

    def send(self, data: Any, flags: int = 0) -> int:
        self.calls["send"] += 1
        n = len(data) if self.capture is not None else super().send(data, flags)
        self._took(bytes(data), 0)
        return n

    def sendto(self, data: Any, *args: Any) -> int:
        self.calls["sendto"] += 1
        n = len(data) if self.capture is not None else super().sendto(data, *args)
        self._took(bytes(data), 0)
        return n

    def sendmsg(self, buffers: Any, *args: Any) -> int:
        self.calls["sendmsg"] += 1
        data = b"".join(buffers)
        gso = 0
        for level, kind, value in args[0] if args else ():
            if (level, kind) == (SOL_UDP, UDP_SEGMENT):
                gso = struct.unpack("=H", value)[0]
        if gso:
            self.calls["gso"] += 1
            n = self.calls["gso"] - 1
            error = self.refuse[n] if n < len(self.refuse) else self.gso_error
            if error == errno.EAGAIN:
                raise BlockingIOError(error, "socket buffer full")
            if error is not None:
                raise OSError(error, os.strerror(error))
        n = len(data) if self.capture is not None else super().sendmsg(buffers, *args)
        self._took(data, gso)
        return n

    def recvfrom(self, bufsize: int, flags: int = 0) -> Any:
        self.calls["recvfrom"] += 1
        return super().recvfrom(bufsize, flags)

    def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> Any:
        self.calls["recvmsg"] += 1
        if self.inject:
            data, gro, addr = self.inject.popleft()
            ancdata = [(SOL_UDP, UDP_GRO, struct.pack("=i", gro))] if gro else []
            return data, ancdata, 0, addr
        return super().recvmsg(bufsize, ancbufsize, flags)


class Chunks(Recorder):
    """A Recorder that also keeps the size of every ``data_received`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def data_received(self, data: bytes) -> None:
        self.sizes.append(len(data))
        super().data_received(data)


def in_order_data(datagrams: list[bytes]) -> tuple[bytes, int]:
    """The data these datagrams carry and how many repeated old data; asserts new data
    went out in order, with no gap."""
    out = bytearray()
    start: int | None = None
    repeats = 0
    for seg in map(decode, datagrams):
        if seg.payload:
            start = seg.seq if start is None else start
            offset = (seg.seq - start) % 2**32
            if offset + len(seg.payload) <= len(out):
                repeats += 1  # a retransmission (a tail loss probe, say)
                continue
            assert offset == len(out), f"data at {offset} sent when {len(out)} was expected"
            out += seg.payload
    return bytes(out), repeats


@dataclass
class Outcome:
    sender: Endpoint
    receiver: Endpoint
    sender_stats: dict[str, Any]
    receiver_stats: dict[str, Any]
    chunks: list[int]  # data_received sizes on the receiver
    acks: int  # datagrams the receiver sent while the data came in


#: Without SACK there are no tail loss probes, so loopback needs no retransmission at all,
#: and "nothing was retransmitted" proves a refused or queued run was resent at once: with
#: SACK a probe can be spurious when the receiver is slow to acknowledge a burst.
QUIET = udptcp.Config(sack=False)


def chunk_recorders() -> tuple[list[Chunks], Callable[[], Chunks]]:
    made: list[Chunks] = []

    def factory() -> Chunks:
        made.append(Chunks())
        return made[-1]

    return made, factory


async def transfer(
    sock: ProbeSocket, size: int, client: udptcp.Config = QUIET, server: udptcp.Config | None = None
) -> Outcome:
    """Send ``size`` random bytes from a client on ``sock`` to a server; check they arrive
    intact and that the kernel was handed each byte once, in order."""
    payload = os.urandom(size)
    made, factory = chunk_recorders()
    async with serving(factory, config=server) as (_, port):
        sock.connect(("127.0.0.1", port))
        transport, protocol = await udptcp.create_connection(Recorder, sock=sock, config=client)
        assert isinstance(transport, Transport)
        receiver = await accepted(made)  # type: ignore[arg-type]
        assert isinstance(receiver, Chunks) and receiver.transport is not None
        sender, rx_endpoint = transport.endpoint, receiver.transport.endpoint
        acks_before = rx_endpoint.stats["datagrams_out"]
        transport.write(payload)
        got = await receiver.received(size, timeout=10)
        acks = rx_endpoint.stats["datagrams_out"] - acks_before
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        data, repeats = in_order_data(sock.sent)
        assert data == payload
        sender_stats = transport.get_extra_info("udptcp_stats")
        assert repeats == sender_stats["retransmits"]
        # Every datagram counted out was taken by the kernel, once.
        assert not sender._sendq and sender.stats["datagrams_out"] == len(sock.sent)
        receiver_stats = receiver.transport.get_extra_info("udptcp_stats")
        transport.close()
        await asyncio.wait_for(protocol.lost, 5)
    return Outcome(sender, rx_endpoint, sender_stats, receiver_stats, receiver.sizes, acks)


@needs_offload
async def test_bulk_transfer_sends_gso_runs_and_receives_gro_trains() -> None:
    sock = ProbeSocket()
    out = await transfer(sock, 4_000_000)
    assert out.sender.gso and out.sender.gro and out.receiver.gso and out.receiver.gro
    assert out.sender.stats["gso_sends"] > 0 and out.sender.stats["gso_errors"] == 0
    # Far fewer system calls than datagrams (loopback: about 1 in 40).
    syscalls = sum(sock.calls[m] for m in ("send", "sendto", "sendmsg"))
    assert syscalls * 8 < out.sender.stats["datagrams_out"], sock.calls
    assert out.receiver.stats["gro_trains"] > 0
    # One ACK and one data_received per train: far below the delayed-ACK rule's one ACK
    # per two segments (loopback: about one per 200).
    segments = out.receiver_stats["segments_received"]
    assert segments >= 4_000_000 // 1500
    assert out.acks * 8 < segments, (out.acks, segments)
    assert len(out.chunks) * 8 < segments, (len(out.chunks), segments)
    assert out.sender_stats["retransmits"] == 0


@pytest.mark.parametrize("switch", ["config", "environment"])
async def test_offload_is_off_by_config_or_environment(
    switch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, server = QUIET, None
    if switch == "config":
        client = udptcp.Config(sack=False, udp_offload=False)
        server = udptcp.Config(udp_offload=False)
    else:
        monkeypatch.setenv("UDPTCP_OFFLOAD", "0")
    sock = ProbeSocket()
    out = await transfer(sock, 1_000_000, client, server)
    for endpoint in (out.sender, out.receiver):
        assert endpoint.gso is False and endpoint.gro is False
        assert endpoint.stats["gso_sends"] == endpoint.stats["gro_trains"] == 0
    assert sock.calls["sendmsg"] == sock.calls["recvmsg"] == 0
    assert sock.calls["recvfrom"] > 0


@needs_offload
@pytest.mark.parametrize(
    "error", [errno.EIO, errno.EOPNOTSUPP, errno.ENOPROTOOPT, errno.EINVAL], ids=errno.errorcode.get
)
async def test_a_refused_gso_send_is_resent_datagram_by_datagram(error: int) -> None:
    sock = ProbeSocket()
    sock.gso_error = error
    out = await transfer(sock, 1_000_000)  # the kernel got every byte once, in order
    stats = out.sender.stats
    assert out.sender_stats["retransmits"] == 0  # resent at once, not recovered later
    assert stats["send_errors"] == 0 and all(gso == 0 for gso, _ in sock.runs)
    if error == errno.EINVAL:  # refused this time only: GSO stays on, every run falls back
        assert out.sender.gso is True
        assert stats["gso_errors"] == stats["gso_sends"] == sock.calls["sendmsg"] > 1
    else:  # the path cannot do GSO: off for good after the first refusal
        assert out.sender.gso is False
        assert stats["gso_errors"] == stats["gso_sends"] == sock.calls["sendmsg"] == 1


@needs_offload
@pytest.mark.parametrize("then", [None, errno.EIO], ids=["then-sent", "then-EIO"])
async def test_gso_runs_refused_with_eagain_are_queued_and_flushed_in_order(
    then: int | None,
) -> None:
    sock = ProbeSocket()
    # Refuse from the 8th GSO send on, when one transmit makes several runs, so several
    # queue up behind the first; then let them through, or refuse GSO for good.
    sock.refuse = [None] * 7 + [errno.EAGAIN] * 5
    sock.gso_error = then
    out = await transfer(sock, 2_000_000)  # the kernel got every byte once, in order
    stats = out.sender.stats
    assert stats["send_queued"] >= 1 and stats["send_errors"] == 0
    assert out.sender_stats["retransmits"] == 0
    assert out.receiver_stats["out_of_order_segments"] == 0
    gso_runs_sent = sum(1 for gso, _ in sock.runs if gso)
    if then is None:
        assert out.sender.gso is True and stats["gso_errors"] == 0
        assert gso_runs_sent == sock.calls["gso"] - 5 > 7
    else:  # queued runs refused with EIO were put back as single datagrams, in place
        assert out.sender.gso is False and gso_runs_sent == 7
        assert stats["gso_errors"] == sock.calls["gso"] - 12 >= 1


async def test_transmit_groups_equal_sized_datagrams_into_gso_runs() -> None:
    sock = ProbeSocket()
    sock.connect(("127.0.0.1", 9))
    sock.capture = []
    endpoint = Endpoint.for_socket(asyncio.get_running_loop(), sock)
    if not endpoint.gso:
        pytest.skip("the kernel lacks UDP_SEGMENT")
    lengths = [100, 100, 100, 50, 100, 100, 200, 100] + [100] * 99 + [1400] * 50 + [7]
    segments = [Segment(1, 2, i, 0, ACK, 100, None, b"x" * n) for i, n in enumerate(lengths)]
    endpoint.transmit(sock.getpeername(), segments)
    assert sock.capture == [encode(seg) for seg in segments]
    by_bytes = GSO_MAX_BYTES // 1420
    assert sock.runs == [
        (120, [120, 120, 120, 70]),  # a shorter datagram ends a run
        (120, [120, 120]),  # a longer one starts the next
        (220, [220, 120]),
        (120, [120] * GSO_MAX_SEGMENTS),
        (120, [120] * (99 - GSO_MAX_SEGMENTS)),
        (1420, [1420] * by_bytes),
        (1420, [1420] * (50 - by_bytes) + [27]),
    ]
    assert endpoint.stats["datagrams_out"] == len(segments)
    assert endpoint.stats["gso_sends"] == sock.calls["sendmsg"] == len(sock.runs)
    endpoint.transmit(sock.getpeername(), segments[:1])  # one segment: a plain send
    assert sock.runs[-1] == (0, [120]) and sock.calls["send"] == 1


@contextlib.asynccontextmanager
async def swallowing_client() -> AsyncIterator[tuple[ProbeSocket, ProbeSocket, Transport, Chunks]]:
    """A connection between two probe sockets. Once it is up, what the client sends is
    captured instead of sent; the test hands it to the server as it likes (``inject``)."""
    made, factory = chunk_recorders()
    server_sock, client_sock = ProbeSocket(), ProbeSocket()
    server = await udptcp.create_server(factory, sock=server_sock)
    try:
        client_sock.connect(server_sock.getsockname())
        transport, _ = await udptcp.create_connection(Recorder, sock=client_sock)
        assert isinstance(transport, Transport)
        receiver = await accepted(made)  # type: ignore[arg-type]
        assert isinstance(receiver, Chunks) and receiver.transport is not None
        assert receiver.transport.endpoint.gro
        client_sock.capture = []
        yield server_sock, client_sock, transport, receiver
    finally:
        server.close()
        server.abort_clients()
        await asyncio.wait_for(server.wait_closed(), 5)


def written(sock: ProbeSocket) -> list[bytes]:
    """The datagrams with data or FIN the client captured since the last call."""
    assert sock.capture is not None
    found = [d for d in sock.capture if decode(d).payload or decode(d).flags & FIN]
    sock.capture.clear()
    return found


@needs_offload
async def test_gro_train_is_split_into_segments_and_a_corrupt_one_dropped() -> None:
    async with swallowing_client() as (server_sock, client_sock, transport, receiver):
        assert receiver.transport is not None
        endpoint, stats = receiver.transport.endpoint, receiver.transport.endpoint.stats
        peer = client_sock.getsockname()
        mss = transport.get_extra_info("udptcp_stats")["mss"]
        # A train whose last datagram is shorter: four segments, one ACK, one delivery.
        first = os.urandom(3 * mss + 100)
        transport.write(first)
        await asyncio.sleep(0)  # the short last segment goes out on the loop's next turn
        d = written(client_sock)
        assert [len(x) for x in d] == [len(d[0])] * 3 + [len(d[0]) - mss + 100]
        datagrams_in, datagrams_out = stats["datagrams_in"], stats["datagrams_out"]
        server_sock.inject.append((b"".join(d), len(d[0]), peer))
        endpoint._on_readable()
        assert stats["gro_trains"] == 1 and stats["datagrams_in"] == datagrams_in + 4
        assert stats["datagrams_out"] == datagrams_out + 1
        assert bytes(receiver.data) == first and receiver.sizes == [len(first)]
        # The same with the second segment corrupted: it is dropped, the others are kept.
        second = os.urandom(3 * mss + 100)
        transport.write(second)
        await asyncio.sleep(0)
        d = written(client_sock)
        bad = d[1][:-1] + bytes([d[1][-1] ^ 0xFF])
        server_sock.inject.append((d[0] + bad + d[2] + d[3], len(d[0]), peer))
        endpoint._on_readable()
        assert stats["gro_trains"] == 2 and stats["datagrams_in"] == datagrams_in + 8
        assert stats["malformed:checksum"] == 1 and stats["malformed"] == 1
        assert bytes(receiver.data) == first + second[:mss]
        conn_stats = receiver.transport.get_extra_info("udptcp_stats")
        assert conn_stats["out_of_order_segments"] == 2
        # The lost segment alone (no control message) fills the gap: the rest at once.
        server_sock.inject.append((d[1], 0, peer))
        endpoint._on_readable()
        assert stats["gro_trains"] == 2 and stats["datagrams_in"] == datagrams_in + 9
        assert bytes(receiver.data) == first + second
        assert receiver.sizes == [len(first), mss, 2 * mss + 100]
        transport.abort()


@needs_offload
async def test_a_train_segment_of_no_connection_is_answered_as_one_read_alone() -> None:
    # A GRO read is split and its plain segments go straight to their connection's train;
    # one for an unknown 4-tuple takes the full route (a RST), the others are kept.
    async with swallowing_client() as (server_sock, client_sock, transport, receiver):
        assert receiver.transport is not None
        endpoint, stats = receiver.transport.endpoint, receiver.transport.endpoint.stats
        mss = transport.get_extra_info("udptcp_stats")["mss"]
        payload = os.urandom(2 * mss)
        transport.write(payload)
        d = written(client_sock)
        assert len(d) == 2 and len(d[0]) == len(d[1])
        ours = decode(d[0])
        header = len(encode(Segment(4242, ours.dst_port, 1, 0, ACK, 100)))
        stray = encode(
            Segment(4242, ours.dst_port, 1, 0, ACK, 100, None, b"s" * (len(d[0]) - header))
        )
        rst_sent = stats["rst_sent"]
        server_sock.inject.append((d[0] + stray + d[1], len(d[0]), client_sock.getsockname()))
        endpoint._on_readable()
        assert stats["rst_sent"] == rst_sent + 1
        assert bytes(receiver.data) == payload and receiver.sizes == [len(payload)]
        transport.abort()


@needs_offload
async def test_a_train_of_data_and_fin_gives_one_data_received_then_eof() -> None:
    async with swallowing_client() as (server_sock, client_sock, transport, receiver):
        assert receiver.transport is not None
        endpoint = receiver.transport.endpoint
        payload = os.urandom(6 * transport.get_extra_info("udptcp_stats")["mss"])
        transport.write(payload)
        transport.write_eof()
        d = written(client_sock)
        assert [len(x) for x in d[:-1]] == [len(d[0])] * 6 and len(d[-1]) < len(d[0])
        assert decode(d[-1]).flags & FIN and not decode(d[-1]).payload
        server_sock.inject.append((b"".join(d), len(d[0]), client_sock.getsockname()))
        endpoint._on_readable()
        await asyncio.wait_for(receiver.eof, 5)
        assert endpoint.stats["gro_trains"] == 1
        assert bytes(receiver.data) == payload and receiver.sizes == [len(payload)]
        # (eof_received returned False: the receiver closed, so connection_lost may follow.)
        assert receiver.calls[:3] == ["connection_made", "data_received", "eof_received"]
        transport.abort()


async def test_back_to_back_writes_leave_one_short_segment_not_one_per_write() -> None:
    """Autocorking: each write's short last piece waits while an earlier write's data is in
    flight, for the next write to fill it, and goes out on the loop's next turn; without it
    five writes of a segment and a bit would be ten datagrams, five of them short."""
    made, factory = chunk_recorders()
    server_sock, client_sock = ProbeSocket(), ProbeSocket()
    server = await udptcp.create_server(factory, sock=server_sock)
    try:
        client_sock.connect(server_sock.getsockname())
        transport, _ = await udptcp.create_connection(Recorder, sock=client_sock)
        await accepted(made)  # type: ignore[arg-type]
        mss = transport.get_extra_info("udptcp_stats")["mss"]
        client_sock.capture = []  # swallowed: no ACK comes back, all five stay in flight
        for _ in range(5):
            transport.write(b"w" * (mss + 100))
        before_turn = [len(decode(d).payload) for d in written(client_sock)]
        # The first write finds nothing in flight and goes out whole; each later one's
        # short piece joins the held tail.
        assert before_turn == [mss, 100] + [mss] * 4
        await asyncio.sleep(0)  # the loop's next turn
        assert [len(decode(d).payload) for d in written(client_sock)] == [400]
        # A lone short write with nothing new after it still goes out without waiting
        # for an ACK of the flight.
        transport.write(b"z")
        await asyncio.sleep(0)
        assert [decode(d).payload for d in written(client_sock)] == [b"z"]
    finally:
        server.close()
        server.abort_clients()
        await asyncio.wait_for(server.wait_closed(), 5)


@needs_offload
async def test_a_burst_is_handed_over_and_acknowledged_every_train_max_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read burst is delivered (and so acknowledged) once TRAIN_MAX_BYTES are read, not
    only every TRAIN_MAX segments: with 64 KB segments those would be a whole window."""
    from udptcp.aio import sockio

    async with swallowing_client() as (server_sock, client_sock, transport, receiver):
        assert receiver.transport is not None
        stats = receiver.transport.endpoint.stats
        peer = client_sock.getsockname()
        mss = transport.get_extra_info("udptcp_stats")["mss"]
        # Scaled down to default-size segments: a train ends after the third datagram.
        monkeypatch.setattr(sockio, "TRAIN_MAX_BYTES", 2 * mss + 100)
        # And read on after the first datagram without asking the (empty) kernel socket.
        monkeypatch.setattr(sockio, "_FIONREAD", None)
        data = os.urandom(6 * mss)
        transport.write(data)
        datagrams = written(client_sock)
        assert len(datagrams) == 6
        out_before = stats["datagrams_out"]
        server_sock.inject.extend((d, 0, peer) for d in datagrams)  # six plain reads
        receiver.transport.endpoint._on_readable()
        assert bytes(receiver.data) == data
        assert receiver.sizes == [3 * mss, 3 * mss]  # two trains, each delivered whole
        assert stats["datagrams_out"] == out_before + 2  # and each acknowledged
