"""The per-connection socket-like object behind ``get_extra_info("socket")`` (DESIGN §8).

Libraries call ``transport.get_extra_info("socket").setsockopt(...)`` in ``connection_made``
to set ``TCP_NODELAY``, ``SO_KEEPALIVE`` and friends. A udptcp connection has no kernel socket
of its own and must never hand out the shared UDP socket (closing it would kill every
connection on the endpoint), so it hands out this object instead: it looks like a TCP socket
(``type`` is ``SOCK_STREAM``, ``proto`` is ``IPPROTO_TCP``), maps the options udptcp
implements onto the connection, remembers every other option so ``getsockopt`` reads it back,
and never raises for an option it does not know. ``getsockopt(IPPROTO_TCP, TCP_INFO, n)``
returns Linux's ``struct tcp_info`` filled from the connection's statistics
(:mod:`udptcp.aio.tcpinfo`).
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from .interfaces import HostedTransport as Transport
from .tcpinfo import TCP_INFO, TCP_INFO_SIZE, pack_tcp_info

__all__ = ["ConnectionSocket"]

_TCP = socket.IPPROTO_TCP
_LITTLE = struct.pack("=H", 1) == b"\x01\x00"
_SOL = socket.SOL_SOCKET


class ConnectionSocket:
    """A socket-shaped view of one udptcp connection.

    ``setsockopt(IPPROTO_TCP, TCP_NODELAY, v)`` turns Nagle's algorithm off or on for the
    connection, ``SO_KEEPALIVE`` and ``TCP_KEEPIDLE`` / ``TCP_KEEPINTVL`` / ``TCP_KEEPCNT``
    its keepalive. Other options are stored and read back by ``getsockopt`` but have no
    effect. ``getsockopt(IPPROTO_TCP, TCP_INFO, buflen)`` returns the first ``buflen`` bytes
    of a Linux ``struct tcp_info`` (:mod:`udptcp.aio.tcpinfo`). ``close()``, ``shutdown()`` and
    ``setblocking()`` do nothing: the transport owns the connection.
    """

    __slots__ = ("_transport", "_options")

    type = socket.SOCK_STREAM
    proto = _TCP

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._options: dict[tuple[int, int], Any] = {}

    @property
    def family(self) -> int:
        """Address family of the UDP socket underneath."""
        return int(self._transport.endpoint.family)

    def fileno(self) -> int:
        """Always -1: there is no kernel socket for this connection."""
        return -1

    def getsockname(self) -> Any:
        """Local UDP address."""
        transport = self._transport
        return transport.endpoint.local_address_for(transport.peer)

    def getpeername(self) -> Any:
        """Remote UDP address (behind a relay or NAT: the relay's)."""
        return self._transport.peer

    def setsockopt(self, level: int, optname: int, value: Any, optlen: int | None = None) -> None:
        """Set an option; TCP_NODELAY reaches the connection, the rest is remembered."""
        self._options[(level, optname)] = value
        conn = self._transport.conn
        if level == _TCP and optname == socket.TCP_NODELAY:
            conn.set_nodelay(bool(_as_int(value)))
        elif level == _SOL and optname == socket.SO_KEEPALIVE:
            conn.set_keepalive(bool(_as_int(value)))
        elif level == _TCP and optname in _KEEPALIVE_TIMING:
            setting = {_KEEPALIVE_TIMING[optname]: _as_int(value)}
            conn.set_keepalive(conn.keepalive, **setting)

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> Any:
        """Read an option back: what was set, or a sensible default."""
        conn = self._transport.conn
        if level == _TCP and optname == TCP_INFO:
            info = pack_tcp_info(
                self._transport.get_extra_info("stats"),
                40 if self.family == socket.AF_INET6 else 20,
            )
            if buflen is None:
                return int.from_bytes(info[:4], "little" if _LITTLE else "big")
            return info[: min(buflen, TCP_INFO_SIZE)]
        if level == _TCP and optname == socket.TCP_NODELAY:
            value: Any = int(conn.nodelay)
        elif level == _SOL and optname == socket.SO_KEEPALIVE:
            value = int(conn.keepalive)
        elif level == _TCP and optname in _KEEPALIVE_TIMING:
            value = int(getattr(conn, "keepalive_" + _KEEPALIVE_TIMING[optname]))
        elif (level, optname) in self._options:
            value = self._options[(level, optname)]
        elif level == _SOL and optname == socket.SO_TYPE:
            value = socket.SOCK_STREAM
        elif level == _SOL and optname in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            value = conn.config.receive_buffer
        elif level == _TCP and optname == getattr(socket, "TCP_MAXSEG", -1):
            value = conn.mss
        else:
            value = 0  # SO_ERROR, SO_KEEPALIVE, ... : off / no error
        if buflen is None:
            return value
        if isinstance(value, int):
            return struct.pack("i", value)[:buflen]
        return bytes(value)[:buflen]

    def setblocking(self, flag: bool) -> None:
        """Ignored: the connection is always non-blocking."""

    def getblocking(self) -> bool:
        """Always False."""
        return False

    def settimeout(self, value: float | None) -> None:
        """Ignored: the connection is always non-blocking."""

    def gettimeout(self) -> float:
        """Always 0.0 (non-blocking)."""
        return 0.0

    def close(self) -> None:
        """Does nothing: closing is the transport's job (DESIGN §8)."""

    def shutdown(self, how: int) -> None:
        """Does nothing: use ``transport.write_eof()`` or ``close()``."""

    def __repr__(self) -> str:
        t = self._transport
        local, remote = t.conn.local_port, t.conn.remote_port
        return (
            f"<udptcp.ConnectionSocket laddr={self.getsockname()!r} vport={local} "
            f"raddr={self.getpeername()!r} vport={remote}>"
        )


# TCP-level keepalive timing options (Linux names; absent elsewhere) -> set_keepalive argument.
_KEEPALIVE_TIMING: dict[int, str] = {
    getattr(socket, name): arg
    for name, arg in (
        ("TCP_KEEPIDLE", "idle"),
        ("TCP_KEEPINTVL", "interval"),
        ("TCP_KEEPCNT", "count"),
    )
    if hasattr(socket, name)
}


def _as_int(value: Any) -> int:
    if isinstance(value, (bytes, bytearray)):
        return int.from_bytes(value, "little") if value else 0
    return int(value)
