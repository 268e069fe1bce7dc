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

Typical use::

    net = SimNet(seed=1)
    a, b = net.host("a"), net.host("b", listening=True)
    net.connect_hosts(a, b, Link(loss=0.05, delay=0.01), Link(loss=0.05, delay=0.01))
    conn = a.connect(b, remote_port=80)
    net.run_until(lambda: conn.state is State.ESTABLISHED)
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from udptcp.core.config import Config
from udptcp.core.connection import Connection, LocalProtocolError, State, rst_for
from udptcp.core.demux import Demux, Route
from udptcp.core.events import ConnectionClosed, DataReceived, EofReceived, Event
from udptcp.core.isn import IsnGenerator
from udptcp.core.segment import ACK, RST, SYN, MalformedSegment, Segment, decode, encode
from udptcp.core.timerheap import TimerHeap
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
    "mbit",
]


def mbit(rate: float) -> float:
    """Bytes per second of a rate given in Mbit/s (the unit of :attr:`Link.rate`)."""
    return rate * 1e6 / 8


@dataclass(frozen=True)
class GilbertElliott:
    """Two-state bursty loss (the Gilbert–Elliott channel).

    In the good state a datagram is lost with ``loss_good``, in the bad state with
    ``loss_bad``. Before each datagram the chain steps once, moving good→bad with
    ``p_good_bad`` and bad→good with ``p_bad_good`` (netem's per-packet model). With
    ``step_time`` the chain instead steps once per ``step_time`` seconds of wire time (at
    least once per datagram), so a bad spell lasts a *time*: a sender whose lone
    retransmissions go out seconds apart then meets the average loss rate, not an outage
    that only its own datagrams can end. Set it to one datagram's serialization time to
    keep the per-packet figures at full load.
    """

    p_good_bad: float
    p_bad_good: float
    loss_good: float = 0.0
    loss_bad: float = 1.0
    step_time: float | None = None

    @classmethod
    def from_loss(
        cls,
        loss: float,
        burst: float = 4.0,
        loss_bad: float = 1.0,
        step_time: float | None = None,
    ) -> GilbertElliott:
        """A chain losing ``loss`` of all datagrams on average, in bad spells lasting
        ``burst`` steps on average (with ``loss_bad`` = 1, the mean loss-run length)."""
        if not 0 <= loss < loss_bad or burst < 1:
            raise ValueError(f"need 0 <= loss < loss_bad and burst >= 1, got {loss}, {burst}")
        p_bg = 1.0 / burst
        bad = loss / loss_bad  # stationary share of time in the bad state
        return cls(
            p_good_bad=p_bg * bad / (1 - bad),
            p_bad_good=p_bg,
            loss_bad=loss_bad,
            step_time=step_time,
        )

    @property
    def bad_share(self) -> float:
        """Long-run fraction of steps spent in the bad state."""
        total = self.p_good_bad + self.p_bad_good
        return self.p_good_bad / total if total else 0.0

    @property
    def mean_loss(self) -> float:
        """Long-run fraction of datagrams lost."""
        bad = self.bad_share
        return bad * self.loss_bad + (1 - bad) * self.loss_good

    def p_bad_after(self, bad: bool, steps: float) -> float:
        """Probability of the bad state ``steps`` steps after being in ``bad``."""
        decay = max(1.0 - self.p_good_bad - self.p_bad_good, 0.0) ** steps
        share = self.bad_share
        return share + ((1.0 if bad else 0.0) - share) * decay


