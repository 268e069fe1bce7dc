"""The endpoint's one timer, and the TIME-WAIT records it expires.

All connections on an endpoint share one timer: a heap (:class:`~udptcp.core.timerheap.
TimerHeap`, the simulator's structure too) of each connection's next deadline and each
TIME-WAIT record's end, with lazy invalidation, and a single ``loop.call_at`` handle armed
at the earliest deadline. A wake-up takes everything due at once and runs it; what a
connection schedules while it runs waits for the next wake-up.

A connection's deadline moves later with nearly every segment (each one sent restarts the
retransmission and loss-probe timers, RFC 6298 §5.3, RFC 8985 §7.2), and it is filed again
only when it moves *earlier*: a later one is noted on the transport (``deadline``) and the
earlier entry stays on the heap. When that entry comes up, the transport's deadline is
looked at again: run if due, filed again at its new time if not. So a request/response
exchange touches neither the heap nor the loop's timer per message.

A connection that enters TIME-WAIT is replaced by a small record (:class:`~udptcp.core.
timewait.TimeWait`): the endpoint lets go of the Connection, its buffers and logs (the
application was told it closed already), and the record answers what still arrives for its
4-tuple until its 2 MSL are over (docs/architecture.md#time-wait).

A part of :class:`~udptcp.aio.endpoint.Endpoint` (see :mod:`udptcp.aio.endpointbase`).
"""

from __future__ import annotations

from udptcp.core.demux import Route
from udptcp.core.segment import Segment
from udptcp.core.timewait import TimeWait

from .interfaces import Address
from .interfaces import ConnectionKey as Key
from .sockio import SocketIO
from .transport import Transport

__all__ = ["TIMER_SLACK", "Deadlines"]

#: uvloop runs timers with millisecond granularity and may fire one slightly early; a
#: deadline this close to the clock counts as due (the core is told the deadline itself).
TIMER_SLACK = 0.001


class Deadlines(SocketIO):
    """The one timer and the TIME-WAIT records (an Endpoint part)."""

    # ------------------------------------------------------------------ the one timer

    def schedule(self, transport: Transport, deadline: float | None) -> None:
        """Record ``transport``'s next deadline (called by the transport after each pump).

        Only a deadline earlier than the one the heap holds for it is filed; a later one
        (or none) is only noted, and :meth:`_on_timer` looks again when the filed one
        comes up."""
        transport.deadline = deadline
        if self._closed or deadline is None:
            return
        timers = self._timers
        filed = timers.deadline(transport)
        if filed is not None and filed <= deadline:
            return
        timers.set(transport, deadline)
        if self._timer_when is None or deadline < self._timer_when:
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
        if not self._reading and not self._closed:
            # What the socket holds first. After a stall (a busy machine, a long callback)
            # the peer's ACKs can be waiting there while the timers they would have moved
            # come due, and libuv (uvloop) runs due timers before it polls for I/O: fired
            # first, a retransmission timer or loss probe resends data that is already
            # acknowledged (RFC 8985 §7.3: a probe is for a flight with no ACK in sight).
            self._read_queued()
            if self._closed:
                return
        now = self.loop.time()
        # Taken all at once, then run: a deadline a connection sets while running waits for
        # the next wake-up instead of spinning here.
        until = now + TIMER_SLACK
        due = self._timers.pop_due(until)
        self.stats["timer_wakeups"] += 1
        ran = records = False
        for _filed, key in due:
            if self._closed:
                return
            if isinstance(key, tuple):
                self._time_wait_due(key, now)
                ran = records = True
                continue
            # The transport's own deadline: it may have moved later (or gone) since it
            # was filed (schedule() files only earlier ones).
            deadline = key.deadline
            if deadline is None:
                continue
            if deadline > until:
                self._timers.set(key, deadline)  # not due yet: filed again at its time
                continue
            key.deadline = None
            if self._conns.holds(key.key, key):
                ran = True
                self._guarded(key, key.timer_fired, max(now, deadline))
        if not ran:
            self.stats["timer_stale"] += 1
        self._rearm()
        if records:
            self._maybe_close()

    def _rearm(self) -> None:
        earliest = self._timers.earliest()
        if earliest is not None and (self._timer_when is None or earliest < self._timer_when):
            self._arm(earliest)

    # ------------------------------------------------------------------ TIME-WAIT records

    def _keep_time_wait(self, transport: Transport) -> None:
        """Replace a connection that entered TIME-WAIT by its small record: the endpoint
        lets go of the Connection, its buffers and logs (the application was told it
        closed already). Secure connections (their answers are sealed) and relayed ones
        stay whole."""
        key = transport.key
        record = TimeWait.from_connection(transport.conn, self.loop.time())
        self._conns.add_record(key, record)
        self._limits.time_wait += 1
        self.stats["time_wait_records"] += 1
        # Records end in the order they begin (2 MSL each): the heap's queue beside it. The
        # real timer is compared below (as schedule() would do it).
        self._timers.set_fifo(key, record.deadline)
        if self._timer_when is None or record.deadline < self._timer_when:
            self._arm(record.deadline)
        self.forget(transport)

    def _drop_time_wait(self, key: Key) -> None:
        if self._conns.remove_record(key) is not None:
            self._limits.time_wait -= 1
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
        self._limits.time_wait -= 1

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
