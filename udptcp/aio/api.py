"""``create_connection``, ``create_server`` and the streams functions (DESIGN §6).

They mirror ``loop.create_connection``, ``loop.create_server``, ``asyncio.open_connection``
and ``asyncio.start_server``, with these udptcp additions and differences:

* Addresses are UDP addresses, resolved with ``type=SOCK_DGRAM``.
* Without ``sock=``, the connections of one loop and address family share one UDP socket
  (one per ``local_addr`` when given), made on first use and closed when nothing needs it
  any more; on Linux the socket's error queue tells each connection its own ICMP errors.
* ``vport`` names the destination virtual port of a connection (default: the UDP port given)
  or the one virtual port a server listens on (default: any, DESIGN §4). ``local_vport``
  fixes a connection's source virtual port (default: a random ephemeral one), which a
  simultaneous open needs.
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
"""

from __future__ import annotations

import asyncio
import asyncio.staggered
import errno
import functools
import itertools
import socket
import sys
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NoReturn, TypeVar

from udptcp.core.config import Config
from udptcp.core.keys import Identity
from udptcp.core.secure import client_pattern, client_secure

from . import endpoint as endpoint_module
from . import tls
from .endpoint import SOCKET_BUFFER, Address, Endpoint, open_endpoints
from .server import Server
from .transport import Transport

__all__ = ["create_connection", "create_server", "open_connection", "start_server"]

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
        return _create_connection(
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
        return await open_plain(protocol_factory)
    sslcontext, server_hostname = options
    return await tls.client_handshake(
        open_plain,
        protocol_factory,
        sslcontext,
        server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )


async def _create_connection(
    protocol_factory: Callable[[], _Q],
    host: str | None,
    port: int | str | None,
    *,
    local_addr: tuple[str, int] | None,
    sock: socket.socket | None,
    config: Config | None,
    vport: int | None,
    local_vport: int | None,
    family: int,
    all_errors: bool,
    happy_eyeballs_delay: float | None = None,
    interleave: int | None = None,
    own_socket: bool = True,
) -> tuple[Transport, _Q]:
    _check_vport("vport", vport)
    _check_vport("local_vport", local_vport)
    _check_port(port, "connect")
    if local_addr is not None:
        _check_port(local_addr[1], "bind")
    loop = asyncio.get_running_loop()
    config = config if config is not None else Config()

    if sock is not None:
        if local_addr is not None:
            raise ValueError("local_addr and sock can not be specified at the same time")
        _check_udp_socket(sock)
        if host is None and port is None:
            try:
                peer: Address = sock.getpeername()
            except OSError:
                raise ValueError(
                    "host and port were not specified and sock is not connected"
                ) from None
        else:
            infos = _numeric_infos(host, port, sock.family, 0)
            if infos is None:
                infos = await _resolve(loop, host, port, sock.family, 0)
            peer = infos[0][4]
        endpoint = Endpoint.existing(loop, sock)
        if endpoint is None:
            _enlarge_buffers(sock)
            endpoint = Endpoint.for_socket(loop, sock, config, owns_socket=own_socket)
        return await _open(
            endpoint, peer, protocol_factory, config, vport, local_vport, keep_socket=True
        )

    if host is None or port is None:
        raise ValueError("host and port was not specified and no sock specified")
    infos = _numeric_infos(host, port, family, 0) or await _resolve(loop, host, port, family, 0)
    local_infos = None
    if local_addr is not None:
        local_infos = await _resolve(loop, local_addr[0], local_addr[1], family, 0)

    attempts = [(fam, proto, addr) for fam, _type, proto, _name, addr in infos]
    if happy_eyeballs_delay is not None and interleave is None:
        interleave = 1  # as asyncio: happy eyeballs interleaves the families
    if interleave and len(attempts) > 1:
        attempts = _interleave(attempts, interleave)
    exceptions: list[OSError] = []

    async def attempt(fam: int, proto: int, addr: Address) -> tuple[Transport, _Q]:
        try:
            endpoint = _client_endpoint(loop, fam, proto, addr, local_infos, config)
            return await _open(endpoint, addr, protocol_factory, config, vport, local_vport)
        except OSError as exc:  # ConnectionRefusedError, TimeoutError, ...
            exceptions.append(exc)
            raise

    if happy_eyeballs_delay is None or len(attempts) == 1:
        for fam, proto, addr in attempts:
            try:
                return await attempt(fam, proto, addr)
            except OSError:
                continue
    else:
        # RFC 8305 as asyncio runs it: the next address starts after the delay (or as soon
        # as the previous one failed); the first to connect wins, the others are reset.
        winner, _, _ = await asyncio.staggered.staggered_race(
            (functools.partial(attempt, *a) for a in attempts), happy_eyeballs_delay
        )
        if winner is not None:
            return winner  # type: ignore[no-any-return]
    _raise_connect_errors(exceptions, all_errors)


async def _open(
    endpoint: Endpoint,
    peer: Address,
    protocol_factory: Callable[[], _Q],
    config: Config,
    vport: int | None,
    local_vport: int | None,
    *,
    keep_socket: bool = False,
) -> tuple[Transport, _Q]:
    """Connect on ``endpoint``; with ``keep_socket`` (the caller's socket) a failure or
    cancellation that leaves the endpoint unused closes it without closing the socket."""
    if config.pmtu_max is not None:
        endpoint.set_dont_fragment()
    endpoint.acquire()
    ok = False
    try:
        transport = endpoint.connect(
            peer,
            protocol_factory,
            config,
            remote_vport=vport if vport is not None else peer[1],
            local_vport=local_vport,
        )
        assert transport._waiter is not None
        try:
            await transport._waiter
        except BaseException:
            # Cancelled, or the handshake failed: leave nothing half-open behind.
            if transport._protocol is None:
                transport.abort_unowned()
            else:
                transport.abort()
            raise
        ok = True
        return transport, transport.get_protocol()  # type: ignore[return-value]
    finally:
        if not ok and keep_socket and endpoint.idle_but_for_holds(1):
            endpoint.owns_socket = False
        endpoint.release()


# The client endpoints of each loop, shared by its outgoing connections: one per address
# family, local address (when one is given), offload choice and path MTU probing (DESIGN §8,
# "Client sockets").
_client_endpoints: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[Any, ...], Endpoint]
] = weakref.WeakKeyDictionary()