@dataclass(eq=False)
class Link:
    """One direction of one wire. Probabilities are per datagram; times in seconds.

    A datagram entering the link is first offered to ``drop`` (a scripted loss: a predicate
    on the segment), checked against ``mtu``, then queued: with a ``rate``, a FIFO serializer
    takes ``(len + overhead) / rate`` seconds per datagram, and a datagram that finds
    ``queue_limit`` datagrams (or ``queue_bytes`` bytes) already *waiting* — the one being
    serialized does not count — is dropped (drop-tail). On the wire it may then be lost
    (``loss``, or the ``burst`` chain), duplicated, corrupted (one bit flipped), and arrives
    after ``delay`` plus a uniform ``[0, jitter]``. With ``preserve_order`` the jitter never
    lets a datagram overtake an earlier one; ``reorder`` separately holds a datagram back by
    ``reorder_delay``.
    """

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0  # chance a datagram is held back by ``reorder_delay``
    reorder_delay: float = 0.005
    delay: float = 0.001  # one-way propagation delay
    jitter: float = 0.0  # uniform extra delay in [0, jitter]
    corrupt: float = 0.0  # chance one random bit is flipped
    rate: float | None = None  # bytes per second (see ``mbit``); None = unlimited
    mtu: int | None = None  # largest UDP payload carried
    queue_limit: int = 1000  # datagrams waiting for the serializer beyond this are dropped
    # Counters, filled in as the simulation runs: "offered", "lost", "queue-full", ...,
    # and the high-water marks "max_queue" (datagrams waiting) and "max_queue_bytes".
    stats: dict[str, int] = field(default_factory=dict)
    queue_bytes: int | None = None  # byte limit of the waiting queue; None = none
    overhead: int = 0  # bytes each datagram costs beyond its UDP payload (28 for IPv4+UDP)
    burst: GilbertElliott | None = None  # bursty loss, on top of ``loss``
    preserve_order: bool = False  # jitter delays but never reorders
    drop: Callable[[Segment], bool] | None = None  # scripted loss: True drops the datagram
    name: str = ""  # for logs; set from the route when empty
    # Running state (one Link is one queue in one SimNet).
    _rng: random.Random | None = field(default=None, init=False, repr=False)
    _queue: deque[tuple[float, float, int]] = field(
        default_factory=deque, init=False, repr=False
    )  # (start, done, size) of datagrams not yet fully serialized
    _queued_bytes: int = field(default=0, init=False, repr=False)
    _free_at: float = field(default=0.0, init=False, repr=False)
    _last_arrival: float = field(default=0.0, init=False, repr=False)
    _bad: bool = field(default=False, init=False, repr=False)
    _ge_time: float = field(default=0.0, init=False, repr=False)

    def count(self, what: str, n: int = 1) -> None:
        self.stats[what] = self.stats.get(what, 0) + n

    @property
    def mean_loss(self) -> float:
        """Long-run fraction of datagrams lost on the wire (random and bursty combined)."""
        burst = self.burst.mean_loss if self.burst is not None else 0.0
        return 1 - (1 - self.loss) * (1 - burst)


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


class DataSource(Protocol):
    """What :meth:`SimHost.stream` pulls application data from."""

    def read(self, n: int) -> bytes:
        """Up to ``n`` more bytes; ``b""`` at the end."""
        ...


class BulkSource:
    """``total`` seeded pseudo-random bytes, produced on demand, with their SHA-256."""

    def __init__(self, total: int, seed: int = 0) -> None:
        self.total = total
        self.produced = 0
        self.sha256 = hashlib.sha256()
        self._rng = random.Random(seed)

    def finish(self) -> None:
        """End the stream at what was produced so far."""
        self.total = self.produced

    def read(self, n: int) -> bytes:
        n = min(n, self.total - self.produced)
        if n <= 0:
            return b""
        data = self._rng.randbytes(n)
        self.produced += n
        self.sha256.update(data)
        return data


@dataclass
class _Stream:
    source: DataSource
    low_water: int
    then: str
    exhausted: bool = False  # the source has nothing more
    finished: bool = False  # and ``then`` was done


