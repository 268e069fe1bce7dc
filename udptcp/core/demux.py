"""Which connection a segment belongs to, and what to do with one that has none: the routing
rules an endpoint (and the simulator) apply to every segment they decode.

Connections are filed under their 4-tuple ``(remote address, local virtual port, remote
virtual port)``; the address is whatever the caller's network uses (a UDP socket address, a
simulated host's name). :meth:`Demux.route` decides, in this order:

1. a segment with both SYN and FIN is dropped (no stack opens with a FIN; scanners do);
2. a segment for a known 4-tuple goes to its connection -- unless it is a SYN that may
   reopen a connection in TIME-WAIT (RFC 9293 §3.10.7.4, RFC 6191): then the old one is to be
   forgotten and the SYN opened anew, with :meth:`Connection.reopen_iss`;
3. a segment for a 4-tuple that only a TIME-WAIT record holds (a closed connection the
   caller let go of, :class:`~udptcp.core.timewait.TimeWait`) is answered from the record,
   under the same reopen rule;
4. a SYN for no connection is first checked against our own connections with the ports
   swapped: our own SYN echoed back (a UDP echo service) goes to the connection that sent
   it, which then fails its connect; any other is for a listener;
5. anything else for no connection is answered by the caller (an RST, RFC 9293 §3.10.7.1,
   or a SYN cookie's ACK).

The table holds whatever handle the caller keeps per connection (a transport, or the
:class:`~udptcp.core.connection.Connection` itself); ``connection_of`` reaches the core
connection from it. TIME-WAIT records are filed apart (:meth:`Demux.add_record`): a caller
that keeps whole connections in TIME-WAIT (the simulator) never files any.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

from udptcp.core.connection import Connection
from udptcp.core.segment import ACK, FIN, RST, SYN, Segment
from udptcp.core.timewait import TimeWait

__all__ = ["Demux", "Key", "Route"]

H = TypeVar("H")
Key = tuple[Any, int, int]
"""(remote address, local virtual port, remote virtual port)."""


class Route(enum.Enum):
    """What :meth:`Demux.route` decided for a segment."""

    #: Deliver it to the connection returned with it.
    CONNECTION = "connection"
    #: A SYN reopening the TIME-WAIT connection returned with it: forget that one, then
    #: open a new one from the SYN with the old connection's ``reopen_iss()``.
    REOPEN = "reopen"
    #: Our own SYN, echoed back: deliver it to the connection returned with it (which sent
    #: it, and now learns that an echo service answers).
    OWN_SYN = "own-syn"
    #: For the TIME-WAIT record under its 4-tuple (:meth:`Demux.record`): the record
    #: answers it (unless it has expired: then it goes as if there were none).
    RECORD = "record"
    #: A SYN reopening the 4-tuple of a TIME-WAIT record: drop the record, then open a new
    #: connection from the SYN with the record's ``reopen_iss()``.
    REOPEN_RECORD = "reopen-record"
    #: A SYN for no connection: for a listener (or RST if none).
    SYN = "syn"
    #: Anything else for no connection: a SYN cookie's ACK, or RST.
    NO_CONNECTION = "no-connection"
    #: SYN and FIN together: drop it (and count it).
    SYN_FIN = "syn-fin"


class Demux(Generic[H]):
    """The connections of one endpoint by 4-tuple, and the rules that route segments to
    them. Every operation is one dict lookup or two."""

    __slots__ = ("_table", "_records", "_connection_of", "lookup")

    def __init__(self, connection_of: Callable[[H], Connection]) -> None:
        self._table: dict[Key, H] = {}
        self._records: dict[Key, TimeWait] = {}
        self._connection_of = connection_of
        #: ``lookup(key)``: :meth:`get` as the table's own ``dict.get`` (a C call), for
        #: an endpoint's per-segment path.
        self.lookup: Callable[[Key], H | None] = self._table.get

    def __len__(self) -> int:
        """How many connections (TIME-WAIT records not counted)."""
        return len(self._table)

    def __contains__(self, key: object) -> bool:
        """True if a connection is filed under ``key`` (TIME-WAIT records not counted)."""
        return key in self._table

    def __iter__(self) -> Iterator[Key]:
        return iter(self._table)

    def get(self, key: Key) -> H | None:
        """The connection filed under ``key``, or None."""
        return self._table.get(key)

    def add(self, key: Key, handle: H) -> None:
        """File ``handle`` under ``key`` (raises KeyError if another one is there)."""
        other = self._table.get(key)
        if other is not None and other is not handle:
            raise KeyError(f"4-tuple {key!r} is in use")
        self._table[key] = handle

    def remove(self, key: Key, handle: H) -> bool:
        """Unfile ``handle`` if it is the one under ``key``; True if it was."""
        if self._table.get(key) is handle:
            del self._table[key]
            return True
        return False

    def holds(self, key: Key, handle: H) -> bool:
        """True while ``handle`` is the connection under ``key``."""
        return self._table.get(key) is handle

    def values(self) -> list[H]:
        """Every connection (a copy: safe to change the table while going through it)."""
        return list(self._table.values())

    def clear(self) -> None:
        """Forget every connection and every TIME-WAIT record."""
        self._table.clear()
        self._records.clear()

    def in_use(self, key: Key) -> bool:
        """True if a connection or a TIME-WAIT record holds ``key`` (it is not free for a
        new connection)."""
        return key in self._table or key in self._records

    # TIME-WAIT records: closed connections kept small (udptcp.core.timewait).

    @property
    def has_records(self) -> bool:
        """True if any TIME-WAIT record is filed."""
        return bool(self._records)

    def record(self, key: Key) -> TimeWait | None:
        """The TIME-WAIT record filed under ``key``, or None."""
        return self._records.get(key)

    def records(self) -> dict[Key, TimeWait]:
        """Every TIME-WAIT record, by 4-tuple (a copy)."""
        return dict(self._records)

    def add_record(self, key: Key, record: TimeWait) -> None:
        """File ``record`` under ``key`` (replacing any record there)."""
        self._records[key] = record

    def remove_record(self, key: Key) -> TimeWait | None:
        """Unfile and return the record under ``key``, or None if there is none."""
        return self._records.pop(key, None)

    def route(self, seg: Segment, addr: Hashable) -> tuple[Route, H | None, Key]:
        """Where ``seg``, come from ``addr``, goes: the decision, the connection it concerns
        (None for :attr:`Route.SYN`, :attr:`Route.NO_CONNECTION`, :attr:`Route.SYN_FIN`
        and the record routes, whose record :meth:`record` returns) and the segment's 4-tuple as seen from here."""
        flags = seg.flags
        key = (addr, seg.dst_port, seg.src_port)
        if flags & (SYN | FIN) == SYN | FIN:
            return Route.SYN_FIN, None, key
        handle = self._table.get(key)
        is_syn = flags & (SYN | ACK | RST) == SYN
        if handle is not None:
            if is_syn and self._connection_of(handle).accepts_reopen(seg):
                return Route.REOPEN, handle, key
            return Route.CONNECTION, handle, key
        if self._records:
            record = self._records.get(key)
            if record is not None:
                if is_syn and record.accepts_reopen(seg):
                    return Route.REOPEN_RECORD, None, key
                return Route.RECORD, None, key
        if is_syn:
            mirror = self._table.get((addr, seg.src_port, seg.dst_port))
            if mirror is not None and self._connection_of(mirror).reflects_own_syn(seg):
                return Route.OWN_SYN, mirror, key
            return Route.SYN, None, key
        return Route.NO_CONNECTION, None, key