# A drop-in server's UDP socket that took over the address of a shared client socket
# (udp_twin), and that client endpoint.
_twin_fallbacks: weakref.WeakKeyDictionary[socket.socket, Endpoint] = weakref.WeakKeyDictionary()


def _client_endpoint(
    loop: asyncio.AbstractEventLoop,
    family: int,
    proto: int,
    peer: Address,
    local_infos: list[Any] | None,
    config: Config,
) -> Endpoint:
    """The endpoint an outgoing connection to ``peer`` uses: the loop's one client socket
    for ``family`` (per local address when ``local_addr`` was given), made on first use
    and closed once no connection or TIME-WAIT record needs it, as a server's socket is
    shared by its connections. ICMP errors reach the right connection through the
    socket's error queue (IP_RECVERR / IPV6_RECVERR, :mod:`udptcp.aio.errqueue`).

    Where the kernel has no error queue (not Linux), each connection gets a socket of
    its own, connected to ``peer``, the only way it then hears of an unreachable port.
    """
    local: tuple[Any, ...] | None = None
    if local_infos is not None:
        local = tuple(info[4] for info in local_infos if info[0] == family)
        if not local:
            raise OSError(f"no local address of family {family!r} in local_addr")
    # Path MTU probing sets the don't-fragment bit on the whole socket: those connections
    # share a socket of their own, so the others keep fragmenting as before.
    key = (family, proto, local, config.udp_offload, config.pmtu_max is not None)
    shared = _client_endpoints.setdefault(loop, {})
    endpoint = shared.get(key)
    if endpoint is not None and not endpoint.is_closed and not endpoint.has_listeners:
        return endpoint
    # (One that took a listener since, see udp_twin, keeps its connections but gets no
    # more: a connection to that listener from its own socket would meet its own SYN.)
    sock = socket.socket(family, socket.SOCK_DGRAM, proto)
    try:
        sock.setblocking(False)
        _enlarge_buffers(sock)
        if local_infos is not None:
            _bind_first(sock, family, local_infos)
        if not endpoint_module.enable_recverr(sock):
            sock.connect(peer)  # this connection's own socket (see above)
            return Endpoint.for_socket(loop, sock, config)
        if local_infos is None:
            sock.bind(("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0))
        endpoint = Endpoint.for_socket(loop, sock, config)
    except BaseException:
        sock.close()
        raise
    shared[key] = endpoint
    return endpoint


def _interleave(attempts: list[Any], first_family_count: int) -> list[Any]:
    """Alternate address families, ``first_family_count`` of the first family first
    (RFC 8305 §4, as ``loop.create_connection(interleave=)`` orders them)."""
    by_family: dict[int, list[Any]] = {}
    for item in attempts:
        by_family.setdefault(item[0], []).append(item)
    lists = list(by_family.values())
    ordered: list[Any] = lists[0][: first_family_count - 1]
    lists[0] = lists[0][first_family_count - 1 :]
    for group in itertools.zip_longest(*lists):
        ordered.extend(item for item in group if item is not None)
    return ordered


def _bind_first(sock: socket.socket, family: int, local_infos: list[Any]) -> None:
    candidates = [info[4] for info in local_infos if info[0] == family]
    if not candidates:
        raise OSError(f"no local address of family {family!r} in local_addr")
    error: OSError | None = None
    for laddr in candidates:
        try:
            sock.bind(laddr)
            return
        except OSError as exc:
            error = OSError(
                exc.errno,
                f"error while attempting to bind on address {laddr!r}: {exc.strerror}",
            )
    assert error is not None
    raise error


def _raise_connect_errors(exceptions: list[OSError], all_errors: bool = False) -> NoReturn:
    """Raise as asyncio does when every address failed."""
    if not exceptions:
        raise OSError("getaddrinfo() returned empty list")
    if all_errors and sys.version_info >= (3, 11):
        raise ExceptionGroup("create_connection failed", exceptions)  # noqa: F821 (3.11+)
    if len(exceptions) == 1 or all(str(e) == str(exceptions[0]) for e in exceptions):
        raise exceptions[0]
    raise OSError(f"Multiple exceptions: {', '.join(str(e) for e in exceptions)}")


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
    _check_vport("vport", vport)
    _check_port(port, "bind")
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
        _check_udp_socket(sock)
        endpoint = Endpoint.existing(loop, sock)
        if endpoint is None:
            _enlarge_buffers(sock)
            endpoint = Endpoint.for_socket(loop, sock, config, owns_socket=own_socket)
            endpoint.fallback = _twin_fallbacks.pop(sock, None)
        endpoints = [endpoint]
    else:
        hosts = server_hosts(host)
        infos: list[Any] = []
        for h in hosts:
            for info in await _resolve(loop, h, port, family, socket.AI_PASSIVE):
                if info not in infos:
                    infos.append(info)
        endpoints = []
        try:
            for fam, _type, proto, _name, addr in infos:
                existing = _listening_endpoint(loop, fam, addr)
                if existing is not None:
                    endpoints.append(existing)
                    continue
                bound = _bound_socket(fam, proto, addr, reuse_port=bool(reuse_port))
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


def server_hosts(host: str | Iterable[str] | None) -> list[str | None]:
    """The hosts a server listens on, as ``loop.create_server`` reads its ``host``
    argument: ``None`` or ``""`` for every interface, one name, or several."""
    if host is None or host == "":
        return [None]
    if isinstance(host, str):
        return [host]
    return list(host)


def _listening_endpoint(loop: asyncio.AbstractEventLoop, family: int, addr: Any) -> Endpoint | None:
    """An endpoint of this loop still bound to ``addr`` (kept open by TIME-WAIT connections
    of a server that was closed), which a new server may share: udptcp's equivalent of the
    SO_REUSEADDR that asyncio sets on TCP listeners, so a server restarts on its port at
    once. A second listener on the same virtual port is still refused (EADDRINUSE)."""
    if addr[1] == 0:
        return None
    for endpoint in open_endpoints(loop):
        if (
            endpoint.family == family
            and endpoint.connected_peer is None
            and tuple(endpoint.sockname[:2]) == tuple(addr[:2])
        ):
            return endpoint
    return None


def udp_twin(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> socket.socket:
    """A UDP socket bound to the address a listening TCP socket has: the drop-in's opt-in
    ``serve_tcp_sockets`` serves a pre-bound ``create_server(sock=)`` socket over udptcp on
    the same port number. ``SO_REUSEPORT`` is set, so pre-forked workers that inherited the
    one TCP socket can each bind the port (Linux then gives each peer address one worker).

    The kernel picked the TCP port without looking at UDP, so one of this loop's own client
    sockets may hold that UDP port already. If the shared client socket has that very
    address, it is returned itself (the server listens on the client endpoint, which serves
    both); if it holds the port on the wildcard address, the new socket is bound beside it
    (``SO_REUSEADDR``) and hands the segments of the client socket's connections over to
    it (``Endpoint.fallback``). Either way new client connections get a socket of their
    own from then on. A
    connected one (a system without an error queue) is made shareable (``SO_REUSEADDR``)
    and keeps its peer's datagrams (a connected socket is the better match), and the new
    socket gets everyone else's."""
    addr = sock.getsockname()
    udp = socket.socket(sock.family, socket.SOCK_DGRAM)
    try:
        udp.setblocking(False)
        _enlarge_buffers(udp)
        if hasattr(socket, "SO_REUSEPORT"):
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if sock.family == socket.AF_INET6:
            v6only = sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
            udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        try:
            udp.bind(addr)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            shared = _client_endpoints.get(loop, {})
            for key, endpoint in list(shared.items()):
                host, port = endpoint.sockname[:2]
                if endpoint.is_closed or port != addr[1]:
                    continue
                if host == addr[0]:
                    # The very address: the server listens on the client socket itself.
                    del shared[key]  # new client connections get a socket of their own
                    udp.close()
                    return endpoint.sock
                if host in ("0.0.0.0", "::"):
                    # The new, more specific socket takes the datagrams sent to its
                    # address (Linux prefers it), so it hands what belongs to the client
                    # socket's connections over to it.
                    del shared[key]
                    endpoint.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    udp.bind(addr)
                    _twin_fallbacks[udp] = endpoint
                    return udp
            clients = [
                ep
                for ep in open_endpoints(loop)
                if ep.connected_peer is not None and tuple(ep.sockname[:2]) == tuple(addr[:2])
            ]
            if not clients:
                raise
            for endpoint in clients:
                endpoint.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.bind(addr)
        return udp
    except BaseException:
        udp.close()
        raise


def _bound_socket(
    family: int, proto: int, addr: Address, *, reuse_port: bool = False
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM, proto)
    try:
        sock.setblocking(False)
        _enlarge_buffers(sock)
        if reuse_port:
            if not hasattr(socket, "SO_REUSEPORT"):
                raise ValueError("reuse_port not supported by socket module")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
            # As asyncio: one socket per family, so IPv6 sockets do not take IPv4 too.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
        try:
            sock.bind(addr)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"error while attempting to bind on address {addr!r}: {exc.strerror}",
            ) from None
        return sock
    except BaseException:
        sock.close()
        raise


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


# ---------------------------------------------------------------------- helpers


def _numeric_infos(
    host: str | None, port: int | str | None, family: int, flags: int
) -> list[Any] | None:
    """``getaddrinfo`` for a numeric host and port, without waiting (it cannot block: no
    name is looked up), or None when a lookup is needed."""
    if host is None or port is None:
        return None
    try:
        infos = socket.getaddrinfo(
            host,
            port,
            family=family,
            type=socket.SOCK_DGRAM,
            proto=0,
            flags=flags | socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
        )
    except (OSError, UnicodeError):
        return None
    return infos or None


async def _resolve(
    loop: asyncio.AbstractEventLoop,
    host: str | None,
    port: int | str | None,
    family: int,
    flags: int,
) -> list[Any]:
    infos = await loop.getaddrinfo(
        host, port, family=family, type=socket.SOCK_DGRAM, proto=0, flags=flags
    )
    if not infos:
        raise OSError("getaddrinfo() returned empty list")
    return infos


def _secure_config(
    config: Config | None,
    identity: Identity | None,
    peer_key: bytes | None,
    psk: bytes | None,
    allow_plain: bool | None,
) -> Config:
    """``config`` (or the default) with the secure-mode keywords given applied to it."""
    config = config if config is not None else Config()
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


def _check_udp_socket(sock: socket.socket) -> None:
    if sock.type != socket.SOCK_DGRAM:
        raise ValueError(f"A UDP Socket was expected, got {sock!r}")


def _check_port(port: object, call: str) -> None:
    """Refuse a port number outside 0-65535 with the ``OverflowError`` asyncio's default
    loop raises for it (the socket module's, from ``connect()`` or ``bind()``).

    Checked before name resolution, whatever the host: ``getaddrinfo`` would silently take
    the port modulo 65536 (70000 becomes 4464), which asyncio lets through for host names
    and uvloop for every host. A service name ("http") is left to ``getaddrinfo``.
    """
    if isinstance(port, (str, bytes)):
        try:
            port = int(port)
        except ValueError:
            return
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise OverflowError(f"{call}(): port must be 0-65535.")


def _check_vport(name: str, vport: int | None) -> None:
    if vport is None:
        return
    if isinstance(vport, int) and not 0 <= vport <= 65535:
        raise OverflowError(f"{name}: port must be 0-65535.")
    if not (isinstance(vport, int) and vport >= 1):
        raise ValueError(f"{name} must be a port number in 1..65535, got {vport!r}")


def _enlarge_buffers(sock: socket.socket) -> None:
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            if sock.getsockopt(socket.SOL_SOCKET, option) < SOCKET_BUFFER:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        except OSError:
            pass
