"""Flow control both ways: pause_reading shrinks the real window, write buffer limits."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from aio_helpers import recorders, serving
from support.protocols import Recorder

import udptcp


class PausedAtStart(Recorder):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        transport.pause_reading()  # type: ignore[attr-defined]


async def wait_for_condition(check: object, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


# A receiver with a plain 64 KiB buffer, so a few hundred KB really fill its window.
SMALL_BUFFER = udptcp.Config(receive_buffer=65535)


async def paused_receiver(
    port: int, made: list[PausedAtStart], size: int
) -> tuple[udptcp.Transport, PausedAtStart, bytes]:
    """Connect, write ``size`` bytes to a receiver that paused reading at once."""
    transport, _ = await udptcp.create_connection(Recorder, "127.0.0.1", port)
    payload = os.urandom(size)
    transport.write(payload)
    await wait_for_condition(lambda: made and made[0].made.done())
    return transport, made[0], payload


def windows(sender: udptcp.Transport, receiver: Recorder) -> tuple[int, int]:
    """(receiver's advertised window, window the sender sees)."""
    assert receiver.transport is not None
    peer = receiver.transport.get_extra_info("udptcp_stats")
    return peer["rcv_wnd"], sender.get_extra_info("udptcp_stats")["snd_wnd"]


async def test_pause_reading_closes_the_advertised_window() -> None:
    made: list[PausedAtStart] = []

    def factory() -> PausedAtStart:
        made.append(PausedAtStart())
        return made[-1]

    async with serving(factory, config=SMALL_BUFFER) as (server, port):
        transport, receiver, payload = await paused_receiver(port, made, 400_000)
        assert receiver.transport is not None
        assert not receiver.transport.is_reading()

        # The window closes to zero: the last sub-MSS gap is filled by the SWS override
        # timer (RFC 1122 §4.2.3.4), and both sides agree on it.
        await wait_for_condition(lambda: windows(transport, receiver) == (0, 0), 3)
        # The sender is really held back: most of the data has not even left.
        stuck = transport.get_write_buffer_size()
        assert stuck >= len(payload) - 2 * 65535
        await asyncio.sleep(0.2)
        assert receiver.data == b""
        assert transport.get_write_buffer_size() == stuck

        receiver.transport.resume_reading()
        assert receiver.transport.is_reading()
        assert await receiver.received(len(payload)) == payload
        assert transport.get_write_buffer_size() == 0
        transport.close()
        await asyncio.wait_for(receiver.lost, 5)


async def test_pause_and_resume_reading_mid_stream() -> None:
    made, factory = recorders()
    async with serving(factory) as (server, port):
        transport, _ = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        transport.write(b"a" * 1000)
        await wait_for_condition(lambda: made and len(made[0].data) == 1000)
        receiver = made[0]
        assert receiver.transport is not None
        receiver.transport.pause_reading()
        receiver.transport.pause_reading()  # idempotent
        transport.write(b"b" * 1000)
        await asyncio.sleep(0.1)
        assert len(receiver.data) == 1000
        receiver.transport.resume_reading()
        assert await receiver.received(2000) == b"a" * 1000 + b"b" * 1000
        transport.close()
        await asyncio.wait_for(receiver.lost, 5)


async def test_pause_writing_and_resume_writing_fire_at_the_limits() -> None:
    made, factory = recorders()
    async with serving(factory) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        transport.set_write_buffer_limits(high=20_000, low=5_000)
        assert transport.get_write_buffer_limits() == (5_000, 20_000)
        transport.write(b"x" * 10_000)
        assert "pause_writing" not in client.calls  # the first flight fits under high
        transport.write(os.urandom(200_000))
        assert client.calls[-1] == "pause_writing"
        assert transport.get_write_buffer_size() > 20_000
        await wait_for_condition(lambda: client.calls[-1] == "resume_writing")
        assert transport.get_write_buffer_size() <= 5_000
        assert client.calls.count("pause_writing") == 1
        await made[0].received(210_000)
        transport.close()
        await asyncio.wait_for(client.lost, 5)


async def test_write_buffer_limits_are_validated() -> None:
    async with serving(Recorder) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        with pytest.raises(ValueError):
            transport.set_write_buffer_limits(high=10, low=20)
        transport.set_write_buffer_limits(low=1000)
        assert transport.get_write_buffer_limits() == (1000, 4000)
        transport.set_write_buffer_limits(high=1000)
        assert transport.get_write_buffer_limits() == (250, 1000)
        transport.close()
        await asyncio.wait_for(client.lost, 5)


async def test_stream_writer_drain_waits_for_the_window() -> None:
    made: list[PausedAtStart] = []

    def factory() -> PausedAtStart:
        made.append(PausedAtStart())
        return made[-1]

    async with serving(factory, config=SMALL_BUFFER) as (server, port):
        reader, writer = await udptcp.open_connection("127.0.0.1", port)
        writer.write(os.urandom(300_000))
        drain = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0.2)
        assert not drain.done()  # the receiver is paused: the writer must wait
        assert made[0].transport is not None
        made[0].transport.resume_reading()
        await asyncio.wait_for(drain, 5)
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)


