"""The endpoint: one UDP socket, many connections, one timer.

See docs/architecture.md#endpoints-and-virtual-ports for how connections share the socket.

An :class:`Endpoint` reads its non-blocking UDP socket itself (``loop.add_reader``, draining
up to :data:`READ_BATCH` datagrams per wake-up; a ``DatagramProtocol`` on the default loop
reads one datagram per loop pass, which is several times slower), decodes each datagram and
hands the segment to the connection it belongs to. Connections are keyed by (remote UDP
address, local virtual port, remote virtual port). A SYN that belongs to no connection goes
to a listener: the one on its exact destination virtual port, else the wildcard one, else
it is answered with RST as a closed TCP port would be.

All connections share one timer: a heap of ``(deadline, counter, transport)`` entries with
lazy invalidation (an entry counts only while it equals the transport's current deadline)
and a single ``loop.call_at`` handle armed at the earliest deadline.

Ownership: an endpoint stays open while it has connections (TIME-WAIT included), listeners
or holders (:meth:`Endpoint.acquire`); when the last of these goes it closes its socket.
:meth:`Endpoint.close` (and :func:`close_endpoints`) close it at once: live connections are
reset and TIME-WAIT connections are dropped silently (docs/architecture.md#closing-and-connection_lost). Shutting the loop down
(``asyncio.run``, ``asyncio.Runner``, ``uvloop.run``: anything that calls
``loop.shutdown_asyncgens()``) closes its endpoints the same way. An endpoint built on a
caller's socket with ``owns_socket=False`` leaves that socket open when it closes (it only
stops reading it and turns UDP GRO off again).

Datagrams that are not TCP segments share the socket (NAT traversal): a STUN
message (RFC 8489 §5: the top two bits zero, the magic cookie 0x2112A442 in bytes 4-7, a
length field that matches the datagram) is told apart *before* decoding and offered to the
handlers added with :meth:`Endpoint.add_datagram_handler`, and so is any datagram that fails
to decode as a segment (an application's own protocol); what no handler takes is counted
(``stun_unhandled``, or ``malformed:<reason>`` as before). :meth:`Endpoint.claim_address`
hands *every* datagram from one address (a TURN server, a rendezvous) to its owner
undecoded, :meth:`Endpoint.set_route` sends what goes to one address through a callable
(a TURN relay), and :meth:`Endpoint.send_datagram` sends an application's own datagram.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import ipaddress
import logging
import os
import random
import socket
import struct
import sys
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, cast

from udptcp.core.amplification import AMPLIFICATION_FACTOR, received_size, sent_size
from udptcp.core.config import PAYLOAD_BUDGET_IPV4, PAYLOAD_BUDGET_IPV6, Config
from udptcp.core.connection import PEER_INPUT_COUNTERS, Connection, State, rst_for
from udptcp.core.cookies import SynCookies, check_ts_echo
from udptcp.core.demux import Demux, Route
from udptcp.core.isn import IsnGenerator
from udptcp.core.segment import ACK, FIN, RST, SYN, MalformedSegment, Segment, decode, encode
from udptcp.core.seq import seq_add
from udptcp.core.stats import ConnectionStats
from udptcp.core.timerheap import TimerHeap
from udptcp.core.timewait import TimeWait

from . import natkeep, observe, securelink, tracing
from .errqueue import (
    ICMP_ERRNOS,
    LOCAL,
    PATH_MTU,
    PORT_UNREACHABLE,
    IcmpError,
    enable_recverr,
    quoted_segment,
    read_errors,
)
from .interfaces import Address, ConnectionListener
from .interfaces import ConnectionKey as Key
from .transport import Transport

if TYPE_CHECKING:
    from udptcp.core.secure import SecureSession

__all__ = ["Address", "Endpoint", "close_endpoints", "open_endpoints"]

logger = logging.getLogger("udptcp")

#: A listener as the endpoint sees it (``server.Listener``).
Listener = ConnectionListener[Transport]
Tracer = Callable[[str, Address, Segment], None]

#: Most datagrams read in one wake-up, so one busy endpoint cannot starve the loop.
READ_BATCH = 256
#: Most segments read before they are handed to their connections: a train ends there
#: (and its ACK goes out) even if the socket has more, about 90 KB at the default size.
TRAIN_MAX = 64
#: recvfrom() size: a whole UDP datagram, whatever the configured budget.
RECV_SIZE = 65535
#: Linux UDP segmentation offload (linux/udp.h; Python's socket module has no names for
#: them): UDP_SEGMENT on send splits one buffer into datagrams of the given size (GSO),
#: UDP_GRO on receive hands over a train of equal-sized datagrams from one sender as one
#: buffer, with the size in a control message.
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
#: Most datagrams and bytes in one GSO send (the kernel's UDP_MAX_SEGMENTS is 64 or more;
#: the whole buffer must fit one IP datagram's 16-bit length).
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65000
_GSO_SIZE = struct.Struct("=H")  # UDP_SEGMENT's value: a u16
_GRO_SIZE = struct.Struct("=i")  # UDP_GRO's control message: an int
_GRO_CMSG_SPACE = socket.CMSG_SPACE(_GRO_SIZE.size)
#: Errors that say GSO cannot work on this socket's path at all (no checksum offload on
#: the device, an old kernel): stop trying it on this endpoint.
_GSO_UNSUPPORTED = {errno.EIO, errno.EOPNOTSUPP, errno.ENOPROTOOPT}
#: Socket buffers asked for on sockets the endpoint creates (the kernel caps them at
#: net.core.rmem_max / wmem_max): a burst on a fast path should queue, not be dropped.
SOCKET_BUFFER = 2 * 1024 * 1024
#: Ephemeral virtual ports (RFC 6335 §6 dynamic range), as a client picks them.
EPHEMERAL_PORTS = (49152, 65535)
#: Transport.write reads the socket itself after this many writes, or this long, without
#: the loop reading it (Endpoint.poll_from_write).
POLL_WRITES = 16
POLL_INTERVAL = 0.001
#: uvloop runs timers with millisecond granularity and may fire one slightly early; a
#: deadline this close to the clock counts as due (the core is told the deadline itself).
TIMER_SLACK = 0.001
#: What a connection counts against (Endpoint.account): nothing, the half-open table of
#: its address, the accepted connections, TIME-WAIT.
_SLOT_NONE, _SLOT_HALF_OPEN, _SLOT_LIVE, _SLOT_TIME_WAIT = range(4)
#: Per-connection counters the endpoint adds to its own ``stats`` when a connection
#: leaves the handshake, so that what the amplification rules held back is visible there.
_HANDSHAKE_COUNTERS = ("amplification_limited", "syn_acks_rate_limited")
#: STUN's magic cookie (RFC 8489 §5), bytes 4-7 of every STUN message.
STUN_MAGIC_COOKIE = b"\x21\x12\xa4\x42"
#: A datagram handler: takes ``(data, address)``, returns True if it took the datagram.
DatagramHandler = Callable[[bytes, Address], bool]
#: The owner of a claimed address, or a route: called with what arrives or must be sent.
Sink = Callable[[bytes, Address], None]
#: What a punching connection decides about a segment from an address it was not yet
#: bound to (see :meth:`Endpoint.add_punch`): deliver it (after relocating), or drop it.
PunchHook = Callable[[Segment, Address], bool]


def is_stun(data: bytes) -> bool:
    """True if ``data`` has the shape of a STUN message (RFC 8489 §5, RFC 7983 §7): the first
    two bits zero, the magic cookie in bytes 4-7, and a body length (a multiple of 4) that
    is exactly the rest of the datagram. A TCP segment matches only if its sequence number
    is the cookie *and* its destination port the length: a peer can forge that, so what a
    STUN handler takes is as hostile as any segment."""
    return (
        len(data) >= 20
        and data[0] < 0x40
        and data[4:8] == STUN_MAGIC_COOKIE
        and (data[2] << 8 | data[3]) == len(data) - 20
        and not data[3] & 3
    )


# One endpoint per socket per loop, so a socket passed twice (``sock=``) is shared: a
# hole-punched socket can carry a server and outgoing connections at once.
_registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, Endpoint]] = (
    weakref.WeakKeyDictionary()
)


# One parked async generator per loop: asyncio.run(), asyncio.Runner, uvloop.run() and
# pytest-asyncio all call loop.shutdown_asyncgens() before closing the loop, which closes it,
# and its ``finally`` closes the loop's endpoints (closing the loop drops TIME-WAIT
# connections silently instead of leaking their sockets).
_shutdown_watchers: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, AsyncGenerator[None, None]
] = weakref.WeakKeyDictionary()


async def _close_on_loop_shutdown() -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        loop = asyncio.get_running_loop()
        try:
            # Closed connections still delivering get their Config.exit_linger first.
            await asyncio.gather(*(endpoint.linger() for endpoint in open_endpoints(loop)))
        finally:
            close_endpoints(loop)


def _watch_loop_shutdown(loop: asyncio.AbstractEventLoop) -> None:
    if loop in _shutdown_watchers:
        return
    watcher = _close_on_loop_shutdown()
    # Run it to its ``yield`` now: its first iteration registers it with the loop (the
    # loop's asyncgen "firstiter" hook), and aclose() then runs the ``finally``.
    step = cast(Coroutine[Any, Any, None], watcher.asend(None))
    try:
        step.send(None)
    except StopIteration:
        pass
    _shutdown_watchers[loop] = watcher


def offload_allowed() -> bool:
    """False when the environment says ``UDPTCP_OFFLOAD=0`` (or off/false/no)."""
    value = os.environ.get("UDPTCP_OFFLOAD", "1").strip().lower()
    return value not in ("0", "off", "false", "no")


def payload_budget(family: int) -> int:
    """Default UDP payload budget for a socket family (docs/architecture.md#wire-format)."""
    return PAYLOAD_BUDGET_IPV6 if family == socket.AF_INET6 else PAYLOAD_BUDGET_IPV4


def open_endpoints(loop: asyncio.AbstractEventLoop | None = None) -> list[Endpoint]:
    """Every endpoint still open on ``loop`` (the running loop by default)."""
    loop = loop or asyncio.get_running_loop()
    return list(_registry.get(loop, {}).values())


def close_endpoints(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Close every endpoint of ``loop`` at once, as closing the loop should.

    Live connections are reset; TIME-WAIT connections are dropped silently.
    """
    for endpoint in open_endpoints(loop):
        endpoint.close()


class Endpoint:
    """One UDP socket and the connections and listeners multiplexed on it.

    Build one with :meth:`for_socket`; the endpoint takes ownership of the socket and closes
    it when it closes. ``stats`` counts datagrams in and out, malformed datagrams per reason
    (``"malformed:<reason>"``), RSTs sent for unknown segments, send errors, ICMP errors
    (``icmp_unreachable``: port unreachable handed to a connection; ``icmp_soft``: other
    ICMP errors handed to one; ``icmp_unmatched``: ICMP errors about no connection of ours;
    ``icmp_path_mtu`` and ``errqueue_local``: errors that are not the peer's, ignored; and
    in :meth:`statistics`, ``icmp_rejected``: ICMP errors a connection dropped because the
    sequence number they quote is not one it has outstanding),
    ``empty_wakeups`` (the socket reported ready with nothing to read: POLLERR), the one
    timer's ``timer_arms``, ``timer_wakeups`` and ``timer_stale`` (wake-ups with nothing
    due), and every limit hit (the limits are in :class:`~udptcp.core.config.Config`):

    * ``refused_max_connections``, ``refused_per_address``: SYNs (or SYN-cookie ACKs)
      answered with RST because ``max_connections`` / ``max_connections_per_address``
      connections were accepted already;
    * ``half_open_per_address``: SYNs beyond ``max_half_open_per_address``, answered by a
      SYN cookie (or dropped without ``syn_cookies``);
    * ``syn_dropped_backlog``: SYNs dropped because the backlog was full and SYN cookies
      are off;
    * ``syn_cookies_sent``, ``syn_cookies_accepted``, ``syn_cookies_rejected``: SYN-ACKs
      sent statelessly, final ACKs that made a connection from one, and ACKs that could
      have answered one (a cookie was made recently) but did not check out;
    * ``amplification_limited``: segments not sent because an address that has not completed
      a handshake would have received more than three times what it sent (stateless
      replies, and the SYN-ACKs and resets of half-open connections);
      ``syn_acks_rate_limited``: duplicate SYNs that got no SYN-ACK of their own;
    * ``time_wait_dropped``: connections forgotten at once instead of entering TIME-WAIT,
      past ``max_time_wait``; ``time_wait_records``: connections that entered TIME-WAIT
      as a small record (:mod:`udptcp.core.timewait`) instead of a whole connection;
      ``time_wait_reopened``: TIME-WAIT 4-tuples a new SYN reopened (RFC 6191).

    Traffic that is not a TCP segment (the module docstring): ``stun_in`` and
    ``stun_unhandled`` (STUN no handler took), ``datagrams_handled`` (non-segments a handler
    took), ``datagrams_claimed`` (from a claimed address), ``datagrams_routed`` and
    ``datagrams_relayed_in`` (through a route, a relay), ``punch_dropped`` and
    ``punch_foreign`` (segments a punching connection refused, from its peer's addresses or
    from elsewhere), ``nat_keepalives_sent`` / ``_answered`` / ``_unanswered``,
    ``nat_mapping_changed`` (binding maintenance), ``turn_dropped``.

    ``trace``, when set, is called with ``("in" | "out", peer address, segment)`` for every
    segment (``Config.trace`` installs a :class:`~udptcp.aio.tracing.EndpointTracer` here,
    which also records state changes).

    ICMP errors reach connections through the socket's error queue on Linux (see
    :mod:`udptcp.aio.errqueue`), whether the socket is connected or not; elsewhere only a
    connected socket hears of an unreachable port, and then for all its connections.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        *,
        offload: bool = True,
        owns_socket: bool = True,
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
        # Connection limits (Endpoint.account keeps these, O(1) per state change; an
        # address's entry goes when its count reaches zero, so the dicts hold at most one
        # entry per live connection). "Address" is the remote IP, whatever its UDP port.
        self._accepted = 0  # passive connections, half-open included, TIME-WAIT not
        self._accepted_by_host: dict[Any, int] = {}
        self._half_open_by_host: dict[Any, int] = {}
        self._half_open = 0
        self._time_wait = 0  # TIME-WAIT records and TIME-WAIT connections kept whole
        #: Another endpoint of this loop whose socket shares this one's port on the wildcard
        #: address (see ``udp_twin``): segments for its connections that arrive here (the
        #: kernel prefers this more specific socket) are handed to it.
        self.fallback: Endpoint | None = None
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
        self._writes_unread = 0
        self._last_read = 0.0
        # Queued datagrams: (data, address, GSO segment size or 0 for one datagram).
        self._sendq: collections.deque[tuple[bytes, Address, int]] = collections.deque()
        #: Whether UDP GSO / GRO are in use on this socket (see ``Config.udp_offload``).
        self.gso = self.gro = False
        if offload and offload_allowed():
            self._enable_offload()
        # Non-TCP traffic sharing the socket (see the module docstring).
        self._handlers: list[DatagramHandler] = []
        self._claimed: dict[Address, Sink] = {}
        self._routes: dict[Address, Sink] = {}
        self._punching: dict[tuple[int, int], PunchHook] = {}
        #: NAT binding maintenance on this socket (``Config.nat_keepalive``, natkeep.py).
        self.nat_keeper: natkeep.BindingKeeper | None = None
        #: When set, every datagram leaves through ``egress(data, addr)`` instead of the
        #: socket (a user-space NAT emulator puts itself there: udptcp.tools.natemu);
        #: what comes back is handed in with :meth:`deliver`.
        self.egress: Sink | None = None
        #: Whether ICMP errors are read from the socket's error queue (Linux).
        self.recverr = enable_recverr(sock)
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
        loop.add_reader(self._fd, self._on_readable)
        _registry.setdefault(loop, {})[self._fd] = self
        _watch_loop_shutdown(loop)

    def set_dont_fragment(self) -> bool:
        """Send with the don't-fragment bit and ignore ICMP "fragmentation needed", so path
        MTU probes (``Config.pmtu_max``) find the path's real size (RFC 8899 §3 needs DF).

        Linux only (IP_MTU_DISCOVER / IPV6_MTU_DISCOVER = IP_PMTUDISC_PROBE); elsewhere it
        does nothing and returns False: probes then travel fragmented, which only means
        the search may settle on a size the path carries in fragments. A datagram too big
        for the local interface fails with EMSGSIZE, is dropped like any lost probe, and
        the search backs off.
        """
        if not sys.platform.startswith("linux"):
            return False
        level, option = (
            (socket.IPPROTO_IPV6, 23) if self.family == socket.AF_INET6 else (socket.IPPROTO_IP, 10)
        )
        try:
            self.sock.setsockopt(level, option, 3)  # *_PMTUDISC_PROBE
        except OSError:
            return False
        return True

    def _enable_offload(self) -> None:
        """Turn on UDP GRO and GSO where the kernel has them (Linux 4.18 / 5.0 and later)."""
        if not sys.platform.startswith("linux") or self.family not in (
            socket.AF_INET,
            socket.AF_INET6,
        ):
            return
        try:
            self.sock.setsockopt(SOL_UDP, UDP_GRO, 1)
            self.gro = True
        except OSError:
            pass
        try:
            self.sock.getsockopt(SOL_UDP, UDP_SEGMENT)
            self.gso = True
        except OSError:
            pass

    @classmethod
    def for_socket(
        cls,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        config: Config | None = None,
        *,
        owns_socket: bool = True,
    ) -> Endpoint:
        """The endpoint on ``sock`` for ``loop``: the existing one, or a new one (whose
        offloads ``config`` decides, and which closes ``sock`` when it closes only if
        ``owns_socket``)."""
        existing = cls.existing(loop, sock)
        if existing is not None:
            return existing
        return cls(
            loop,
            sock,
            offload=config.udp_offload if config is not None else True,
            owns_socket=owns_socket,
        )

    @staticmethod
    def existing(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Endpoint | None:
        """The open endpoint on ``sock`` for ``loop``, if there is one."""
        existing = _registry.get(loop, {}).get(sock.fileno())
        if existing is not None and not existing._closed:
            return existing
        return None

    @property
    def sockname(self) -> Address:
        """Local UDP address of the socket."""
        if self._sockname[1] == 0 and not self._closed:
            # An unbound socket passed in is bound by its first send.
            self._sockname = self.sock.getsockname()
        return self._sockname

    def local_address_for(self, peer: Address) -> Address:
        """The local UDP address datagrams to ``peer`` leave from: ``sockname``, with the
        source address the kernel picks for ``peer`` when the socket is bound to the
        wildcard (a shared client socket), as a connected socket's ``getsockname()`` has
        it. Looked up once per peer host (a connect() on a scratch socket sends nothing)."""
        local = self.sockname
        if local[0] not in _WILDCARDS or len(peer) < 2:
            return local
        cache = self._source_addresses
        host = cache.get(peer[0])
        if host is None:
            try:
                with socket.socket(self.family, socket.SOCK_DGRAM) as probe:
                    probe.connect(peer)
                    host = probe.getsockname()[0]
            except OSError:
                return local
            if len(cache) >= _SOURCE_CACHE:
                cache.clear()
            cache[peer[0]] = host
        return (host, *local[1:])

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._conns)} connections"
        return f"<Endpoint {self.sockname!r} {state}>"

    # ------------------------------------------------------------------ ownership

    @property
    def is_closed(self) -> bool:
        """True once the socket has been closed."""
        return self._closed

    def acquire(self) -> None:
        """Keep the endpoint open until the matching :meth:`release`."""
        self._refs += 1

    def release(self) -> None:
        """Drop a hold; the endpoint closes when nothing else keeps it open."""
        self._refs -= 1
        self._maybe_close()

    def idle_but_for_holds(self, holds: int) -> bool:
        """True if nothing but ``holds`` holders keeps the endpoint open."""
        return (
            self._refs <= holds
            and not self._conns
            and not self._listeners
            and not self._conns.has_records
        )

    def _maybe_close(self) -> None:
        if (
            self._refs <= 0
            and not self._conns
            and not self._listeners
            and not self._conns.has_records
        ):
            self.close()

    def close(self) -> None:
        """Close the socket now: reset live connections, drop TIME-WAIT ones silently."""
        if self._closed or self._closing:
            return
        self._closing = True
        for transport in list(self._conns.values()):
            if transport.conn.state is not State.TIME_WAIT:
                transport.endpoint_closing()  # RST, connection_lost(None) soon
        self._flush_queue()
        observe.endpoint_closed(self)
        self._closed = True
        self._conns.clear()  # TIME-WAIT records included: dropped silently
        # (docs/architecture.md#time-wait)
        self._opening.clear()
        self._listeners.clear()
        self._accepted = self._half_open = self._time_wait = 0
        self._accepted_by_host.clear()
        self._half_open_by_host.clear()
        self._timers.clear()
        self._sendq.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.nat_keeper is not None:
            self.nat_keeper.close()
        self.fallback = None
        self._handlers.clear()
        self._claimed.clear()
        self._routes.clear()
        self._punching.clear()
        for handle in (self._errors_handle, self._rewatch_handle):
            if handle is not None:
                handle.cancel()
        try:
            self.loop.remove_reader(self._fd)
            self.loop.remove_writer(self._fd)
        except (RuntimeError, ValueError, OSError):
            pass  # the loop is already closed
        if self.owns_socket:
            self.sock.close()
        else:
            self._hand_back()
        by_fd = _registry.get(self.loop)
        if by_fd is not None and by_fd.get(self._fd) is self:
            del by_fd[self._fd]

    def _hand_back(self) -> None:
        """Leave a caller's socket as a caller expects to read it: one datagram per read."""
        if self.gro:
            try:
                self.sock.setsockopt(SOL_UDP, UDP_GRO, 0)
            except OSError:
                pass
            self.gro = False

    # ------------------------------------------------------------------ non-TCP datagrams

    def add_datagram_handler(self, handler: DatagramHandler) -> Callable[[], None]:
        """Offer ``handler`` every datagram that is not a TCP segment: STUN messages (told
        apart before decoding) and datagrams that do not decode as a segment. Handlers are
        asked in the order they were added; the first that returns True takes the datagram.
        A handler that raises is logged and counts as not taking it. Returns a function
        that removes the handler."""
        self._handlers.append(handler)

        def remove() -> None:
            if handler in self._handlers:
                self._handlers.remove(handler)

        return remove

    def claim_address(self, addr: Address, sink: Sink) -> Callable[[], None]:
        """Hand every datagram from ``addr`` to ``sink(data, addr)`` undecoded (a TURN
        server's ChannelData looks like anything). Returns a function that releases it."""
        addr = tuple(addr)
        self._claimed[addr] = sink

        def release() -> None:
            if self._claimed.get(addr) is sink:
                del self._claimed[addr]

        return release

    def set_route(self, addr: Address, sink: Sink | None) -> None:
        """Send every datagram addressed to ``addr`` (segments and :meth:`send_datagram`
        alike) through ``sink(data, addr)`` instead of the socket: a peer reached through a
        relay. ``None`` removes the route."""
        addr = tuple(addr)
        if sink is None:
            self._routes.pop(addr, None)
        else:
            self._routes[addr] = sink

    def route_of(self, addr: Address) -> Sink | None:
        """The route set for ``addr``, if any."""
        return self._routes.get(tuple(addr))

    def send_datagram(self, data: bytes, addr: Address) -> None:
        """Send one datagram of the application's own (or STUN) on the socket, queued
        behind segments already waiting, through the route to ``addr`` if one is set."""
        if self._closed:
            return
        route = self._routes.get(addr) if self._routes else None
        if route is not None:
            route(data, addr)
            return
        self._send(data, addr)

    def send_direct(self, data: bytes, addr: Address) -> None:
        """Send one datagram on the socket itself, ignoring routes (what a route sends)."""
        if not self._closed:
            self._send(data, addr)

    def deliver(self, data: bytes, addr: Address) -> None:
        """Take ``data`` as if the socket had received it from ``addr`` (an interposer's
        way in; see ``egress``)."""
        if not self._closed:
            self.stats["datagrams_in"] += 1
            self._on_datagram(data, addr, None)

    def inject(self, data: bytes, addr: Address) -> None:
        """Take ``data`` as if it had arrived from ``addr`` (what a relay unwrapped)."""
        if not self._closed:
            self.stats["datagrams_relayed_in"] += 1
            self._on_datagram(data, addr, None, claimed=False)

    def _offer(self, data: bytes, addr: Address) -> bool:
        for handler in list(self._handlers):
            try:
                if handler(data, addr):
                    return True
            except Exception:
                logger.exception("%r: datagram handler %r failed", self, handler)
        return False

    def _deliver_claimed(self, sink: Sink, data: bytes, addr: Address) -> None:
        self.stats["datagrams_claimed"] += 1
        try:
            sink(data, addr)
        except Exception:
            logger.exception("%r: handler for %r failed", self, addr)

    # ------------------------------------------------------------------ punching

    def add_punch(self, transport: Transport, hook: PunchHook) -> None:
        """Let ``transport`` (registered under a placeholder address) hear segments with its
        virtual ports from any address: ``hook(segment, address)`` decides, and relocates
        the transport (:meth:`relocate`) before returning True to have it delivered.
        Segments it refuses are dropped silently (``punch_dropped``), never answered with a
        reset, so a copy of the peer's SYN that came another way cannot refuse the
        connection. The hook lasts as long as the connection."""
        conn = transport.conn
        self._punching[(conn.local_port, conn.remote_port)] = hook

    def relocate(self, transport: Transport, addr: Address) -> None:
        """Bind ``transport`` to the remote address ``addr`` from now on."""
        addr = tuple(addr)
        old = transport.key
        self._conns.remove(old, transport)
        key = (addr, old[1], old[2])
        other = self._conns.get(key)
        if other is not None and other is not transport:
            raise OSError(errno.EADDRINUSE, f"virtual ports {old[1]} -> {old[2]} to {addr!r}")
        opening = self._opening.get(transport.peer)
        if opening is not None and transport in opening:
            self._opened(transport)  # still in SYN-SENT: listed under its new address
            self._opening.setdefault(addr, []).append(transport)
        transport.relocated(addr)
        if transport.secure_session is not None:
            transport.secure_session.peer = addr  # not a migration: the path is being chosen
        self._conns.add(key, transport)

    # ------------------------------------------------------------------ connections

    def mss_for(self, config: Config) -> int:
        """Data bytes per segment this endpoint accepts for a connection using ``config``."""
        return config.mss_for(payload_budget(self.family))

    def connect(
        self,
        peer: Address,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        config: Config,
        *,
        remote_vport: int,
        local_vport: int | None = None,
        secure: SecureSession | None = None,
    ) -> Transport:
        """Active open towards ``peer``: SYN sent, the transport's ``_waiter`` resolves on
        ESTABLISHED (or fails with the connection's error). ``secure``: a session the
        caller made (a peer connection's, :func:`securelink.peer_session`, with ``config``
        the one made with it), instead of one made from ``config``'s keys."""
        if self._closed:
            raise OSError(errno.EBADF, "udptcp endpoint is closed")
        if local_vport is None:
            local_vport = self._pick_vport(peer, remote_vport)
        key = (peer, local_vport, remote_vport)
        if key in self._conns:
            raise OSError(
                errno.EADDRINUSE,
                f"virtual ports {local_vport} -> {remote_vport} to {peer!r} are already in use",
            )
        reused = self._conns.record(key)
        if reused is not None:
            # An explicit 4-tuple still in TIME-WAIT (a punch tried again): reuse it as
            # Linux's tcp_tw_reuse does, with an ISN beyond the old incarnation's.
            self._drop_time_wait(key)
        session = None
        if securelink.client_secure(config):
            session, config = securelink.client_session(
                self, config, peer, local_vport, remote_vport
            )
        now = self.loop.time()
        iss = self.isn.isn(self._local_id(local_vport), _remote_id(peer, remote_vport), now)
        if reused is not None:
            iss = reused.reopen_iss()
        conn = Connection.connect(
            config,
            local_port=local_vport,
            remote_port=remote_vport,
            iss=iss,
            mss=self.mss_for(config),
            now=now,
        )
        transport = Transport(self, conn, peer, protocol_factory=protocol_factory)
        if config.trace is not None:  # before anything refers to it: opening may fail
            tracing.trace_connection(self, transport, config.trace)
        if secure is not None:
            session = secure
        if session is not None:
            securelink.link_for(self).add(transport, session)
        self._conns.add(key, transport)
        if config.nat_keepalive is not None:
            natkeep.keeper_for(self).track(transport, config.nat_keepalive)
        elif config.path_keepalive is not None:
            natkeep.keeper_for(self).keep_path(peer, config.path_keepalive)
        self._opening.setdefault(peer, []).append(transport)
        transport.pump()
        return transport

    def _opened(self, transport: Transport) -> None:
        """``transport`` left SYN-SENT (to SYN-RECEIVED, ESTABLISHED or CLOSED)."""
        opening = self._opening.get(transport.peer)
        if opening is not None and transport in opening:
            opening.remove(transport)
            if not opening:
                del self._opening[transport.peer]

    def _pick_vport(self, peer: Address, remote_vport: int) -> int:
        low, high = EPHEMERAL_PORTS
        conns = self._conns
        for _ in range(64):
            # A free 4-tuple is all it takes; looking it up keeps this O(1) however many
            # connections share the socket.
            port = random.randint(low, high)
            key = (peer, port, remote_vport)
            if not conns.in_use(key):
                return port
        used = {k[1] for k in conns if k[0] == peer and k[2] == remote_vport}
        used.update(k[1] for k in conns.records() if k[0] == peer and k[2] == remote_vport)
        free = [p for p in range(low, high + 1) if p not in used]
        if not free:
            raise OSError(errno.EADDRNOTAVAIL, f"no free virtual port towards {peer!r}")
        return random.choice(free)

    def _local_id(self, vport: int) -> tuple[Any, ...]:
        return (self.sockname[0], self.sockname[1], vport)

    def forget(self, transport: Transport, why: str | None = None) -> None:
        """Remove a connection that reached CLOSED (or is being replaced; ``why`` says how
        it ended when it did not reach CLOSED)."""
        if self._conns.remove(transport.key, transport):
            transport.deadline = None
            self._timers.cancel(transport)
            if self._punching:
                self._punching.pop((transport.key[1], transport.key[2]), None)
            if self.secure is not None:
                self.secure.forget(transport)
            counters = transport.conn.stats_counters
            for name in PEER_INPUT_COUNTERS:
                self._gone_counts[name] += counters.get(name, 0)
            observe.forgotten(self, transport, why)
            self._set_slot(transport, _SLOT_NONE)
            self._opened(transport)
            self._maybe_close()

    def _lingering(self, since: float, now: float) -> list[Transport]:
        """Connections the application closed that still have data or a FIN to deliver,
        within their ``exit_linger`` of ``since``."""
        return [
            t
            for t in self._conns.values()
            if t.is_closing()
            and t.conn.state in _DELIVERING
            and now < since + t.conn.config.exit_linger
        ]

    async def linger(self) -> None:
        """Wait until the connections the application closed have delivered everything
        (each for at most its ``Config.exit_linger``); the loop's shutdown calls this
        before :meth:`close`."""
        loop = self.loop
        since = loop.time()
        while not self._closed:
            now = loop.time()
            pending = self._lingering(since, now)
            if not pending:
                return
            until = min(since + t.conn.config.exit_linger for t in pending)
            waiter = self.linger_waiter = loop.create_future()
            try:
                await asyncio.wait_for(waiter, until - now)
            except asyncio.TimeoutError:
                pass
            finally:
                self.linger_waiter = None

    def statistics(self) -> dict[str, int]:
        """The endpoint's counters (``stats``) plus, under the same names as a connection's
        own, the peer-input counters (:data:`PEER_INPUT_COUNTERS`: clamped MSS values,
        challenge and suppressed ACKs, dropped segments, limit hits) totalled over every
        connection this endpoint has had. Computed on call."""
        totals = collections.Counter(self._gone_counts)
        for transport in self._conns.values():
            counters = transport.conn.stats_counters
            for name in PEER_INPUT_COUNTERS:
                totals[name] += counters.get(name, 0)
        out = dict(self.stats)
        out.update(totals)
        return out

    def account(self, transport: Transport) -> None:
        """The connection changed state: move it between the limits' counts.

        Called by the transport whenever it sees a state it has not accounted for. A
        connection entering TIME-WAIT beyond ``max_time_wait`` is forgotten at once (as
        Linux does past ``tcp_max_tw_buckets``); its application was told it closed already.
        """
        state = transport.conn.state
        transport.accounted_state = state
        observe.state_changed(self, transport)
        if state is not State.SYN_SENT and transport.listener is None:
            self._opened(transport)
        if not self._conns.holds(transport.key, transport):
            return
        if state is State.TIME_WAIT:
            slot = _SLOT_TIME_WAIT
        elif transport.listener is None or state is State.CLOSED:
            slot = _SLOT_NONE
        elif state is State.SYN_RECEIVED:
            slot = _SLOT_HALF_OPEN
        else:
            slot = _SLOT_LIVE
        if slot == transport.slot:
            return
        if slot == _SLOT_TIME_WAIT and self._time_wait >= transport.conn.config.max_time_wait:
            self.stats["time_wait_dropped"] += 1
            limit = transport.conn.config.max_time_wait
            observe.limit_hit("time_wait_dropped", observe._addr(transport.peer), limit)
            self.forget(transport, "dropped (max_time_wait reached)")
            return
        if (
            slot == _SLOT_TIME_WAIT
            and transport.secure_session is None
            and transport.peer not in self._routes
        ):
            self._keep_time_wait(transport)
            return
        self._set_slot(transport, slot)

    # ------------------------------------------------------------------ TIME-WAIT records

    def _keep_time_wait(self, transport: Transport) -> None:
        """Replace a connection that entered TIME-WAIT by its small record: the endpoint
        lets go of the Connection, its buffers and logs (the application was told it
        closed already). Secure connections (their answers are sealed) and relayed ones
        stay whole."""
        key = transport.key
        record = TimeWait.from_connection(transport.conn, self.loop.time())
        self._conns.add_record(key, record)
        self._time_wait += 1
        self.stats["time_wait_records"] += 1
        self._timers.schedule(key, record.deadline)
        if self._timer_when is None or record.deadline < self._timer_when:
            self._arm(record.deadline)
        self.forget(transport)

    def _drop_time_wait(self, key: Key) -> None:
        if self._conns.remove_record(key) is not None:
            self._time_wait -= 1
            self._timers.cancel(key)

    def _time_wait_due(self, key: Key, now: float) -> None:
        """The TIME-WAIT record under ``key`` reached its deadline: forget it once its 2 MSL
        are over (§3.10.8)."""
        record = self._conns.record(key)
        if record is None:
            return  # reopened, reused or dropped (its deadline is cancelled then: a guard)
        if record.deadline > now + TIMER_SLACK:
            self._timers.schedule(key, record.deadline)  # a retransmitted FIN restarted it
            return
        self._conns.remove_record(key)
        self._time_wait -= 1

    def _time_wait_segment(
        self, route: Route, key: Key, seg: Segment, addr: Address, size: int | None
    ) -> bool:
        """Answer ``seg`` from the TIME-WAIT record of its 4-tuple (``route`` says whether it
        reopens the 4-tuple); False if the record turned out to be expired (it is dropped;
        the segment meets a closed port)."""
        record = self._conns.record(key)
        assert record is not None
        now = self.loop.time()
        if record.expired(now):
            self._drop_time_wait(key)
            return False
        if route is Route.REOPEN_RECORD:
            # A new incarnation reopens the 4-tuple (RFC 9293 §3.10.7.4, RFC 6191), its ISN
            # beyond everything the old one sent.
            self.stats["time_wait_reopened"] += 1
            self._drop_time_wait(key)
            self._on_syn(seg, addr, key, size, iss=record.reopen_iss())
            self._maybe_close()
            return True
        reply = record.receive(seg, now, self._gone_counts)
        if reply is not None:
            self.transmit(addr, [reply])
        return True

    def _set_slot(self, transport: Transport, slot: int) -> None:
        old = transport.slot
        if old == slot:
            return
        transport.slot = slot
        host = transport.peer[0]
        if old == _SLOT_HALF_OPEN:
            self._half_open -= 1
            _decrement(self._half_open_by_host, host)
            counters = transport.conn.stats_counters
            for name in _HANDSHAKE_COUNTERS:
                if counters[name]:
                    self.stats[name] += counters[name]
        elif old == _SLOT_TIME_WAIT:
            self._time_wait -= 1
        if old in (_SLOT_HALF_OPEN, _SLOT_LIVE) and slot not in (_SLOT_HALF_OPEN, _SLOT_LIVE):
            self._accepted -= 1
            _decrement(self._accepted_by_host, host)
        if slot in (_SLOT_HALF_OPEN, _SLOT_LIVE) and old not in (_SLOT_HALF_OPEN, _SLOT_LIVE):
            self._accepted += 1
            self._accepted_by_host[host] = self._accepted_by_host.get(host, 0) + 1
        if slot == _SLOT_HALF_OPEN:
            self._half_open += 1
            self._half_open_by_host[host] = self._half_open_by_host.get(host, 0) + 1
        elif slot == _SLOT_TIME_WAIT:
            self._time_wait += 1

    def limits(self) -> dict[str, int]:
        """How much of each limit is in use now: accepted connections (half-open
        included), half-open ones, TIME-WAIT ones, and the remote addresses counted."""
        return {
            "accepted": self._accepted,
            "half_open": self._half_open,
            "time_wait": self._time_wait,
            "addresses": len(self._accepted_by_host),
        }

    def connections(self) -> list[Transport]:
        """Transports of the connections on this endpoint. A connection in TIME-WAIT is
        among them only in secure mode (or through a relay): the others are kept as
        records (:meth:`time_waits`)."""
        return list(self._conns.values())

    def connection_stats(self) -> list[ConnectionStats]:
        """:class:`~udptcp.core.stats.ConnectionStats` of every connection on this endpoint
        (TIME-WAIT records excluded: they keep no statistics; an ``ss -ti`` of the endpoint), computed on call."""
        return [transport.stats() for transport in self._conns.values()]

    def has_connection(self, transport: Transport) -> bool:
        """True while ``transport`` is the connection this endpoint routes its 4-tuple to
        (not yet forgotten, nor replaced by a new incarnation)."""
        return self._conns.holds(transport.key, transport)

    def time_waits(self) -> dict[Key, TimeWait]:
        """The TIME-WAIT records on this endpoint, by 4-tuple (a copy)."""
        return self._conns.records()

    # ------------------------------------------------------------------ listeners

    def add_listener(self, vport: int | None, listener: Listener) -> None:
        """Accept SYNs for ``vport`` (``None``: any virtual port no other listener has)."""
        if self._closed:
            raise OSError(errno.EBADF, "udptcp endpoint is closed")
        if vport in self._listeners:
            where = "any virtual port" if vport is None else f"virtual port {vport}"
            raise OSError(errno.EADDRINUSE, f"{self.sockname!r} already listens on {where}")
        self._listeners[vport] = listener

    @property
    def has_listeners(self) -> bool:
        """True while a server listens on this endpoint."""
        return bool(self._listeners)

    def remove_listener(self, vport: int | None, listener: Listener) -> None:
        """Stop accepting SYNs for ``vport``; existing connections are not touched."""
        if self._listeners.get(vport) is listener:
            del self._listeners[vport]

    # ------------------------------------------------------------------ receiving

    def _on_readable(self) -> None:
        """Read until the socket is empty (at most READ_BATCH reads), then hand each
        connection the train of segments it got, in arrival order."""
        trains: dict[Transport, list[Segment]] = {}
        self._reading = True
        self._writes_unread = 0
        self._last_read = self.loop.time()
        try:
            try:
                datagrams = self._read(trains)
            finally:
                self._deliver_trains(trains)
            if datagrams == 0 and not self._closed and not self.deferring:
                self.stats["empty_wakeups"] += 1
                # Woken with nothing to read: poll reported POLLERR for an error queue that
                # holds something (a local error, or an ICMP error whose pending errno a
                # send took). Left there it would wake us again at once, forever.
                self._read_errors()
                self._watch_again_soon()
        finally:
            self._reading = False

    def poll_from_write(self, now: float, transport: Transport) -> None:
        """Called by ``Transport.write``: if the loop has not read the socket for
        :data:`POLL_WRITES` writes or :data:`POLL_INTERVAL` seconds, read it now.

        A program that writes in a loop without yielding would otherwise learn of a peer's
        RST (or an ICMP error) only when it yields, thousands of writes later; a kernel TCP
        socket fails its next send. Segments are processed at once, so the connection is
        closing before ``write()`` returns; protocol callbacks still come from ``call_soon``
        (asyncio never calls a protocol from inside ``write()``). Costs one non-blocking
        ``recvfrom`` that finds nothing, at most once per 16 writes or per millisecond.

        When the peer is an endpoint of this same loop (a client and its server in one
        process, as in test suites), that endpoint is read too: the kernel would answer
        for a closed socket on its own, udptcp only when the peer's endpoint reads.
        """
        self._writes_unread += 1
        if self._reading or self._closed:
            return
        if self._writes_unread < POLL_WRITES and now - self._last_read < POLL_INTERVAL:
            return
        # The peer first: what it answers to this write is then read at once.
        peer = self._local_peer(transport)
        if peer is not None and peer is not self and not peer._reading and not peer._closed:
            peer._poll()
        self._poll()

    def _poll(self) -> None:
        self.deferring = True
        try:
            self._on_readable()
        finally:
            self.deferring = False

    def _local_peer(self, transport: Transport) -> Endpoint | None:
        """The endpoint of this loop that the transport's peer address reaches, if the peer
        is in this process (looked for once per connection, on a loopback peer only)."""
        found = transport.local_peer
        if found is False:
            found = None
            if _is_loopback(transport.peer[0]):
                for endpoint in open_endpoints(self.loop):
                    if endpoint.serves(transport.peer):
                        found = endpoint
                        break
            transport.local_peer = found
        return cast("Endpoint | None", found)

    def serves(self, addr: Address) -> bool:
        """True if datagrams sent to ``addr`` reach this endpoint's socket."""
        if self._closed or len(addr) < 2:
            return False
        host, port = self.sockname[:2]
        return port == addr[1] and host in (addr[0], "0.0.0.0", "::")

    def _deliver_trains(self, trains: dict[Transport, list[Segment]]) -> None:
        for transport, segments in trains.items():
            if self._closed:
                break
            self._deliver_train(transport, segments)
        trains.clear()

    def _read(self, trains: dict[Transport, list[Segment]]) -> int:
        """Read up to READ_BATCH times; return how many datagrams (or errors) came."""
        sock = self.sock
        gro = self.gro
        pending = 0  # segments read and not yet delivered
        for reads in range(READ_BATCH):
            try:
                if gro:
                    data, ancdata, _flags, addr = sock.recvmsg(RECV_SIZE, _GRO_CMSG_SPACE)
                else:
                    data, addr = sock.recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return reads
            except OSError as exc:
                if self._closed:
                    return reads
                if exc.errno in ICMP_ERRNOS or isinstance(exc, ConnectionResetError):
                    # An ICMP error's pending errno (Windows reports port unreachable as
                    # a reset): the details are in the error queue.
                    self._on_pending_error()
                    self._watch_again_soon()
                    if self._closed:
                        return reads
                    continue
                self.stats["recv_errors"] += 1
                logger.debug("%r: recvfrom failed: %s", self, exc)
                return reads
            size = 0
            if gro and ancdata:
                for level, kind, value in ancdata:
                    if level == SOL_UDP and kind == UDP_GRO and len(value) >= _GRO_SIZE.size:
                        size = _GRO_SIZE.unpack_from(value)[0]
            if 0 < size < len(data):
                # A GRO train: datagrams of ``size`` bytes from one sender, the last one
                # possibly shorter; each is one segment, as if read one by one.
                count = -(-len(data) // size)
                self.stats["gro_trains"] += 1
                self.stats["datagrams_in"] += count
                for offset in range(0, len(data), size):
                    self._on_datagram(data[offset : offset + size], addr, trains)
                pending += count
            else:
                self.stats["datagrams_in"] += 1
                self._on_datagram(data, addr, trains)
                pending += 1
            if self._closed:
                return reads + 1
            if pending >= TRAIN_MAX:
                # Deliver (and so acknowledge) before reading on: a sender must hear
                # from us well within its loss-probe timeout, however long the burst.
                self._deliver_trains(trains)
                pending = 0
        return READ_BATCH

    def _deliver_train(self, transport: Transport, segments: list[Segment]) -> None:
        rest = segments
        if self._conns.holds(transport.key, transport):
            taken = self._guarded(transport, transport.segments_received, segments)
            rest = segments[taken or len(segments) :]
        # What came after the connection closed goes where it would have gone alone
        # (a reset from the closed port, or a new connection for a SYN).
        for seg in rest:
            self._route(seg, transport.peer, None)

    def _on_datagram(
        self,
        data: bytes,
        addr: Address,
        trains: dict[Transport, list[Segment]] | None = None,
        claimed: bool = True,
    ) -> None:
        """Decode one datagram and route its segment: into ``trains`` for a connection
        (delivered after the read burst), or at once (a SYN, a reset for a closed port).
        Non-TCP datagrams go to their handlers first (see the module docstring)."""
        if claimed and self._claimed:
            sink = self._claimed.get(addr)
            if sink is not None:
                self._deliver_claimed(sink, data, addr)
                return
        if data[4:8] == STUN_MAGIC_COOKIE and is_stun(data):
            # RFC 8489 §5 / RFC 7983: STUN is told apart before any TCP decoding.
            self.stats["stun_in"] += 1
            if not self._offer(data, addr):
                self.stats["stun_unhandled"] += 1
            return
        if self.secure is not None and self.secure.on_datagram(data, addr, trains):
            return  # a secure connection's: authenticated (or dropped) before decoding
        try:
            seg = decode(data)
        except MalformedSegment as exc:
            if self._handlers and self._offer(data, addr):
                self.stats["datagrams_handled"] += 1
                return
            self.stats["malformed"] += 1
            self.stats["malformed:" + exc.reason] += 1
            opening = self._opening.get(addr)
            if opening:
                # Perhaps the answer of a UDP service that is not udptcp to our SYN.
                now = self.loop.time()
                for transport in list(opening):
                    self._guarded(transport, transport.foreign_datagram, now)
            return
        if self.trace is not None:
            self._trace("in", addr, seg)
        self._route(seg, addr, trains, len(data))

    def _route(
        self,
        seg: Segment,
        addr: Address,
        trains: dict[Transport, list[Segment]] | None,
        size: int | None = None,
    ) -> None:
        """Hand ``seg`` to its connection, or answer it here. ``size`` is the datagram's
        (for the amplification limit; unknown for a segment routed again). Where it goes is
        :class:`~udptcp.core.demux.Demux`'s decision, as in the simulator."""
        conns = self._conns
        is_syn = seg.flags & (SYN | ACK | RST) == SYN
        if is_syn and trains and not seg.flags & FIN:
            # A SYN for a known 4-tuple: what came before it goes first (that train may
            # close the connection, or leave it in TIME-WAIT for the SYN to reopen).
            known = conns.get((addr, seg.dst_port, seg.src_port))
            if known is not None:
                pending = trains.pop(known, None)
                if pending:
                    self._deliver_train(known, pending)
        route, transport, key = conns.route(seg, addr)
        if transport is not None and route is Route.CONNECTION:
            if trains is None or is_syn:
                self._guarded(transport, transport.segment_received, seg)
            else:
                trains.setdefault(transport, []).append(seg)
            return
        if route is Route.RECORD or route is Route.REOPEN_RECORD:
            if self._time_wait_segment(route, key, seg, addr, size):
                return
            route, transport, key = conns.route(seg, addr)  # the record had expired
        if route is Route.SYN_FIN:
            # No stack opens a connection with a FIN (T/TCP, which did, is historic);
            # scanners do. Dropped, as Linux drops it, and counted.
            self.stats["dropped_syn_fin"] += 1
            return
        if transport is not None and route is Route.REOPEN:
            # A new incarnation reopens the 4-tuple (RFC 9293 §3.10.7.4, RFC 6191), its ISN
            # beyond everything the old one sent.
            self.stats["time_wait_reopened"] += 1
            self.forget(transport, "reopened by a new SYN")
            self._on_syn(seg, addr, key, size, iss=transport.conn.reopen_iss())
            return
        # No connection (nor record) here: another endpoint's, a punching connection's,
        # or nobody's.
        if self.fallback is not None:
            other = self.fallback
            if other.is_closed:
                self.fallback = None
            elif other._conns.in_use(key):
                other._route(seg, addr, None, size)
                return
        if self._punching:
            hook = self._punching.get((seg.dst_port, seg.src_port))
            if hook is not None:
                # A punching connection's peer, from an address it is not bound to (yet).
                punched = conns.get(key) if hook(seg, addr) else None
                if punched is None:
                    self.stats["punch_dropped"] += 1
                    return
                if punched.secure_session is not None:
                    # A secure peer connection's handshake rules come first.
                    assert self.secure is not None
                    opened = self.secure.open_punched(punched, seg, addr)
                    if opened is None:
                        return
                    seg = opened
                self._route(seg, addr, trains, size)  # now bound to ``addr``: its own
                return
        if transport is not None and route is Route.OWN_SYN:
            # One of our own SYNs, echoed back with its ports as we sent them: that
            # connection learns it is talking to an echo service (with equal ports the
            # echo reaches it as its own 4-tuple's).
            self._guarded(transport, transport.segment_received, seg)
            return
        if route is Route.SYN:
            self._on_syn(seg, addr, key, size)
            return
        if seg.flags & (SYN | ACK | RST) == ACK and self._on_cookie_ack(seg, addr, key, size):
            return
        self._reply_rst(seg, addr, size)

    def _listener_for(self, seg: Segment) -> Listener | None:
        listener = self._listeners.get(seg.dst_port) or self._listeners.get(None)
        return listener if listener is not None and listener.serving else None

    def _on_syn(
        self, seg: Segment, addr: Address, key: Key, size: int | None, iss: int | None = None
    ) -> None:
        """A SYN for no connection: refuse it, answer it with a cookie, or open a half-open
        connection (with ``iss`` when it reopens a TIME-WAIT 4-tuple)."""
        listener = self._listener_for(seg)
        if listener is None:
            self._reply_rst(seg, addr, size)  # a closed port (RFC 9293 §3.10.7.1)
            return
        config = listener.config
        host = addr[0]
        if self._refused(config, host):
            # RST, as a full Linux listener with syncookies does not do but a server
            # refusing a client does: the client learns at once instead of after its SYN
            # retries, and a forged SYN earns its victim one RST no larger than the SYN.
            self._reply_rst(seg, addr, size)
            return
        now = self.loop.time()
        over_address = self._half_open_by_host.get(host, 0) >= config.max_half_open_per_address
        if over_address or listener.pending >= listener.backlog:
            if over_address:
                self.stats["half_open_per_address"] += 1
                limit = config.max_half_open_per_address
                observe.limit_hit("half_open_per_address", host, limit)
            if config.syn_cookies and securelink.cookie_allowed(config, seg):
                self._send_cookie(seg, addr, config, now, size)
            elif not over_address:
                # Like Linux with a full queue and no cookies: drop (no RST, which would
                # fail a client that a SYN retry a second later might get through).
                self.stats["syn_dropped_backlog"] += 1
                observe.limit_hit("syn_dropped_backlog", observe._addr(addr), listener.backlog)
            return
        attach = None
        wire_extra = (0, 0)
        if securelink.server_secure(config) or (seg.options is not None and seg.options.unknown):
            # Secure mode: an offer to accept or decline, or a plain SYN to refuse.
            accepted = securelink.accept_syn(self, config, seg, addr, size)
            if accepted is None:
                return
            seg, config, attach, wire_extra = accepted
        if iss is None:
            iss = self.isn.isn(self._local_id(seg.dst_port), _remote_id(addr, seg.src_port), now)
        conn = Connection.accept(
            config,
            seg,
            iss=iss,
            mss=self.mss_for(config),
            now=now,
            received=size,
            wire_extra=wire_extra,
        )
        transport = Transport(self, conn, addr, listener=listener)
        if attach is not None:
            attach(transport)
        listener.add_pending(transport)
        self._conns.add(key, transport)
        if config.nat_keepalive is not None:
            natkeep.keeper_for(self).track(transport, config.nat_keepalive)
        if config.trace is not None:
            tracing.trace_connection(self, transport, config.trace, (seg, addr))
        self._guarded(transport, transport.pump)

    def _refused(self, config: Config, host: Any) -> bool:
        """True (and counted) when a new connection from ``host`` would break a limit."""
        if self._accepted_by_host.get(host, 0) >= config.max_connections_per_address:
            self.stats["refused_per_address"] += 1
            limit = config.max_connections_per_address
            observe.limit_hit("refused_per_address", host, limit)
            return True
        if self._accepted >= config.max_connections:
            self.stats["refused_max_connections"] += 1
            observe.limit_hit("refused_max_connections", host, config.max_connections)
            return True
        return False

    def _send_cookie(
        self, seg: Segment, addr: Address, config: Config, now: float, size: int | None
    ) -> None:
        """Answer ``seg`` with a SYN cookie's SYN-ACK and forget it (RFC 4987 §3.6)."""
        opts = seg.options
        peer_mss = opts.mss if opts is not None and opts.mss else 536  # RFC 9293 §3.7.1
        cookie = self.cookies.make(
            _cookie_peer(addr), seg.dst_port, seg.src_port, seg.seq, peer_mss, now
        )
        syn_ack = Connection.cookie_syn_ack(
            config, seg, iss=cookie, mss=self.mss_for(config), now=now
        )
        if self._send_stateless(addr, syn_ack, seg, size):
            self.stats["syn_cookies_sent"] += 1
            backlog = self._listener_for(seg)
            limit = backlog.backlog if backlog is not None else 0
            observe.limit_hit("syn_cookies_sent", observe._addr(addr), limit)

    def _on_cookie_ack(self, seg: Segment, addr: Address, key: Key, size: int | None) -> bool:
        """A bare ACK for no connection: if it completes a SYN cookie's handshake, make the
        connection and return True. False: it is a stray segment (answered with RST)."""
        now = self.loop.time()
        if not self.cookies.recently_made(now):
            return False
        listener = self._listener_for(seg)
        if listener is None or not listener.config.syn_cookies:
            return False
        config = listener.config
        iss = seq_add(seg.ack, -1)
        peer_mss = self.cookies.check(
            _cookie_peer(addr), seg.dst_port, seg.src_port, seq_add(seg.seq, -1), iss, now
        )
        wscale: int | None = None
        sack = False
        ts = seg.options.timestamps if seg.options is not None else None
        if peer_mss is not None and ts is not None and config.timestamps:
            # The window-scale and SACK choices come back in the TSecr (RFC 7323 says a
            # peer echoes our TSval); one that cannot be our cookie's TSval is refused.
            choices = check_ts_echo(ts[1], iss, now)
            if choices is None:
                peer_mss = None
            else:
                wscale, sack = choices
        if peer_mss is None:
            self.stats["syn_cookies_rejected"] += 1
            return False
        if self._refused(config, addr[0]):
            self._reply_rst(seg, addr, size)
            return True
        conn = Connection.from_cookie(
            config,
            seg,
            iss=iss,
            mss=self.mss_for(config),
            peer_mss=peer_mss,
            wscale=wscale,
            sack=sack,
            now=now,
        )
        self.stats["syn_cookies_accepted"] += 1
        transport = Transport(self, conn, addr, listener=listener)
        self._conns.add(key, transport)
        if config.trace is not None:
            tracing.trace_connection(self, transport, config.trace, (seg, addr))
        self._guarded(transport, transport.pump)
        return True

    def _reply_rst(self, seg: Segment, addr: Address, size: int | None = None) -> None:
        rst = rst_for(seg)
        if rst is not None and self._send_stateless(addr, rst, seg, size):
            self.stats["rst_sent"] += 1

    def _send_stateless(
        self, addr: Address, reply: Segment, cause: Segment, size: int | None
    ) -> bool:
        """Send a reply that no connection accounts for, if it is at most three times the
        datagram that caused it (RFC 9000 §8.1's rule: the address is unproven)."""
        received = size if size is not None else received_size(cause)
        if sent_size(reply) > AMPLIFICATION_FACTOR * received:
            self.stats["amplification_limited"] += 1
            limit = AMPLIFICATION_FACTOR
            observe.limit_hit("amplification_limited", observe._addr(addr), limit)
            return False
        self.transmit(addr, [reply])
        return True

    # ------------------------------------------------------------------ ICMP errors

    def _on_pending_error(self) -> None:
        """A recv or send failed with an ICMP error's errno: find out what it was about."""
        if self.recverr:
            self._read_errors()
        elif self.connected_peer is not None:
            # No error queue: the kernel says only that the connected peer's port is
            # unreachable, not about which datagram.
            self.stats["icmp_unreachable"] += 1
            peer = self.connected_peer
            now = self.loop.time()
            for transport in list(self._conns.values()):
                if transport.peer == peer:
                    self._guarded(transport, transport.icmp_unreachable, now, None)
        else:
            self.stats["icmp_unmatched"] += 1

    def _pending_error_soon(self) -> None:
        """As :meth:`_on_pending_error`, from a fresh loop callback: a send fails inside
        some connection's processing, which must not be re-entered."""
        if self._errors_handle is None and not self._closed:
            self._errors_handle = self.loop.call_soon(self._on_pending_error_soon)

    def _on_pending_error_soon(self) -> None:
        self._errors_handle = None
        if not self._closed:
            self._on_pending_error()
            self._watch_again_soon()

    def _read_errors(self) -> None:
        """Drain the socket's error queue; hand each ICMP error to its connection."""
        if not self.recverr or self._closed:
            return
        errors = read_errors(self.sock, READ_BATCH)
        if errors:
            self._watch_again_soon()
        for error in errors:
            self._on_icmp_error(error)
            if self._closed:
                return

    def _on_icmp_error(self, error: IcmpError) -> None:
        kind = error.kind
        if kind == LOCAL:
            self.stats["errqueue_local"] += 1  # e.g. EMSGSIZE: the send said so already
            return
        if kind == PATH_MTU:
            self.stats["icmp_path_mtu"] += 1  # probing finds the size (RFC 8899)
            return
        quoted = quoted_segment(error.quote)
        transport = None
        if quoted is not None:
            # Our own segment, quoted: its source port is ours, its destination the peer's.
            src, dst, seq = quoted
            transport = self._conns.get((error.address, src, dst))
        if transport is None:
            self.stats["icmp_unmatched"] += 1
            return
        now = self.loop.time()
        if kind == PORT_UNREACHABLE:
            self.stats["icmp_unreachable"] += 1
            self._guarded(transport, transport.icmp_unreachable, now, seq)
        else:
            self.stats["icmp_soft"] += 1
            self._guarded(transport, transport.icmp_soft_error, now, kind, seq)

    def _watch_again_soon(self) -> None:
        """After POLLERR, re-register the socket with loops that drop it then (uvloop)."""
        if self._rewatch and self._rewatch_handle is None and not self._closed:
            self._rewatch_handle = self.loop.call_soon(self._watch_again)

    def _watch_again(self) -> None:
        self._rewatch_handle = None
        if self._closed:
            return
        loop, fd = self.loop, self._fd
        loop.remove_reader(fd)
        loop.add_reader(fd, self._on_readable)
        if self._sendq:
            loop.remove_writer(fd)
            loop.add_writer(fd, self._on_writable)

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
            try:
                transport.fatal_error(exc, "Fatal error in udptcp connection")
            except Exception:
                logger.exception("%r: could not reset %r", self, transport)
            finally:
                self.forget(transport)

    # ------------------------------------------------------------------ sending

    def transmit(
        self,
        addr: Address,
        segments: Sequence[Segment],
        seal: Callable[[Segment], bytes] | None = None,
    ) -> None:
        """Encode and send ``segments`` to ``addr``, queueing what the kernel will not take.

        ``seal`` replaces :func:`encode` for a secure connection. Runs of equal-sized
        datagrams go out as one GSO send where the socket has it. Our own segments are
        never dropped for lack of socket buffer
        (docs/architecture.md#back-pressure).
        """
        if self._closed:
            return
        trace = self.trace
        if trace is not None:
            for seg in segments:
                self._trace("out", addr, seg)
        to_bytes = encode if seal is None else seal
        if self._routes:
            route = self._routes.get(addr)
            if route is not None:
                self.stats["datagrams_routed"] += len(segments)
                for seg in segments:
                    route(to_bytes(seg), addr)
                return
        if not self.gso or len(segments) == 1:
            for seg in segments:
                self._send(to_bytes(seg), addr)
            return
        datagrams = [to_bytes(seg) for seg in segments]
        i, n = 0, len(datagrams)
        while i < n:
            # A GSO run: datagrams of one size, the last of them possibly shorter.
            size = len(datagrams[i])
            j = i + 1
            limit = min(n, i + GSO_MAX_SEGMENTS, i + GSO_MAX_BYTES // size)
            while j < limit and len(datagrams[j]) == size:
                j += 1
            if j < limit and len(datagrams[j]) < size:
                j += 1  # a shorter one may end the run
            if j - i == 1:
                self._send(datagrams[i], addr)
            else:
                self._send(b"".join(datagrams[i:j]), addr, size, j - i)
            i = j

    def _send(self, data: bytes, addr: Address, gso: int = 0, count: int = 1) -> None:
        """Send one datagram, or with ``gso`` a run of ``count`` datagrams of that size."""
        self.stats["datagrams_out"] += count
        if self.egress is not None:
            for offset in range(0, len(data), gso or len(data) or 1):
                self.egress(data[offset : offset + gso] if gso else data, addr)
            return
        if self._sendq:
            self._sendq.append((data, addr, gso))
            return
        try:
            self._send_now(data, addr, gso)
        except (BlockingIOError, InterruptedError):
            self._sendq.append((data, addr, gso))
            self.stats["send_queued"] += 1
            self.loop.add_writer(self._fd, self._on_writable)
        except OSError as exc:
            self._send_failed(data, addr, gso, exc)

    def _send_now(self, data: bytes, addr: Address, gso: int, again: bool = True) -> None:
        connected = addr == self.connected_peer
        try:
            if not gso:
                if connected:
                    self.sock.send(data)
                else:
                    self.sock.sendto(data, addr)
                return
            self.stats["gso_sends"] += 1
            control = [(SOL_UDP, UDP_SEGMENT, _GSO_SIZE.pack(gso))]
            if connected:
                self.sock.sendmsg([data], control)
            else:
                self.sock.sendmsg([data], control, 0, addr)
        except OSError as exc:
            if not again or exc.errno not in ICMP_ERRNOS:
                raise
            # The pending error of an ICMP message about an earlier datagram (to this peer
            # or any other) failed this send, which sent nothing. The failed call took the
            # error, so send again; what the error was about is read outside the segment
            # processing that is running now.
            self._pending_error_soon()
            self._send_now(data, addr, gso, False)

    def _send_failed(self, data: bytes, addr: Address, gso: int, exc: OSError) -> None:
        if not gso:
            self.stats["send_errors"] += 1
            logger.debug("%r: sendto %r failed: %s", self, addr, exc)
            return
        # The run as a whole was refused: send its datagrams one by one, so each gets
        # the fate (and the error) it would have had without GSO.
        pieces = self._gso_refused(data, gso, exc)
        self.stats["datagrams_out"] -= len(pieces)
        for piece in pieces:
            self._send(piece, addr)

    def _gso_refused(self, data: bytes, gso: int, exc: OSError) -> list[bytes]:
        self.stats["gso_errors"] += 1
        if exc.errno in _GSO_UNSUPPORTED:
            self.gso = False
            logger.debug("%r: UDP GSO turned off: %s", self, exc)
        return [data[offset : offset + gso] for offset in range(0, len(data), gso)]

    def _on_writable(self) -> None:
        self._flush_queue()
        if not self._sendq and not self._closed:
            self.loop.remove_writer(self._fd)

    def _flush_queue(self) -> None:
        queue = self._sendq
        while queue:
            data, addr, gso = queue[0]
            try:
                self._send_now(data, addr, gso)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                queue.popleft()
                if gso:
                    # Put the run back as single datagrams, in place.
                    pieces = self._gso_refused(data, gso, exc)
                    queue.extendleft((piece, addr, 0) for piece in reversed(pieces))
                else:
                    self._send_failed(data, addr, gso, exc)
                continue
            queue.popleft()

    def _trace(self, direction: str, addr: Address, seg: Segment) -> None:
        assert self.trace is not None
        try:
            self.trace(direction, addr, seg)
        except Exception:
            logger.exception("%r: trace hook failed", self)

    # ------------------------------------------------------------------ the one timer

    def schedule(self, transport: Transport, deadline: float | None) -> None:
        """Record ``transport``'s next deadline (called by the transport after each pump)."""
        transport.deadline = deadline
        if self._closed:
            return
        self._timers.set(transport, deadline)
        if deadline is not None and (self._timer_when is None or deadline < self._timer_when):
            self._arm(deadline)

    def _arm(self, when: float) -> None:
        self.stats["timer_arms"] += 1
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._on_timer)
        self._timer_when = when

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = None
        now = self.loop.time()
        # Taken all at once, then run: a deadline a connection sets while running waits for
        # the next wake-up instead of spinning here.
        due = self._timers.pop_due(now + TIMER_SLACK)
        self.stats["timer_wakeups"] += 1
        if not due:
            self.stats["timer_stale"] += 1
        records = False
        for deadline, key in due:
            if self._closed:
                return
            if isinstance(key, tuple):
                self._time_wait_due(key, now)
                records = True
                continue
            key.deadline = None
            if self._conns.holds(key.key, key):
                self._guarded(key, key.timer_fired, max(now, deadline))
        self._rearm()
        if records:
            self._maybe_close()

    def _rearm(self) -> None:
        earliest = self._timers.earliest()
        if earliest is not None and (self._timer_when is None or earliest < self._timer_when):
            self._arm(earliest)


#: Wildcard hosts a socket may be bound to, and how many peer hosts' source addresses an
#: endpoint remembers (Endpoint.local_address_for).
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})
_SOURCE_CACHE = 1024

# States in which a closed connection still has data or a FIN waiting for acknowledgment.
_DELIVERING = frozenset({State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK})


def _connection_of(transport: Transport) -> Connection:
    return transport.conn


def _remote_id(addr: Address, vport: int) -> tuple[Any, ...]:
    return (addr[0], addr[1], vport)


def _cookie_peer(addr: Address) -> tuple[Any, ...]:
    """The part of a UDP address a SYN cookie is bound to: host and port."""
    return (addr[0], addr[1])


def _decrement(counts: dict[Any, int], host: Any) -> None:
    left = counts.get(host, 0) - 1
    if left > 0:
        counts[host] = left
    else:
        counts.pop(host, None)


def _is_loopback(host: Any) -> bool:
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False
