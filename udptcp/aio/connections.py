"""The connections on an endpoint: opening one, following its states, forgetting it.

Active opens pick a free ephemeral virtual port (RFC 6335 §6) for the 4-tuple. Every state a
connection reaches is accounted for against the limits (:mod:`udptcp.aio.limits`); one that
enters TIME-WAIT becomes a small record (``deadlines.py``), or is forgotten at once past
``max_time_wait``, as Linux does past ``tcp_max_tw_buckets``. What the endpoint reports
about its connections (statistics totalled over every connection it has had, the limits in
use, the TIME-WAIT records) is computed here on call.

A part of :class:`~udptcp.aio.endpoint.Endpoint` (see :mod:`udptcp.aio.endpointbase`).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from udptcp.core.config import Config
from udptcp.core.connection import PEER_INPUT_COUNTERS, Connection, State
from udptcp.core.stats import ConnectionStats
from udptcp.core.timewait import TimeWait

from . import natkeep, observe, securelink, tracing
from .interfaces import Address
from .interfaces import ConnectionKey as Key
from .limits import SLOT_HALF_OPEN, SLOT_LIVE, SLOT_NONE, SLOT_TIME_WAIT
from .passive import PassiveOpens
from .transport import Transport

if TYPE_CHECKING:
    from udptcp.core.secure import SecureSession

__all__ = ["EPHEMERAL_PORTS", "Connections"]

#: Ephemeral virtual ports (RFC 6335 §6 dynamic range), as a client picks them.
EPHEMERAL_PORTS = (49152, 65535)
# random.randint's Python layers cost more than the rest of a pick; the range holds
# exactly 2**14 ports, so 14 random bits choose among them uniformly.
_EPHEMERAL_BITS = 14
assert EPHEMERAL_PORTS[1] - EPHEMERAL_PORTS[0] + 1 == 1 << _EPHEMERAL_BITS
# States in which a closed connection still has data or a FIN waiting for acknowledgment.
_DELIVERING = frozenset({State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK})


class Connections(PassiveOpens):
    """Opening, accounting for and forgetting connections (an Endpoint part)."""

    # ------------------------------------------------------------------ opening

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
        if reused is not None:
            iss = reused.reopen_iss()
        else:
            local = self.sockname
            iss = self.isn.isn_for(
                local[0], local[1], local_vport, peer[0], peer[1], remote_vport, now
            )
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
            port = low + random.getrandbits(_EPHEMERAL_BITS)  # uniform: the range is 2**14
            key = (peer, port, remote_vport)
            if not conns.in_use(key):
                return port
        used = {k[1] for k in conns if k[0] == peer and k[2] == remote_vport}
        used.update(k[1] for k in conns.records() if k[0] == peer and k[2] == remote_vport)
        free = [p for p in range(low, high + 1) if p not in used]
        if not free:
            raise OSError(errno.EADDRNOTAVAIL, f"no free virtual port towards {peer!r}")
        return random.choice(free)

    # ------------------------------------------------------------------ state changes

    def account(self, transport: Transport) -> None:
        """The connection changed state: move it between the limits' counts.

        Called by the transport whenever it sees a state it has not accounted for. A
        connection entering TIME-WAIT beyond ``max_time_wait`` is forgotten at once (as
        Linux does past ``tcp_max_tw_buckets``); its application was told it closed already.
        """
        state = transport.conn.state
        transport.accounted_state = state
        if self.trace is not None or state is State.ESTABLISHED:
            observe.state_changed(self, transport)  # (it traces, and logs an opening)
        if (
            state is not State.SYN_SENT
            and transport.listener is None
            and transport.peer in self._opening
        ):
            self._opened(transport)
        if not self._conns.holds(transport.key, transport):
            return
        if state is State.TIME_WAIT:
            slot = SLOT_TIME_WAIT
        elif transport.listener is None or state is State.CLOSED:
            slot = SLOT_NONE
        elif state is State.SYN_RECEIVED:
            slot = SLOT_HALF_OPEN
        else:
            slot = SLOT_LIVE
        if slot == transport.slot:
            return
        if slot == SLOT_TIME_WAIT and self._limits.time_wait >= transport.conn.config.max_time_wait:
            self.stats["time_wait_dropped"] += 1
            limit = transport.conn.config.max_time_wait
            observe.limit_hit("time_wait_dropped", observe._addr(transport.peer), limit)
            self.forget(transport, "dropped (max_time_wait reached)")
            return
        if (
            slot == SLOT_TIME_WAIT
            and transport.secure_session is None
            and transport.peer not in self._routes
        ):
            self._keep_time_wait(transport)
            return
        self._limits.move(transport, slot)

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
            # Usually all zero: one look at them all (in C) before adding any up.
            if any(map(counters.get, PEER_INPUT_COUNTERS)):
                for name in PEER_INPUT_COUNTERS:
                    self._gone_counts[name] += counters.get(name, 0)
            observe.forgotten(self, transport, why)
            self._limits.move(transport, SLOT_NONE)
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
        before ``Endpoint.close``."""
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

    # ------------------------------------------------------------------ reports

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

    def limits(self) -> dict[str, int]:
        """How much of each limit is in use now: accepted connections (half-open
        included), half-open ones, TIME-WAIT ones, and the remote addresses counted."""
        return self._limits.in_use()

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
