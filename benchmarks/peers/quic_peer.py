"""aioquic through its asyncio API (``aioquic.asyncio.connect`` / ``serve``): one
bidirectional stream per connection carries the application protocol.

aioquic's API is not a byte-stream transport, so this adapter gives each stream an
asyncio-Transport face:

* Writes go to ``QuicConnection.send_stream_data`` followed by ``transmit()``. aioquic has
  no write backpressure (its ``QuicStreamAdapter`` never pauses, so ``drain()`` never
  waits): the adapter reads the stream's send buffer (unacknowledged plus unsent bytes, the
  private ``QuicStream.sender._buffer``) after each write and after each datagram received,
  and calls ``pause_writing``/``resume_writing`` on the protocol around fixed marks.
* The server's port is read from the private ``QuicServer._transport`` (``serve`` binds
  the port it is given and does not return it).
* A client ``close()`` sends CONNECTION_CLOSE at once and leaves aioquic's closing period
  (three probe timeouts, during which ``connect``'s context manager waits) to a background
  task, as a kernel socket lingers after ``close()``. A server-side ``close()`` only ends
  the stream (FIN), since CONNECTION_CLOSE would discard stream data not yet delivered.

Settings: a self-signed P-256 certificate made at start-up, ALPN ``udptcp-bench``, 1472-byte
datagrams (the UDP payload budget udptcp and KCP use; aioquic's default is 1200), CUBIC
(aioquic defaults to Reno; udptcp and Linux use CUBIC), aioquic's default flow-control
windows (1 MiB per connection and per stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import ssl
from collections.abc import Callable
from typing import Any, cast

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.asyncio.server import QuicServer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .base import ClientPeer, P, ServerPeer

ALPN = ["udptcp-bench"]
MAX_DATAGRAM = 1472
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024
CLOSE_LINGER = 5.0


def configuration(is_client: bool) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=ALPN,
        max_datagram_size=MAX_DATAGRAM,
        congestion_control_algorithm="cubic",
        idle_timeout=300.0,
    )
    if is_client:
        config.verify_mode = ssl.CERT_NONE
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.timezone.utc)
        config.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        config.private_key = key
    return config


class StreamTransport(asyncio.Transport):
    """One QUIC stream as an asyncio Transport for one application protocol."""

    def __init__(
        self, conn: BenchProtocol, stream_id: int, app: asyncio.Protocol, client: bool
    ) -> None:
        super().__init__()
        self._conn = conn
        self._quic: QuicConnection = conn._quic
        self._stream_id = stream_id
        self._app = app
        self._client = client
        self._paused = False
        self._eof_sent = False
        self._closing = False
        self._lost = False

    # -- asyncio.Transport ------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._stream_id if name == "stream_id" else default

    def is_closing(self) -> bool:
        return self._closing

    def can_write_eof(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> None:  # type: ignore[override]
        if self._closing or self._eof_sent:
            return
        self._quic.send_stream_data(self._stream_id, bytes(data))
        self._conn.transmit()
        if not self._paused and self.buffered() > HIGH_WATER:
            self._paused = True
            self._app.pause_writing()

    def write_eof(self) -> None:
        if self._eof_sent:
            return
        self._eof_sent = True
        self._quic.send_stream_data(self._stream_id, b"", end_stream=True)
        self._conn.transmit()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._client:
            self._conn.close()
            self._conn._loop.call_soon(self.lost, None)
        elif not self._eof_sent:
            self._eof_sent = True
            with contextlib.suppress(Exception):  # stream already reset or closed
                self._quic.send_stream_data(self._stream_id, b"", end_stream=True)
            self._conn.transmit()

    def abort(self) -> None:
        self.close()

    # -- fed by the connection ---------------------------------------------------------------

    def buffered(self) -> int:
        stream = self._quic._streams.get(self._stream_id)
        return 0 if stream is None else len(stream.sender._buffer)

    def check_resume(self) -> None:
        if self._paused and self.buffered() <= LOW_WATER:
            self._paused = False
            self._app.resume_writing()

    def received(self, data: bytes, end_stream: bool) -> None:
        if self._lost:
            return
        if data:
            self._app.data_received(data)
        if end_stream and not self._app.eof_received():
            self.close()

    def lost(self, exc: Exception | None) -> None:
        if not self._lost:
            self._lost = True
            self._closing = True
            self._app.connection_lost(exc)


class BenchProtocol(QuicConnectionProtocol):
    """A QUIC connection whose streams are handed to application protocols."""

    def __init__(
        self,
        quic: QuicConnection,
        stream_handler: Any = None,
        *,
        app_factory: Callable[[], asyncio.Protocol] | None = None,
    ) -> None:
        super().__init__(quic)
        self._app_factory = app_factory
        self._apps: dict[int, StreamTransport] = {}

    def open_stream(self, app: asyncio.Protocol) -> StreamTransport:
        stream_id = self._quic.get_next_available_stream_id()
        transport = StreamTransport(self, stream_id, app, client=True)
        self._apps[stream_id] = transport
        app.connection_made(transport)
        return transport

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        super().datagram_received(data, addr)
        for transport in self._apps.values():
            transport.check_resume()

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived):
            transport = self._apps.get(event.stream_id)
            if transport is None:
                if self._app_factory is None:
                    return
                app = self._app_factory()
                transport = StreamTransport(self, event.stream_id, app, client=False)
                self._apps[event.stream_id] = transport
                app.connection_made(transport)
            transport.received(event.data, event.end_stream)
        elif isinstance(event, events.StreamReset):
            transport = self._apps.get(event.stream_id)
            if transport is not None:
                transport.lost(ConnectionResetError("stream reset"))
        elif isinstance(event, events.ConnectionTerminated):
            for transport in self._apps.values():
                transport.lost(None)


class Client(ClientPeer):
    def __init__(self, options: dict[str, Any], *, shared_socket: bool = False) -> None:
        super().__init__(options, shared_socket=shared_socket)
        self._config = configuration(is_client=True)
        self._closing: set[asyncio.Task[None]] = set()

    async def connect(
        self, factory: Callable[[], P], host: str, port: int
    ) -> tuple[asyncio.Transport, P]:
        stack = contextlib.AsyncExitStack()
        conn = await stack.enter_async_context(
            connect(host, port, configuration=self._config, create_protocol=BenchProtocol)
        )
        conn = cast(BenchProtocol, conn)
        app = factory()
        transport = conn.open_stream(cast(asyncio.Protocol, app))
        task = asyncio.get_running_loop().create_task(self._linger(conn, stack))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return transport, app

    @staticmethod
    async def _linger(conn: BenchProtocol, stack: contextlib.AsyncExitStack) -> None:
        """Wait for the connection to be closed (by the app), then let ``connect``'s context
        manager finish: closing period, socket close."""
        await conn.wait_closed()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stack.aclose(), CLOSE_LINGER)

    async def aclose(self) -> None:
        tasks = list(self._closing)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Server(ServerPeer):
    _server: QuicServer | None = None

    async def start(self, factory: Callable[[], asyncio.Protocol], host: str) -> int:
        self._server = await serve(
            host,
            0,
            configuration=configuration(is_client=False),
            create_protocol=functools.partial(BenchProtocol, app_factory=factory),
        )
        transport = self._server._transport
        assert transport is not None
        return int(transport.get_extra_info("sockname")[1])

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
