"""The interface between an endpoint and the transports it carries, as typing protocols.

The endpoint (``endpoint.py`` and the parts it is built from, listed in ``endpointbase.py``)
owns the socket, routes segments, keeps the timer heap and the connection limits; a
transport (``transport.py``) drives one core connection and talks to the application's
protocol. Each side uses only what its protocol here names:

* :class:`TransportHost` -- what a transport may ask of its endpoint (send, re-arm its
  deadline, report a state change, be forgotten);
* :class:`HostedTransport` -- what the endpoint (and the modules beside it: the server, the
  per-connection socket object, secure mode, NAT keepalive) may ask of a transport;
* :class:`ConnectionListener` / :class:`ConnectionServer` -- the listener that hands an
  accepted connection to its server, as the endpoint and the transport see them;
* :class:`ExtensionHost` -- the endpoint's internals that its own extensions (secure mode in
  ``securelink.py``, NAT keepalive in ``natkeep.py``) share with it.

So none of these modules imports another one that imports it back: the endpoint's modules
import ``transport.py`` and the extensions, and they import only this module (``tests/
test_imports.py`` checks that ``udptcp`` has no import cycle).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.demux import Demux
from udptcp.core.secure import SecureSession
from udptcp.core.segment import Segment

__all__ = [
    "Address",
    "ConnectionKey",
    "ConnectionListener",
    "ConnectionServer",
    "ExtensionHost",
    "HostedTransport",
    "TransportHost",
]

Address = tuple[Any, ...]
"""A UDP socket address as the socket module gives it: ``(host, port)`` for IPv4,
``(host, port, flowinfo, scope_id)`` for IPv6."""
ConnectionKey = tuple[Address, int, int]
"""How an endpoint finds a connection: (remote address, local virtual port, remote one)."""

# The transport type a host or listener is used with (contravariant: it only takes them).
T = TypeVar("T", contravariant=True)
# The transport type of an extension host, which also hands transports out (invariant).
U = TypeVar("U")


class TransportHost(Protocol[T]):
    """The endpoint as the transports it carries see it."""

    loop: asyncio.AbstractEventLoop
    #: True while the write path reads the socket: transports defer protocol calls then.
    deferring: bool
    #: Set while the loop's shutdown waits for closed connections to finish delivering.
    linger_waiter: asyncio.Future[None] | None
    #: Largest receive window the socket's buffer holds without drops (None: unknown).
    window_limit: int | None

    @property
    def sockname(self) -> Address:
        """The socket's local address."""
        ...

    @property
    def family(self) -> int:
        """The socket's address family."""
        ...

    def local_address_for(self, peer: Address) -> Address:
        """The local address datagrams to ``peer`` leave from (a connected socket's
        ``getsockname()``), also when the socket is shared and bound to the wildcard."""
        ...

    def transmit(
        self,
        addr: Address,
        segments: Sequence[Segment],
        seal: Callable[[Segment], bytes] | None = None,
    ) -> None:
        """Send ``segments`` to ``addr`` (sealed by ``seal`` in secure mode)."""
        ...

    def poll_from_write(self, now: float, transport: T) -> None:
        """After a write: read the socket if it has not been read for a while."""
        ...

    def schedule(self, transport: T, deadline: float | None) -> None:
        """The transport's connection has a new next deadline (None: nothing timed)."""
        ...

    def account(self, transport: T) -> None:
        """The transport's connection changed state: update the connection limits."""
        ...

    def forget(self, transport: T) -> None:
        """The transport's connection reached CLOSED: stop routing to it."""
        ...

    def has_connection(self, transport: T) -> bool:
        """True while segments for the transport's 4-tuple go to it."""
        ...


class ConnectionServer(Protocol[T]):
    """A server as a transport it accepted sees it."""

    def attach(self, transport: T) -> None:
        """The transport's connection now belongs to the server (for close_clients...)."""
        ...

    def detach(self, transport: T) -> None:
        """The connection is over (``connection_lost`` was delivered)."""
        ...


class ConnectionListener(Protocol[T]):
    """One server's listening presence on an endpoint, as the endpoint and the transports
    it makes from SYNs see it."""

    @property
    def server(self) -> ConnectionServer[T]:
        """The server that takes the connections."""
        ...

    @property
    def serving(self) -> bool:
        """True while SYNs are accepted."""
        ...

    @property
    def backlog(self) -> int:
        """How many connections may wait for the application."""
        ...

    @property
    def config(self) -> Config:
        """The configuration of the connections made from SYNs."""
        ...

    @property
    def pending(self) -> int:
        """Connections made but not yet handed to the server."""
        ...

    def add_pending(self, transport: T) -> None:
        """A connection was made from a SYN."""
        ...

    def discard_pending(self, transport: T) -> None:
        """A pending connection ended before it was handed over."""
        ...

    def hand_over(self, transport: T) -> asyncio.BaseProtocol | None:
        """The connection is established: the server's protocol for it (None: the server
        closed meanwhile)."""
        ...