class PausesOnData(PausedAtStart):
    """Pauses again inside data_received: nothing more may arrive until resumed."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        assert self.transport is not None
        self.transport.pause_reading()


async def test_eof_waits_while_reading_is_paused() -> None:
    made: list[PausesOnData] = []

    def factory() -> PausesOnData:
        made.append(PausesOnData())
        return made[-1]

    async with serving(factory) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        transport.write(b"last words")
        transport.write_eof()
        await wait_for_condition(lambda: made and made[0].made.done())
        receiver = made[0]
        assert receiver.transport is not None
        await asyncio.sleep(0.1)  # data and FIN are held in the connection
        assert receiver.calls == ["connection_made"]
        receiver.transport.resume_reading()
        assert receiver.calls == ["connection_made"]  # never from inside resume_reading()
        await asyncio.sleep(0.05)
        # The data came; the protocol paused again inside data_received, so no EOF yet.
        assert receiver.calls == ["connection_made", "data_received"]
        assert not receiver.eof.done()
        receiver.transport.resume_reading()
        await asyncio.wait_for(receiver.eof, 5)  # Recorder returns False: it closes
        assert await asyncio.wait_for(client.lost, 5) is None
        assert receiver.data == b"last words"


def _udp_drops(port: int) -> int:
    """The kernel's count of datagrams dropped at the IPv4 UDP socket bound to ``port``
    (a full receive buffer), from /proc/net/udp."""
    with open("/proc/net/udp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[2] == "00000000:0000":
                return int(fields[-1])
    raise AssertionError(f"no UDP socket on port {port}")


@pytest.mark.skipif(not os.path.exists("/proc/net/udp"), reason="needs Linux's /proc/net/udp")
async def test_large_segments_into_a_stock_linux_socket_buffer_are_never_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Linux caps SO_RCVBUF at net.core.rmem_max, 208 KiB unless raised: the socket then
    holds 208 to 416 KiB, at most six 64 KB datagrams, while the default window is 1 MiB.
    The window is clamped to half the socket's buffer, so a 64 KB-segment transfer never
    overflows it (before the clamp: ~150 drops and retransmissions per 100 MB)."""
    from udptcp.aio import udpsockets

    monkeypatch.setattr(udpsockets, "SOCKET_BUFFER", 212_992)  # stock net.core.rmem_max
    config = udptcp.Config(pmtu_max=65507)
    made, factory = recorders()
    async with serving(factory, config=config) as (server, port):
        endpoint = server.endpoints[0]
        rcvbuf = server.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert endpoint.window_limit == rcvbuf // 2 < config.receive_buffer
        drops = _udp_drops(port)
        transport, _ = await udptcp.create_connection(Recorder, "127.0.0.1", port, config=config)
        payload = os.urandom(1 << 16) * 128  # 8 MiB
        transport.write(payload)
        await wait_for_condition(lambda: made and len(made[0].data) == len(payload), 30.0)
        assert bytes(made[0].data) == payload
        stats = transport.get_extra_info("stats")
        assert stats.mss > 60_000  # probing found loopback's 64 KiB MTU
        assert _udp_drops(port) == drops
        assert made[0].transport is not None
        assert made[0].transport.get_extra_info("stats").rcv_wnd <= endpoint.window_limit
        transport.close()
