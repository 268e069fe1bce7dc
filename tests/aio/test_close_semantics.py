"""What closing means to the application, as over kernel TCP: ``connection_lost`` once
everything written went out, the connection finished in the background, and a program
that returns from ``asyncio.run`` right after ``close()`` still delivers its data."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading

import uvloop
from aio_helpers import serving, until
from support.protocols import Recorder

import udptcp


async def test_connection_lost_comes_before_the_peer_closes_and_the_orphan_finishes() -> None:
    made: list[Recorder] = []

    def factory() -> Recorder:
        made.append(Recorder(keep_open=True))  # keeps its half open after our FIN
        return made[-1]

    async with serving(factory) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        await until(lambda: made and made[0].transport is not None)
        transport.write(b"last words")
        transport.close()
        # The peer has not closed its half: still, the application is done at once.
        assert await asyncio.wait_for(client.lost, 5) is None
        conn = transport.get_extra_info("udptcp_connection")
        assert conn.state in (udptcp.State.FIN_WAIT_1, udptcp.State.FIN_WAIT_2)
        await made[0].received(len(b"last words"))
        await asyncio.wait_for(made[0].eof, 5)
        made[0].transport.close()  # type: ignore[union-attr]
        await until(lambda: conn.state is udptcp.State.TIME_WAIT)
        # The server's wait_closed() returns as over TCP once its side reported too.
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


class SlowReader(asyncio.Protocol):
    """Pauses reading at first, so the client's data is still in flight when it exits."""

    def __init__(self) -> None:
        self.data = bytearray()
        loop = asyncio.get_running_loop()
        self.done: asyncio.Future[BaseException | None] = loop.create_future()
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        transport.pause_reading()  # type: ignore[attr-defined]
        asyncio.get_running_loop().call_later(0.3, transport.resume_reading)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> None:
        self.eof = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.done.set_result(exc)


async def test_a_program_that_exits_right_after_close_still_delivers_its_data() -> None:
    """``asyncio.run()`` returns while the data waits behind a shut window; the loop's
    shutdown gives the closed connection its ``exit_linger`` to deliver it."""
    payload = os.urandom(3 << 20)  # more than the receiver's window holds
    servers: list[SlowReader] = []

    def factory() -> SlowReader:
        servers.append(SlowReader())
        return servers[-1]

    uses_uvloop = isinstance(asyncio.get_running_loop(), uvloop.Loop)
    async with serving(factory) as (_server, port):

        async def client() -> None:
            _reader, writer = await udptcp.open_connection("127.0.0.1", port)
            writer.write(payload)
            writer.close()  # and return at once: no drain, no wait_closed

        def run_client() -> None:
            factory_ = uvloop.new_event_loop if uses_uvloop else asyncio.new_event_loop
            with asyncio.Runner(loop_factory=factory_) as runner:
                runner.run(client())

        thread = threading.Thread(target=run_client)
        thread.start()
        await until(lambda: servers and servers[0].done.done(), timeout=15)
        await asyncio.to_thread(thread.join, 15)
        assert servers[0].done.result() is None  # a clean close, no reset
        assert servers[0].eof
        assert hashlib.sha256(servers[0].data).digest() == hashlib.sha256(payload).digest()
