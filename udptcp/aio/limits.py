"""How much of each connection limit an endpoint has in use, kept in O(1) per state change.

The limits themselves are :class:`~udptcp.core.config.Config`'s (``max_connections``,
``max_connections_per_address``, ``max_half_open_per_address``, ``max_time_wait``). Each
connection counts in one *slot* at a time: none (an active open, or one that ended), the
half-open table of its address (SYN-RECEIVED), the accepted connections, or TIME-WAIT; the
endpoint moves it between them when its state changes (``Endpoint.account``). "Address" is
the remote IP, whatever its UDP port. An address's entry goes when its count reaches zero,
so the tables hold at most one entry per live connection.
"""

from __future__ import annotations

import collections
from typing import Any

from udptcp.core.config import Config

from . import observe
from .interfaces import HostedTransport

__all__ = ["SLOT_HALF_OPEN", "SLOT_LIVE", "SLOT_NONE", "SLOT_TIME_WAIT", "LimitCounts"]

#: What a connection counts against: nothing, the half-open table of its address, the
#: accepted connections, TIME-WAIT.
SLOT_NONE, SLOT_HALF_OPEN, SLOT_LIVE, SLOT_TIME_WAIT = range(4)
_ACCEPTED = (SLOT_HALF_OPEN, SLOT_LIVE)
#: Per-connection counters the endpoint adds to its own ``stats`` when a connection
#: leaves the handshake, so that what the amplification rules held back is visible there.
_HANDSHAKE_COUNTERS = ("amplification_limited", "syn_acks_rate_limited")


class LimitCounts:
    """The counts of one endpoint (its ``stats`` gets the limit hits)."""

    __slots__ = ("accepted", "half_open", "time_wait", "_accepted_by", "_half_open_by", "_stats")

    def __init__(self, stats: collections.Counter[str]) -> None:
        self.accepted = 0  # passive connections, half-open included, TIME-WAIT not
        self.half_open = 0
        self.time_wait = 0  # TIME-WAIT records and TIME-WAIT connections kept whole
        self._accepted_by: dict[Any, int] = {}
        self._half_open_by: dict[Any, int] = {}
        self._stats = stats

    def half_open_from(self, host: Any) -> int:
        """Half-open connections from ``host``."""
        return self._half_open_by.get(host, 0)

    def refuses(self, config: Config, host: Any) -> bool:
        """True (and counted) when a new connection from ``host`` would break a limit."""
        if self._accepted_by.get(host, 0) >= config.max_connections_per_address:
            self._stats["refused_per_address"] += 1
            limit = config.max_connections_per_address
            observe.limit_hit("refused_per_address", host, limit)
            return True
        if self.accepted >= config.max_connections:
            self._stats["refused_max_connections"] += 1
            observe.limit_hit("refused_max_connections", host, config.max_connections)
            return True
        return False

    def move(self, transport: HostedTransport, slot: int) -> None:
        """Count ``transport`` in ``slot`` from now on instead of the one it was in."""
        old = transport.slot
        if old == slot:
            return
        transport.slot = slot
        host = transport.peer[0]
        if old == SLOT_HALF_OPEN:
            self.half_open -= 1
            _decrement(self._half_open_by, host)
            counters = transport.conn.stats_counters
            for name in _HANDSHAKE_COUNTERS:
                if counters[name]:
                    self._stats[name] += counters[name]
        elif old == SLOT_TIME_WAIT:
            self.time_wait -= 1
        if old in _ACCEPTED and slot not in _ACCEPTED:
            self.accepted -= 1
            _decrement(self._accepted_by, host)
        if slot in _ACCEPTED and old not in _ACCEPTED:
            self.accepted += 1
            self._accepted_by[host] = self._accepted_by.get(host, 0) + 1
        if slot == SLOT_HALF_OPEN:
            self.half_open += 1
            self._half_open_by[host] = self._half_open_by.get(host, 0) + 1
        elif slot == SLOT_TIME_WAIT:
            self.time_wait += 1

    def in_use(self) -> dict[str, int]:
        """Accepted connections (half-open included), half-open ones, TIME-WAIT ones, and
        the remote addresses counted."""
        return {
            "accepted": self.accepted,
            "half_open": self.half_open,
            "time_wait": self.time_wait,
            "addresses": len(self._accepted_by),
        }

    def clear(self) -> None:
        """Forget every count (the endpoint closed)."""
        self.accepted = self.half_open = self.time_wait = 0
        self._accepted_by.clear()
        self._half_open_by.clear()


def _decrement(counts: dict[Any, int], host: Any) -> None:
    left = counts.get(host, 0) - 1
    if left > 0:
        counts[host] = left
    else:
        counts.pop(host, None)
