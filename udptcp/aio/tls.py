"""TLS over udptcp, through asyncio's own TLS machinery.

asyncio runs TLS as a protocol, ``asyncio.sslproto.SSLProtocol``, stacked on a byte-stream
transport: it feeds the ciphertext the transport delivers into an ``ssl.SSLObject`` and
hands the plaintext to the application's protocol through its own transport. Nothing in it
is specific to kernel sockets, so udptcp stacks the very same protocol on its
:class:`~udptcp.aio.transport.Transport`. Certificates, verification, SNI, ALPN, session
tickets, timeouts and the exceptions raised (``ssl.SSLCertVerificationError`` and friends)
are therefore exactly those of TLS over kernel TCP.

* :func:`client_handshake` and :func:`server_protocol_factory` wrap the application's
  protocol for ``create_connection(ssl=...)`` and ``create_server(ssl=...)``.
* :func:`start_tls` upgrades an established connection, as ``loop.start_tls`` does. The
  default asyncio loop's own ``start_tls`` accepts a udptcp transport too; uvloop's accepts
  only uvloop transports, which is why this function exists (the drop-in loop routes
  ``loop.start_tls`` here for udptcp transports, so ``StreamWriter.start_tls`` works on it).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ssl as _ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["client_handshake", "server_protocol_factory", "start_tls", "tls_options"]

_P = TypeVar("_P", bound=asyncio.BaseProtocol)
_T = TypeVar("_T", bound=asyncio.BaseTransport)


def tls_options(
    ssl: Any,
    *,
    server_side: bool,
    host: Any = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> tuple[_ssl.SSLContext | None, str | None] | None:
    """Check the TLS arguments as asyncio's loop methods do.

    Return ``None`` for plain connections, else ``(context, server_hostname)``; a context of
    ``None`` (``ssl=True`` on a client) means asyncio's default verifying context.
    """
    if server_side and isinstance(ssl, bool):
        raise TypeError("ssl argument must be an SSLContext or None")
    if not ssl:
        if server_hostname is not None:
            raise ValueError("server_hostname is only meaningful with ssl")
        if ssl_handshake_timeout is not None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        return None
    if server_side:
        if not isinstance(ssl, _ssl.SSLContext):
            raise TypeError("ssl argument must be an SSLContext or None")
        return ssl, None
    if server_hostname is None:
        # As asyncio: verify the host name the caller connected to; a caller without one
        # (sock=) must say which name to verify (or "" to skip the check).
        if not host:
            raise ValueError("You must set server_hostname when using ssl without a host")
        server_hostname = str(host)
    return (None if isinstance(ssl, bool) else ssl), server_hostname


def _ssl_protocol(
    loop: asyncio.AbstractEventLoop,
    app_protocol: asyncio.BaseProtocol,
    sslcontext: _ssl.SSLContext | None,
    waiter: asyncio.Future[None] | None,
    *,
    server_side: bool,
    server_hostname: str | None,
    call_connection_made: bool,
    ssl_handshake_timeout: float | None,
    ssl_shutdown_timeout: float | None,
) -> asyncio.sslproto.SSLProtocol:
    kwargs: dict[str, Any] = {
        "call_connection_made": call_connection_made,
        "ssl_handshake_timeout": ssl_handshake_timeout,
    }
    if ssl_shutdown_timeout is not None:  # Python 3.11+
        kwargs["ssl_shutdown_timeout"] = ssl_shutdown_timeout
    return asyncio.sslproto.SSLProtocol(
        loop,  # type: ignore[arg-type]
        app_protocol,
        sslcontext,  # type: ignore[arg-type]
        waiter,  # type: ignore[arg-type]
        server_side,
        server_hostname,
        **kwargs,
    )


async def open_client(
    open_plain: Callable[[Callable[[], Any]], Awaitable[tuple[Any, Any]]],
    protocol_factory: Callable[[], _P],
    options: tuple[_ssl.SSLContext | None, str | None] | None,
    *,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> tuple[asyncio.Transport, _P]:
    """Open a client connection with ``open_plain``: plain when ``options`` (from
    :func:`tls_options`) is None, else with the TLS client handshake on it."""
    if options is None:
        transport, protocol = await open_plain(protocol_factory)
        return transport, protocol
    sslcontext, server_hostname = options
    return await client_handshake(
        open_plain,
        protocol_factory,
        sslcontext,
        server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )


async def client_handshake(
    open_plain: Callable[[Callable[[], asyncio.BaseProtocol]], Awaitable[tuple[_T, Any]]],
    protocol_factory: Callable[[], _P],
    sslcontext: _ssl.SSLContext | None,
    server_hostname: str | None,
    *,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> tuple[asyncio.Transport, _P]:
    """Open a connection with ``open_plain`` and run the TLS client handshake on it.

    As ``loop.create_connection(ssl=...)``: the application's protocol is made once the
    connection is up, sees ``connection_made`` after the handshake, and the call returns the
    TLS transport; a failed handshake closes the connection and raises its error.
    """
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    made: list[tuple[asyncio.sslproto.SSLProtocol, _P]] = []

    def factory() -> asyncio.BaseProtocol:
        app_protocol = protocol_factory()
        ssl_protocol = _ssl_protocol(
            loop,
            app_protocol,
            sslcontext,
            waiter,
            server_side=False,
            server_hostname=server_hostname,
            call_connection_made=True,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        made.append((ssl_protocol, app_protocol))
        return ssl_protocol

    transport, _ = await open_plain(factory)
    ssl_protocol, app_protocol = made[0]
    app_transport = ssl_protocol._app_transport  # cleared when the connection is lost
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    return app_transport, app_protocol


def server_protocol_factory(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    sslcontext: _ssl.SSLContext,
    *,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> Callable[[], asyncio.BaseProtocol]:
    """The protocol factory a TLS server gives each accepted connection.

    As asyncio's servers: the application's protocol sees ``connection_made`` only after a
    successful handshake; a failed one just closes that connection.
    """
    loop = asyncio.get_running_loop()
    # Fail now, not at the first connection, on a bad timeout (as asyncio does).
    for name, value in (
        ("ssl_handshake_timeout", ssl_handshake_timeout),
        ("ssl_shutdown_timeout", ssl_shutdown_timeout),
    ):
        if value is not None and value <= 0:
            raise ValueError(f"{name} should be a positive number, got {value}")

    def factory() -> asyncio.BaseProtocol:
        return _ssl_protocol(
            loop,
            protocol_factory(),
            sslcontext,
            None,
            server_side=True,
            server_hostname=None,
            call_connection_made=True,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )

    return factory


async def start_tls(
    transport: asyncio.BaseTransport,
    protocol: asyncio.BaseProtocol,
    sslcontext: _ssl.SSLContext,
    *,
    server_side: bool = False,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> asyncio.Transport:
    """Upgrade ``transport`` to TLS; return the new transport ``protocol`` must use.

    The same steps as ``loop.start_tls`` (which this is on any loop): reading is paused,
    the TLS protocol takes over the transport, and the handshake runs. If it fails or is
    cancelled the transport is closed.
    """
    if not isinstance(sslcontext, _ssl.SSLContext):
        raise TypeError(
            f"sslcontext is expected to be an instance of ssl.SSLContext, got {sslcontext!r}"
        )
    if not isinstance(transport, asyncio.Transport):
        raise TypeError(f"transport {transport!r} is not supported by start_tls()")
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    ssl_protocol = _ssl_protocol(
        loop,
        protocol,
        sslcontext,
        waiter,
        server_side=server_side,
        server_hostname=server_hostname,
        call_connection_made=False,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    app_transport = ssl_protocol._app_transport
    # Pause first, so the TLS protocol sees no data before its connection_made.
    transport.pause_reading()
    transport.set_protocol(ssl_protocol)
    made = loop.call_soon(ssl_protocol.connection_made, transport)
    resumed = loop.call_soon(transport.resume_reading)
    try:
        await waiter
    except BaseException:
        transport.close()
        made.cancel()
        resumed.cancel()
        raise
    return app_transport
