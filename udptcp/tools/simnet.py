"""A deterministic simulated network that drives sans-I/O connections on a virtual clock.

No sockets and no real time: every segment is encoded to bytes, carried along a *route* of
seeded, impaired :class:`Link` objects, decoded on the far side (so corruption exercises the
checksum), and handed to a :class:`SimHost`, which demultiplexes it the way an endpoint does.
The same seed always gives the same run; a 10 MB transfer takes well under a second of
real time, most of it spent in the connection code.

A link is one direction of one wire: a drop-tail queue in front of a serializer of ``rate``
bytes per second, then the wire itself (random or Gilbert–Elliott loss, duplication,
corruption, propagation delay, jitter that may or may not reorder). A route is a sequence of
links; a link object placed on several routes is one shared queue, which is how
:mod:`udptcp.tools.simtopo` builds a shared bottleneck.

Every connection gets a :class:`~udptcp.tools.simlog.FlowLog`: each transmission (time,
sequence range, whether it was a retransmission, the RTO and cwnd at the time), what became
of it on the way (delivered intact, dropped where and why), the bytes delivered to the
application over time, a running SHA-256 of them, and the largest in-flight and reassembly
figures seen.

Time moves from event to event: datagram arrivals sit in one heap, connection deadlines in
another (re-read after every call into a connection, stale entries skipped), so a step costs
O(log n) whatever the number of connections.

A host routes what arrives with the endpoint's own rules and structures from the core
(:class:`~udptcp.core.demux.Demux` for the 4-tuples, TIME-WAIT reopening, echoed SYNs and
resets for closed ports; :class:`~udptcp.core.timerheap.TimerHeap` for the deadlines), and
hands the datagrams that reach it at one instant to each connection as one train through
``Connection.receive_many``, as the endpoint does with what one socket read returns.

The parts live in their own modules and are all importable from here: the links in
:mod:`udptcp.tools.simlink`, the hosts and data sources in :mod:`udptcp.tools.simhost`, the
per-flow logs in :mod:`udptcp.tools.simlog`; this module has the clock, the routes and the
event loop (:class:`SimNet`), and :func:`connected_pair` for scripted two-sided tests.

Typical use::

    net = SimNet(seed=1)
    a, b = net.host("a"), net.host("b", listening=True)
    net.connect_hosts(a, b, Link(loss=0.05, delay=0.01), Link(loss=0.05, delay=0.01))
    conn = a.connect(b, remote_port=80)
    net.run_until(lambda: conn.state is State.ESTABLISHED)
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from udptcp.core.config import Config
from udptcp.core.connection import Connection
from udptcp.core.segment import Segment, encode
from udptcp.core.timerheap import TimerHeap
from udptcp.tools.simhost import BulkSource, DataSource, SimHost
from udptcp.tools.simlink import GilbertElliott, Link, mbit
from udptcp.tools.simlog import AckProgress, Drop, FlowLog, Transmission

__all__ = [
    "AckProgress",
    "BulkSource",
    "DataSource",
    "Drop",
    "FlowLog",
    "GilbertElliott",
    "Link",
    "SimHost",
    "SimNet",
    "TraceEntry",
    "Transmission",
    "connected_pair",
    "mbit",
]


@dataclass(frozen=True)
class TraceEntry:
    """One line of :attr:`SimNet.trace`. Each copy of a datagram gets one entry when it
    enters the first link of its route ("sent", "corrupted", or why it was dropped there);
    later links on a longer route add an entry only when something happens to it there."""

    time: float
    sender: str
    receiver: str
    segment: Segment
    fate: str  # "sent", "lost", "corrupted", "duplicated", "too-big", "queue-full", "dropped"
    link: str = ""  # the link where the fate was decided


class _Datagram:
    __slots__ = ("data", "seg", "src", "dst", "route", "hop", "flow", "index", "intact")

    def __init__(
        self,
        data: bytes,
        seg: Segment,
        src: str,
        dst: str,
        route: tuple[Link, ...],
        flow: FlowLog | None,
        index: int,
    ) -> None:
        self.data = data
        self.seg = seg
        self.src = src
        self.dst = dst
        self.route = route
        self.hop = 0
        self.flow = flow
        self.index = index
        self.intact = True

    def copy(self) -> _Datagram:
        d = _Datagram(self.data, self.seg, self.src, self.dst, self.route, self.flow, self.index)
        d.hop = self.hop
        d.intact = self.intact
        return d


def _call(fn: Callable[[], None]) -> None:
    fn()


class SimNet:
    """The virtual clock, the event queue, the timers and the routes between hosts."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.now = 0.0
        #: Shared generator for callers; every link draws from its own stream, seeded from
        #: ``seed`` and the link's name, so adding a flow does not reshuffle another link.
        self.rng = random.Random(seed)
        self._queue: list[tuple[float, int, Callable[[Any], None], Any]] = []
        self._timers: TimerHeap[tuple[SimHost, Connection]] = TimerHeap()
        # Hosts that datagrams reached at the current instant (they read them as a train).
        self._reached: dict[SimHost, None] = {}
        self._counter = itertools.count()
        self._routes: dict[tuple[str, str], tuple[Link, ...]] = {}
        self.hosts: dict[str, SimHost] = {}
        self.trace: list[TraceEntry] = []
        #: Keep :attr:`trace` (one entry per datagram); turn off for long runs.
        self.record = True
        #: After every flush, sample ACK progress, bytes in flight and reassembly size into
        #: the connection's FlowLog.
        self.track_connections = True

    def host(
        self,
        name: str,
        *,
        listening: bool = False,
        config: Config | None = None,
        retain: bool = True,
    ) -> SimHost:
        """A new host. With ``retain=False`` it keeps no copy of the data it receives (only
        counts and a SHA-256 in each :class:`FlowLog`), for long transfers."""
        h = SimHost(self, name, listening=listening, config=config or Config(), retain=retain)
        self.hosts[name] = h
        return h

    # -- routes ----------------------------------------------------------------------

    def connect_hosts(
        self, a: SimHost, b: SimHost, ab: Link | None = None, ba: Link | None = None
    ) -> None:
        """A direct wire between ``a`` and ``b``: link ``ab`` one way, ``ba`` the other."""
        ab = ab or Link()
        ba = ba or Link()
        if ab is ba:
            # One Link is one queue: give each direction its own.
            ba = dataclasses.replace(ab, stats={}, name=ab.name and ab.name + "'")
        self.add_route(a, b, [ab])
        self.add_route(b, a, [ba])

    def add_route(self, src: SimHost | str, dst: SimHost | str, links: Sequence[Link]) -> None:
        """Datagrams from ``src`` to ``dst`` cross ``links`` in order. A link may sit on
        several routes; it is then one queue shared by all of them."""
        s = src if isinstance(src, str) else src.name
        d = dst if isinstance(dst, str) else dst.name
        if not links:
            raise ValueError("a route needs at least one link")
        for hop, link in enumerate(links):
            if link._rng is None:
                if not link.name:
                    link.name = f"{s}>{d}" if len(links) == 1 else f"{s}>{d}#{hop}"
                link._rng = random.Random(f"{self.seed}/{link.name}")
        self._routes[(s, d)] = tuple(links)

    def route(self, src: str, dst: str) -> tuple[Link, ...]:
        return self._routes[(src, dst)]

    def link(self, src: str, dst: str) -> Link:
        """The link of a one-hop route (see :meth:`route` for longer ones)."""
        route = self._routes[(src, dst)]
        if len(route) != 1:
            raise ValueError(f"{src} -> {dst} crosses {len(route)} links; use route()")
        return route[0]

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._counter), _call, fn))

    # -- carrying datagrams -------------------------------------------------------------

    def transmit(
        self,
        src: SimHost,
        dst_name: str,
        seg: Segment,
        flow: FlowLog | None = None,
        index: int = -1,
    ) -> None:
        """Put ``seg`` on the route from ``src`` to ``dst_name``. ``flow`` and ``index``
        name the transmission in the sender's FlowLog, so its fate is recorded there."""
        route = self._routes[(src.name, dst_name)]
        self._enter(_Datagram(encode(seg), seg, src.name, dst_name, route, flow, index))

    def _enter(self, dg: _Datagram) -> None:
        """``dg`` reaches the input of its next link: queue, serialize, cross the wire."""
        link = dg.route[dg.hop]
        stats = link.stats
        stats["offered"] = stats.get("offered", 0) + 1
        now = self.now
        if link.drop is not None and link.drop(dg.seg):
            return self._drop(dg, link, "dropped")
        size = len(dg.data)
        if link.mtu is not None and size > link.mtu:
            return self._drop(dg, link, "too-big")
        t = now
        if link.rate is not None:
            size += link.overhead
            q = link._queue
            while q and q[0][1] <= now:
                link._queued_bytes -= q.popleft()[2]
            waiting = len(q)
            waiting_bytes = link._queued_bytes
            if q and q[0][0] <= now:  # the one being serialized is not waiting
                waiting -= 1
                waiting_bytes -= q[0][2]
            if waiting >= link.queue_limit or (
                link.queue_bytes is not None and waiting_bytes + size > link.queue_bytes
            ):
                return self._drop(dg, link, "queue-full")
            start = link._free_at if link._free_at > now else now
            t = start + size / link.rate
            link._free_at = t
            q.append((start, t, size))
            link._queued_bytes += size
            if start > now:
                waiting += 1
                waiting_bytes += size
            if waiting > stats.get("max_queue", 0):
                stats["max_queue"] = waiting
            if waiting_bytes > stats.get("max_queue_bytes", 0):
                stats["max_queue_bytes"] = waiting_bytes
        rng = link._rng
        assert rng is not None
        # The wire, after serialization: loss, duplication, corruption, delay.
        ge = link.burst
        if ge is not None:
            if ge.step_time:
                steps = max((t - link._ge_time) / ge.step_time, 1.0)
                link._ge_time = t
                link._bad = rng.random() < ge.p_bad_after(link._bad, steps)
            elif link._bad:
                if rng.random() < ge.p_bad_good:
                    link._bad = False
            elif rng.random() < ge.p_good_bad:
                link._bad = True
            p = ge.loss_bad if link._bad else ge.loss_good
            if p and rng.random() < p:
                return self._drop(dg, link, "lost")
        if link.loss and rng.random() < link.loss:
            return self._drop(dg, link, "lost")
        copies = [dg]
        if link.duplicate and rng.random() < link.duplicate:
            copies.append(dg.copy())  # before either copy can be corrupted
            link.count("duplicated")
            if dg.hop and self.record:
                self._log(dg, link, "duplicated")
        for d in copies:
            fate = "sent"
            if link.corrupt and rng.random() < link.corrupt:
                bit = rng.randrange(len(d.data) * 8)
                mutable = bytearray(d.data)
                mutable[bit // 8] ^= 1 << (bit % 8)
                d.data = bytes(mutable)
                fate = "corrupted"
                link.count("corrupted")
                if d.intact and d.flow is not None and d.index >= 0:
                    d.flow.drops.append(Drop(now, d.index, link.name, "corrupted"))
                d.intact = False
            arrive = t + link.delay
            if link.jitter:
                arrive += rng.uniform(0, link.jitter)
            if link.preserve_order:
                if arrive < link._last_arrival:
                    arrive = link._last_arrival
                link._last_arrival = arrive
            if link.reorder and rng.random() < link.reorder:
                arrive += link.reorder_delay
                link.count("reordered")
            if self.record and (d.hop == 0 or fate != "sent"):
                self._log(d, link, fate)
            heapq.heappush(self._queue, (arrive, next(self._counter), self._hop_done, d))

    def _drop(self, dg: _Datagram, link: Link, fate: str) -> None:
        link.count(fate)
        if self.record:
            self._log(dg, link, fate)
        if dg.flow is not None and dg.index >= 0 and dg.intact:
            dg.flow.drops.append(Drop(self.now, dg.index, link.name, fate))

    def _hop_done(self, dg: _Datagram) -> None:
        dg.hop += 1
        if dg.hop < len(dg.route):
            self._enter(dg)
            return
        if dg.intact and dg.flow is not None and dg.index >= 0:
            dg.flow.copies[dg.index] += 1
            dg.flow.arrivals.append((self.now, dg.index))
        self.hosts[dg.dst].datagram_received(dg.src, dg.data)

    def _log(self, dg: _Datagram, link: Link, fate: str) -> None:
        self.trace.append(TraceEntry(self.now, dg.src, dg.dst, dg.seg, fate, link.name))

    # -- timers ------------------------------------------------------------------------

    def _arm(self, host: SimHost, conn: Connection) -> None:
        """Keep the timer heap in step with the connection's next deadline."""
        self._timers.schedule((host, conn), conn.get_timer())

    def _disarm(self, host: SimHost, conn: Connection) -> None:
        self._timers.cancel((host, conn))

    # -- running ------------------------------------------------------------------------

    def _sync(self) -> None:
        """Catch up with whatever a caller did to connections directly (``conn.send``,
        ``conn.receive``...): send what they queued and re-read their deadlines."""
        for h in list(self.hosts.values()):
            for conn in h.conns.values():
                h.flush(h.peer_of(conn), conn)

    def _next_time(self) -> float | None:
        if self._reached:
            return self.now  # datagrams handed to a host directly, not read yet
        best = self._queue[0][0] if self._queue else None
        t = self._timers.earliest()
        if t is not None and (best is None or t < best):
            best = t
        return best

    def _step(self) -> bool:
        t = self._next_time()
        if t is None:
            return False
        if t > self.now:
            self.now = t
        now = self.now
        q = self._queue
        while q and q[0][0] <= now:
            _, _, fn, arg = heapq.heappop(q)
            fn(arg)
        if self._reached:
            # What arrived at this instant, read host by host as the endpoint reads a burst.
            reached, self._reached = self._reached, {}
            for host in reached:
                host.read_inbox()
        for _, (host, conn) in self._timers.pop_due(now):
            host.fire_timer(conn)
        return True

    def step(self) -> bool:
        """Advance to the next event and run it; False when nothing is left to happen."""
        self._sync()
        return self._step()

    def run_until(self, done: Callable[[], bool], timeout: float = 600.0) -> float:
        """Run until ``done()`` is true; fail after ``timeout`` virtual seconds."""
        self._sync()
        limit = self.now + timeout
        step = self._step
        while not done():
            if not step() or self.now > limit:
                raise AssertionError(
                    f"simulation (seed={self.seed}) stalled or timed out at t={self.now:.3f}"
                )
        return self.now

    def run_for(self, seconds: float) -> None:
        """Run every event up to ``now + seconds``."""
        self._sync()
        limit = self.now + seconds
        while True:
            t = self._next_time()
            if t is None or t > limit:
                break
            self._step()
        self.now = limit


def connected_pair(
    config: Config,
    peer_config: Config | None = None,
    *,
    iss: int = 100,
    peer_iss: int = 900_000,
    mss: int = 1452,
) -> tuple[Connection, Connection]:
    """An active and a passive connection taken through the handshake at time 0, with their
    segments and events consumed: the starting point of scripted two-sided tests that carry
    segments by hand (dropping or delaying the ones they choose)."""
    a = Connection.connect(config, local_port=1000, remote_port=2000, iss=iss, mss=mss, now=0.0)
    b = Connection.accept(
        peer_config or config, a.take_segments()[0], iss=peer_iss, mss=mss, now=0.0
    )
    for seg in b.take_segments():
        a.receive(seg, 0.0)
    for seg in a.take_segments():
        b.receive(seg, 0.0)
    a.take_events()
    b.take_events()
    return a, b
