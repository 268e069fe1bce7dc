"""The endpoint's shared state: everything its parts read and write, created in one place.

An :class:`~udptcp.aio.endpoint.Endpoint` is one class assembled from parts, bottom up, each
in its own module and each adding behaviour only (as the core's ``Connection`` is built):
:class:`EndpointBase` (here) → :class:`~udptcp.aio.sockio.SocketIO` (reading and sending the
socket, offloads, ICMP errors) → :class:`~udptcp.aio.deadlines.Deadlines` (the one timer,
TIME-WAIT records) → :class:`~udptcp.aio.routing.Routing` (which connection a datagram is
for, stateless replies, traffic that is not TCP) → :class:`~udptcp.aio.passive.PassiveOpens`
(listeners, SYNs, SYN cookies) → :class:`~udptcp.aio.connections.Connections` (active opens,
state changes, forgetting, statistics) → ``Endpoint`` (the socket's life and the loop's
registry). They are parts of one object rather than objects of their own because they share
most of its state (the socket, the connection table, the counters, the loop, whether it is
closed) and because the receive and send paths must not pay a call per datagram to cross
from one to the next. The one piece of state that stands apart, the connection limits'
counts, is an object the endpoint owns (:class:`~udptcp.aio.limits.LimitCounts`).

Methods that a lower part calls and a higher one defines are declared for the type checker
at the end of :class:`EndpointBase`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from udptcp.core.connection import Connection
from udptcp.core.cookies import SynCookies
from udptcp.core.demux import Demux
from udptcp.core.isn import IsnGenerator
from udptcp.core.segment import Segment
from udptcp.core.timerheap import TimerHeap

from . import natkeep, securelink
from .interfaces import Address, ConnectionListener
from .interfaces import ConnectionKey as Key
from .limits import LimitCounts
from .transport import Transport

__all__ = ["EndpointBase"]

logger = logging.getLogger("udptcp")

#: A listener as the endpoint sees it (``server.Listener``).
Listener = ConnectionListener[Transport]
Tracer = Callable[[str, Address, Segment], None]
#: A datagram handler: takes ``(data, address)``, returns True if it took the datagram.
DatagramHandler = Callable[[bytes, Address], bool]
#: The owner of a claimed address, or a route: called with what arrives or must be sent.
Sink = Callable[[bytes, Address], None]
#: What a punching connection decides about a segment from an address it was not yet
#: bound to (see :meth:`Endpoint.add_punch`): deliver it (after relocating), or drop it.
PunchHook = Callable[[Segment, Address], bool]


class EndpointBase:
    """The state of one endpoint, shared by its parts (see the module docstring)."""

    #: Whether ICMP errors are read from the socket's error queue (Linux); the endpoint
    #: sets it when it starts reading the socket.
    recverr: bool

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, *, owns_socket: bool
    ) -> None:
        if sock.type != socket.SOCK_DGRAM:
            raise ValueError(f"A UDP socket was expected, got {sock!r}")
        sock.setblocking(False)
        self.loop = loop
        self.sock = sock
        #: Close the socket when the endpoint closes (False: a caller's socket, left open).
        self.owns_socket = owns_socket
        self.family = sock.family
        self._fd = sock.fileno()
        self._sockname: Address = sock.getsockname()
        try:
            # A connected socket (a client endpoint) hears ICMP errors (docs/architecture.md#icmp-errors).
            self.connected_peer: Address | None = sock.getpeername()
        except OSError:
            self.connected_peer = None
        self.stats: collections.Counter[str] = collections.Counter()
        self._gone_counts: collections.Counter[str] = collections.Counter()
        # Set while linger() waits: any connection's progress wakes it to look again.
        self.linger_waiter: asyncio.Future[None] | None = None
        self.trace: Tracer | None = None
        #: Secure mode on this endpoint, from its first secure connection or listener on.
        self.secure: securelink.SecureLink | None = None
        self.isn = IsnGenerator()
        self.cookies = SynCookies()
        # The connections by 4-tuple, and the closed ones' TIME-WAIT records
        # (udptcp.core.timewait): the routing rules the simulator applies too.
        self._conns: Demux[Transport] = Demux(_connection_of)
        # How much of each connection limit is in use (Connections.account keeps it).
        self._limits = LimitCounts(self.stats)
        #: Another endpoint of this loop whose socket shares this one's port on the wildcard
        #: address (see ``udp_twin``): segments for its connections that arrive here (the
        #: kernel prefers this more specific socket) are handed to it.
        self.fallback: EndpointBase | None = None
        # Source addresses of a wildcard-bound socket, by peer host (local_address_for).
        self._source_addresses: dict[Any, Any] = {}
        # Connections this endpoint opened that are still in SYN-SENT, by peer address:
        # where a datagram that is not a segment may be the answer to a SYN.
        self._opening: dict[Address, list[Transport]] = {}
        self._listeners: dict[int | None, Listener] = {}
        self._refs = 0
        self._closing = False  # close() is running: nothing may re-enter it
        self._closed = False
        # The write path's look at the socket (poll_from_write): set while reading, so it
        # never nests; while it runs, connections deliver their events from call_soon.
        self._reading = False
        self.deferring = False
        #: Largest receive window a connection here may grow to: half the socket's receive
        #: buffer as the kernel reports it (net.core.rmem_max caps the SOCKET_BUFFER asked
        #: for: 208 KiB by default on Linux). A window's datagrams then fit in the buffer
        #: with the kernel's per-datagram overhead (about 64% of a 1472-byte datagram's
        #: charge is data), as Linux TCP's tcp_adv_win_scale kept half its buffer for it.
        #: (Connection.set_window_clamp takes no less than 64 KiB, whatever the buffer.)
        self.window_limit: int | None = None
        try:
            rcvbuf = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        except OSError:
            rcvbuf = 0
        if rcvbuf > 0:
            self.window_limit = rcvbuf // 2
        self._writes_unread = 0
        self._last_read = 0.0
        # Queued datagrams: (data, address, GSO segment size or 0 for one datagram).
        self._sendq: collections.deque[tuple[bytes, Address, int]] = collections.deque()
        #: Whether UDP GSO / GRO are in use on this socket (see ``Config.udp_offload``).
        self.gso = self.gro = False
        # Non-TCP traffic sharing the socket (see udptcp.aio.routing).
        self._handlers: list[DatagramHandler] = []
        self._claimed: dict[Address, Sink] = {}
        self._routes: dict[Address, Sink] = {}
        self._punching: dict[tuple[int, int], PunchHook] = {}
        #: NAT binding maintenance on this socket (``Config.nat_keepalive``, natkeep.py).
        self.nat_keeper: natkeep.BindingKeeper | None = None
        #: When set, every datagram leaves through ``egress(data, addr)`` instead of the
        #: socket (a user-space NAT emulator puts itself there: udptcp.tools.natemu);
        #: what comes back is handed in with ``Endpoint.deliver``.
        self.egress: Sink | None = None
        self._errors_handle: asyncio.Handle | None = None
        # libuv (uvloop) stops watching a descriptor for good the first time poll reports
        # POLLERR for it, which every ICMP error causes: after one, watch it again.
        self._rewatch = not isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
        self._rewatch_handle: asyncio.Handle | None = None
        # Every deadline on this endpoint, under one loop timer: each connection's next
        # one (by transport) and each TIME-WAIT record's end (by 4-tuple; a record whose
        # timer a retransmitted FIN restarted is put back when its old deadline comes).
        self._timers: TimerHeap[Transport | Key] = TimerHeap()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None

    @property
    def sockname(self) -> Address:
        """Local UDP address of the socket."""
        if self._sockname[1] == 0 and not self._closed:
            # An unbound socket passed in is bound by its first send.
            self._sockname = self.sock.getsockname()
        return self._sockname

    @property
    def is_closed(self) -> bool:
        """True once the socket has been closed."""
        return self._closed

    def _guarded(self, transport: Transport, method: Callable[..., Any], *args: Any) -> Any:
        """Run a call into one connection; an exception there must not hurt the others.

        Protocol callbacks are already guarded by the transport, so what lands here is a
        bug in udptcp itself: report it and reset that connection.
        """
        try:
            return method(*args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fault(transport, exc)
            return None

    def _fault(self, transport: Transport, exc: BaseException) -> None:
        """What :meth:`_guarded` does with a call's exception (hot paths inline the try)."""
        try:
            transport.fatal_error(exc, "Fatal error in udptcp connection")
        except Exception:
            logger.exception("%r: could not reset %r", self, transport)
        finally:
            self.forget(transport)

    def _trace(self, direction: str, addr: Address, seg: Segment) -> None:
        assert self.trace is not None
        try:
            self.trace(direction, addr, seg)
        except Exception:
            logger.exception("%r: trace hook failed", self)

    if TYPE_CHECKING:
        # Defined by the parts above (see the module docstring).

        def _on_datagram(
            self,
            data: bytes,
            addr: Address,
            trains: dict[Transport, list[Segment]] | None = None,
            claimed: bool = True,
        ) -> None: ...

        def _on_gro_train(
            self, data: bytes, size: int, addr: Address, trains: dict[Transport, list[Segment]]
        ) -> None: ...

        def _route(
            self,
            seg: Segment,
            addr: Address,
            trains: dict[Transport, list[Segment]] | None,
            size: int | None = None,
        ) -> None: ...

        def _on_syn(
            self, seg: Segment, addr: Address, key: Key, size: int | None, iss: int | None = None
        ) -> None: ...

        def _on_cookie_ack(
            self, seg: Segment, addr: Address, key: Key, size: int | None
        ) -> bool: ...

        def _opened(self, transport: Transport) -> None: ...

        def forget(self, transport: Transport, why: str | None = None) -> None: ...

        def account(self, transport: Transport) -> None: ...

        def has_connection(self, transport: Transport) -> bool: ...

        def _maybe_close(self) -> None: ...

        def poll_from_write(self, now: float, transport: Transport) -> None: ...

        def local_address_for(self, peer: Address) -> Address: ...


def _connection_of(transport: Transport) -> Connection:
    return transport.conn
