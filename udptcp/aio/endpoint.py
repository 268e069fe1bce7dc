"""The endpoint: one UDP socket, many connections, one timer (DESIGN §4, §5 layer 2).

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
reset and TIME-WAIT connections are dropped silently (DESIGN §8). Shutting the loop down
(``asyncio.run``, ``asyncio.Runner``, ``uvloop.run``: anything that calls
``loop.shutdown_asyncgens()``) closes its endpoints the same way.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import heapq
import itertools
import logging
import os
import random
import socket
import struct
import sys
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, cast

from udptcp.core.config import PAYLOAD_BUDGET_IPV4, PAYLOAD_BUDGET_IPV6, Config
from udptcp.core.connection import PEER_INPUT_COUNTERS, Connection, State, rst_for
from udptcp.core.isn import IsnGenerator
from udptcp.core.segment import ACK, FIN, RST, SYN, MalformedSegment, Segment, decode, encode

from .transport import Transport

if TYPE_CHECKING:
    from .server import Listener

__all__ = ["Address", "Endpoint", "close_endpoints", "open_endpoints"]

logger = logging.getLogger("udptcp")

Address = tuple[Any, ...]
"""A UDP socket address as the socket module spells it: ``(host, port)`` for IPv4,
``(host, port, flowinfo, scope_id)`` for IPv6."""
Key = tuple[Address, int, int]
"""(remote UDP address, local virtual port, remote virtual port)."""
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

# One endpoint per socket per loop, so a socket passed twice (``sock=``) is shared: a
# hole-punched socket can carry a server and outgoing connections at once.
_registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, Endpoint]] = (
    weakref.WeakKeyDictionary()
)


# One parked async generator per loop: asyncio.run(), asyncio.Runner, uvloop.run() and
# pytest-asyncio all call loop.shutdown_asyncgens() before closing the loop, which closes it,
# and its ``finally`` closes the loop's endpoints (DESIGN §8: closing the loop drops TIME-WAIT
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
    """Default UDP payload budget for a socket family (DESIGN §2)."""
    return PAYLOAD_BUDGET_IPV6 if family == socket.AF_INET6 else PAYLOAD_BUDGET_IPV4


def open_endpoints(loop: asyncio.AbstractEventLoop | None = None) -> list[Endpoint]:
    """Every endpoint still open on ``loop`` (the running loop by default)."""
    loop = loop or asyncio.get_running_loop()
    return list(_registry.get(loop, {}).values())


def close_endpoints(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Close every endpoint of ``loop`` at once, as closing the loop should.

    Live connections are reset; TIME-WAIT connections are dropped silently (DESIGN §8).
    """
    for endpoint in open_endpoints(loop):
        endpoint.close()


