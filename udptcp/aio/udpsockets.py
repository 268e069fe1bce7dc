"""The UDP sockets behind ``create_connection`` and ``create_server``: the loop's shared
client sockets, a server's bound sockets (and one kept open by TIME-WAIT that a restarted
server reuses), and the drop-in's UDP twin of a listening TCP socket.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import weakref
from typing import Any

from udptcp.core.config import Config

from . import endpoint as endpoint_module
from .endpoint import SOCKET_BUFFER, Address, Endpoint, open_endpoints

__all__ = [
    "bound_socket",
    "check_udp_socket",
    "client_endpoint",
    "enlarge_buffers",
    "listening_endpoint",
    "twin_fallbacks",
    "udp_twin",
]


# The client endpoints of each loop, shared by its outgoing connections: one per address
# family, local address (when one is given), offload choice and path MTU probing
# (docs/architecture.md#client-sockets).
_client_endpoints: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[Any, ...], Endpoint]
] = weakref.WeakKeyDictionary()


# A drop-in server's UDP socket that took over the address of a shared client socket
# (udp_twin), and that client endpoint.
twin_fallbacks: weakref.WeakKeyDictionary[socket.socket, Endpoint] = weakref.WeakKeyDictionary()


def client_endpoint(
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
        enlarge_buffers(sock)
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


def listening_endpoint(loop: asyncio.AbstractEventLoop, family: int, addr: Any) -> Endpoint | None:
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
        enlarge_buffers(udp)
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
                    twin_fallbacks[udp] = endpoint
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


def bound_socket(
    family: int, proto: int, addr: Address, *, reuse_port: bool = False
) -> socket.socket:
    """A non-blocking UDP socket bound to ``addr`` for a server (``SO_REUSEPORT`` on
    request; an IPv6 one takes IPv6 only), the error naming the address as asyncio's does."""
    sock = socket.socket(family, socket.SOCK_DGRAM, proto)
    try:
        sock.setblocking(False)
        enlarge_buffers(sock)
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


def check_udp_socket(sock: socket.socket) -> None:
    """Refuse a ``sock=`` that is not a datagram socket, as asyncio refuses a non-TCP one."""
    if sock.type != socket.SOCK_DGRAM:
        raise ValueError(f"A UDP Socket was expected, got {sock!r}")


def enlarge_buffers(sock: socket.socket) -> None:
    """Raise the socket's send and receive buffers to ``SOCKET_BUFFER`` where they are
    smaller (never shrink them; a refusal leaves them as they are)."""
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            if sock.getsockopt(socket.SOL_SOCKET, option) < SOCKET_BUFFER:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        except OSError:
            pass
