"""A peer process killed without a FIN or RST: its UDP port answers ICMP port unreachable,
and the connection is reset within a few RTOs, while one stray unreachable is harmless.

ICMP errors reach the server's unconnected socket through the Linux error queue
(``IP_RECVERR``); elsewhere only connected sockets hear them, so these tests need Linux.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import socket
import struct
import sys
from pathlib import Path

import pytest
from aio_helpers import accepted, ipv6_available, recorders, serving, until
from support.child import echo_server_process
from support.protocols import Echo, Recorder

import udptcp
import udptcp.aio.endpoint
from udptcp.aio.endpoint import Endpoint
from udptcp.core.config import Config
from udptcp.core.connection import ICMP_DEAD_ROUNDS, Connection, State
from udptcp.core.segment import ACK, Segment, decode, encode

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="ICMP errors on unconnected sockets: Linux only"
)

ROOT = Path(__file__).resolve().parent.parent.parent

# A udptcp client in its own process: connects, says hello, then waits to be killed.
CHILD = """
import asyncio, sys, udptcp

async def main():
    reader, writer = await udptcp.open_connection(sys.argv[1], int(sys.argv[2]))
    writer.write(b"hello")
    await writer.drain()
    print("connected", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def _echo_round_trip(port: int) -> bytes:
    """A fresh client through the same server: proves its socket is still being read."""
    reader, writer = await udptcp.open_connection("127.0.0.1", port)
    writer.write(b"still serving")
    data = await asyncio.wait_for(reader.readexactly(13), 5)
    writer.close()
    await writer.wait_closed()
    return data


async def test_a_killed_client_process_is_reported_as_connection_reset() -> None:
    made, factory = recorders()
    async with serving(factory) as (server, port):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            "127.0.0.1",
            str(port),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert await asyncio.wait_for(child.stdout.readline(), 20) == b"connected\n"
        finally:
            child.kill()  # SIGKILL: no FIN, no RST, its socket simply goes away
            await child.wait()
        proto = await accepted(made)
        assert await proto.received(5) == b"hello"
        transport = proto.transport
        assert transport is not None
        peer = transport.get_extra_info("peername")
        endpoint = server.endpoints[0]
        assert endpoint.recverr  # the server's socket is not connected: the error queue

        transport.write(b"x" * 20000)  # outstanding, and nobody will acknowledge it
        error = await asyncio.wait_for(proto.lost, 10)

        assert isinstance(error, ConnectionResetError)
        assert error.errno == errno.ECONNRESET
        assert f"Connection with {peer!r}" in str(error)
        assert "ICMP port unreachable" in str(error)
        # Reset after ICMP_DEAD_ROUNDS retransmission timeouts, each answered by port
        # unreachable: a second or so, where the user timeout would take 120 s.
        stats = transport.get_extra_info("udptcp_stats")
        assert stats["timeouts"] == ICMP_DEAD_ROUNDS
        assert endpoint.stats["icmp_unreachable"] >= ICMP_DEAD_ROUNDS
        # The socket is still read (uvloop drops a descriptor that reported POLLERR
        # unless it is registered again) and never spun on its error queue.
        assert await _echo_round_trip_on(server, port) == b"still serving"
        assert endpoint.stats["empty_wakeups"] < 10


async def test_a_killed_server_process_is_reported_to_the_client_as_connection_reset() -> None:
    async with echo_server_process() as port:  # killed at the end of the block
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        transport.write(b"ping")
        assert await client.received(4) == b"ping"
    transport.write(b"y" * 20000)
    error = await asyncio.wait_for(client.lost, 10)
    assert isinstance(error, ConnectionResetError)
    assert error.errno == errno.ECONNRESET
    assert f"Connection with ('127.0.0.1', {port})" in str(error)
    assert transport.get_extra_info("udptcp_stats")["timeouts"] == ICMP_DEAD_ROUNDS


async def _echo_round_trip_on(server: udptcp.Server, port: int) -> bytes:
    # The recording factory does not echo: swap in an echoing one for the probe.
    server._protocol_factory = Echo  # type: ignore[attr-defined]
    return await _echo_round_trip(port)


class Puppet:
    """A udptcp client driven by hand over a plain UDP socket that the test may close
    (the client process died) and bind again on the same port (a new one came back).

    A core Connection with immediate ACKs; everything it sends goes out at once.
    """

    def __init__(self, server: tuple[str, int], family: int = socket.AF_INET) -> None:
        self.loop = asyncio.get_running_loop()
        self.server = server
        self.family = family
        self.data = bytearray()
        self.sock = self._bind((server[0], 0))
        self.addr = self.sock.getsockname()
        self.conn = Connection.connect(
            Config(delayed_ack=0.0, keepalive=False),
            local_port=50000,
            remote_port=server[1],
            iss=1000,
            mss=1400,
            now=self.loop.time(),
        )
        self._flush()

    def _bind(self, addr: tuple[str, int]) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(addr)
        self.loop.add_reader(sock.fileno(), self._on_readable)
        return sock

    def _on_readable(self) -> None:
        while True:
            try:
                datagram = self.sock.recv(65535)
            except (BlockingIOError, ConnectionRefusedError):
                return
            self.conn.receive(decode(datagram), self.loop.time())
            self._flush()

    def _flush(self) -> None:
        for seg in self.conn.take_segments():
            self.sock.sendto(encode(seg), self.server)
        for event in self.conn.take_events():
            data = getattr(event, "data", None)
            if data:
                self.data += data

    def die(self) -> None:
        """Close the socket without a word, as the kernel does for a killed process."""
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def revive(self) -> None:
        """Bind the same UDP port again, with the connection's state intact."""
        self.sock = self._bind(self.addr[:2])

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.die()


def _server_transport(made: list[Recorder]) -> udptcp.Transport:
    transport = made[0].transport
    assert transport is not None
    return transport


async def test_one_stray_unreachable_does_not_kill_a_healthy_connection() -> None:
    made, factory = recorders()
    async with serving(factory) as (server, port):
        puppet = Puppet(("127.0.0.1", port))
        try:
            proto = await accepted(made)
            transport = _server_transport(made)
            conn = transport.get_extra_info("udptcp_connection")
            endpoint: Endpoint = server.endpoints[0]
            transport.write(b"a" * 100)
            await until(lambda: len(puppet.data) == 100)

            # The port goes away for one retransmission round, then comes back.
            puppet.die()
            transport.write(b"b" * 100)
            await until(lambda: conn.stats()["timeouts"] >= 1 and conn.soft_error is not None)
            assert endpoint.stats["icmp_unreachable"] >= 1
            puppet.revive()
            await until(lambda: len(puppet.data) == 200, timeout=10)

            assert conn.state is State.ESTABLISHED
            assert not proto.lost.done()
            assert conn.soft_error == "port unreachable"  # remembered, not fatal
            transport.write(b"c" * 100)
            await until(lambda: len(puppet.data) == 300)
            assert bytes(puppet.data) == b"a" * 100 + b"b" * 100 + b"c" * 100
            # ...and the server hears the acknowledgments: its socket is still read.
            await until(lambda: conn.snd_una == conn.snd_max)
        finally:
            puppet.close()
            server.abort_clients()


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
async def test_icmpv6_port_unreachable_resets_a_connection_to_a_dead_peer() -> None:
    made, factory = recorders()
    async with serving(factory, host="::1") as (server, port):
        puppet = Puppet(("::1", port), socket.AF_INET6)
        try:
            proto = await accepted(made)
            transport = _server_transport(made)
            puppet.die()
            transport.write(b"x" * 5000)
            error = await asyncio.wait_for(proto.lost, 10)
            assert isinstance(error, ConnectionResetError)
            assert error.errno == errno.ECONNRESET
            assert "('::1'" in str(error)
            assert server.endpoints[0].stats["icmp_unreachable"] >= ICMP_DEAD_ROUNDS
        finally:
            puppet.close()


async def test_an_icmp_error_about_no_connection_is_drained_and_ignored() -> None:
    async with serving(Echo) as (server, port):
        endpoint = server.endpoints[0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
            gone.bind(("127.0.0.1", 0))
            dead = gone.getsockname()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as alive:
            alive.bind(("127.0.0.1", 0))
            alive.settimeout(5)
            # A datagram the endpoint did not send (no connection of its) to a closed
            # port: its ICMP error is pending on the socket (POLLERR) before the loop runs.
            endpoint.sock.sendto(b"not a segment of ours", dead)
            poller = select.poll()
            poller.register(endpoint.sock.fileno(), select.POLLERR)
            assert poller.poll(5000)
            # The pending error fails the endpoint's next send, to anyone; it is sent again.
            seg = Segment(1, 2, 3, 0, ACK, 100)
            endpoint.transmit(alive.getsockname(), [seg])
            assert alive.recv(100) == encode(seg)
        await until(lambda: endpoint.stats["icmp_unmatched"] >= 1)
        assert endpoint.stats["icmp_unreachable"] == 0
        before = endpoint.stats["empty_wakeups"]
        await asyncio.sleep(0.2)  # idle: spinning on POLLERR would wake it thousands of times
        assert endpoint.stats["empty_wakeups"] - before < 5
        assert await _echo_round_trip(port) == b"still serving"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _forged_port_unreachable(sender: tuple[str, int], dest: tuple[str, int], quote: bytes) -> bytes:
    """An ICMP port unreachable as ``dest``'s host would send it about a UDP datagram from
    ``sender`` to ``dest`` whose payload began with ``quote``."""
    udp = struct.pack("!HHHH", sender[1], dest[1], 8 + len(quote), 0) + quote
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45, 0, 20 + len(udp), 0, 0x4000, 64, socket.IPPROTO_UDP, 0,
        socket.inet_aton(sender[0]), socket.inet_aton(dest[0]),
    )  # fmt: skip
    body = ip + udp
    header = struct.pack("!BBHI", 3, 3, 0, 0)
    return struct.pack("!BBHI", 3, 3, _checksum(header + body), 0) + body


@pytest.mark.skipif(os.geteuid() != 0, reason="forging ICMP takes a raw socket (root)")
async def test_forged_port_unreachables_do_not_end_a_connection() -> None:
    # An off-path attacker who knows the addresses and ports but not the sequence numbers.
    made, factory = recorders()
    async with serving(factory) as (server, port):
        client_transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        proto = await accepted(made)
        transport = _server_transport(made)
        conn = transport.get_extra_info("udptcp_connection")
        peer = transport.get_extra_info("peername")
        endpoint = server.endpoints[0]
        local_vport, remote_vport = transport.get_extra_info("vports")

        def forge(seq: int) -> None:
            quote = struct.pack("!HHI", local_vport, remote_vport, seq)
            packet = _forged_port_unreachable(("127.0.0.1", port), peer, quote)
            with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as raw:
                raw.sendto(packet, (peer[0], 0))

        for guess in (1, 2**31, conn.snd_max + 100_000):
            forge((conn.snd_una + guess) & 0xFFFFFFFF)
        await until(lambda: endpoint.stats["icmp_unreachable"] == 3)
        assert conn.stats_counters["icmp_rejected"] == 3
        assert conn.soft_error is None
        # One that guesses right is a soft error, and no more.
        forge(conn.snd_max)
        await until(lambda: conn.soft_error == "port unreachable")
        assert conn.state is State.ESTABLISHED
        assert endpoint.statistics()["icmp_rejected"] == 3
        transport.write(b"alive")
        assert await client.received(5) == b"alive"
        client_transport.close()
        await asyncio.wait_for(proto.lost, 5)


async def test_without_the_error_queue_a_connected_client_still_hears_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As on systems without IP_RECVERR: only the connected client socket gets the error,
    # as a pending errno on recv, for its one peer.
    monkeypatch.setattr(udptcp.aio.endpoint, "enable_recverr", lambda sock: False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        gone.bind(("127.0.0.1", 0))
        port = gone.getsockname()[1]
    with pytest.raises(ConnectionRefusedError) as refused:
        await udptcp.create_connection(Recorder, "127.0.0.1", port)
    assert refused.value.errno == errno.ECONNREFUSED
    assert "ICMP port unreachable" in str(refused.value)
