"""A listener under SYN floods and greedy addresses: SYN cookies, connection limits, the
amplification budget, TIME-WAIT bound; over real UDP on 127.0.0.1, on both loops."""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
from collections.abc import AsyncIterator

import pytest
from aio_helpers import FAST, recorders, serving, until
from support.protocols import Echo, Recorder

import udptcp
from udptcp.aio.endpoint import Endpoint
from udptcp.core.connection import State
from udptcp.core.segment import ACK, PSH, RST, SYN, Options, Segment, decode, encode

SEED = 20240611


class Raw:
    """A hand-driven peer: one UDP socket sending segments to the server and reading its
    answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.connect(("127.0.0.1", port))
        self.sent_bytes = 0

    def send(self, seg: Segment) -> None:
        data = encode(seg)
        self.sent_bytes += len(data)
        self.sock.send(data)

    async def recv(self, timeout: float = 2.0) -> Segment:
        loop = asyncio.get_running_loop()
        return decode(await asyncio.wait_for(loop.sock_recv(self.sock, 70000), timeout))

    def drain(self) -> list[bytes]:
        """What arrived so far, without waiting."""
        out = []
        while True:
            try:
                out.append(self.sock.recv(70000))
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
async def raw_peers() -> AsyncIterator[list[Raw]]:
    peers: list[Raw] = []
    yield peers
    for peer in peers:
        peer.close()


def _endpoint(server: udptcp.Server) -> Endpoint:
    return server.endpoints[0]


async def _upload_and_check(port: int, size: int, config: udptcp.Config | None = None) -> None:
    """Connect, send ``size`` seeded random bytes, read the echo back and compare."""
    data = random.Random(SEED).randbytes(size)
    reader, writer = await udptcp.open_connection("127.0.0.1", port, config=config)
    writer.write(data)
    writer.write_eof()
    echoed = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    assert hashlib.sha256(echoed).hexdigest() == hashlib.sha256(data).hexdigest()


def _fill_backlog(raw: Raw, port: int, count: int) -> None:
    for i in range(count):
        raw.send(Segment(2000 + i, port, 1000 * i, 0, SYN, 65535, Options(mss=1452)))


# ------------------------------------------------------------------------ SYN cookies


async def test_a_full_backlog_answers_with_cookies_and_a_client_still_connects(
    raw_peers: list[Raw],
) -> None:
    async with serving(Echo, backlog=2) as (server, port):
        raw = Raw(port)
        raw_peers.append(raw)
        _fill_backlog(raw, port, 2)  # two handshakes that never complete
        endpoint = _endpoint(server)
        await until(lambda: endpoint.limits()["half_open"] == 2)
        await _upload_and_check(port, 200_000)
        assert endpoint.stats["syn_cookies_sent"] >= 1
        assert endpoint.stats["syn_cookies_accepted"] == 1
        assert endpoint.stats["syn_dropped_backlog"] == 0
        assert endpoint.limits()["half_open"] == 2  # no state for the cookie handshake


async def test_a_cookie_connection_is_a_normal_one_and_gets_the_final_acks_data(
    raw_peers: list[Raw],
) -> None:
    made, factory = recorders()
    async with serving(factory, backlog=1) as (server, port):
        raw = Raw(port)
        raw_peers.append(raw)
        _fill_backlog(raw, port, 1)
        assert (await raw.recv()).flags == SYN | ACK  # the stateful one
        # A bare SYN: the cookie SYN-ACK answers only what it offered.
        raw.send(Segment(7000, port, 5_000_000, 0, SYN, 65535))
        syn_ack = await raw.recv()
        assert syn_ack.flags == SYN | ACK and syn_ack.ack == 5_000_001
        assert syn_ack.options == Options(mss=1452)
        assert _endpoint(server).stats["syn_cookies_sent"] == 1
        raw.send(Segment(7000, port, 5_000_001, syn_ack.seq + 1, ACK | PSH, 65535, None, b"hi"))
        await until(lambda: len(made) == 1 and bytes(made[0].data) == b"hi")
        transport = made[0].transport
        assert transport is not None
        conn = transport.get_extra_info("udptcp_connection")
        assert conn.state_history == [State.LISTEN, State.SYN_RECEIVED, State.ESTABLISHED]
        assert (conn.wscale_ok, conn.sack_ok, conn.ts_enabled) == (False, False, False)
        assert _endpoint(server).stats["syn_cookies_accepted"] == 1
        transport.write(b"back")
        reply = await raw.recv()
        while not reply.payload:  # the ACK of "hi" may come first
            reply = await raw.recv()
        assert reply.payload == b"back"
        transport.abort()


async def test_a_forged_cookie_ack_is_rejected_with_rst(raw_peers: list[Raw]) -> None:
    async with serving(Echo, backlog=1) as (server, port):
        raw = Raw(port)
        raw_peers.append(raw)
        _fill_backlog(raw, port, 1)
        await raw.recv()
        raw.send(Segment(7001, port, 9_000_000, 0, SYN, 65535))
        syn_ack = await raw.recv()
        # Right 4-tuple and sequence number, wrong cookie.
        raw.send(Segment(7001, port, 9_000_001, syn_ack.seq + 2, ACK, 65535))
        rst = await raw.recv()
        assert (rst.flags, rst.seq) == (RST, syn_ack.seq + 2)
        endpoint = _endpoint(server)
        assert endpoint.stats["syn_cookies_rejected"] == 1
        assert endpoint.stats["syn_cookies_accepted"] == 0
        assert endpoint.limits()["accepted"] == 1  # the stateful half-open one only


async def test_one_address_cannot_take_the_whole_half_open_table(raw_peers: list[Raw]) -> None:
    config = udptcp.Config(max_half_open_per_address=2)
    async with serving(Echo, backlog=100, config=config) as (server, port):
        raw = Raw(port)
        raw_peers.append(raw)
        _fill_backlog(raw, port, 5)
        replies = [await raw.recv() for _ in range(5)]
        assert all(r.flags == SYN | ACK for r in replies)
        endpoint = _endpoint(server)
        assert endpoint.limits()["half_open"] == 2
        assert endpoint.stats["half_open_per_address"] == 3
        assert endpoint.stats["syn_cookies_sent"] == 3


# ------------------------------------------------------------------------ limits


async def test_connections_per_address_stop_at_the_limit_with_rst_counted() -> None:
    config = FAST.replace(max_connections_per_address=3)
    made, factory = recorders()
    async with serving(factory, config=config) as (server, port):
        clients = [await udptcp.create_connection(Recorder, "127.0.0.1", port) for _ in range(3)]
        with pytest.raises(ConnectionRefusedError):
            await udptcp.create_connection(Recorder, "127.0.0.1", port)
        endpoint = _endpoint(server)
        assert endpoint.stats["refused_per_address"] == 1
        assert endpoint.limits() == {"accepted": 3, "half_open": 0, "time_wait": 0, "addresses": 1}
        # One goes: a new one is let in.
        clients[0][0].abort()
        await until(lambda: endpoint.limits()["accepted"] == 2)
        fourth, _ = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        for transport, _ in (*clients[1:], (fourth, None)):
            transport.abort()
        await until(lambda: endpoint.limits()["accepted"] == 0)
        assert endpoint.limits()["addresses"] == 0  # no entry left behind


async def test_connections_per_endpoint_stop_at_the_limit_with_rst_counted() -> None:
    config = FAST.replace(max_connections=2)
    async with serving(Echo, config=config) as (server, port):
        first = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        second = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        with pytest.raises(ConnectionRefusedError):
            await udptcp.create_connection(Recorder, "127.0.0.1", port)
        assert _endpoint(server).stats["refused_max_connections"] == 1
        for transport, _ in (first, second):
            transport.abort()


async def test_a_cookie_ack_over_the_limit_is_refused(raw_peers: list[Raw]) -> None:
    config = udptcp.Config(max_connections_per_address=2)
    async with serving(Echo, backlog=1, config=config) as (server, port):
        endpoint = _endpoint(server)
        a, b, c = Raw(port), Raw(port), Raw(port)
        raw_peers += [a, b, c]

        async def handshake(raw: Raw, vport: int, isn: int) -> None:
            raw.send(Segment(vport, port, isn, 0, SYN, 65535))
            syn_ack = await raw.recv()
            raw.send(Segment(vport, port, isn + 1, syn_ack.seq + 1, ACK, 65535))

        a.send(Segment(7002, port, 100, 0, SYN, 65535))
        a_syn_ack = await a.recv()  # a takes the one backlog place...
        b.send(Segment(7003, port, 300, 0, SYN, 65535))
        cookie = await b.recv()  # ...so b gets a cookie
        assert endpoint.stats["syn_cookies_sent"] == 1
        a.send(Segment(7002, port, 101, a_syn_ack.seq + 1, ACK, 65535))
        await until(lambda: endpoint.limits()["half_open"] == 0)
        await handshake(c, 7004, 500)
        await until(lambda: endpoint.limits()["accepted"] == 2)
        # b's cookie is good, but the address has its two connections now.
        b.send(Segment(7003, port, 301, cookie.seq + 1, ACK, 65535))
        rst = await b.recv()
        assert rst.flags == RST
        assert endpoint.stats["refused_per_address"] == 1
        assert endpoint.stats["syn_cookies_accepted"] == 0
        assert endpoint.limits()["accepted"] == 2
        server.abort_clients()  # the raw peers would never close


async def test_time_wait_beyond_the_limit_is_dropped_and_counted() -> None:
    config = udptcp.Config(max_time_wait=0)
    made, factory = recorders()
    async with serving(factory, config=config) as (server, port):
        client, proto = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        endpoint = _endpoint(server)
        await until(lambda: len(made) == 1 and made[0].transport is not None)
        made[0].transport.close()  # type: ignore[union-attr]  # the server closes first
        await asyncio.wait_for(proto.eof, 5)
        client.close()
        await until(lambda: endpoint.stats["time_wait_dropped"] == 1)
        assert endpoint.connections() == [] and endpoint.limits()["time_wait"] == 0
        assert endpoint.limits()["accepted"] == 0


# ------------------------------------------------------------------------ amplification


async def test_a_duplicate_syn_burst_earns_at_most_the_budget(raw_peers: list[Raw]) -> None:
    async with serving(Echo) as (server, port):
        raw = Raw(port)
        raw_peers.append(raw)
        syn = Segment(
            7100, port, 42, 0, SYN, 65535,
            Options(mss=1460, wscale=7, sack_permitted=True, timestamps=(1, 0)),
        )  # fmt: skip
        for _ in range(101):
            raw.send(syn)
        endpoint = _endpoint(server)

        def processed() -> bool:
            conns = endpoint.connections()
            return bool(conns) and conns[0].conn.stats_counters["segments_received"] == 100

        await until(processed)
        await raw.recv()  # the first SYN's SYN-ACK
        extra = raw.drain()
        conn = endpoint.connections()[0].conn
        total = len(encode(syn)) + sum(len(d) for d in extra)
        assert total <= 3 * raw.sent_bytes
        assert conn.stats_counters["syn_acks_rate_limited"] + len(extra) == 100
        assert len(extra) <= 1  # at most one more within the 500 ms limit


async def test_stray_segments_get_resets_no_larger_than_themselves(raw_peers: list[Raw]) -> None:
    async with serving(Echo) as (server, port):
        raw = Raw(port)
        raw_peers.append(raw)
        raw.send(Segment(7200, port, 1, 2, ACK, 100))
        rst = await raw.recv()
        assert rst.flags == RST and len(encode(rst)) <= raw.sent_bytes
        assert _endpoint(server).stats["rst_sent"] == 1
