"""The endpoint: one UDP socket, many connections, one timer.

See docs/architecture.md#endpoints-and-virtual-ports for how connections share the socket.

An :class:`Endpoint` reads its UDP socket, hands each segment to the connection it belongs
to (or to a listener, or answers it), sends what its connections queue, and keeps their
deadlines under one loop timer. It is assembled from parts, each in its own module (the
order and the reasons are in :mod:`udptcp.aio.endpointbase`): socket I/O in ``sockio.py``,
the timer and TIME-WAIT records in ``deadlines.py``, routing and the traffic that is not TCP
in ``routing.py``, listeners and SYNs in ``passive.py``, active opens and the connections'
bookkeeping in ``connections.py``, the limits' counts in ``limits.py``. This module adds the
socket's life: building an endpoint on a socket, one per socket per loop, holds and closing.

Ownership: an endpoint stays open while it has connections (TIME-WAIT included), listeners
or holders (:meth:`Endpoint.acquire`); when the last of these goes it closes its socket.
:meth:`Endpoint.close` (and :func:`close_endpoints`) close it at once: live connections are
reset and TIME-WAIT connections are dropped silently (docs/architecture.md#closing-and-connection_lost). Shutting the loop down
(``asyncio.run``, ``asyncio.Runner``, ``uvloop.run``: anything that calls
``loop.shutdown_asyncgens()``) closes its endpoints the same way. An endpoint built on a
caller's socket with ``owns_socket=False`` leaves that socket open when it closes (it only
stops reading it and turns UDP GRO off again).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import weakref
from collections.abc import AsyncGenerator, Coroutine
from typing import Any, cast

from udptcp.core.config import Config
from udptcp.core.connection import State

from . import observe
from .connections import EPHEMERAL_PORTS as EPHEMERAL_PORTS
from .connections import Connections
from .errqueue import enable_recverr
from .interfaces import Address
from .passive import payload_budget as payload_budget
from .routing import STUN_MAGIC_COOKIE as STUN_MAGIC_COOKIE
from .routing import is_stun as is_stun
from .sockio import GSO_MAX_BYTES as GSO_MAX_BYTES
from .sockio import GSO_MAX_SEGMENTS as GSO_MAX_SEGMENTS
from .sockio import READ_BATCH as READ_BATCH
from .sockio import offload_allowed
from .transport import Transport

__all__ = ["Address", "Endpoint", "close_endpoints", "open_endpoints"]
# (The other names imported as themselves are kept here for the modules and tests that
# took them from this module before the endpoint's parts moved out.)


#: Socket buffers asked for on sockets the endpoint creates (the kernel caps them at
#: net.core.rmem_max / wmem_max): a burst on a fast path should queue, not be dropped.
SOCKET_BUFFER = 2 * 1024 * 1024
#: Transport.write reads the socket itself after this many writes, or this long, without
#: the loop reading it (Endpoint.poll_from_write).
POLL_WRITES = 16
POLL_INTERVAL = 0.001


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


class Endpoint(Connections):
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
    timer's ``timer_arms``, ``timer_wakeups`` and ``timer_stale`` (wake-ups that ran
    nothing: what was filed had moved later or gone), and every limit hit (the limits are in :class:`~udptcp.core.config.Config`):

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

    Traffic that is not a TCP segment (:mod:`udptcp.aio.routing`): ``stun_in`` and
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
        super().__init__(loop, sock, owns_socket=owns_socket)
        if offload and offload_allowed():
            self._enable_offload()
        self.recverr = enable_recverr(sock)
        loop.add_reader(self._fd, self._on_readable)
        _registry.setdefault(loop, {})[self._fd] = self
        _watch_loop_shutdown(loop)

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
        self._limits.clear()
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

    # ------------------------------------------------------------------ the write path's read

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


#: Wildcard hosts a socket may be bound to, and how many peer hosts' source addresses an
#: endpoint remembers (Endpoint.local_address_for).
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})
_SOURCE_CACHE = 1024


def _is_loopback(host: Any) -> bool:
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False