class SimHost:
    """One simulated endpoint: demultiplexes segments to its connections and listens."""

    def __init__(
        self, net: SimNet, name: str, *, listening: bool, config: Config, retain: bool = True
    ) -> None:
        self.net = net
        self.name = name
        self.listening = listening
        self.config = config
        self.retain = retain
        self.mss = config.mss_for(1472)
        self.isn = IsnGenerator(key=bytes([len(name)]) * 16)
        #: The connections by 4-tuple (peer name, local virtual port, remote virtual port).
        self.conns: Demux[Connection] = Demux(_itself)
        #: Datagrams that reached the host at the current instant, not yet read.
        self.inbox: list[tuple[str, bytes]] = []
        #: Segments dropped for carrying both SYN and FIN (as the endpoint drops them).
        self.syn_fin_dropped = 0
        #: Trains handed to connections, and the segments in them.
        self.trains = 0
        self.train_segments = 0
        self.accepted: list[Connection] = []
        self.events: dict[Connection, list[Event]] = {}
        self.received: dict[Connection, bytearray] = {}
        #: Per-connection transmission and delivery log.
        self.flows: dict[Connection, FlowLog] = {}
        self.malformed = 0
        self.rsts_sent = 0
        #: Called with (connection, event) for every event; may act on the connection.
        self.on_event: Callable[[Connection, Event], None] | None = None
        self._next_port = 40000
        self._keys: dict[Connection, tuple[str, int, int]] = {}
        self._eof: set[Connection] = set()
        self._closed: dict[Connection, ConnectionClosed] = {}
        self._streams: dict[Connection, _Stream] = {}

    def connect(
        self,
        peer: SimHost,
        remote_port: int = 80,
        *,
        local_port: int | None = None,
        iss: int | None = None,
    ) -> Connection:
        if local_port is None:
            self._next_port += 1
            local_port = self._next_port
        if iss is None:
            iss = self.isn.isn((self.name, local_port), (peer.name, remote_port), self.net.now)
        conn = Connection.connect(
            self.config,
            local_port=local_port,
            remote_port=remote_port,
            iss=iss,
            mss=self.mss,
            now=self.net.now,
        )
        self._add(peer.name, conn)
        return conn

    def _add(self, peer: str, conn: Connection) -> None:
        key = (peer, conn.local_port, conn.remote_port)
        self.conns.add(key, conn)
        self._keys[conn] = key
        self.events[conn] = []
        self.received[conn] = bytearray()
        self.flows[conn] = FlowLog(self.name, peer, conn)
        self.flush(peer, conn)

    def peer_of(self, conn: Connection) -> str:
        return self._keys[conn][0]

    def datagram_received(self, src: str, data: bytes) -> None:
        """A datagram from host ``src`` reached this host: it is read, with whatever else
        arrives at this instant, once the instant's arrivals are all in (:meth:`read_inbox`)."""
        self.inbox.append((src, data))
        self.net._reached[self] = None

    def read_inbox(self) -> None:
        """Read every datagram in :attr:`inbox`, as the endpoint reads one burst: decode each
        and route it (:class:`~udptcp.core.demux.Demux`), collecting what goes to a
        connection into one train per connection (a SYN, a reset or a new connection is
        dealt with at once, after the train that came before it), then hand each train to
        its connection through ``receive_many``."""
        inbox, self.inbox = self.inbox, []
        trains: dict[Connection, list[Segment]] = {}
        for src, data in inbox:
            try:
                seg = decode(data)
            except MalformedSegment:
                self.malformed += 1
                continue
            self._route(seg, src, trains)
        for conn, segments in trains.items():
            self._deliver_train(conn, segments)

    def _route(
        self, seg: Segment, src: str, trains: dict[Connection, list[Segment]] | None
    ) -> None:
        is_syn = seg.flags & (SYN | ACK | RST) == SYN
        if is_syn and trains:
            # A SYN for a known 4-tuple: what came before it goes first (that train may
            # close the connection, or leave it in TIME-WAIT for the SYN to reopen).
            known = self.conns.get((src, seg.dst_port, seg.src_port))
            pending = trains.pop(known, None) if known is not None else None
            if known is not None and pending:
                self._deliver_train(known, pending)
        route, conn, key = self.conns.route(seg, src)
        if route is Route.CONNECTION or route is Route.OWN_SYN:
            assert conn is not None
            if trains is None or is_syn:
                self._deliver_train(conn, [seg])  # a SYN is handled at once, as alone
            else:
                trains.setdefault(conn, []).append(seg)
            return
        now = self.net.now
        iss: int | None = None
        if route is Route.REOPEN:
            # RFC 9293 §3.10.7.4 / RFC 6191: a new incarnation may reopen from TIME-WAIT.
            assert conn is not None
            self.conns.remove(key, conn)
            self.net._disarm(self, conn)
            iss = conn.reopen_iss()
            route = Route.SYN
        if route is Route.SYN_FIN:
            self.syn_fin_dropped += 1
            return
        if route is Route.SYN and self.listening:
            if iss is None:
                iss = self.isn.isn((self.name, seg.dst_port), (src, seg.src_port), now)
            new = Connection.accept(self.config, seg, iss=iss, mss=self.mss, now=now)
            self.accepted.append(new)
            self._add(src, new)
            return
        rst = rst_for(seg)
        if rst is not None:
            self.rsts_sent += 1
            self.net.transmit(self, src, rst)

    def _deliver_train(self, conn: Connection, segments: list[Segment]) -> None:
        """Hand ``segments`` to ``conn`` as one train, flushing after each stretch it takes
        (it pauses after an event other than data); what comes after it closed is routed
        again, one by one, as it would have been alone."""
        key = self._keys[conn]
        peer = key[0]
        self.trains += 1
        self.train_segments += len(segments)
        total, count = 0, len(segments)
        while total < count and self.conns.holds(key, conn):
            total += conn.receive_many(segments[total:] if total else segments, self.net.now)
            self.flush(peer, conn)
            if conn.state is State.CLOSED:
                break
        for seg in segments[total:]:
            self._route(seg, peer, None)

    def flush(self, peer: str, conn: Connection) -> None:
        """Send what the connection queued and collect its events (repeating while the
        event handler or a data stream keeps giving the connection work), then re-arm its
        timer, and forget it once CLOSED."""
        net = self.net
        now = net.now
        flow = self.flows[conn]
        log = self.events[conn]
        while True:
            for seg in conn.take_segments():
                net.transmit(self, peer, seg, flow, flow.on_send(seg, conn, now))
            events = conn.take_events()
            if not events:
                stream = self._streams.get(conn)
                if stream is not None and self._top_up(conn, stream, now):
                    continue
                break
            for ev in events:
                if isinstance(ev, DataReceived):
                    flow.on_data(ev.data, now)
                    if self.retain:
                        self.received[conn] += ev.data
                        log.append(ev)
                else:
                    log.append(ev)
                    if isinstance(ev, EofReceived):
                        self._eof.add(conn)
                    elif isinstance(ev, ConnectionClosed):
                        self._closed.setdefault(conn, ev)
                if self.on_event is not None:
                    self.on_event(conn, ev)
        if net.track_connections:
            flow.sample(conn, now)
        net._arm(self, conn)
        if conn.is_closed:
            self.conns.remove(self._keys[conn], conn)

    def fire_timer(self, conn: Connection) -> None:
        """Run the connection's due timers now, and send what they produce."""
        key = self._keys[conn]
        if not self.conns.holds(key, conn):
            return  # forgotten (closed, or replaced by a new incarnation)
        conn.handle_timer(self.net.now)
        self.flush(key[0], conn)

    # -- application calls, each followed by a flush ------------------------------------

    def send(self, conn: Connection, data: bytes) -> None:
        conn.send(data, self.net.now)
        self.flush(self.peer_of(conn), conn)

    def stream(
        self,
        conn: Connection,
        source: DataSource,
        *,
        low_water: int = 1 << 20,
        then: str = "close",
    ) -> None:
        """Write everything ``source`` produces, keeping at least ``low_water`` unsent bytes
        queued while it lasts, then ``"close"``, ``"shutdown"`` or do nothing (``"none"``)."""
        if then not in ("close", "shutdown", "none"):
            raise ValueError(f"then must be 'close', 'shutdown' or 'none', got {then!r}")
        self._streams[conn] = _Stream(source, low_water, then)
        self.flush(self.peer_of(conn), conn)

    def _top_up(self, conn: Connection, stream: _Stream, now: float) -> bool:
        """Keep ``low_water`` unsent bytes queued; True if the connection was given work."""
        if stream.finished:
            return False
        try:
            if not stream.exhausted:
                if conn.unsent_bytes >= stream.low_water:
                    return False
                while conn.unsent_bytes < stream.low_water:
                    data = stream.source.read(max(stream.low_water // 4, 1 << 16))
                    if not data:
                        stream.exhausted = True
                        break
                    conn.send(data, now)
                if not stream.exhausted:
                    return True
            # RFC 9293 §3.10.4: CLOSE in SYN-SENT deletes the connection, so the end of
            # the stream waits for the handshake.
            if conn.state not in (State.ESTABLISHED, State.CLOSE_WAIT):
                return False
            stream.finished = True
            if stream.then == "close":
                conn.close(now)
            elif stream.then == "shutdown":
                conn.shutdown(now)
        except LocalProtocolError:
            stream.finished = True  # the connection no longer takes data (reset, closed)
        return True

    def shutdown(self, conn: Connection) -> None:
        conn.shutdown(self.net.now)
        self.flush(self.peer_of(conn), conn)

    def close(self, conn: Connection) -> None:
        conn.close(self.net.now)
        self.flush(self.peer_of(conn), conn)

    def abort(self, conn: Connection) -> None:
        peer = self.peer_of(conn)
        conn.abort(self.net.now)
        self.flush(peer, conn)

    def next_deadline(self) -> float | None:
        """The earliest timer of any of this host's connections."""
        best = None
        for c in self.conns.values():
            t = c.get_timer()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def run_timers(self, now: float) -> None:
        """Fire every connection timer due at ``now`` (the simulator does this by itself)."""
        for conn in list(self.conns.values()):
            t = conn.get_timer()
            if t is not None and t <= now:
                self.fire_timer(conn)

    # -- helpers for tests ------------------------------------------------------------

    def got_eof(self, conn: Connection) -> bool:
        return conn in self._eof

    def closed_with(self, conn: Connection) -> ConnectionClosed | None:
        return self._closed.get(conn)

    def delivered(self, conn: Connection) -> int:
        """In-order bytes delivered to the application on ``conn``."""
        return self.flows[conn].bytes_delivered


def _itself(conn: Connection) -> Connection:
    return conn


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
