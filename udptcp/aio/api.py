"""``create_connection``, ``create_server`` and the streams functions.

They mirror ``loop.create_connection``, ``loop.create_server``, ``asyncio.open_connection``
and ``asyncio.start_server``, with these udptcp additions and differences:

* Addresses are UDP addresses, resolved with ``type=SOCK_DGRAM``.
* Without ``sock=``, the connections of one loop and address family share one UDP socket
  (one per ``local_addr`` when given), made on first use and closed when nothing needs it
  any more; on Linux the socket's error queue tells each connection its own ICMP errors.
* ``vport`` names the destination virtual port of a connection (default: the UDP port given)
  or the one virtual port a server listens on (default: any; see
  docs/architecture.md#endpoints-and-virtual-ports). ``local_vport`` fixes a connection's
  source virtual port (default: a random ephemeral one), which a simultaneous open needs.
* ``sock=`` is a UDP socket, bound and possibly connected; the endpoint takes ownership and
  closes it when done, as asyncio does with a socket passed to it, unless
  ``own_socket=False``: then it is left open (and readable by its owner again) once the
  endpoint closes. A connect that fails or is cancelled never closes the socket passed in:
  a hole-punched socket keeps its NAT binding for whatever is tried next. The socket gets
  the same buffer sizes udptcp's own sockets have. Passing the same socket again shares its
  endpoint. For ``create_connection`` the peer is ``host``/``port`` if given, else the
  socket's connected peer; a numeric address is used at once, with no await before the
  connection is registered, so a SYN that arrives meanwhile finds it (a simultaneous open
  beside a listener on one punched socket).
* ``ssl``, ``server_hostname``, ``ssl_handshake_timeout`` and ``ssl_shutdown_timeout`` mean
  what they mean to asyncio: TLS runs on the udptcp connection through asyncio's own TLS
  protocol (:mod:`udptcp.aio.tls`), so certificates and verification behave as over TCP.
* ``identity``, ``peer_key``, ``psk`` and ``allow_plain`` turn on secure mode
  (:mod:`udptcp.core.secure`); they set the :class:`~udptcp.Config` fields of the same names.

This module reads the keywords (TLS, secure mode) and builds servers; the plain connect is
:mod:`udptcp.aio.connect`, the address arguments :mod:`udptcp.aio.addresses` and the UDP
sockets :mod:`udptcp.aio.udpsockets`. ``udp_twin`` and ``server_hosts`` (the drop-in loop's)
are importable from here as before.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from udptcp.core.config import Config
from udptcp.core.keys import Identity
from udptcp.core.secure import client_pattern, client_secure

from . import tls
from .addresses import check_port, check_vport, resolve, server_hosts
from .connect import connect_plain
from .endpoint import Endpoint
from .server import Server
from .transport import Transport
from .udpsockets import (
    bound_socket,
    check_udp_socket,
    enlarge_buffers,
    listening_endpoint,
    twin_fallbacks,
    udp_twin,
)

__all__ = [
    "STREAM_LIMIT",
    "create_connection",
    "create_server",
    "open_connection",
    "server_hosts",
    "start_server",
    "udp_twin",
]

_P = TypeVar("_P", bound=asyncio.BaseProtocol)
_Q = TypeVar("_Q", bound=asyncio.BaseProtocol)

STREAM_LIMIT = 2**16  # asyncio.streams._DEFAULT_LIMIT


async def create_connection(
    protocol_factory: Callable[[], _P],
    host: str | None = None,
    port: int | str | None = None,
    *,
    local_addr: tuple[str, int] | None = None,
    sock: socket.socket | None = None,
    ssl: Any = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    config: Config | None = None,
    vport: int | None = None,
    local_vport: int | None = None,
    family: int = 0,
    all_errors: bool = False,
    happy_eyeballs_delay: float | None = None,
    interleave: int | None = None,
    own_socket: bool = True,
    identity: Identity | None = None,
    peer_key: bytes | None = None,
    psk: bytes | None = None,
    allow_plain: bool | None = None,
) -> tuple[asyncio.Transport, _P]:
    """Open a udptcp connection; return ``(transport, protocol)`` once it is ESTABLISHED.

    ``happy_eyeballs_delay`` and ``interleave`` mean what they mean to asyncio (RFC 8305):
    with a delay, the addresses are tried in a staggered race and the first connection wins.

    Secure mode: ``peer_key`` (the server's 32-byte public key) authenticates the server
    (Noise NK); with ``identity`` as well, the server learns the client's key (IK); ``psk``
    (32 bytes) adds a pre-shared key, or on its own authenticates both sides. A failed
    secure handshake raises :class:`~udptcp.SecureHandshakeError` saying why.

    With ``ssl`` (an ``ssl.SSLContext``, or True for asyncio's default client context) the
    TLS handshake runs on the connection before the call returns, and the transport is
    asyncio's TLS transport over it; ``server_hostname`` defaults to ``host``.

    Raises ``ConnectionRefusedError`` (RST or ICMP port unreachable answering the SYN, or
    a UDP service that is not udptcp answering it), ``TimeoutError`` (no answer after
    ``config.syn_retries``) or another ``OSError`` (``ssl.SSLError`` and its subclasses
    for a failed TLS handshake), with ``errno`` set and the address in the message as
    asyncio's "Connect call failed". ``OverflowError`` for a port outside 0-65535. With
    ``all_errors`` every address's error is raised in an ``ExceptionGroup``, as asyncio
    does. If the call is cancelled the half-open connection is reset and its socket
    released.
    """
    config = _secure_config(config, identity, peer_key, psk, allow_plain)
    if identity is not None and not client_secure(config):
        raise ValueError("identity= on a connection needs the server's peer_key= (or a psk=)")
    if client_secure(config):
        client_pattern(config)  # a combination of keys no pattern takes: ValueError now
    options = tls.tls_options(
        ssl,
        server_side=False,
        host=host,
        server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )

    def open_plain(
        factory: Callable[[], _Q],
    ) -> Awaitable[tuple[Transport, _Q]]:
        return connect_plain(
            factory,
            host,
            port,
            local_addr=local_addr,
            sock=sock,
            config=config,
            vport=vport,
            local_vport=local_vport,
            family=family,
            all_errors=all_errors,
            happy_eyeballs_delay=happy_eyeballs_delay,
            interleave=interleave,
            own_socket=own_socket,
        )

    if options is None:
        # No TLS: the plain connection is the answer (one coroutine less to pass through).
        transport, protocol = await open_plain(protocol_factory)
        return transport, protocol
    return await tls.open_client(
        open_plain,
        protocol_factory,
        options,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )


async def create_server(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str | Iterable[str] | None = None,
    port: int | str | None = None,
    *,
    sock: socket.socket | None = None,
    backlog: int = 100,
    ssl: Any = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    config: Config | None = None,
    start_serving: bool = True,
    vport: int | None = None,
    family: int = 0,
    reuse_port: bool | None = None,
    own_socket: bool = True,
    identity: Identity | None = None,
    psk: bytes | None = None,
    allow_plain: bool | None = None,
) -> Server:
    """Listen for udptcp connections on a UDP address; return a :class:`Server`.

    With ``host`` None (or ``""``) every interface is used, one socket per address family,
    as ``loop.create_server`` does. ``vport`` None accepts any destination virtual port.
    With ``ssl`` (an ``ssl.SSLContext``) every connection runs the TLS server handshake
    before its protocol sees ``connection_made``. ``reuse_port`` sets ``SO_REUSEPORT`` on
    the UDP sockets, so several worker processes can serve one port (``examples/workers.py``):
    Linux hashes each datagram's addresses and UDP ports to one socket of the group, so a
    client socket's datagrams -- and so each of its connections, whole -- always reach the
    same worker. Virtual ports are not hashed: all connections over one client UDP socket
    share a worker. The hash changes when a socket joins or leaves the group, which moves
    some clients to a worker that does not know their connections (it answers RST), so
    start every worker before serving and keep them running. ``identity``
    (a :class:`~udptcp.Identity`) and/or ``psk`` make it a secure server, which refuses
    plain clients unless ``allow_plain`` is True. With ``sock`` and
    ``own_socket=False`` the socket is left open when the server and its connections are
    gone.
    """
    options = tls.tls_options(
        ssl,
        server_side=True,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    check_vport("vport", vport)
    check_port(port, "bind")
    loop = asyncio.get_running_loop()
    config = _secure_config(config, identity, None, psk, allow_plain)
    if options is not None:
        sslcontext, _ = options
        assert sslcontext is not None
        protocol_factory = tls.server_protocol_factory(
            protocol_factory,
            sslcontext,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )

    created: list[Endpoint] = []
    if sock is not None:
        if host is not None or port is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        check_udp_socket(sock)
        endpoint = Endpoint.existing(loop, sock)
        if endpoint is None:
            enlarge_buffers(sock)
            endpoint = Endpoint.for_socket(loop, sock, config, owns_socket=own_socket)
            endpoint.fallback = twin_fallbacks.pop(sock, None)
        endpoints = [endpoint]
    else:
        hosts = server_hosts(host)
        infos: list[Any] = []
        for h in hosts:
            for info in await resolve(loop, h, port, family, socket.AI_PASSIVE):
                if info not in infos:
                    infos.append(info)
        endpoints = []
        try:
            for fam, _type, proto, _name, addr in infos:
                existing = listening_endpoint(loop, fam, addr)
                if existing is not None:
                    endpoints.append(existing)
                    continue
                bound = bound_socket(fam, proto, addr, reuse_port=bool(reuse_port))
                created.append(Endpoint.for_socket(loop, bound, config))
                endpoints.append(created[-1])
        except BaseException:
            for endpoint in created:
                endpoint.close()
            raise

    if config.pmtu_max is not None:
        for endpoint in endpoints:
            endpoint.set_dont_fragment()
    try:
        server = Server(
            loop,
            endpoints,
            protocol_factory,
            backlog=backlog,
            config=config,
            vport=vport,
            ssl_context=options[0] if options is not None else None,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
    except BaseException:
        for endpoint in created:
            endpoint.close()
        raise
    if start_serving:
        await server.start_serving()
    return server


async def open_connection(
    host: str | None = None,
    port: int | str | None = None,
    *,
    limit: int = STREAM_LIMIT,
    **kwds: Any,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` over udptcp: a ``(StreamReader, StreamWriter)`` pair.

    Keyword arguments are those of :func:`create_connection`.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await create_connection(lambda: protocol, host, port, **kwds)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


async def start_server(
    client_connected_cb: Callable[
        [asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None
    ],
    host: str | Iterable[str] | None = None,
    port: int | str | None = None,
    *,
    limit: int = STREAM_LIMIT,
    **kwds: Any,
) -> Server:
    """``asyncio.start_server`` over udptcp; ``client_connected_cb(reader, writer)`` is
    called (or scheduled, if a coroutine function) for each connection.

    Keyword arguments are those of :func:`create_server`.
    """
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return await create_server(factory, host, port, **kwds)


def _secure_config(
    config: Config | None,
    identity: Identity | None,
    peer_key: bytes | None,
    psk: bytes | None,
    allow_plain: bool | None,
) -> Config:
    """``config`` (or the default) with the secure-mode keywords given applied to it."""
    config = config if config is not None else Config()
    if identity is None and peer_key is None and psk is None and allow_plain is None:
        return config  # the usual call: no keyword to apply
    changes: dict[str, object] = {}
    for name, value in (
        ("identity", identity),
        ("peer_key", peer_key),
        ("psk", psk),
        ("allow_plain", allow_plain),
    ):
        if value is not None:
            changes[name] = value
    return config.replace(**changes) if changes else config