class Endpoint:
    """One UDP socket and the connections and listeners multiplexed on it.

    Build one with :meth:`for_socket`; the endpoint takes ownership of the socket and closes
    it when it closes. ``stats`` counts datagrams in and out, malformed datagrams per reason
    (``"malformed:<reason>"``), RSTs sent for unknown segments, SYNs dropped for a full
    backlog, send errors and ICMP errors. ``trace``, when set, is called with
    ``("in" | "out", peer address, segment)`` for every segment.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, *, offload: bool = True
    ) -> None:
        if sock.type != socket.SOCK_DGRAM:
            raise ValueError(f"A UDP socket was expected, got {sock!r}")
        sock.setblocking(False)
        self.loop = loop
        self.sock = sock
        self.family = sock.family
        self._fd = sock.fileno()
        self._sockname: Address = sock.getsockname()
        try:
            # A connected socket (a client endpoint) hears ICMP errors (DESIGN §8).
            self.connected_peer: Address | None = sock.getpeername()
        except OSError:
            self.connected_peer = None
        self.stats: collections.Counter[str] = collections.Counter()
        self._gone_counts: collections.Counter[str] = collections.Counter()
        # Set while linger() waits: any connection's progress wakes it to look again.
        self._linger_waiter: asyncio.Future[None] | None = None
        self.trace: Tracer | None = None
        self.isn = IsnGenerator()
        self._conns: dict[Key, Transport] = {}
        self._listeners: dict[int | None, Listener] = {}
        self._refs = 0
        self._closing = False  # close() is running: nothing may re-enter it
        self._closed = False
        # The write path's look at the socket (poll_from_write): set while reading, so it
        # never nests; while it runs, connections deliver their events from call_soon.
        self._reading = False
        self._deferring = False
        self._writes_unread = 0
        self._last_read = 0.0
        # Queued datagrams: (data, address, GSO segment size or 0 for one datagram).
        self._sendq: collections.deque[tuple[bytes, Address, int]] = collections.deque()
        #: Whether UDP GSO / GRO are in use on this socket (see ``Config.udp_offload``).
        self.gso = self.gro = False
        if offload and offload_allowed():
            self._enable_offload()
        self._heap: list[tuple[float, int, Transport]] = []
        self._counter = itertools.count()
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
        cls, loop: asyncio.AbstractEventLoop, sock: socket.socket, config: Config | None = None
    ) -> Endpoint:
        """The endpoint on ``sock`` for ``loop``: the existing one, or a new one (whose
        offloads ``config`` decides)."""
        existing = _registry.get(loop, {}).get(sock.fileno())
        if existing is not None and not existing._closed:
            return existing
        return cls(loop, sock, offload=config.udp_offload if config is not None else True)

    @property
    def sockname(self) -> Address:
        """Local UDP address of the socket."""
        if self._sockname[1] == 0 and not self._closed:
            # An unbound socket passed in is bound by its first send.
            self._sockname = self.sock.getsockname()
        return self._sockname

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

    def _maybe_close(self) -> None:
        if self._refs <= 0 and not self._conns and not self._listeners:
            self.close()

    def close(self) -> None:
        """Close the socket now: reset live connections, drop TIME-WAIT ones silently."""
        if self._closed or self._closing:
            return
        self._closing = True
        for transport in list(self._conns.values()):
            if transport._conn.state is not State.TIME_WAIT:
                transport._endpoint_closing()  # RST, connection_lost(None) soon
        self._flush_queue()
        self._closed = True
        self._conns.clear()
        self._listeners.clear()
        self._heap.clear()
        self._sendq.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            self.loop.remove_reader(self._fd)
            self.loop.remove_writer(self._fd)
        except (RuntimeError, ValueError, OSError):
            pass  # the loop is already closed
        self.sock.close()
        by_fd = _registry.get(self.loop)
        if by_fd is not None and by_fd.get(self._fd) is self:
            del by_fd[self._fd]

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
    ) -> Transport:
        """Active open towards ``peer``: SYN sent, the transport's ``_waiter`` resolves on
        ESTABLISHED (or fails with the connection's error)."""
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
        now = self.loop.time()
        iss = self.isn.isn(self._local_id(local_vport), _remote_id(peer, remote_vport), now)
        conn = Connection.connect(
            config,
            local_port=local_vport,
            remote_port=remote_vport,
            iss=iss,
            mss=self.mss_for(config),
            now=now,
        )
        transport = Transport(self, conn, peer, protocol_factory=protocol_factory)
        self._conns[key] = transport
        transport._pump()
        return transport

    def _pick_vport(self, peer: Address, remote_vport: int) -> int:
        low, high = EPHEMERAL_PORTS
        conns = self._conns
        for _ in range(64):
            # A free 4-tuple is all it takes; looking it up keeps this O(1) however many
            # connections share the socket.
            port = random.randint(low, high)
            if (peer, port, remote_vport) not in conns:
                return port
        used = {k[1] for k in conns if k[0] == peer and k[2] == remote_vport}
        free = [p for p in range(low, high + 1) if p not in used]
        if not free:
            raise OSError(errno.EADDRNOTAVAIL, f"no free virtual port towards {peer!r}")
        return random.choice(free)

    def _local_id(self, vport: int) -> tuple[Any, ...]:
        return (self.sockname[0], self.sockname[1], vport)

    def _forget(self, transport: Transport) -> None:
        """Remove a connection that reached CLOSED (or is being replaced)."""
        if self._conns.get(transport._key) is transport:
            del self._conns[transport._key]
            transport._deadline = None
            counters = transport._conn.stats_counters
            for name in PEER_INPUT_COUNTERS:
                self._gone_counts[name] += counters.get(name, 0)
            self._maybe_close()

    def _lingering(self, since: float, now: float) -> list[Transport]:
        """Connections the application closed that still have data or a FIN to deliver,
        within their ``exit_linger`` of ``since``."""
        return [
            t
            for t in self._conns.values()
            if t._closing
            and t._conn.state in _DELIVERING
            and now < since + t._conn.config.exit_linger
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
            until = min(since + t._conn.config.exit_linger for t in pending)
            waiter = self._linger_waiter = loop.create_future()
            try:
                await asyncio.wait_for(waiter, until - now)
            except asyncio.TimeoutError:
                pass
            finally:
                self._linger_waiter = None

    def statistics(self) -> dict[str, int]:
        """The endpoint's counters (``stats``) plus, under the same names as a connection's
        own, the peer-input counters (:data:`PEER_INPUT_COUNTERS`: clamped MSS values,
        challenge and suppressed ACKs, dropped segments, limit hits) totalled over every
        connection this endpoint has had. Computed on call."""
        totals = collections.Counter(self._gone_counts)
        for transport in self._conns.values():
            counters = transport._conn.stats_counters
            for name in PEER_INPUT_COUNTERS:
                totals[name] += counters.get(name, 0)
        out = dict(self.stats)
        out.update(totals)
        return out

    def connections(self) -> list[Transport]:
        """Transports of the connections on this endpoint (TIME-WAIT included)."""
        return list(self._conns.values())

    # ------------------------------------------------------------------ listeners

    def add_listener(self, vport: int | None, listener: Listener) -> None:
        """Accept SYNs for ``vport`` (``None``: any virtual port no other listener has)."""
        if self._closed:
            raise OSError(errno.EBADF, "udptcp endpoint is closed")
        if vport in self._listeners:
            where = "any virtual port" if vport is None else f"virtual port {vport}"
            raise OSError(errno.EADDRINUSE, f"{self.sockname!r} already listens on {where}")
        self._listeners[vport] = listener

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
            self._read(trains)
        finally:
            try:
                self._deliver_trains(trains)
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
        peer = transport._local_peer_endpoint()
        if peer is not None and peer is not self and not peer._reading and not peer._closed:
            peer._poll()
        self._poll()

    def _poll(self) -> None:
        self._deferring = True
        try:
            self._on_readable()
        finally:
            self._deferring = False

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

    def _read(self, trains: dict[Transport, list[Segment]]) -> None:
        sock = self.sock
        gro = self.gro
        pending = 0  # segments read and not yet delivered
        for _ in range(READ_BATCH):
            try:
                if gro:
                    data, ancdata, _flags, addr = sock.recvmsg(RECV_SIZE, _GRO_CMSG_SPACE)
                else:
                    data, addr = sock.recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:
                # ICMP port unreachable, reported on a connected socket (DESIGN §8).
                self._on_icmp_unreachable()
                if self._closed:
                    return
                continue
            except OSError as exc:
                if self._closed:
                    return
                self.stats["recv_errors"] += 1
                logger.debug("%r: recvfrom failed: %s", self, exc)
                return
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
                return
            if pending >= TRAIN_MAX:
                # Deliver (and so acknowledge) before reading on: a sender must hear
                # from us well within its loss-probe timeout, however long the burst.
                self._deliver_trains(trains)
                pending = 0

    def _deliver_train(self, transport: Transport, segments: list[Segment]) -> None:
        rest = segments
        if self._conns.get(transport._key) is transport:
            taken = self._guarded(transport, transport._receive_many, segments)
            rest = segments[taken or len(segments) :]
        # What came after the connection closed goes where it would have gone alone
        # (a reset from the closed port, or a new connection for a SYN).
        for seg in rest:
            self._route(seg, transport._peer, None)

    def _on_datagram(
        self,
        data: bytes,
        addr: Address,
        trains: dict[Transport, list[Segment]] | None = None,
    ) -> None:
        """Decode one datagram and route its segment: into ``trains`` for a connection
        (delivered after the read burst), or at once (a SYN, a reset for a closed port)."""
        try:
            seg = decode(data)
        except MalformedSegment as exc:
            self.stats["malformed"] += 1
            self.stats["malformed:" + exc.reason] += 1
            return
        if self.trace is not None:
            self._trace("in", addr, seg)
        self._route(seg, addr, trains)

    def _route(
        self, seg: Segment, addr: Address, trains: dict[Transport, list[Segment]] | None
    ) -> None:
        flags = seg.flags
        if flags & (SYN | FIN) == SYN | FIN:
            # No stack opens a connection with a FIN (T/TCP, which did, is historic);
            # scanners do. Dropped, as Linux drops it, and counted.
            self.stats["dropped_syn_fin"] += 1
            return
        key = (addr, seg.dst_port, seg.src_port)
        transport = self._conns.get(key)
        is_syn = flags & (SYN | ACK | RST) == SYN
        if transport is not None:
            if not is_syn:
                if trains is None:
                    self._guarded(transport, transport._receive, seg)
                else:
                    trains.setdefault(transport, []).append(seg)
                return
            # A SYN may reopen a connection in TIME-WAIT: settle what came before it first.
            pending = trains.pop(transport, None) if trains is not None else None
            if pending:
                self._deliver_train(transport, pending)
            conn = transport._conn
            if conn.accepts_reopen(seg):
                # A new incarnation reopens the 4-tuple (RFC 9293 §3.10.7.4, RFC 6191), its
                # ISN beyond everything the old one sent.
                self.stats["time_wait_reopened"] += 1
                self._forget(transport)
                self._on_syn(seg, addr, key, iss=conn.reopen_iss())
                return
            elif self._conns.get(key) is transport:
                self._guarded(transport, transport._receive, seg)
                return
        if is_syn:
            self._on_syn(seg, addr, key)
            return
        self._reply_rst(seg, addr)

    def _on_syn(self, seg: Segment, addr: Address, key: Key, iss: int | None = None) -> None:
        listener = self._listeners.get(seg.dst_port) or self._listeners.get(None)
        if listener is None or not listener.serving:
            self._reply_rst(seg, addr)  # a closed port (RFC 9293 §3.10.7.1)
            return
        if listener.pending >= listener.backlog:
            # Like Linux with a full accept queue: drop, the client's SYN retry comes back.
            self.stats["syn_dropped_backlog"] += 1
            return
        now = self.loop.time()
        config = listener.config
        if iss is None:
            iss = self.isn.isn(self._local_id(seg.dst_port), _remote_id(addr, seg.src_port), now)
        conn = Connection.accept(config, seg, iss=iss, mss=self.mss_for(config), now=now)
        transport = Transport(self, conn, addr, listener=listener)
        listener.add_pending(transport)
        self._conns[key] = transport
        self._guarded(transport, transport._pump)

    def _reply_rst(self, seg: Segment, addr: Address) -> None:
        rst = rst_for(seg)
        if rst is not None:
            self.stats["rst_sent"] += 1
            self.transmit(addr, [rst])

    def _on_icmp_unreachable(self) -> None:
        self.stats["icmp_unreachable"] += 1
        peer = self.connected_peer
        if peer is None:
            return
        now = self.loop.time()
        for transport in list(self._conns.values()):
            if transport._peer == peer:
                self._guarded(transport, transport._icmp_unreachable, now)

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
                transport._fatal_error(exc, "Fatal error in udptcp connection")
            except Exception:
                logger.exception("%r: could not reset %r", self, transport)
            finally:
                self._forget(transport)

    # ------------------------------------------------------------------ sending

    def transmit(self, addr: Address, segments: Sequence[Segment]) -> None:
        """Encode and send ``segments`` to ``addr``, queueing what the kernel will not take.

        Runs of equal-sized datagrams go out as one GSO send where the socket has it.
        Our own segments are never dropped for lack of socket buffer (DESIGN §8).
        """
        if self._closed:
            return
        trace = self.trace
        if trace is not None:
            for seg in segments:
                self._trace("out", addr, seg)
        if not self.gso or len(segments) == 1:
            for seg in segments:
                self._send(encode(seg), addr)
            return
        datagrams = [encode(seg) for seg in segments]
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
        if self._sendq:
            self._sendq.append((data, addr, gso))
            return
        try:
            self._send_now(data, addr, gso)
        except (BlockingIOError, InterruptedError):
            self._sendq.append((data, addr, gso))
            self.stats["send_queued"] += 1
            self.loop.add_writer(self._fd, self._on_writable)
        except ConnectionRefusedError:
            # A pending ICMP error surfaced on send; tell the connections outside the
            # segment loop that is running now.
            self.loop.call_soon(self._on_icmp_unreachable)
        except OSError as exc:
            self._send_failed(data, addr, gso, exc)

    def _send_now(self, data: bytes, addr: Address, gso: int) -> None:
        connected = addr == self.connected_peer
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
            except ConnectionRefusedError:
                self.loop.call_soon(self._on_icmp_unreachable)
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

    def _schedule(self, transport: Transport, deadline: float | None) -> None:
        """Record ``transport``'s next deadline (called by the transport after each pump)."""
        transport._deadline = deadline
        if deadline is None or self._closed:
            return
        heapq.heappush(self._heap, (deadline, next(self._counter), transport))
        if self._timer_when is None or deadline < self._timer_when:
            self._arm(deadline)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._on_timer)
        self._timer_when = when

    def _is_live(self, entry: tuple[float, int, Transport]) -> bool:
        deadline, _, transport = entry
        return transport._deadline == deadline and self._conns.get(transport._key) is transport

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = None
        now = self.loop.time()
        heap = self._heap
        due: list[tuple[float, Transport]] = []
        # Collect first, then run: a deadline a connection sets while running waits for the
        # next wake-up instead of spinning here.
        while heap and heap[0][0] <= now + TIMER_SLACK:
            entry = heapq.heappop(heap)
            if self._is_live(entry):
                entry[2]._deadline = None
                due.append((entry[0], entry[2]))
        for deadline, transport in due:
            if self._closed:
                return
            if self._conns.get(transport._key) is transport:
                self._guarded(transport, transport._on_timer, max(now, deadline))
        self._rearm()

    def _rearm(self) -> None:
        heap = self._heap
        while heap and not self._is_live(heap[0]):
            heapq.heappop(heap)
        if len(heap) > 64 and len(heap) > 4 * len(self._conns):
            # Drop the stale entries every moved deadline left behind.
            self._heap = heap = [e for e in heap if self._is_live(e)]
            heapq.heapify(heap)
        if heap and (self._timer_when is None or heap[0][0] < self._timer_when):
            self._arm(heap[0][0])


# States in which a closed connection still has data or a FIN waiting for acknowledgment.
_DELIVERING = frozenset({State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK})


def _remote_id(addr: Address, vport: int) -> tuple[Any, ...]:
    return (addr[0], addr[1], vport)