class HostedTransport(Protocol):
    """A transport as its endpoint (and the modules beside the endpoint) see it: the core
    connection it drives, where it is, what the endpoint keeps on it, and the calls through
    which the network and the timer reach the connection."""

    conn: Connection
    endpoint: TransportHost[Any]
    #: The remote UDP address, and the 4-tuple the endpoint files the connection under.
    peer: Address
    key: ConnectionKey
    #: The listener that made it (passive open), None for an active open.
    listener: ConnectionListener[Any] | None
    #: Kept by the endpoint: the connection's next deadline (its heap may hold an earlier
    #: one, looked at again when it comes up), the state it last accounted for and the
    #: limit count the connection is in.
    deadline: float | None
    accounted_state: State | None
    slot: int
    #: Kept by the endpoint: the endpoint of this loop the peer is (False: not looked for).
    local_peer: object
    #: Secure mode: the session, and what seals this connection's segments (None: plain).
    secure_session: SecureSession | None
    seal: Callable[[Segment], bytes] | None

    def segment_received(self, seg: Segment) -> None:
        """A segment for this connection arrived."""
        ...

    def segments_received(self, segments: list[Segment]) -> int:
        """A train of segments arrived; returns how many the connection took."""
        ...

    def timer_fired(self, now: float) -> None:
        """The connection's deadline passed."""
        ...

    def icmp_unreachable(self, now: float, seq: int | None) -> None:
        """An ICMP port (or host) unreachable about this connection."""
        ...

    def icmp_soft_error(self, now: float, detail: str, seq: int | None) -> None:
        """Another ICMP error about this connection."""
        ...

    def foreign_datagram(self, now: float) -> None:
        """A datagram from the peer that is not a udptcp segment."""
        ...

    def fatal_error(self, exc: BaseException, message: str = ...) -> None:
        """Report ``exc`` (a bug) and reset the connection."""
        ...

    def endpoint_closing(self) -> None:
        """The endpoint closes under the connection: reset it."""
        ...

    def relocated(self, peer: Address) -> None:
        """The connection now talks to ``peer`` (a punched path)."""
        ...

    def moved(self, peer: Address) -> None:
        """Secure mode migrated the connection to ``peer``."""
        ...

    def pump(self) -> None:
        """Send what the connection queued, deliver its events, re-arm its deadline."""
        ...

    def abort_unowned(self) -> None:
        """Reset a connection no protocol has seen."""
        ...

    def is_closing(self) -> bool:
        """True once the application closed or aborted, or the connection ended."""
        ...

    def close(self) -> None:
        """The application's close()."""
        ...

    def abort(self) -> None:
        """The application's abort()."""
        ...

    def write_eof(self) -> None:
        """The application's write_eof()."""
        ...

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """asyncio's transport information."""
        ...


class ExtensionHost(TransportHost[U], Protocol[U]):
    """The endpoint as its own extensions (secure mode, NAT keepalive) see it: a transport
    host plus the internals they share with the endpoint."""

    stats: collections.Counter[str]
    #: The extensions' own state on the endpoint (typed in their modules, which this one
    #: must not import): the SecureLink and the BindingKeeper, None until first used.
    secure: Any
    nat_keeper: Any
    #: The trace hook (``udptcp.tools`` tracing), called with each segment in and out.
    trace: Callable[[str, Address, Segment], None] | None
    #: The connections by 4-tuple, with the endpoint's routing rules (secure mode re-files
    #: a migrated one).
    _conns: Demux[U]

    @property
    def is_closed(self) -> bool:
        """True once the endpoint closed."""
        ...

    def _guarded(self, transport: U, method: Callable[..., Any], *args: Any) -> Any:
        """Call ``method(*args)``; a bug there resets ``transport`` only."""
        ...

    def _route(
        self,
        seg: Segment,
        addr: Address,
        trains: dict[U, list[Segment]] | None,
        size: int | None = None,
    ) -> None:
        """Hand a decoded segment to its connection or listener."""
        ...

    def _send(self, data: bytes, addr: Address, gso: int = 0, count: int = 1) -> None:
        """Send one datagram now."""
        ...

    def _send_stateless(
        self, addr: Address, reply: Segment, cause: Segment, size: int | None
    ) -> bool:
        """Send a reply no connection owns, within the amplification limit."""
        ...

    def _trace(self, direction: str, addr: Address, seg: Segment) -> None:
        """Report a segment to the trace hook."""
        ...

    def send_datagram(self, data: bytes, addr: Address) -> None:
        """Send a datagram of the application's own (or STUN)."""
        ...

    def add_datagram_handler(self, handler: Callable[[bytes, Address], bool]) -> Callable[[], None]:
        """Ask ``handler`` first about datagrams that are not segments."""
        ...
